"""The transposed correlation written with a backend's forward operations alone: the default of
:meth:`Backend.correlate_transpose` and :meth:`Backend.correlate_transpose_vjp`, so that a
third-party backend computes it (and its gradients) with nothing more than it already has.

- The transpose is the forward's input gradient at a zero input (the VJP is linear in the
  output gradient and does not depend on the input).
- Its gradient in ``y`` is the forward correlation of the output gradient (the adjoint of the
  adjoint); its gradient in ``w`` is the forward's kernel gradient with the output gradient as
  the input and ``y`` as the output gradient: ``<T_w y, g> = <y, F_w g>``.

When ``output_padding >= stride`` the forward has more outputs than ``y`` (see
:mod:`polyconv._spec.transpose`); ``y`` is then extended by zeros with one more correlation, a
per-channel 1-tap kernel of ones with zero padding, exact and NaN-preserving (one product each).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._spec.spec import normalize
from .._spec.transpose import TransposeSpec

if TYPE_CHECKING:
    from ._interface import Backend, Method

Array = Any


def _dtype(backend: Backend, a: Array) -> str:
    return backend.dtype_name(a)


def extended_with_zeros(backend: Backend, y: Array, spec: TransposeSpec) -> Array:
    """``y`` with the forward's extra outputs appended as zeros (``y`` itself when none)."""
    extra = spec.extra_outputs
    if not any(extra):
        return y
    channels = spec.y_shape[1]
    ones = backend.convert(np.ones((channels, 1) + (1,) * spec.rank), _dtype(backend, y), y)
    extend = normalize(
        spec.y_shape,
        (channels, 1) + (1,) * spec.rank,
        padding=[(0, e) for e in extra],
        groups=channels,
    )
    return backend.correlate(y, ones, None, extend)


def _bias_shaped(bias: Array, rank: int) -> Array:
    return bias[(slice(None),) + (None,) * rank]


def channel_sums(a: Array) -> Array:
    """Sum over every axis but the channel axis (1): a bias gradient."""
    axes = (0, *range(2, a.ndim))
    namespace = getattr(a, "__array_namespace__", None)
    if namespace is not None:
        return namespace().sum(a, axis=axes)
    return a.sum(axes)


def correlate_transpose(
    backend: Backend,
    y: Array,
    w: Array,
    bias: Array | None,
    spec: TransposeSpec,
    method: Method = "direct",
) -> Array:
    zero_input = backend.convert(np.zeros(spec.out_shape), _dtype(backend, y), y)
    grad_y = extended_with_zeros(backend, y, spec)
    out, _, _ = backend.correlate_vjp(zero_input, w, None, grad_y, spec.forward, method=method)
    return out if bias is None else out + _bias_shaped(bias, spec.rank)


def correlate_transpose_vjp(
    backend: Backend,
    y: Array,
    w: Array,
    bias: Array | None,
    grad_out: Array,
    spec: TransposeSpec,
    method: Method = "direct",
) -> tuple[Array, Array, Array | None]:
    forward = spec.forward
    grad_y = backend.correlate(grad_out, w, None, forward, method=method)
    if any(spec.extra_outputs):
        grad_y = grad_y[(Ellipsis, *(slice(0, i) for i in spec.y_shape[2:]))]
    _, grad_w, _ = backend.correlate_vjp(
        grad_out, w, None, extended_with_zeros(backend, y, spec), forward, method=method
    )
    return grad_y, grad_w, None if bias is None else channel_sums(grad_out)
