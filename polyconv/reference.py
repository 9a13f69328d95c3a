"""A float64 reference written straight from the definition, independent of every backend.

    y[n, o, i] = bias[o] + sum_{c < C_in/G} sum_k w[o, c, k] * P(x)[n, g(o)*C_in/G + c, i*s + k*d]

where ``g(o) = o // (C_out/G)`` and ``P`` is the padding, taken from ``np.pad`` itself as a matrix
per spatial axis. Its gradients are the same sums read the other way: ``grad_w`` sums
``grad_y * P(x)`` over batch and positions, and ``grad_x`` is ``P^T`` applied to the scatter of
``w * grad_y``. The transposed correlation is the
adjoint sum read from the same definition (:func:`correlate_transpose`). Slow but plain; used by
the tests and by :func:`polyconv.verify`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ._spec.padding import NUMPY_PAD_MODE
from ._spec.spec import CorrSpec, IntOrTuple, PaddingArg, normalize
from ._spec.transpose import TransposeSpec, normalize_transpose


def _padding_matrix(size: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """The (lo + size + hi, size) matrix that pads a vector of length ``size``, from ``np.pad``."""
    return np.pad(np.eye(size), ((lo, hi), (0, 0)), mode=NUMPY_PAD_MODE[mode])  # type: ignore[call-overload]


def _apply_along(a: np.ndarray, matrices: list[np.ndarray]) -> np.ndarray:
    for axis, matrix in enumerate(matrices):
        a = np.moveaxis(np.tensordot(matrix, a, axes=([1], [2 + axis])), 0, 2 + axis)
    return a


def _spec_and_arrays(
    x: object, w: object, bias: object, grad_y: object, kwargs: Mapping[str, Any]
) -> tuple[CorrSpec, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    x64, w64 = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    b64 = None if bias is None else np.asarray(bias, dtype=np.float64)
    spec = normalize(x64.shape, w64.shape, None if b64 is None else b64.shape, **kwargs)
    if not spec.batched:
        x64 = x64[None]
    g64 = None
    if grad_y is not None:
        g64 = np.asarray(grad_y, dtype=np.float64).reshape(spec.out_shape)
    return spec, x64, w64, b64, g64


def _terms(spec: CorrSpec) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """Every kernel offset and its window into the padded input, as indices of the trailing
    axes (``w[offset]``, ``x_padded[window]``), of the defining sum."""
    for offset in np.ndindex(*spec.kernel_shape):
        window: tuple[Any, ...] = (
            ...,
            *(
                slice(k * d, k * d + s * (n - 1) + 1, s)
                for k, d, s, n in zip(
                    offset, spec.dilation, spec.stride, spec.out_shape[2:], strict=True
                )
            ),
        )
        yield (..., *offset), window


def _padding_matrices(spec: CorrSpec) -> list[np.ndarray]:
    return [
        _padding_matrix(n, lo, hi, spec.padding_mode)
        for n, (lo, hi) in zip(spec.x_shape[2:], spec.padding, strict=True)
    ]


def pad(x: np.ndarray, spec: CorrSpec) -> np.ndarray:
    """A batched ``x`` padded per ``spec`` (``P(x)`` of the definition), in float64: ``np.pad``
    itself, as the padding matrices are (without their memory, quadratic in the size)."""
    widths = [(0, 0), (0, 0), *spec.padding]
    mode = NUMPY_PAD_MODE[spec.padding_mode]
    return np.pad(np.asarray(x, dtype=np.float64), widths, mode=mode)  # type: ignore[call-overload]


def fold_count(spec: CorrSpec) -> int:
    """The most padded positions that copy one input element (1 for zeros padding): how many
    gradient terms the transpose of the padding adds into one element of ``grad_x``."""
    if spec.padding_mode == "zeros":
        return 1
    copies = 1
    for n, (lo, hi) in zip(spec.x_shape[2:], spec.padding, strict=True):
        index = np.pad(np.arange(n), (lo, hi), mode=NUMPY_PAD_MODE[spec.padding_mode])  # type: ignore[call-overload]
        copies *= int(np.bincount(index, minlength=n).max())
    return copies


def correlate(
    x: object,
    w: object,
    bias: object = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """The correlation in float64, for any array-like inputs."""
    kwargs = dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode
    )
    spec, x64, w64, b64, _ = _spec_and_arrays(x, w, bias, None, kwargs)
    g = spec.groups
    xp = _apply_along(x64, _padding_matrices(spec))
    xp = xp.reshape(xp.shape[0], g, -1, *xp.shape[2:])
    wg = w64.reshape(g, -1, *w64.shape[1:])
    y = np.zeros((spec.out_shape[0], g, wg.shape[1], *spec.out_shape[2:]))
    for offset, window in _terms(spec):
        y += np.einsum("goc,ngc...->ngo...", wg[offset], xp[window])
    y = y.reshape(spec.out_shape)
    if b64 is not None:
        y += b64.reshape(-1, *([1] * spec.rank))
    return y if spec.batched else y[0]


def correlate_vjp(
    x: object,
    w: object,
    bias: object,
    grad_y: object,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of ``sum(correlate(x, w, bias) * grad_y)``, in float64."""
    kwargs = dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode
    )
    spec, x64, w64, b64, g64 = _spec_and_arrays(x, w, bias, grad_y, kwargs)
    assert g64 is not None
    g = spec.groups
    matrices = _padding_matrices(spec)
    xp = _apply_along(x64, matrices)
    xp = xp.reshape(xp.shape[0], g, -1, *xp.shape[2:])
    wg = w64.reshape(g, -1, *w64.shape[1:])
    gy = g64.reshape(g64.shape[0], g, -1, *g64.shape[2:])
    axes = "xyz"[: spec.rank]
    grad_w = np.zeros_like(wg)
    grad_xp = np.zeros_like(xp)
    for offset, window in _terms(spec):
        grad_w[offset] = np.einsum(f"ngo{axes},ngc{axes}->goc", gy, xp[window])
        grad_xp[window] += np.einsum("goc,ngo...->ngc...", wg[offset], gy)
    grad_xp = grad_xp.reshape(grad_xp.shape[0], -1, *grad_xp.shape[3:])
    grad_x = _apply_along(grad_xp, [m.T for m in matrices])
    grad_bias = None if b64 is None else g64.sum(axis=(0, *range(2, g64.ndim)))
    return (grad_x if spec.batched else grad_x[0]), grad_w.reshape(w64.shape), grad_bias


