"""The module calls ``polyconv explain`` prints: ``torch.nn.ConvNd``, ``nnx.Conv`` and
``keras.layers.ConvND`` for one spec, with the weight transposes between the layouts.

Each snippet makes the layer the corresponding adapter's ``build`` would make (the same choice of
native padding), copies ``w`` (and ``b``) into it, and leaves ``y`` channels-first, given ``x``,
``w`` and ``b`` in polyconv's layouts. Nothing here imports a framework.
"""

from __future__ import annotations

import numpy as np

from .._spec.layouts import kernel_to_last
from .._spec.padding import NUMPY_PAD_MODE
from .._spec.spec import CorrSpec
from . import _flax, _keras, _torch
from ._description import ConvDescription

_SPATIAL = {1: ("kL",), 2: ("kH", "kW"), 3: ("kD", "kH", "kW")}


def _description(spec: CorrSpec, padding: object) -> ConvDescription:
    """The layer of ``spec`` with the user's padding argument ("same" stays "same")."""
    given = padding if isinstance(padding, str) else spec.padding
    return ConvDescription(
        framework="polyconv",
        backend="numpy",
        rank=spec.rank,
        in_channels=spec.x_shape[1],
        out_channels=spec.w_shape[0],
        kernel_size=spec.kernel_shape,
        stride=spec.stride,
        padding=given,
        dilation=spec.dilation,
        groups=spec.groups,
        padding_mode=spec.padding_mode,
        data_format="channels_first",
        weight=np.zeros((1,) * (spec.rank + 2)),  # the code never reads it
        bias=np.zeros(1) if spec.has_bias else None,
        native_padding=repr(padding),
    )


