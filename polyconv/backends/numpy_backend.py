"""Pure-NumPy backend: the direct method, with hand-written gradients.

The correlation loops over kernel offsets only; each step is one vectorised multiply-add (one
input channel per group) or one batched matrix product over channels. Its gradients are the
transposes of the same loop: the kernel gradient correlates the padded input with the output
gradient, and the input gradient scatters ``w^T @ grad_y`` back onto the windows it came from,
then folds the padding back onto the input (the transpose of the padding gather).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._plan.fft import MAX_FFT_LENGTH
from .._spec.dtypes import numpy_dtype
from .._spec.padding import pad_indices
from .._spec.spec import CorrSpec, normalize
from .._spec.transpose import TransposeSpec
from ._cost import choose_method
from ._interface import Backend, Method
from ._numpy import direct as _numpy_direct
from ._numpy import fft as _numpy_fft


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    # The input dtype, except float16 and bfloat16 (ml_dtypes), which accumulate in float32 and
    # round once (NumPy has no fast or accurate half-precision matrix product). The FFT method
    # transforms in float64 whatever this dtype (see _numpy/fft.py), one piece at a time, so
    # that no float64 copy of the whole input or output is made.
    return np.dtype(np.float32) if dtype.itemsize == 2 else dtype


def _interior(spec: CorrSpec) -> tuple[Any, ...]:
    """Index of the input inside its padded form (leading axes kept)."""
    return (
        ...,
        *(slice(lo, lo + n) for (lo, _), n in zip(spec.padding, spec.x_shape[2:], strict=True)),
    )


def pad(x: np.ndarray, spec: CorrSpec) -> np.ndarray:
    """``x`` padded per ``spec`` (any mode, any width)."""
    if not any(lo or hi for lo, hi in spec.padding):
        return x
    shape = x.shape[:2] + spec.padded_shape
    if math.prod(shape) > MAX_FFT_LENGTH:  # NumPy would fail only after trying
        raise ValueError(
            f"x padded to shape {shape} ({math.prod(shape)} samples) is more than could ever be "
            "allocated, and the NumPy backend pads x before correlating; use less padding or "
            "dilation, or the torch backend, whose native padding is not allocated"
        )
    if spec.padding_mode == "zeros":
        padded = np.zeros(x.shape[:2] + spec.padded_shape, dtype=x.dtype)
        padded[_interior(spec)] = x
        return padded
    for axis, (n, (lo, hi)) in enumerate(zip(x.shape[2:], spec.padding, strict=True)):
        x = np.take(x, pad_indices(n, lo, hi, spec.padding_mode), axis=2 + axis)
    return x


def unpad_grad(grad_padded: np.ndarray, spec: CorrSpec) -> np.ndarray:
    """The transpose of :func:`pad`: every padded position adds its gradient to its source."""
    if spec.padding_mode == "zeros":  # the pads are constants: crop them, in one copy
        return np.ascontiguousarray(grad_padded[_interior(spec)])
    grad = grad_padded
    for axis, (n, (lo, hi)) in enumerate(zip(spec.x_shape[2:], spec.padding, strict=True)):
        moved = np.moveaxis(grad, 2 + axis, 0)
        folded = moved[lo : lo + n].copy()
        index = pad_indices(n, lo, hi, spec.padding_mode)
        np.add.at(folded, index[:lo], moved[:lo])
        np.add.at(folded, index[lo + n :], moved[lo + n :])
        grad = np.moveaxis(folded, 0, 2 + axis)
    return grad


def _grouped(x: np.ndarray, w: np.ndarray, spec: CorrSpec) -> tuple[np.ndarray, np.ndarray]:
    """Views with the group axis split out: x as (N, G, C_in/G, ...), w as (G, C_out/G, C_in/G, ...)."""
    g = spec.groups
    xg = x.reshape(x.shape[0], g, x.shape[1] // g, *x.shape[2:])
    wg = w.reshape(g, w.shape[0] // g, *w.shape[1:])
    return xg, wg


def _prepared(
    x: np.ndarray, w: np.ndarray, spec: CorrSpec, padded: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The input (padded unless ``padded`` is false) and the kernel, contiguous, grouped and
    in the compute dtype."""
    dtype = _compute_dtype(x.dtype)
    x = x.astype(dtype, copy=False)
    xp = np.ascontiguousarray(pad(x, spec) if padded else x)
    return _grouped(xp, np.ascontiguousarray(w, dtype=dtype), spec)


def _add_bias(y: np.ndarray, bias: np.ndarray | None, spec: CorrSpec) -> np.ndarray:
    if bias is not None:
        y += bias.astype(y.dtype, copy=False).reshape(-1, *([1] * spec.rank))
    return y


def _all_finite(*arrays: np.ndarray) -> bool:
    return all(bool(np.isfinite(a).all()) for a in arrays)


