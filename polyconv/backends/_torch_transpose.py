"""The transposed correlation on PyTorch, differentiable end to end by autograd.

The direct method is the native ``torch.nn.functional.conv_transpose1d/2d/3d`` on the forward's
padded geometry: with ``padding=`` the forward's zero padding where it is the same on both sides
(else 0), it gives the gradient of the padded input, whose extra samples past the native
output come from ``output_padding=`` (or, beyond what torch accepts there, ``F.pad``); the
padding is then folded back onto the samples it copied (a crop for zeros, ``index_add`` of the
:func:`polyconv._spec.padding.pad_indices` map for the other modes). ``method="fft"`` is the same
adjoint written as a correlation (``y`` spread to stride 1, the kernel flipped with its channel
axes swapped per group) by the backend's whole-image FFT, recomputed directly when not finite.
Gradients of either are autograd's through these steps; float16 on CPU computes in float32 and
TF32 is held off on CUDA, as for the forward (see :mod:`polyconv.backends.torch_backend`).
"""

from __future__ import annotations

import functools
from typing import Any

from .._spec.spec import normalize
from .._spec.transpose import TransposeSpec
from . import torch_backend as tb
from ._interface import Method

Tensor = Any

_NAMES = {1: "conv_transpose1d", 2: "conv_transpose2d", 3: "conv_transpose3d"}


@functools.cache
def _conv_transpose(rank: int) -> Any:
    return getattr(tb._torch().nn.functional, _NAMES[rank])


def fold_padding(grad_padded: Tensor, spec: TransposeSpec) -> Tensor:
    """The transpose of the forward's padding: each padded sample's value added to its source."""
    forward = spec.forward
    grad = grad_padded
    for axis, (n, (lo, hi)) in enumerate(zip(forward.x_shape[2:], forward.padding, strict=True)):
        if not (lo or hi):
            continue
        if forward.padding_mode == "zeros":
            grad = grad.narrow(2 + axis, lo, n)
            continue
        index = tb._padding_index(n, lo, hi, forward.padding_mode, grad.device)
        shape = list(grad.shape)
        shape[2 + axis] = n
        grad = grad.new_zeros(shape).index_add(2 + axis, index, grad)
    return grad


def _native_transpose(y: Tensor, w: Tensor, spec: TransposeSpec) -> Tensor:
    """``conv_transpose`` to the padded input's gradient (less the native padding), unfolded."""
    forward = spec.forward
    native = tb._native_padding(forward)
    pads = tuple(lo for lo, _ in forward.padding) if native not in (None, 0) else (0,) * spec.rank
    # conv_transpose's own length, (i - 1) * s + extent - 2p, against the padded input's.
    base = [
        (i - 1) * s + e - 2 * p
        for i, s, e, p in zip(spec.y_shape[2:], forward.stride, forward.extents, pads, strict=True)
    ]
    wanted = [size - 2 * p for size, p in zip(forward.padded_shape, pads, strict=True)]
    missing = [t - b for t, b in zip(wanted, base, strict=True)]
    limits = [max(s, d) for s, d in zip(forward.stride, forward.dilation, strict=True)]
    in_call = tuple(m if m < lim else 0 for m, lim in zip(missing, limits, strict=True))
    out = _conv_transpose(spec.rank)(
        y, w, None, forward.stride, pads, in_call, forward.groups, forward.dilation
    )
    after = [m - c for m, c in zip(missing, in_call, strict=True)]
    if any(after):
        out = tb._torch().nn.functional.pad(out, [v for a in reversed(after) for v in (0, a)])
    if native not in (None, 0):  # the native padding already cropped the zeros
        return out
    return fold_padding(out, spec)


def _spread_correlation(y: Tensor, w: Tensor, spec: TransposeSpec) -> tuple[Tensor, Tensor, Any]:
    """``y`` spread to stride 1 and the flipped, channel-swapped kernel, with the correlation
    spec whose output is the padded input's gradient."""
    torch = tb._torch()
    forward = spec.forward
    g, (c_out, cg), kernel = forward.groups, w.shape[:2], forward.kernel_shape
    og = c_out // g
    length = [p + e - 1 for p, e in zip(forward.padded_shape, forward.extents, strict=True)]
    spread = y.new_zeros((y.shape[0], c_out, *length))
    placed = tuple(
        slice(e - 1, e - 1 + (i - 1) * s + 1, s)
        for e, i, s in zip(forward.extents, spec.y_shape[2:], forward.stride, strict=True)
    )
    spread[(slice(None), slice(None), *placed)] = y
    swapped = w.reshape(g, og, cg, *kernel).transpose(1, 2).reshape(g * cg, og, *kernel)
    flipped = torch.flip(swapped, dims=tuple(range(2, swapped.ndim)))
    t_spec = normalize(
        tuple(spread.shape), tuple(flipped.shape), dilation=forward.dilation, groups=g
    )
    return spread, flipped, t_spec


def _with_bias(out: Tensor, bias: Tensor | None, spec: TransposeSpec) -> Tensor:
    if bias is None:
        return out
    return out + bias.reshape(-1, *(1,) * spec.rank)


def transpose_direct(y: Tensor, w: Tensor, bias: Tensor | None, spec: TransposeSpec) -> Tensor:
    torch = tb._torch()
    out_dtype = y.dtype
    half_on_cpu = out_dtype == torch.float16 and y.device.type == "cpu"
    if half_on_cpu:
        y, w = y.float(), w.float()
        bias = None if bias is None else bias.float()
    if not tb._needs_ieee_float32(y.device.type):
        out = _with_bias(_native_transpose(y, w, spec), bias, spec)
        return out.to(out_dtype) if half_on_cpu else out
    with tb._ieee_float32.held():
        out = _with_bias(_native_transpose(y, w, spec), bias, spec)
    tb._hold_ieee_float32_in_backward(out)
    return out


def transpose_fft_unchecked(
    y: Tensor, w: Tensor, bias: Tensor | None, spec: TransposeSpec
) -> Tensor:
    spread, flipped, t_spec = _spread_correlation(y, w, spec)
    out = fold_padding(tb._fft_unchecked(spread, flipped, None, t_spec), spec)
    return _with_bias(out, bias, spec)


def correlate_transpose(
    y: Tensor, w: Tensor, bias: Tensor | None, spec: TransposeSpec, method: Method
) -> Tensor:
    if method != "fft":
        return transpose_direct(y, w, bias, spec)
    out = transpose_fft_unchecked(y, w, bias, spec)
    if not tb._all_finite(out):  # an FFT spreads a NaN or inf everywhere
        return transpose_direct(y, w, bias, spec)
    return out


def correlate_transpose_vjp(
    y: Tensor,
    w: Tensor,
    bias: Tensor | None,
    grad_out: Tensor,
    spec: TransposeSpec,
    method: Method,
) -> tuple[Tensor, Tensor, Tensor | None]:
    forward = transpose_fft_unchecked if method == "fft" else transpose_direct
    grads = tb._forward_with_vjp(y, w, bias, spec, forward)[1](grad_out)  # type: ignore[arg-type]
    if method == "fft" and not tb._grads_finite(grads):
        return correlate_transpose_vjp(y, w, bias, grad_out, spec, "direct")
    return grads
