"""Flax's ``flax.nnx.Conv``: read into a :class:`ConvDescription`, written from one, run.

Flax holds data channels-last, ``(N, *spatial, C)``, and kernels as ``(*k, C_in // g, C_out)``.
flax and jax are imported only by these functions, when a Flax module is passed or asked for.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ._description import (
    ConvDescription,
    centred_pairs,
    crop_of_transpose,
    explicit_pairs,
    kernel_from_channels_last,
    kernel_to_channels_last,
    lax_pads_of_transpose,
    pad_by_gather,
    padding_for,
    per_axis,
    transpose_from_lax_pads,
)

FRAMEWORK = "flax"
# Flax's padding strings that pad by the stride-1 "same" amount in a mode other than zeros.
_MODE_STRINGS = {"CIRCULAR": "circular", "REFLECT": "reflect"}


@functools.cache
def padded_conv_class() -> type:
    """``PaddedConv``, a ``flax.nnx.Module`` (made on first use, so Flax loads only then)."""
    import jax.numpy as jnp
    from flax import nnx

    class PaddedConv(nnx.Module):
        """An ``nnx.Conv`` (``padding="VALID"``) that pads its channels-last input first, written
        by polyconv where ``nnx.Conv`` cannot express the padding (Flax pads in a mode other
        than zeros only by the stride-1 "same" amount: no replicate or symmetric mode, no other
        widths).

        ``padding`` (polyconv's forms) is resolved on each input's size, then the input is padded
        (``padding_mode``, with ``np.pad``'s meaning for any width) and ``conv`` is applied.
        """

        polyconv_padded = True

        def __init__(self, conv: nnx.Conv, padding: object, padding_mode: str) -> None:
            self.conv = conv
            self.padding = padding
            self.padding_mode = padding_mode

        def __call__(self, x: Any) -> Any:
            conv = self.conv
            rank = len(conv.kernel_size)
            axes = range(x.ndim - rank - 1, x.ndim - 1)
            pairs = padding_for(
                x.shape[-rank - 1 : -1],
                conv.kernel_size,
                per_axis(conv.strides, rank),
                per_axis(conv.kernel_dilation, rank),
                self.padding,
            )
            if self.padding_mode == "zeros":
                x = jnp.pad(x, [(0, 0)] * (x.ndim - rank - 1) + list(pairs) + [(0, 0)])
            else:
                x = pad_by_gather(x, pairs, axes, self.padding_mode, _take)
            return conv(x)

    return PaddedConv


@functools.cache
def cropped_conv_transpose_class() -> type:
    """``CroppedConvTranspose``, a ``flax.nnx.Module`` (made on first use)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    class CroppedConvTranspose(nnx.Module):
        """An ``nnx.ConvTranspose`` (``transpose_kernel=True``) run without padding on its
        channels-last input, its output cropped (or extended with zeros) afterwards, written by
        polyconv where ``nnx.ConvTranspose`` cannot express the padding (no "same" at a stride
        above 1 in polyconv's sense).

        ``padding`` and ``output_padding`` are polyconv's (those of
        :func:`polyconv.correlate_transpose`): on each input ``conv``'s kernel is applied by
        ``lax.conv_transpose`` with no padding, the result cut to the transpose's output per
        axis, and ``conv``'s bias added.
        """

        polyconv_padded = True

        def __init__(
            self, conv: nnx.ConvTranspose, padding: object, output_padding: tuple[int, ...]
        ) -> None:
            self.conv = conv
            self.padding = padding
            self.output_padding = output_padding
            self.padding_mode = "zeros"

        def __call__(self, x: Any) -> Any:
            conv = self.conv
            rank = len(conv.kernel_size)
            stride = per_axis(conv.strides, rank)
            dilation = per_axis(conv.kernel_dilation, rank)
            first = x.ndim - rank - 1
            crops = crop_of_transpose(
                x.shape[first:-1], conv.kernel_size, stride, dilation, self.padding,
                self.output_padding,
            )  # fmt: skip
            extents = [(k - 1) * d + 1 for k, d in zip(conv.kernel_size, dilation, strict=True)]
            full = jax.lax.conv_transpose(
                x,
                conv.kernel.get_value(),
                stride,
                [(e - 1, e - 1) for e in extents],
                rhs_dilation=dilation,
                transpose_kernel=True,
            )
            kept = full[(..., *(slice(start, stop) for start, stop, _ in crops), slice(None))]
            y = jnp.pad(kept, [(0, 0)] * first + [(0, zeros) for *_, zeros in crops] + [(0, 0)])
            if conv.bias is not None:
                y = y + conv.bias.get_value()
            return y

    return CroppedConvTranspose


def _take(x: Any, index: np.ndarray, axis: int) -> Any:
    import jax.numpy as jnp

    return jnp.take(x, jnp.asarray(index), axis=axis)


def owns(module: object) -> bool:
    """Whether ``module`` is a Flax convolution this adapter reads."""
    from flax import nnx

    conv = getattr(module, "conv", None) if getattr(module, "polyconv_padded", False) else module
    return isinstance(conv, (nnx.Conv, nnx.ConvTranspose))


def _is_transpose(conv: Any) -> bool:
    from flax import nnx

    return isinstance(conv, nnx.ConvTranspose)


def _kernel_to_polyconv(conv: Any, kernel: np.ndarray) -> np.ndarray:
    """A Flax kernel (or its gradient) in polyconv's layout. An ``nnx.ConvTranspose`` kernel
    ``(*k, in, out)`` is correlated unflipped with the dilated input, so the forward kernel it
    is the adjoint of is its spatial flip; with ``transpose_kernel=True`` it is
    ``(*k, out, in)``, the forward kernel in Flax's layout, as is."""
    if _is_transpose(conv) and not conv.transpose_kernel:
        rank = kernel.ndim - 2
        flipped = np.flip(kernel, axis=tuple(range(rank)))
        return np.ascontiguousarray(np.transpose(flipped, (rank, rank + 1, *range(rank))))
    return kernel_from_channels_last(kernel)


def _lax_transpose_pads(extent: int, stride: int, padding: str) -> tuple[int, int]:
    """The pads ``lax.conv_transpose`` gives the stride-dilated input for "SAME" or "VALID"
    (JAX's rule, restated here rather than imported from JAX's private modules)."""
    if padding == "SAME":
        total = extent + stride - 2
        lo = extent - 1 if stride > extent - 1 else -(-total // 2)
    else:  # "VALID"
        total = extent + stride - 2 + max(extent - stride, 0)
        lo = extent - 1
    return lo, total - lo


def _read_transpose_padding(conv: Any) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """``nnx.ConvTranspose``'s padding (``lax.conv_transpose``'s) as the forward correlation's
    ``(lo, hi)`` pairs and the ``output_padding``."""
    rank = len(conv.kernel_size)
    stride = per_axis(conv.strides, rank)
    dilation = per_axis(conv.kernel_dilation, rank)
    extents = [(k - 1) * d + 1 for k, d in zip(conv.kernel_size, dilation, strict=True)]
    padding = conv.padding
    if isinstance(padding, str) and padding in ("SAME", "VALID"):
        lax_pairs = [
            _lax_transpose_pads(e, s, padding) for e, s in zip(extents, stride, strict=True)
        ]
    elif isinstance(padding, str):
        raise ValueError(
            f"flax padding {padding!r} on an nnx.ConvTranspose has no polyconv equivalent; "
            "polyconv reads 'SAME', 'VALID', ints and (lo, hi) pairs there"
        )
    else:
        lax_pairs = list(canonical_pairs(padding, rank))
    field = f"flax padding={padding!r} on an nnx.ConvTranspose"
    return transpose_from_lax_pads(lax_pairs, conv.kernel_size, stride, dilation, field)


def canonical_pairs(padding: Any, rank: int) -> tuple[tuple[int, int], ...]:
    """Flax's int or per-axis padding as ``(lo, hi)`` pairs."""
    if isinstance(padding, int):
        return ((padding, padding),) * rank
    return tuple((p, p) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding)


def _value(variable: Any) -> np.ndarray:
    return np.asarray(variable.get_value())


def _read_padding(conv: Any) -> tuple[object, str]:
    """Flax's padding field as polyconv's padding and padding mode."""
    rank = len(conv.kernel_size)
    padding = conv.padding
    if isinstance(padding, str):
        dilation = per_axis(conv.kernel_dilation, rank)
        if padding in ("SAME", "VALID"):
            return padding.lower(), "zeros"
        if padding in _MODE_STRINGS:
            return centred_pairs(tuple(conv.kernel_size), dilation), _MODE_STRINGS[padding]
        if padding == "CAUSAL" and rank == 1:
            return (((conv.kernel_size[0] - 1) * dilation[0], 0),), "zeros"
        raise ValueError(
            f"flax padding {padding!r} (on a {rank}-D nnx.Conv) has no polyconv equivalent; "
            "polyconv reads 'SAME', 'VALID', 'CIRCULAR', 'REFLECT', 'CAUSAL' (1-D), ints and "
            "(lo, hi) pairs"
        )
    return canonical_pairs(padding, rank), "zeros"


def describe(module: Any) -> ConvDescription:
    """The description of an ``nnx.Conv`` (or of polyconv's ``PaddedConv``)."""
    padded = getattr(module, "polyconv_padded", False)
    conv = module.conv if padded else module
    rank = len(conv.kernel_size)
    if _is_transpose(conv):
        return _describe_transpose(module)
    if per_axis(conv.input_dilation, rank) != (1,) * rank:
        raise ValueError(
            f"input_dilation={conv.input_dilation!r} on a forward nnx.Conv has no polyconv "
            "equivalent (it is a transposed convolution's stride: use nnx.ConvTranspose)"
        )
    if conv.mask is not None:
        raise ValueError(
            "mask on an nnx.Conv has no polyconv equivalent (a polyconv layer trains every "
            "kernel element); multiply the kernel by the mask and drop the mask first"
        )
    if padded:
        padding: object = module.padding
        mode = module.padding_mode
        native = f"{padding!r} by polyconv's PaddedConv"
    else:
        padding, mode = _read_padding(conv)
        native = repr(conv.padding)
    return ConvDescription(
        framework=FRAMEWORK,
        backend="jax",
        rank=rank,
        in_channels=conv.in_features,
        out_channels=conv.out_features,
        kernel_size=tuple(conv.kernel_size),
        stride=per_axis(conv.strides, rank),
        padding=padding,  # type: ignore[arg-type]
        dilation=per_axis(conv.kernel_dilation, rank),
        groups=conv.feature_group_count,
        padding_mode=mode,
        data_format="channels_last",
        weight=kernel_from_channels_last(_value(conv.kernel)),
        bias=None if conv.bias is None else _value(conv.bias),
        native_padding=native,
    )


def _describe_transpose(module: Any) -> ConvDescription:
    """An ``nnx.ConvTranspose`` or polyconv's ``CroppedConvTranspose`` around one."""
    padded = getattr(module, "polyconv_padded", False)
    conv = module.conv if padded else module
    rank = len(conv.kernel_size)
    if conv.mask is not None:
        raise ValueError("mask on an nnx.ConvTranspose has no polyconv equivalent")
    if padded:
        pairs, output_padding = module.padding, tuple(module.output_padding)
        native = f"{pairs!r} by polyconv's CroppedConvTranspose"
    else:
        pairs, output_padding = _read_transpose_padding(conv)
        native = repr(conv.padding)
    return ConvDescription(
        framework=FRAMEWORK,
        backend="jax",
        rank=rank,
        in_channels=conv.in_features,
        out_channels=conv.out_features,
        kernel_size=tuple(conv.kernel_size),
        stride=per_axis(conv.strides, rank),
        padding=pairs,
        dilation=per_axis(conv.kernel_dilation, rank),
        groups=1,
        padding_mode="zeros",
        data_format="channels_last",
        weight=_kernel_to_polyconv(conv, _value(conv.kernel)),
        bias=None if conv.bias is None else _value(conv.bias),
        native_padding=native,
        transpose=True,
        output_padding=output_padding,
    )


def _build_transpose(description: ConvDescription) -> Any:
    """An ``nnx.ConvTranspose`` (``transpose_kernel=True``: the kernel in Flax's layout of the
    forward's) computing the transposed ``description``, or polyconv's ``CroppedConvTranspose``
    around one where its padding cannot ("same" at a stride above 1)."""
    import jax.numpy as jnp
    from flax import nnx

    if description.groups != 1 or description.padding_mode != "zeros":
        raise ValueError(
            "nnx.ConvTranspose has no groups and pads with zeros only (polyconv writes no "
            f"wrapper for these); this layer has groups={description.groups}, "
            f"padding_mode={description.padding_mode!r} (polyconv computes it: "
            "pc.correlate_transpose)"
        )
    lax_pairs = lax_pads_of_transpose(description)
    extents = [
        (k - 1) * d + 1 for k, d in zip(description.kernel_size, description.dilation, strict=True)
    ]
    conv = nnx.ConvTranspose(
        description.in_channels,
        description.out_channels,
        description.kernel_size,
        strides=description.stride,
        padding=[(e - 1, e - 1) for e in extents] if lax_pairs is None else lax_pairs,
        kernel_dilation=description.dilation,
        use_bias=description.bias is not None,
        transpose_kernel=True,
        dtype=description.dtype,
        param_dtype=description.dtype,
        rngs=nnx.Rngs(0),
    )
    conv.kernel.set_value(jnp.asarray(kernel_to_channels_last(description.weight)))
    if description.bias is not None:
        conv.bias.set_value(jnp.asarray(description.bias))  # type: ignore[union-attr]
    if lax_pairs is not None:
        return conv
    assert description.output_padding is not None
    return cropped_conv_transpose_class()(conv, description.padding, description.output_padding)


def _native_padding(description: ConvDescription) -> object | None:
    """What ``nnx.Conv(padding=...)`` takes for this description, or ``None``."""
    if description.padding_mode == "zeros":
        if description.padding in ("valid", "same"):
            return str(description.padding).upper()
        return [tuple(pair) for pair in explicit_pairs(description) or ()]
    for string, mode in _MODE_STRINGS.items():
        centred = centred_pairs(description.kernel_size, description.dilation)
        if mode == description.padding_mode and explicit_pairs(description) == centred:
            return string
    return None


def build(description: ConvDescription) -> Any:
    """An ``nnx.Conv`` computing ``description``, or polyconv's ``PaddedConv`` around one."""
    import jax.numpy as jnp
    from flax import nnx

    if description.transpose:
        return _build_transpose(description)
    native = _native_padding(description)
    conv = nnx.Conv(
        description.in_channels,
        description.out_channels,
        description.kernel_size,
        strides=description.stride,
        padding="VALID" if native is None else native,  # type: ignore[arg-type]
        kernel_dilation=description.dilation,
        feature_group_count=description.groups,
        use_bias=description.bias is not None,
        dtype=description.dtype,
        param_dtype=description.dtype,
        rngs=nnx.Rngs(0),
    )
    conv.kernel.set_value(jnp.asarray(kernel_to_channels_last(description.weight)))
    if description.bias is not None:
        conv.bias.set_value(jnp.asarray(description.bias))  # type: ignore[union-attr]
    if native is not None:
        return conv
    return padded_conv_class()(conv, description.padding, description.padding_mode)


def run(
    module: Any, x: np.ndarray, grad_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``y`` and the gradients of ``<y, grad_y>`` for ``x``, the kernel and the bias, through
    ``jax.vjp``; ``x``, ``grad_y`` and the results channels-first, the weight's gradient in
    polyconv's layout."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graph, params, rest = nnx.split(module, nnx.Param, ...)  # type: ignore[misc]

    def apply(x_last: Any, params: Any) -> Any:
        return nnx.merge(graph, params, rest)(x_last)

    y, vjp = jax.vjp(apply, jnp.asarray(np.moveaxis(x, 1, -1)), params)
    grad_x, grad_params = vjp(jnp.asarray(np.moveaxis(grad_y, 1, -1)))
    grads = {
        path[-1]: np.asarray(leaf.get_value()) for path, leaf in nnx.to_flat_state(grad_params)
    }
    return (
        np.moveaxis(np.asarray(y), -1, 1),
        np.moveaxis(np.asarray(grad_x), -1, 1),
        _kernel_to_polyconv(
            module.conv if getattr(module, "polyconv_padded", False) else module, grads["kernel"]
        ),
        grads.get("bias"),
    )
