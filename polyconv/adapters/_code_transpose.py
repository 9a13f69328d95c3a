"""The module calls ``polyconv explain`` prints for a transposed problem: ``nnx.ConvTranspose``
and ``keras.layers.ConvNDTranspose``, with the kernel transpose (torch's module is printed by
:mod:`polyconv._explain_transpose`).

Each snippet takes ``y``, ``w`` (and ``b``) channels-first, in polyconv's layouts (``w`` the
forward's kernel), and leaves ``out`` channels-first. Where Keras' padding rules cannot give
the spec's pads, its snippet does what ``to_module``'s ``CroppedConvTranspose`` does: the layer without
padding, its output cropped (or extended with zeros), then the bias. Nothing here imports a
framework.
"""

from __future__ import annotations

import numpy as np

from .._spec.transpose import TransposeSpec
from . import _keras
from ._code import _kernel_axes
from ._description import ConvDescription, lax_pads_of_transpose


def _description(spec: TransposeSpec) -> ConvDescription:
    """The transposed layer of ``spec`` with its pads resolved on the problem's shapes: the
    forward's ``lo`` before, and after whatever gives the transpose's output size (the
    forward's unread samples and the output padding together), an output padding where that
    is more than the kernel's extent - 1."""
    forward = spec.forward
    pairs, output_padding = [], []
    for i, s, e, (lo, _), size in zip(
        spec.y_shape[2:], forward.stride, forward.extents, forward.padding, spec.out_shape[2:],
        strict=True,
    ):  # fmt: skip
        after = size + lo - (i - 1) * s - 1  # lax.conv_transpose's pad after the dilated y
        hi = e - 1 - after
        pairs.append((lo, max(hi, 0)))
        output_padding.append(max(-hi, 0))
    return ConvDescription(
        framework="polyconv",
        backend="numpy",
        rank=spec.rank,
        in_channels=spec.y_shape[1],
        out_channels=forward.x_shape[1],
        kernel_size=forward.kernel_shape,
        stride=forward.stride,
        padding=tuple(pairs),
        dilation=forward.dilation,
        groups=forward.groups,
        padding_mode=forward.padding_mode,
        data_format="channels_first",
        weight=np.zeros((1,) * (spec.rank + 2)),  # the code never reads it
        bias=None,  # the snippets add the bias themselves
        native_padding="",
        transpose=True,
        output_padding=tuple(output_padding),
    )


def _refusal(spec: TransposeSpec, layer: str) -> str:
    """Why ``layer`` cannot compute ``spec`` at all, or ``""``."""
    forward = spec.forward
    if forward.groups != 1:
        return f"{layer} has no groups (this problem has groups={forward.groups})."
    if forward.padding_mode != "zeros":
        return (
            f"{layer} pads with zeros only (this problem pads in mode "
            f"{forward.padding_mode!r}); the jax snippet folds the padding back."
        )
    return ""


def _crop_lines(spec: TransposeSpec, has_bias: bool) -> list[str]:
    """``out`` cut from Keras' unpadded channels-first transpose ``full`` to the spec's output
    (extended with zeros where ``full`` is shorter), plus the bias."""
    forward = spec.forward
    index, extend = [], []
    for n, s, e, (lo, _), size in zip(
        spec.y_shape[2:], forward.stride, forward.extents, forward.padding, spec.out_shape[2:],
        strict=True,
    ):  # fmt: skip
        full = (n - 1) * s + e
        stop = min(lo + size, full)
        index.append(f"{lo}:{stop}")
        extend.append(lo + size - stop)
    lines = [f"out = full[:, :, {', '.join(index)}]  # output j is the padded input at lo + j"]
    if any(extend):
        widths = [[0, 0], [0, 0]] + [[0, z] for z in extend]
        lines.append(f"out = keras.ops.pad(out, {widths})  # samples no native output reaches")
    if has_bias:
        lines.append(f"out = out + keras.ops.reshape(b, (-1{', 1' * spec.rank}))")
    return lines


def flax_transpose_module(spec: TransposeSpec, has_bias: bool) -> tuple[str, str]:
    """The ``nnx.ConvTranspose`` snippet and its note."""
    refusal = _refusal(spec, "nnx.ConvTranspose")
    if refusal:
        return "", refusal
    forward, rank = spec.forward, spec.rank
    # explain's pads are resolved on the problem's shapes, which nnx.ConvTranspose takes as is.
    pads = lax_pads_of_transpose(_description(spec))
    assert pads is not None
    order, comment = _kernel_axes(rank)
    lines = ["import jax.numpy as jnp", "from flax import nnx", ""]
    source = "y" if spec.batched else "y[None]"
    lines += [
        f"y_last = jnp.moveaxis({source}, 1, -1)  # Flax is channels-last",
        f"conv = nnx.ConvTranspose({spec.y_shape[1]}, {forward.x_shape[1]}, "
        f"kernel_size={forward.kernel_shape}, strides={forward.stride}, padding={pads}, "
        f"kernel_dilation={forward.dilation}, use_bias={has_bias}, transpose_kernel=True, "
        "rngs=nnx.Rngs(0))",
        f"conv.kernel.set_value(jnp.transpose(w, {order}))  # {comment}: the forward's kernel",
    ]
    if has_bias:
        lines.append("conv.bias.set_value(b)")
    lines.append("out = jnp.moveaxis(conv(y_last), -1, 1)  # back to channels-first")
    note = ""
    if not spec.batched:
        lines.append("out = out[0]")
    return "\n".join(lines), note


def keras_transpose_module(spec: TransposeSpec, has_bias: bool) -> tuple[str, str]:
    """The ``keras.layers.ConvNDTranspose`` snippet and its note."""
    rank = spec.rank
    layer = f"keras.layers.Conv{rank}DTranspose"
    refusal = _refusal(spec, layer)
    forward = spec.forward
    if not refusal and max(forward.stride) > 1 and max(forward.dilation) > 1:
        refusal = f"{layer} refuses strides above 1 together with dilation_rate above 1."
    if refusal:
        return "", refusal
    arguments = _keras._transpose_arguments(_description(spec))
    cropped = arguments is None
    padding, output_padding = ("valid", (0,) * rank) if arguments is None else arguments
    order, comment = _kernel_axes(rank)
    use_bias = has_bias and not cropped
    lines = [
        "import keras",
        "",
        f"conv = {layer}({forward.x_shape[1]}, kernel_size={forward.kernel_shape}, "
        f'strides={forward.stride}, padding="{padding}", output_padding={output_padding}, '
        f'data_format="channels_first", dilation_rate={forward.dilation}, '
        f"use_bias={use_bias})",
        f"conv.build((None, {spec.y_shape[1]}{', None' * rank}))",
        f"conv.kernel.assign(keras.ops.transpose(w, {order}))  # {comment}: the forward's kernel",
    ]
    if use_bias:
        lines.append("conv.bias.assign(b)")
    source = "y" if spec.batched else "y[None]"
    note = ""
    if cropped:
        lines.append(f"full = conv({source})  # no padding: (n - 1) * stride + extent per axis")
        lines += _crop_lines(spec, has_bias)
        note = (
            f"{layer} pads only by its 'valid' and 'same' rules, which cannot give this "
            f'problem\'s pads; polyconv.ConvTranspose{rank}D(...).to_module("keras") gives this '
            "as one layer (CroppedConvTranspose: no padding, the output cropped, then the bias)."
        )
    else:
        lines.append(f"out = conv({source})")
    if not spec.batched:
        lines.append("out = out[0]")
    return "\n".join(lines), note
