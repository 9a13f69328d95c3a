"""The public transposed operations: normalise, pick a backend, convert, compute.

``correlate_transpose(y, w)`` is the adjoint in ``x`` of ``correlate(x, w)`` with the same
keywords (``docs/spec.md``, "The transposed correlation"); its size rule and checks live in
:mod:`polyconv._spec.transpose`. Each is an :class:`~polyconv._core.callcache.Operation`
of the call cache, as the forward operations are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from .._spec.layouts import CHANNELS_FIRST
from .._spec.options import IntOrTuple, PaddingArg
from .._spec.transpose import TransposeSpec, normalize_transpose
from ..backends import Array, Backend, Method
from .callcache import Operation, Run, call
from .layouts import call_in_layouts


def _spec(
    shapes: dict[str, tuple[int, ...]], options: tuple[Any, ...], method: str
) -> TransposeSpec:
    """The spec of a transposed problem: ``y``, ``w`` and ``bias``, with the options
    ``(stride, padding, output_padding, dilation, groups, padding_mode)``."""
    stride, padding, output_padding, dilation, groups, padding_mode = options
    return normalize_transpose(
        shapes["y"],
        shapes["w"],
        shapes.get("bias"),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        method=method,
    )


def _check_grad_out(spec: Any, shapes: dict[str, tuple[int, ...]]) -> None:
    if shapes["grad_out"] != spec.user_out_shape:
        raise ValueError(
            f"grad_out must have the transpose's output shape {spec.user_out_shape}, "
            f"got {shapes['grad_out']}"
        )


def _bind_correlate_transpose(backend: Backend, spec: Any, method: Method) -> Run:
    return functools.partial(backend.correlate_transpose, spec=spec, method=method)


def _bind_convolve_transpose(backend: Backend, spec: Any, method: Method) -> Run:
    axes = tuple(range(2, 2 + spec.rank))

    def convolve_transpose(y: Array, w: Array, bias: Array | None) -> Array:
        flipped = backend.flip(w, axes)
        return backend.correlate_transpose(y, flipped, bias, spec, method=method)

    return convolve_transpose


def _bind_correlate_transpose_vjp(backend: Backend, spec: Any, method: Method) -> Run:
    return functools.partial(backend.correlate_transpose_vjp, spec=spec, method=method)


def _unbatch_grads(grads: tuple[Array, Array, Array | None]) -> tuple[Array, Array, Array | None]:
    grad_y, grad_w, grad_bias = grads
    return grad_y[0, ...], grad_w, grad_bias


_ARRAYS = ("y", "w", "bias")
CORRELATE_TRANSPOSE = Operation(
    "correlate_transpose",
    _ARRAYS,
    frozenset({"bias"}),
    _spec,
    _bind_correlate_transpose,
    batched=frozenset({"y"}),
)
CONVOLVE_TRANSPOSE = Operation(
    "convolve_transpose",
    _ARRAYS,
    frozenset({"bias"}),
    _spec,
    _bind_convolve_transpose,
    batched=frozenset({"y"}),
)
CORRELATE_TRANSPOSE_VJP = Operation(
    "correlate_transpose_vjp",
    (*_ARRAYS, "grad_out"),
    frozenset({"bias"}),
    _spec,
    _bind_correlate_transpose_vjp,
    batched=frozenset({"y", "grad_out"}),
    unbatch=_unbatch_grads,
    check=_check_grad_out,
)


def _settings(
    backend: str | None,
    stride: IntOrTuple,
    padding: PaddingArg,
    output_padding: IntOrTuple,
    dilation: IntOrTuple,
    groups: int,
    padding_mode: str,
    method: str,
) -> dict[str, Any]:
    return {
        "backend": backend,
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": padding_mode,
        "method": method,
    }


def _call(operation: Operation, arrays: tuple[object, ...], settings: dict[str, Any]) -> Any:
    options = tuple(
        settings[k]
        for k in ("stride", "padding", "output_padding", "dilation", "groups", "padding_mode")
    )
    return call(operation, arrays, (settings["backend"], settings["method"], *options))


def _transposed_call(
    public: Callable[..., Array],
    operation: Operation,
    y: object,
    w: object,
    bias: object,
    settings: dict[str, Any],
    data_format: str,
    kernel_format: str,
) -> Array:
    """``operation`` on ``(y, w, bias)``; in other layouts, ``public`` called channels first
    through :func:`call_in_layouts`."""
    if data_format != CHANNELS_FIRST or kernel_format != CHANNELS_FIRST:
        return call_in_layouts(
            public,
            {"y": y, "w": w, "bias": bias},
            settings,
            data_format=data_format,
            kernel_format=kernel_format,
            data=("y",),
            kernel="w",
            results=("data",),
            transpose=True,
        )
    return _call(operation, (y, w, bias), settings)


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
    method: str = "auto",
    backend: str | None = None,
    data_format: str = CHANNELS_FIRST,
    kernel_format: str = CHANNELS_FIRST,
) -> Array:
    """The transposed correlation: the adjoint in ``x`` of :func:`polyconv.correlate`.

    ``<correlate(x, w, **spec), y> == <x, correlate_transpose(y, w, **spec)>`` for every ``x``
    of the output's shape, with the same keywords. ``w`` has the forward's shape
    ``(C_out, C_in // groups, *kernel)`` (the array ``torch.nn.functional.conv_transpose*d``
    takes); ``y`` is ``(N, C_out, *spatial)`` or unbatched ``(C_out, *spatial)``; ``bias`` has
    ``C_in`` entries. The output's spatial size is the smallest input size whose forward output
    size is ``y``'s, plus ``output_padding`` (``0 <= output_padding < max(stride, dilation)``,
    ``< stride`` with a padding mode other than zeros): with int padding, torch's
    ``(i - 1) * s - 2p + d * (k - 1) + 1 + output_padding``. Every padding form and mode: the
    padding reads of the forward are folded back onto the samples they copied, so the result
    equals :func:`polyconv.correlate_vjp`'s ``grad_x`` exactly. ``data_format`` and
    ``kernel_format`` as for :func:`polyconv.correlate`.
    """
    settings = _settings(
        backend, stride, padding, output_padding, dilation, groups, padding_mode, method
    )
    return _transposed_call(
        correlate_transpose, CORRELATE_TRANSPOSE, y, w, bias, settings, data_format, kernel_format
    )


def convolve_transpose(
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
    method: str = "auto",
    backend: str | None = None,
    data_format: str = CHANNELS_FIRST,
    kernel_format: str = CHANNELS_FIRST,
) -> Array:
    """The adjoint in ``x`` of :func:`polyconv.convolve`: :func:`correlate_transpose` with the
    kernel flipped along its spatial axes."""
    settings = _settings(
        backend, stride, padding, output_padding, dilation, groups, padding_mode, method
    )
    return _transposed_call(
        convolve_transpose, CONVOLVE_TRANSPOSE, y, w, bias, settings, data_format, kernel_format
    )


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
    method: str = "auto",
    backend: str | None = None,
    data_format: str = CHANNELS_FIRST,
    kernel_format: str = CHANNELS_FIRST,
) -> tuple[Array, Array, Array | None]:
    """Gradients of ``sum(correlate_transpose(y, w, bias) * grad_out)`` with respect to ``y``,
    ``w`` and ``bias`` (``None`` when ``bias`` is ``None``)."""
    if data_format != CHANNELS_FIRST or kernel_format != CHANNELS_FIRST:
        return call_in_layouts(
            correlate_transpose_vjp,
            {"y": y, "w": w, "bias": bias, "grad_out": grad_out},
            _settings(
                backend, stride, padding, output_padding, dilation, groups, padding_mode, method
            ),
            data_format=data_format,
            kernel_format=kernel_format,
            data=("y", "grad_out"),
            kernel="w",
            results=("data", "kernel", None),
            transpose=True,
        )
    settings = _settings(
        backend, stride, padding, output_padding, dilation, groups, padding_mode, method
    )
    return _call(CORRELATE_TRANSPOSE_VJP, (y, w, bias, grad_out), settings)


def transpose_output_shape(
    y_shape: Sequence[int],
    w_shape: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> tuple[int, ...]:
    """The shape :func:`correlate_transpose` returns for these shapes (channels first)."""
    spec = normalize_transpose(
        y_shape,
        w_shape,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
    return spec.user_out_shape
