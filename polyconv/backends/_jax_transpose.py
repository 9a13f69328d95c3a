"""The transposed correlation on JAX, jitted per spec and differentiable by JAX's autodiff.

The direct method is one ``jax.lax.conv_general_dilated`` with ``lhs_dilation=stride`` (how
JAX itself computes a convolution's input gradient and ``jax.lax.conv_transpose``): ``y`` dilated
by the stride, padded by the kernel extent less one (less the forward's zero padding, which a
negative pad crops), correlated with the flipped kernel whose channel axes are swapped per group.
Padding modes other than zeros give the padded input's gradient, folded back onto the samples
the padding copied (``.at[].add`` of the :func:`polyconv._spec.padding.pad_indices` map).
``method="fft"`` is the same adjoint as a correlation of ``y`` spread to stride 1, by the
backend's whole-image FFT, recomputed directly when not finite (``jax.lax.cond``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._spec.padding import pad_indices
from .._spec.spec import normalize
from .._spec.transpose import TransposeSpec
from . import jax_backend as jb
from ._interface import Method

JaxArray = Any


def _flipped_swapped(w: JaxArray, spec: TransposeSpec) -> JaxArray:
    """``(C_out, C_in // g, *k)`` as ``(C_in, C_out // g, *k)``, flipped along the taps."""
    forward = spec.forward
    g, (c_out, cg), kernel = forward.groups, w.shape[:2], forward.kernel_shape
    swapped = w.reshape(g, c_out // g, cg, *kernel).swapaxes(1, 2)
    swapped = swapped.reshape(g * cg, c_out // g, *kernel)
    return jb._jax().numpy.flip(swapped, tuple(range(2, swapped.ndim)))


def fold_padding(grad_padded: JaxArray, spec: TransposeSpec) -> JaxArray:
    """The transpose of the forward's padding (modes other than zeros)."""
    jnp = jb._jax().numpy
    forward = spec.forward
    grad = grad_padded
    for axis, (n, (lo, hi)) in enumerate(zip(forward.x_shape[2:], forward.padding, strict=True)):
        if not (lo or hi):
            continue
        index = np.asarray(pad_indices(n, lo, hi, forward.padding_mode))
        shape = list(grad.shape)
        shape[2 + axis] = n
        where = (slice(None),) * (2 + axis) + (index,)
        grad = jnp.zeros(shape, grad.dtype).at[where].add(grad)
    return grad


def _direct(y: JaxArray, w: JaxArray, bias: JaxArray | None, spec: TransposeSpec, precision: str):
    jax = jb._jax()
    jnp = jax.numpy
    forward = spec.forward
    zeros = forward.padding_mode == "zeros"
    pads = []
    for i, s, e, (lo, hi), size in zip(
        spec.y_shape[2:],
        forward.stride,
        forward.extents,
        forward.padding,
        forward.padded_shape,
        strict=True,
    ):
        start = e - 1 - (lo if zeros else 0)
        length = (size - lo - hi) if zeros else size
        pads.append((start, length + e - 1 - ((i - 1) * s + 1) - start))
    out_dtype = y.dtype
    out = jax.lax.conv_general_dilated(
        y,
        _flipped_swapped(w, spec),
        window_strides=(1,) * spec.rank,
        padding=pads,
        lhs_dilation=forward.stride,
        rhs_dilation=forward.dilation,
        dimension_numbers=jb._DIMENSION_NUMBERS[spec.rank],
        feature_group_count=forward.groups,
        precision=jb._lax_precision(precision),
        preferred_element_type=jnp.float32 if y.dtype == jnp.float16 else None,
    )
    if not zeros:
        out = fold_padding(out, spec)
    if bias is not None:
        out = out + bias.astype(out.dtype).reshape((-1,) + (1,) * spec.rank)
    return out.astype(out_dtype)


def _fft_unchecked(
    y: JaxArray, w: JaxArray, bias: JaxArray | None, spec: TransposeSpec, precision: str
) -> JaxArray:
    jnp = jb._jax().numpy
    forward = spec.forward
    length = [p + e - 1 for p, e in zip(forward.padded_shape, forward.extents, strict=True)]
    placed = tuple(
        slice(e - 1, e - 1 + (i - 1) * s + 1, s)
        for e, i, s in zip(forward.extents, spec.y_shape[2:], forward.stride, strict=True)
    )
    spread = jnp.zeros((y.shape[0], y.shape[1], *length), y.dtype)
    spread = spread.at[(slice(None), slice(None), *placed)].set(y)
    kernel = _flipped_swapped(w, spec)
    t_spec = normalize(spread.shape, kernel.shape, dilation=forward.dilation, groups=forward.groups)
    out = jb._fft_unchecked(spread, kernel, None, t_spec, precision)
    if forward.padding_mode == "zeros":
        out = out[
            (
                Ellipsis,
                *(
                    slice(lo, lo + n)
                    for (lo, _), n in zip(forward.padding, forward.x_shape[2:], strict=True)
                ),
            )
        ]
    else:
        out = fold_padding(out, spec)
    if bias is not None:
        out = out + bias.astype(out.dtype).reshape((-1,) + (1,) * spec.rank)
    return out


def _traced(
    y: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    spec: TransposeSpec,
    precision: str,
    method: Method,
) -> JaxArray:
    if method != "fft":
        return _direct(y, w, bias, spec, precision)
    jax = jb._jax()
    out = _fft_unchecked(y, w, bias, spec, precision)
    return jax.lax.cond(
        jax.numpy.isfinite(out).all(), lambda: out, lambda: _direct(y, w, bias, spec, precision)
    )


def _vjp_traced(
    y: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    grad_out: JaxArray,
    spec: TransposeSpec,
    precision: str,
    method: Method,
) -> tuple[JaxArray, JaxArray, JaxArray | None]:
    jax = jb._jax()
    jnp = jax.numpy

    def vjp(method: Any) -> tuple[JaxArray, JaxArray, JaxArray | None]:
        _, pullback = jax.vjp(functools.partial(method, spec=spec, precision=precision), y, w, bias)
        return pullback(grad_out)

    if method != "fft":
        return vjp(_direct)
    grads = vjp(_fft_unchecked)
    finite = jnp.all(jnp.stack([jnp.isfinite(g).all() for g in grads if g is not None]))
    return jax.lax.cond(finite, lambda: grads, lambda: vjp(_direct))


@functools.cache
def _jitted() -> tuple[Any, Any]:
    jax = jb._jax()
    return (
        jax.jit(_traced, static_argnames=("spec", "precision", "method")),
        jax.jit(_vjp_traced, static_argnames=("spec", "precision", "method")),
    )


def correlate_transpose(
    y: JaxArray, w: JaxArray, bias: JaxArray | None, spec: TransposeSpec, method: Method
) -> JaxArray:
    return _jitted()[0](y, w, bias, spec=spec, precision=jb._precision.get(), method=method)


def correlate_transpose_vjp(
    y: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    grad_out: JaxArray,
    spec: TransposeSpec,
    method: Method,
) -> tuple[JaxArray, JaxArray, JaxArray | None]:
    precision = jb._precision.get()
    return _jitted()[1](y, w, bias, grad_out, spec=spec, precision=precision, method=method)
