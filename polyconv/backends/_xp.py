"""What the PyTorch and JAX backends compute alike, written once over a small array namespace.

As array-api-compat's ``common/`` code is written once and bound per library, each function
here takes an :class:`ArrayOps` (``xp``), the few operations it needs, which
``torch_backend.py`` and ``jax_backend.py`` each bind once for their framework.

Shared here:

- the padding gather (:func:`gather_padding`): the other modes than zeros read the index maps of
  :func:`polyconv.backends.pad_indices`, one axis at a time;
- its transpose (:func:`fold_padding`): a crop for zeros, else each padded sample's gradient added
  to its source;
- the whole-image FFT (:func:`fft_unchecked`, geometry in :mod:`polyconv._plan.whole`): the input
  cast, padded and zero-extended into one buffer, the kernel dilated, channels contracted per
  group on the spectra, the stride-1 result cropped, strided and given its bias;
- the transposed correlation by that FFT (:func:`transpose_fft_unchecked`): ``y`` spread to
  stride 1, the kernel flipped with its channel axes swapped per group, the padding folded back;
- the non-finite recompute (:func:`finite_or`): an FFT spreads one NaN or inf to every output,
  so a result (or a tuple of gradients) that is not finite throughout is recomputed by the
  direct method.

The float32 precision setting is shared too (:mod:`polyconv.backends._precision`).

Not shared, because the frameworks must differ there (each binding's docstring says how):

- control flow on values: torch branches in Python on one scalar sync, and under
  ``torch.func.vmap`` or ``torch.compile`` runs both methods and keeps one by ``torch.where``;
  JAX stays traceable under ``jit``, ``vmap`` and ``jvp`` with ``lax.cond``, and leaves the checks
  out when traced for ``jax.linear_transpose`` (:meth:`ArrayOps.cond`, :meth:`ArrayOps.all_finite`);
- writes: torch fills a zeroed buffer in place (every large temporary costs its page faults) and
  multiplies spectra in place where no graph needs them; JAX arrays are immutable
  (``.at[].set``) (:meth:`ArrayOps.set_in_zeros`, :meth:`ArrayOps.multiply_consuming`);
- the transforms: torch builds the kernel's conjugate spectrum without transforming its zero
  extension and inverts one axis at a time, cutting each to the outputs kept
  (docs/benchmarks.md, "Design measurements", torch-irfft); JAX leaves both to XLA, whose
  ``rfftn``/``irfftn`` it fuses (:meth:`ArrayOps.kernel_spectra`, :meth:`ArrayOps.irfftn`);
- the index maps: torch caches them as device tensors (built by torch arithmetic under
  ``torch.compile``, which cannot trace the NumPy code); JAX bakes them in as constants;
- the direct methods (``F.conv*d``/``conv_transpose*d`` against ``lax.conv_general_dilated``),
  the precision's effect (TF32 flags held around a call against ``precision=``), autograd
  against ``jax.vjp``, and each backend's caching of compiled calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._plan.whole import kernel_taps, output_window, whole_image_fft
from .._spec.spec import CorrSpec, normalize
from .._spec.transpose import TransposeSpec

# A torch tensor or a JAX array, spelled Any (see the backends).
Array = Any
T = TypeVar("T")


class ArrayOps(ABC):
    """The operations the shared code needs, bound per framework by subclassing."""

    @abstractmethod
    def fft_dtype(self) -> Any:
        """The dtype the FFT computes in."""

    @abstractmethod
    def astype(self, a: Array, dtype: Any) -> Array: ...

    @abstractmethod
    def padding_index(self, size: int, lo: int, hi: int, mode: str, like: Array) -> Any:
        """The source index of each padded sample (``pad_indices``), in a form ``take`` and
        ``add_at`` accept, on ``like``'s device."""

    @abstractmethod
    def take(self, a: Array, index: Any, axis: int) -> Array:
        """``a``'s slices along ``axis`` at ``index`` (in bounds)."""

    @abstractmethod
    def add_at(self, a: Array, index: Any, axis: int, size: int) -> Array:
        """Zeros of ``size`` along ``axis`` with each slice of ``a`` added at its ``index``."""

    @abstractmethod
    def set_in_zeros(self, shape: tuple[int, ...], dtype: Any, where: Any, values: Array) -> Array:
        """Zeros of ``shape`` and ``dtype`` with ``values`` (cast) written at ``where``."""

    @abstractmethod
    def flip(self, a: Array, axes: tuple[int, ...]) -> Array: ...

    @abstractmethod
    def rfftn(self, a: Array, lengths: tuple[int, ...], axes: tuple[int, ...]) -> Array: ...

    @abstractmethod
    def kernel_spectra(
        self, kernel: Array, lengths: tuple[int, ...], axes: tuple[int, ...]
    ) -> Array:
        """``conj(rfftn(kernel, lengths))``."""

    @abstractmethod
    def irfftn(
        self, spectra: Array, lengths: tuple[int, ...], axes: tuple[int, ...], keep: tuple[int, ...]
    ) -> Array:
        """The inverse of ``rfftn``, correct at least on the first ``keep`` samples of each axis."""

    @abstractmethod
    def multiply_consuming(self, a: Array, b: Array) -> Array:
        """``a * b``, which may overwrite ``a``."""

    @abstractmethod
    def einsum(self, subscripts: str, a: Array, b: Array) -> Array: ...

    @abstractmethod
    def all_finite(self, arrays: Sequence[Array]) -> Any:
        """Whether every element of ``arrays`` is finite: a bool, or a scalar array for ``cond``."""

    @abstractmethod
    def cond(self, predicate: Any, then: Callable[[], T], otherwise: Callable[[], T]) -> T:
        """``then()`` where ``predicate`` holds, else ``otherwise()``."""


