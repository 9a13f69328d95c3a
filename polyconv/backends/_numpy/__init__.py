"""The NumPy backend's computations: the direct method's schemes (:mod:`.direct` chooses among
:mod:`.taps`, :mod:`.tiles` and :mod:`.im2col`, with :mod:`.phases` for strided gradients, all
cut into :mod:`.blocks`), the FFT method (:mod:`.fft`) and the thread pool (:mod:`.parallel`)."""
