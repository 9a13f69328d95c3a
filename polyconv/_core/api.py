"""The public operations, each an :class:`~polyconv._core.callcache.Operation` of the call cache:
how its spec is built from its arrays' shapes, and which backend computation it binds.

Adding an operation (``correlate_transpose``, say) is one more ``Operation``: its spec
function (a :class:`CorrSpec` constructor), its ``bind`` (the backend computations it calls)
and, where the arrays of an unbatched problem differ, ``batched`` and ``unbatch``."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from .._spec.spec import CorrSpec, IntOrTuple, PaddingArg, normalize
from ..backends import Array, Backend, Method
from .callcache import Operation, Run, call
from .select import Input, as_input


def _spec(shapes: dict[str, tuple[int, ...]], options: tuple[Any, ...], method: str) -> CorrSpec:
    """The spec of a forward problem: ``x``, ``w`` and ``bias``, with the correlation's
    options ``(stride, padding, dilation, groups, padding_mode)``."""
    stride, padding, dilation, groups, padding_mode = options
    return normalize(
        shapes["x"],
        shapes["w"],
        shapes.get("bias"),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        method=method,
    )


def _check_grad_y(spec: CorrSpec, shapes: dict[str, tuple[int, ...]]) -> None:
    if shapes["grad_y"] != spec.user_out_shape:
        raise ValueError(
            f"grad_y must have the output's shape {spec.user_out_shape}, got {shapes['grad_y']}"
        )


def _bind_correlate(backend: Backend, spec: CorrSpec, method: Method) -> Run:
    return functools.partial(backend.correlate, spec=spec, method=method)


def _bind_convolve(backend: Backend, spec: CorrSpec, method: Method) -> Run:
    axes = tuple(range(2, 2 + spec.rank))

    def convolve(x: Array, w: Array, bias: Array | None) -> Array:
        return backend.correlate(x, backend.flip(w, axes), bias, spec, method=method)

    return convolve


def _bind_correlate_vjp(backend: Backend, spec: CorrSpec, method: Method) -> Run:
    return functools.partial(backend.correlate_vjp, spec=spec, method=method)


def _unbatch_grads(grads: tuple[Array, Array, Array | None]) -> tuple[Array, Array, Array | None]:
    grad_x, grad_w, grad_bias = grads
    return grad_x[0, ...], grad_w, grad_bias


_FORWARD = ("x", "w", "bias")
CORRELATE = Operation("correlate", _FORWARD, frozenset({"bias"}), _spec, _bind_correlate)
CONVOLVE = Operation("convolve", _FORWARD, frozenset({"bias"}), _spec, _bind_convolve)
CORRELATE_VJP = Operation(
    "correlate_vjp",
    (*_FORWARD, "grad_y"),
    frozenset({"bias"}),
    _spec,
    _bind_correlate_vjp,
    batched=frozenset({"x", "grad_y"}),
    unbatch=_unbatch_grads,
    check=_check_grad_y,
)


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
    method: str = "auto",
    backend: str | None = None,
) -> Array:
    """Cross-correlation ``y[n, o, i] = bias[o] + sum_{c, k} w[o, c, k] * x_pad[n, c', i*s + k*d]``.

    ``x`` is ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``; ``w`` is
    ``(C_out, C_in // groups, *kernel)`` with 1 to 3 spatial axes; ``bias`` is ``(C_out,)``.
    ``method`` is ``"direct"`` (the defining sum), ``"fft"`` (overlap-save FFT: faster for large
    kernels on large inputs, its rounding error bounded by norms rather than per element) or
    ``"auto"``, the faster of the two by the backend's cost model (``docs/benchmarks.md``).
    See ``docs/spec.md`` for padding forms and modes, dtypes and backend selection.
    """
    return call(
        CORRELATE, (x, w, bias), (backend, method, stride, padding, dilation, groups, padding_mode)
    )


def convolve(
    x: object,
    w: object,
    bias: object = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "auto",
    backend: str | None = None,
) -> Array:
    """True convolution: :func:`correlate` with the kernel flipped along its spatial axes."""
    return call(
        CONVOLVE, (x, w, bias), (backend, method, stride, padding, dilation, groups, padding_mode)
    )


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
    method: str = "auto",
    backend: str | None = None,
) -> tuple[Array, Array, Array | None]:
    """Gradients of ``sum(correlate(x, w, bias) * grad_y)`` with respect to ``x``, ``w``, ``bias``.

    ``grad_bias`` is ``None`` when ``bias`` is ``None``.
    """
    settings = (backend, method, stride, padding, dilation, groups, padding_mode)
    return call(CORRELATE_VJP, (x, w, bias, grad_y), settings)


def corr2d(X: object, K: object, *, backend: str | None = None) -> Array:
    """The lesson's 2-D, single-channel correlation: ``X (H, W)``, ``K (kh, kw)`` give
    ``(H - kh + 1, W - kw + 1)``."""
    inputs = {"X": as_input("X", X), "K": as_input("K", K)}
    for name, i in inputs.items():
        if len(i.shape) != 2:
            raise ValueError(f"{name} must be 2-D, got shape {i.shape}")
    x_shape, k_shape = inputs["X"].shape, inputs["K"].shape
    if any(k > n for k, n in zip(k_shape, x_shape, strict=True)):
        raise ValueError(f"K of shape {k_shape} must fit inside X of shape {x_shape} (no padding)")
    y = correlate(_lift(inputs["X"]), _lift(inputs["K"]), backend=backend)
    return y[0, 0, ...]


def _lift(i: Input) -> object:
    """A 2-D argument as (1, 1, H, W), keeping lists weakly typed."""
    return [[i.array.tolist()]] if i.weak else i.array[None, None, ...]


def output_shape(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> tuple[int, ...]:
    """The shape :func:`correlate` returns for these shapes, computed without arrays."""
    spec = normalize(
        x_shape,
        w_shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
    return spec.user_out_shape