def gather_padding(xp: ArrayOps, x: Array, spec: CorrSpec) -> Array:
    """``x`` padded by gathering (``spec``'s mode, any width), one spatial axis at a time."""
    for axis, (size, (lo, hi)) in enumerate(zip(spec.x_shape[2:], spec.padding, strict=True)):
        if lo or hi:
            index = xp.padding_index(size, lo, hi, spec.padding_mode, x)
            x = xp.take(x, index, 2 + axis)
    return x


def fold_padding(xp: ArrayOps, grad_padded: Array, forward: CorrSpec) -> Array:
    """The transpose of ``forward``'s padding: the padded input's gradient cropped (zeros), or
    each padded sample's value added to the sample it copied."""
    grad = grad_padded
    for axis, (n, (lo, hi)) in enumerate(zip(forward.x_shape[2:], forward.padding, strict=True)):
        if not (lo or hi):
            continue
        if forward.padding_mode == "zeros":
            grad = grad[(slice(None),) * (2 + axis) + (slice(lo, lo + n),)]
        else:
            index = xp.padding_index(n, lo, hi, forward.padding_mode, grad)
            grad = xp.add_at(grad, index, 2 + axis, n)
    return grad


def _contract_channels(xp: ArrayOps, spectra: Array, kernel: Array) -> Array:
    """``sum_c spectra[n, g, c, f] * kernel[g, o, c, f]`` as ``(N, G, O/G, *f)``."""
    if spectra.shape[2] == 1:  # one input channel per group: a broadcast product suffices
        return xp.multiply_consuming(spectra, kernel[None, :, :, 0])
    return xp.einsum("ngc...,goc...->ngo...", spectra, kernel)


