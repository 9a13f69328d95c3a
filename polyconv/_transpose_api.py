"""The public transposed operations: normalise, pick a backend, convert, compute.

``correlate_transpose(y, w)`` is the adjoint in ``x`` of ``correlate(x, w)`` with the same
keywords (``docs/spec.md``, "The transposed correlation"); its size rule and checks live in
:mod:`polyconv._transpose_spec`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._dispatch import as_input, convert_inputs, select_backend
from ._layout_calls import call_in_layouts
from ._layouts import CHANNELS_FIRST
from ._spec import IntOrTuple, PaddingArg
from ._transpose_spec import TransposeSpec, normalize_transpose
from .backends import Array, Backend


def _prepare(
    arrays: dict[str, object], settings: dict[str, Any]
) -> tuple[Backend, dict[str, Array], TransposeSpec]:
    """Inspect, validate and convert; the arrays come back batched and of one dtype."""
    settings = dict(settings)
    backend = settings.pop("backend")
    inputs = [as_input(n, obj) for n, obj in arrays.items() if obj is not None or n != "bias"]
    by_name = {i.name: i for i in inputs}
    chosen = select_backend(backend, inputs)
    spec = normalize_transpose(
        by_name["y"].shape,
        by_name["w"].shape,
        by_name["bias"].shape if "bias" in by_name else None,
        backend=chosen.name,
        **settings,
    )
    if "grad_out" in by_name and by_name["grad_out"].shape != spec.user_out_shape:
        raise ValueError(
            f"grad_out must have the transpose's output shape {spec.user_out_shape}, "
            f"got {by_name['grad_out'].shape}"
        )
    converted, _ = convert_inputs(chosen, inputs)
    result: dict[str, Array] = dict.fromkeys(arrays)
    result.update(zip(by_name, converted, strict=True))
    if not spec.batched:
        for name in ("y", "grad_out"):
            if result.get(name) is not None:
                result[name] = result[name][None, ...]
    return chosen, result, spec


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
    if data_format != CHANNELS_FIRST or kernel_format != CHANNELS_FIRST:
        return call_in_layouts(
            correlate_transpose,
            {"y": y, "w": w, "bias": bias},
            _settings(
                backend, stride, padding, output_padding, dilation, groups, padding_mode, method
            ),
            data_format=data_format,
            kernel_format=kernel_format,
            data=("y",),
            kernel="w",
            results=("data",),
            transpose=True,
        )
    settings = _settings(
        backend, stride, padding, output_padding, dilation, groups, padding_mode, method
    )
    chosen, a, spec = _prepare({"y": y, "w": w, "bias": bias}, settings)
    out = chosen.correlate_transpose(a["y"], a["w"], a["bias"], spec)
    return out if spec.batched else out[0, ...]


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
    if data_format != CHANNELS_FIRST or kernel_format != CHANNELS_FIRST:
        return call_in_layouts(
            convolve_transpose,
            {"y": y, "w": w, "bias": bias},
            _settings(
                backend, stride, padding, output_padding, dilation, groups, padding_mode, method
            ),
            data_format=data_format,
            kernel_format=kernel_format,
            data=("y",),
            kernel="w",
            results=("data",),
            transpose=True,
        )
    settings = _settings(
        backend, stride, padding, output_padding, dilation, groups, padding_mode, method
    )
    chosen, a, spec = _prepare({"y": y, "w": w, "bias": bias}, settings)
    flipped = chosen.flip(a["w"], tuple(range(2, 2 + spec.rank)))
    out = chosen.correlate_transpose(a["y"], flipped, a["bias"], spec)
    return out if spec.batched else out[0, ...]


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
    arrays = {"y": y, "w": w, "bias": bias, "grad_out": grad_out}
    chosen, a, spec = _prepare(arrays, settings)
    grad_y, grad_w, grad_bias = chosen.correlate_transpose_vjp(
        a["y"], a["w"], a["bias"], a["grad_out"], spec
    )
    return (grad_y if spec.batched else grad_y[0, ...]), grad_w, grad_bias


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