# The fast schemes (Toeplitz tiles, FFT) multiply values that an output does not read (the
# band's zeros, the whole tile), so one NaN or inf input would spread past the outputs that
# read it. Their non-finite result is therefore recomputed by im2col, whose every product is a
# term of the defining sum: checking the result costs one pass over it, and only a non-finite
# result pays for the second computation. The exact schemes (taps, im2col) skip the check.
def correlate(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, spec: CorrSpec, method: Method
) -> np.ndarray:
    if method == "fft":
        xg, wg = _prepared(x, w, spec)
        y = _numpy_fft.correlate(xg, wg, spec)
    else:
        # im2col with zero padding pads each block's rows itself, from the unpadded input
        padded = not _numpy_direct.pads_per_block(spec)
        xg, wg = _prepared(x, w, spec, padded=padded)
        y = _numpy_direct.correlate(xg, wg, spec, padded=padded)
    exact = method != "fft" and _numpy_direct.is_exact(spec)
    if not exact and not _all_finite(y):
        y = _numpy_direct.correlate(xg, wg, spec, exact=True)
    return _add_bias(y, bias, spec).astype(x.dtype, copy=False)


def correlate_vjp(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    grad_y: np.ndarray,
    spec: CorrSpec,
    method: Method,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    out_dtype = x.dtype
    xg, wg = _prepared(x, w, spec)
    gy = np.ascontiguousarray(grad_y, dtype=xg.dtype)
    scheme = _numpy_fft if method == "fft" else _numpy_direct
    grad_xp, grad_w = scheme.correlate_vjp(xg, wg, gy, spec)
    if not _all_finite(grad_xp, grad_w):  # see correlate
        grad_xp, grad_w = _numpy_direct.correlate_vjp(xg, wg, gy, spec, exact=True)
    grad_x = unpad_grad(grad_xp.reshape(spec.x_shape[:2] + spec.padded_shape), spec)
    grad_bias = None
    if bias is not None:
        grad_bias = gy.sum(axis=(0, *range(2, gy.ndim))).astype(out_dtype, copy=False)
    return (
        grad_x.astype(out_dtype, copy=False),
        grad_w.reshape(spec.w_shape).astype(out_dtype, copy=False),
        grad_bias,
    )


def correlate_transpose(
    y: np.ndarray, w: np.ndarray, bias: np.ndarray | None, spec: TransposeSpec, method: Method
) -> np.ndarray:
    """The transpose as a correlation (the forward's input gradient, as :func:`correlate_vjp`
    computes it by :func:`_numpy_direct._input_gradient`): ``y`` spread to stride 1 (zeros
    between samples, the forward's extra outputs left zero) and padded by the kernel extent
    less one, correlated with the flipped kernel with its channel axes swapped per group, by
    ``method``; then the padding folded back onto the samples it copied."""
    forward = spec.forward
    g, (c_out, cg), kernel = forward.groups, w.shape[:2], forward.kernel_shape
    og = c_out // g
    extents = forward.extents
    length = [p + e - 1 for p, e in zip(forward.padded_shape, extents, strict=True)]
    spread = np.zeros((y.shape[0], c_out, *length), dtype=y.dtype)
    placed = tuple(
        slice(e - 1, e - 1 + (i - 1) * s + 1, s)
        for e, i, s in zip(extents, spec.y_shape[2:], forward.stride, strict=True)
    )
    spread[(slice(None), slice(None), *placed)] = y
    swapped = w.reshape(g, og, cg, *kernel).swapaxes(1, 2).reshape(g * cg, og, *kernel)
    flipped = np.flip(swapped, axis=tuple(range(2, swapped.ndim)))
    t_spec = normalize(spread.shape, flipped.shape, dilation=forward.dilation, groups=g)
    grad_xp = correlate(spread, flipped, None, t_spec, method)
    out = unpad_grad(grad_xp, forward)
    return _add_bias(out, bias, forward).astype(y.dtype, copy=False)


class NumpyBackend(Backend):
    name = "numpy"
    framework = "numpy"

    def owns(self, obj: object) -> bool:
        return isinstance(obj, np.ndarray)

    def dtype_name(self, a: np.ndarray) -> str:
        return a.dtype.name

    def convert(self, a: np.ndarray, dtype: str, like: np.ndarray | None) -> np.ndarray:
        return np.asarray(a, dtype=numpy_dtype(dtype))

    def to_numpy(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a)

    def flip(self, a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        return np.flip(a, axes)

    def auto_may_use_fft(self, device: str | None) -> bool:
        return True

    def precision_summary(self) -> str:
        return "direct: float16 and bfloat16 accumulate in float32; FFT transforms in float64"

    # NaN and inf propagate as the spec says, silently, as on the other backends: NumPy's
    # floating-point warnings would only report the fast schemes' discarded intermediates.
    def choose_method(self, spec: CorrSpec) -> Method:
        return choose_method(spec, "numpy")

    def correlate(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        spec: CorrSpec,
        *,
        method: Method = "direct",
    ) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return correlate(x, w, bias, spec, method)

    def correlate_vjp(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        grad_y: np.ndarray,
        spec: CorrSpec,
        *,
        method: Method = "direct",
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        with np.errstate(over="ignore", invalid="ignore"):
            return correlate_vjp(x, w, bias, grad_y, spec, method)

    def correlate_transpose(
        self,
        y: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        spec: TransposeSpec,
        *,
        method: Method = "direct",
    ) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return correlate_transpose(y, w, bias, spec, method)

    def correlate_transpose_vjp(
        self,
        y: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        grad_out: np.ndarray,
        spec: TransposeSpec,
        *,
        method: Method = "direct",
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        with np.errstate(over="ignore", invalid="ignore"):
            return super().correlate_transpose_vjp(y, w, bias, grad_out, spec, method=method)