def _transpose_problem(
    y: object, w: object, bias: object, kwargs: Mapping[str, Any]
) -> tuple[TransposeSpec, np.ndarray, np.ndarray, np.ndarray | None]:
    """The transposed problem's spec, and ``y`` batched and extended by zeros to the forward's
    output shape (the forward outputs beyond ``y``'s read nothing of it), ``w`` and ``bias``
    in float64."""
    y64, w64 = np.asarray(y, dtype=np.float64), np.asarray(w, dtype=np.float64)
    b64 = None if bias is None else np.asarray(bias, dtype=np.float64)
    tspec = normalize_transpose(y64.shape, w64.shape, None if b64 is None else b64.shape, **kwargs)
    extended = np.zeros(tspec.forward.out_shape)
    extended[_first(tspec.y_shape[2:])] = y64.reshape(tspec.y_shape)
    return tspec, extended, w64, b64


def _first(sizes: tuple[int, ...]) -> tuple[Any, ...]:
    """Index of the first ``sizes`` samples of every spatial axis (leading axes kept)."""
    return (Ellipsis, *(slice(0, i) for i in sizes))


def correlate_transpose(
    y: object,
    w: object,
    bias: object = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """The transposed correlation in float64, as the adjoint sum of the definition: each
    ``y[n, o, i]`` times ``w[o, c, k]`` lands on the padded position ``i*s + k*d`` it was read
    from, and the padding's transpose ``P^T`` adds each padded position to its source."""
    kwargs: dict[str, Any] = dict(
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
    tspec, y64, w64, b64 = _transpose_problem(y, w, bias, kwargs)
    spec, g = tspec.forward, tspec.forward.groups
    gy = y64.reshape(y64.shape[0], g, -1, *y64.shape[2:])
    wg = w64.reshape(g, -1, *w64.shape[1:])
    grad_xp = np.zeros((y64.shape[0], g, wg.shape[2], *spec.padded_shape))
    for offset, window in _terms(spec):
        grad_xp[window] += np.einsum("goc,ngo...->ngc...", wg[offset], gy)
    grad_xp = grad_xp.reshape(grad_xp.shape[0], -1, *grad_xp.shape[3:])
    out = _apply_along(grad_xp, [m.T for m in _padding_matrices(spec)])
    if b64 is not None:
        out += b64.reshape(-1, *([1] * spec.rank))
    return out if tspec.batched else out[0]


def correlate_transpose_vjp(
    y: object,
    w: object,
    bias: object,
    grad_out: object,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of ``sum(correlate_transpose(y, w, bias) * grad_out)``, in float64: the
    transpose of the transpose is the forward (``grad_y``, cut to ``y``'s outputs), and
    ``grad_w`` is the forward's kernel gradient with ``grad_out`` as its input and ``y`` as its
    output gradient."""
    kwargs: dict[str, Any] = dict(
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
    tspec, y64, w64, b64 = _transpose_problem(y, w, bias, kwargs)
    forward = {k: v for k, v in kwargs.items() if k != "output_padding"}
    g64 = np.asarray(grad_out, dtype=np.float64).reshape(tspec.out_shape)
    grad_y = correlate(g64, w64, **forward)[_first(tspec.y_shape[2:])]
    _, grad_w, _ = correlate_vjp(g64, w64, None, y64, **forward)
    grad_bias = None if b64 is None else g64.sum(axis=(0, *range(2, g64.ndim)))
    return (grad_y if tspec.batched else grad_y[0]), grad_w, grad_bias