def fft_unchecked(xp: ArrayOps, x: Array, w: Array, bias: Array | None, spec: CorrSpec) -> Array:
    """The correlation by whole-image FFTs, in ``xp.fft_dtype()`` and rounded once to ``x``'s
    dtype; a NaN or inf spreads over the whole result."""
    plan = whole_image_fft(spec)
    dtype = xp.fft_dtype()
    n, g, (c_out, cg) = x.shape[0], spec.groups, spec.w_shape[:2]
    if spec.padding_mode == "zeros":  # the zero buffer is the padding
        source, offsets = x, tuple(lo for lo, _ in spec.padding)
    else:
        source, offsets = gather_padding(xp, x, spec), (0,) * spec.rank
    # One buffer holds the input's cast, its padding and the transform's zero extension.
    inside, window = plan.placement(tuple(source.shape[2:]), offsets)
    placed = source.reshape(n, g, cg, *source.shape[2:])[window]
    buffer = xp.set_in_zeros((n, g, cg, *plan.lengths), dtype, inside, placed)
    kernel = xp.astype(w, dtype)
    if any(d > 1 for d in spec.dilation):
        kernel = xp.set_in_zeros(
            (*kernel.shape[:2], *plan.extents), dtype, kernel_taps(spec), kernel
        )
    kernel = kernel.reshape(g, c_out // g, cg, *kernel.shape[2:])
    spectra = xp.rfftn(buffer, plan.lengths, plan.axes)
    products = _contract_channels(xp, spectra, xp.kernel_spectra(kernel, plan.lengths, plan.axes))
    circular = xp.irfftn(products, plan.lengths, plan.axes, plan.full)
    y = circular[output_window(spec)]  # (N, G, O/G, *out): cast before reshaping, one copy
    if bias is not None:
        y = y + xp.astype(bias, dtype).reshape(g, c_out // g, *(1,) * spec.rank)
    return xp.astype(y, x.dtype).reshape(spec.out_shape)


def transposed_kernel(xp: ArrayOps, w: Array, spec: TransposeSpec) -> Array:
    """``(C_out, C_in // g, *k)`` as ``(C_in, C_out // g, *k)``, flipped along the taps: the
    kernel whose correlation is the forward's adjoint."""
    forward = spec.forward
    g, (c_out, cg), taps = forward.groups, w.shape[:2], forward.kernel_shape
    swapped = w.reshape(g, c_out // g, cg, *taps).swapaxes(1, 2)
    swapped = swapped.reshape(g * cg, c_out // g, *taps)
    return xp.flip(swapped, tuple(range(2, swapped.ndim)))


def transposed_problem(
    xp: ArrayOps, y: Array, w: Array, spec: TransposeSpec
) -> tuple[Array, Array, CorrSpec]:
    """The transposed correlation as a correlation: ``y`` spread to stride 1, the
    :func:`transposed_kernel`, and the spec whose output is the forward's padded input's
    gradient."""
    forward = spec.forward
    length = [p + e - 1 for p, e in zip(forward.padded_shape, forward.extents, strict=True)]
    placed = tuple(
        slice(e - 1, e - 1 + (i - 1) * s + 1, s)
        for e, i, s in zip(forward.extents, spec.y_shape[2:], forward.stride, strict=True)
    )
    shape = (y.shape[0], w.shape[0], *length)
    spread = xp.set_in_zeros(shape, y.dtype, (slice(None), slice(None), *placed), y)
    kernel = transposed_kernel(xp, w, spec)
    t_spec = normalize(
        tuple(spread.shape), tuple(kernel.shape), dilation=forward.dilation, groups=forward.groups
    )
    return spread, kernel, t_spec


def transpose_fft_unchecked(
    xp: ArrayOps,
    y: Array,
    w: Array,
    bias: Array | None,
    spec: TransposeSpec,
    correlate: Callable[[Array, Array, Array | None, CorrSpec], Array],
) -> Array:
    """The transposed correlation by ``correlate`` (the backend's :func:`fft_unchecked`) of the
    :func:`transposed_problem`, its padding folded back."""
    spread, kernel, t_spec = transposed_problem(xp, y, w, spec)
    out = fold_padding(xp, correlate(spread, kernel, None, t_spec), spec.forward)
    if bias is None:
        return out
    return out + xp.astype(bias, out.dtype).reshape(-1, *(1,) * spec.rank)


def finite_or(xp: ArrayOps, result: T, recompute: Callable[[], T]) -> T:
    """``result`` (an array or a tuple of arrays and Nones) where it is finite throughout, else
    ``recompute()``: an FFT spreads a NaN or inf to every output, the direct method puts it
    exactly where the spec says."""
    arrays = result if isinstance(result, tuple) else (result,)
    predicate = xp.all_finite([a for a in arrays if a is not None])
    return xp.cond(predicate, lambda: result, recompute)