def _compact(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(set(values)) == 1 else str(values)


def _kernel_axes(rank: int) -> tuple[str, str]:
    """The transpose from polyconv's kernel layout to the channels-last one, and its comment."""
    order = kernel_to_last(rank + 2)
    letters = ", ".join(_SPATIAL[rank])
    return str(order), f"(C_out, C_in // groups, {letters}) -> ({letters}, C_in // groups, C_out)"


def _pad_first(
    spec: CorrSpec, source: str, channels_last: bool, batched: bool, function: str
) -> str:
    """``x_padded = function(source, widths, mode=...)`` padding the spatial axes of ``spec``."""
    spatial = [list(pair) for pair in spec.padding]
    widths = [*spatial, [0, 0]] if channels_last else [[0, 0], *spatial]
    if batched:
        widths.insert(0, [0, 0])
    mode = "" if spec.padding_mode == "zeros" else f', mode="{NUMPY_PAD_MODE[spec.padding_mode]}"'
    return f"x_padded = {function}({source}, {widths}{mode})"


def torch_module(spec: CorrSpec, padding: object) -> tuple[str, str]:
    from ..explain import _torch_pad_reason

    description = _description(spec, padding)
    # torch's reflect and circular padding refuse pads wider than this input: pad first then.
    native = None if _torch_pad_reason(spec) else _torch._native_padding(description)
    rank = spec.rank
    lines = ["import torch", ""]
    source, note = "x", ""
    if native is None:
        if spec.padding_mode != "zeros":
            lines[0:0] = ["import numpy as np"]
        pads = ", ".join(map(str, spec.padding))
        lines.append(
            f"# torch.nn.Conv{rank}d pads both ends of an axis alike, in zeros, reflect, "
            f'replicate or circular mode, and "same" only at stride 1; this spec pads {pads} '
            f"(lo, hi) per axis in mode {spec.padding_mode!r}: pad first"
        )
        lines.append(_torch_pad(spec))
        source = "x_padded"
        note = (
            f'polyconv.Conv{rank}D(...).to_module("torch") gives this as one module '
            "(PaddedConv: pads first, then the native convolution)."
        )
    options = [f"kernel_size={_compact(spec.kernel_shape)}"]
    if set(spec.stride) != {1}:
        options.append(f"stride={_compact(spec.stride)}")
    if native is not None and native != (0,) * rank and native != "valid":
        options.append(
            f"padding={native!r}" if isinstance(native, str) else f"padding={_compact(native)}"
        )
    if set(spec.dilation) != {1}:
        options.append(f"dilation={_compact(spec.dilation)}")
    if spec.groups != 1:
        options.append(f"groups={spec.groups}")
    options.append(f"bias={spec.has_bias}")
    if native is not None and spec.padding_mode != "zeros":
        options.append(f'padding_mode="{spec.padding_mode}"')
    lines.append(
        f"conv = torch.nn.Conv{rank}d({spec.x_shape[1]}, {spec.w_shape[0]}, {', '.join(options)})"
    )
    lines.append("with torch.no_grad():")
    lines.append("    conv.weight.copy_(w)  # polyconv's layout (C_out, C_in // groups, *k): as is")
    if spec.has_bias:
        lines.append("    conv.bias.copy_(b)")
    lines.append(f"y = conv({source})")
    return "\n".join(lines), note


def _torch_pad(spec: CorrSpec) -> str:
    if spec.padding_mode == "zeros":
        flat = tuple(p for pair in reversed(spec.padding) for p in pair)
        return f"x_padded = torch.nn.functional.pad(x, {flat})  # last axis first"
    # np.pad's index along each axis: any width, every mode (torch has no "symmetric").
    lines = ["x_padded = x"]
    mode = NUMPY_PAD_MODE[spec.padding_mode]
    for axis, (n, (lo, hi)) in enumerate(zip(spec.x_shape[2:], spec.padding, strict=True)):
        if lo or hi:
            lines.append(
                f"x_padded = x_padded.index_select({axis - spec.rank}, torch.from_numpy("
                f'np.pad(np.arange({n}), ({lo}, {hi}), mode="{mode}")))'
            )
    return "\n".join(lines)


def flax_module(spec: CorrSpec, padding: object) -> tuple[str, str]:
    description = _description(spec, padding)
    native = _flax._native_padding(description)
    rank = spec.rank
    order, comment = _kernel_axes(rank)
    lines = ["import jax.numpy as jnp", "from flax import nnx", ""]
    channel = 1 if spec.batched else 0
    lines.append(f"x_last = jnp.moveaxis(x, {channel}, -1)  # Flax is channels-last")
    source, note = "x_last", ""
    if native is None:
        lines.append(
            f"# nnx.Conv cannot pad in mode {spec.padding_mode!r} by {spec.padding}: pad first"
        )
        lines.append(_pad_first(spec, "x_last", True, spec.batched, "jnp.pad"))
        source, native = "x_padded", "VALID"
        note = (
            f'polyconv.Conv{rank}D(...).to_module("flax") gives this as one module '
            "(PaddedConv: pads first, then nnx.Conv)."
        )
    options = [f"kernel_size={spec.kernel_shape}"]
    if set(spec.stride) != {1}:
        options.append(f"strides={spec.stride}")
    options.append(f"padding={native!r}")
    if set(spec.dilation) != {1}:
        options.append(f"kernel_dilation={spec.dilation}")
    if spec.groups != 1:
        options.append(f"feature_group_count={spec.groups}")
    options.append(f"use_bias={spec.has_bias}")
    lines.append(
        f"conv = nnx.Conv({spec.x_shape[1]}, {spec.w_shape[0]}, {', '.join(options)}, "
        "rngs=nnx.Rngs(0))"
    )
    lines.append(f"conv.kernel.set_value(jnp.transpose(w, {order}))  # {comment}")
    if spec.has_bias:
        lines.append("conv.bias.set_value(b)")
    lines.append(f"y = jnp.moveaxis(conv({source}), -1, {channel})  # back to channels-first")
    return "\n".join(lines), note


def keras_module(spec: CorrSpec, padding: object) -> tuple[str, str]:
    rank = spec.rank
    if max(spec.stride) > 1 and max(spec.dilation) > 1:
        return "", (
            f"keras.layers.Conv{rank}D refuses strides above 1 together with dilation_rate "
            "above 1, and this problem has both."
        )
    description = _description(spec, padding)
    native = _keras._native_padding(description)
    order, comment = _kernel_axes(rank)
    lines = ["import keras", ""]
    source, note = "x", ""
    if not spec.batched:
        lines.append("x_batched = x[None]  # Keras layers need the batch axis")
        source = "x_batched"
    if native is None:
        lines.append(
            f"# keras.layers.Conv{rank}D pads only 'same', 'causal' (1-D), with zeros: pad first"
        )
        if spec.padding_mode == "zeros":
            lines.append(_pad_first(spec, source, False, True, "keras.ops.pad"))
        else:
            # keras.ops.pad on the torch backend has no "edge" or "wrap" mode and pads
            # "symmetric" wrong beyond one element (measured with keras 3.15.1): gather instead.
            lines[0:0] = ["import numpy as np"]
            lines.append(f"x_padded = {source}")
            mode = NUMPY_PAD_MODE[spec.padding_mode]
            for axis, (n, (lo, hi)) in enumerate(zip(spec.x_shape[2:], spec.padding, strict=True)):
                if lo or hi:
                    lines.append(
                        f"x_padded = keras.ops.take(x_padded, np.pad(np.arange({n}), ({lo}, {hi}), "
                        f'mode="{mode}"), axis={axis + 2})'
                    )
        source, native = "x_padded", "valid"
        note = (
            f'polyconv.Conv{rank}D(...).to_module("keras") gives this as one layer '
            "(PaddedConv: pads first, then the Keras convolution)."
        )
    options = [f"kernel_size={spec.kernel_shape}"]
    if set(spec.stride) != {1}:
        options.append(f"strides={spec.stride}")
    options.append(f'padding="{native}"')
    options.append('data_format="channels_first"')
    if set(spec.dilation) != {1}:
        options.append(f"dilation_rate={spec.dilation}")
    if spec.groups != 1:
        options.append(f"groups={spec.groups}")
    options.append(f"use_bias={spec.has_bias}")
    lines.append(f"conv = keras.layers.Conv{rank}D({spec.w_shape[0]}, {', '.join(options)})")
    lines.append(f"conv.build((None, {spec.x_shape[1]}{', None' * rank}))")
    lines.append(f"conv.kernel.assign(keras.ops.transpose(w, {order}))  # {comment}")
    if spec.has_bias:
        lines.append("conv.bias.assign(b)")
    lines.append(f"y = conv({source})" + ("" if spec.batched else "[0]"))
    return "\n".join(lines), note


MODULE_CALLS = {
    "torch_module": torch_module,
    "flax_module": flax_module,
    "keras_module": keras_module,
}
