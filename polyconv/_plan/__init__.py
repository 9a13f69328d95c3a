"""The plan layer: how the FFT method cuts a problem into transforms (overlap-save blocks and
whole-image transforms) and how much work each plan does. Pure arithmetic on a
:class:`~polyconv.CorrSpec`; imports only the spec layer."""
