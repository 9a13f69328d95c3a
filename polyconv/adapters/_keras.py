"""Keras 3's ``keras.layers.Conv1D/2D/3D``: read into a :class:`ConvDescription`, written, run.

Keras holds kernels as ``(*k, C_in // g, C_out)`` and data in the layer's ``data_format``. It
computes on the backend chosen by ``$KERAS_BACKEND`` when keras is first imported; polyconv reads
layers of the JAX and torch backends and runs the polyconv layer on the same one. keras is
imported only by these functions, when a Keras layer is passed or asked for.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._bounds import to_numpy
from ._description import (
    ConvDescription,
    crop_of_transpose,
    explicit_pairs,
    kernel_from_channels_last,
    kernel_to_channels_last,
    lax_pads_of_transpose,
    pad_by_gather,
    padding_for,
    transpose_from_lax_pads,
)

FRAMEWORK = "keras"
# Keras' backends that polyconv has a backend for.
BACKENDS = ("jax", "torch")


def keras_backend() -> str:
    """The backend keras computes on; a ValueError for one polyconv has no backend for."""
    import keras

    name = str(keras.backend.backend())
    if name not in BACKENDS:
        raise ValueError(
            f"keras runs on its {name!r} backend; polyconv reads and writes Keras layers on "
            f"{' and '.join(BACKENDS)} (set KERAS_BACKEND before keras is imported)"
        )
    return name


def _spatial_axes(data_format: str, rank: int, ndim: int) -> list[int]:
    first = ndim - rank - (1 if data_format == "channels_last" else 0)
    return list(range(first, first + rank))


def _padding_from_config(padding: object) -> object:
    """polyconv's padding as a Keras config gives it back (JSON turns pairs into lists)."""
    if isinstance(padding, str):
        return padding
    return tuple(tuple(int(p) for p in pair) for pair in padding)  # type: ignore[attr-defined]


def _build_channels(conv: Any, input_shape: Any) -> None:
    """Builds ``conv`` (its variables depend on the channels only) for a wrapper's input."""
    rank, last = conv.rank, conv.data_format == "channels_last"
    channels = input_shape[-1] if last else input_shape[1]
    spatial = (None,) * rank
    if not conv.built:
        conv.build((None, *spatial, channels) if last else (None, channels, *spatial))


@functools.cache
def padded_conv_class() -> type:
    """``PaddedConv``, a ``keras.layers.Layer`` (made on first use, so Keras loads only then;
    registered as ``"polyconv>PaddedConv"`` for ``keras.saving``)."""
    import keras

    @keras.saving.register_keras_serializable(package="polyconv")
    class PaddedConv(keras.layers.Layer):
        """A Keras ``ConvND`` (``padding="valid"``) that pads its input first, written by
        polyconv where the Keras layer cannot express the padding (Keras pads only "same",
        "causal" in 1-D, and with zeros).

        ``padding`` (polyconv's forms) is resolved on each input's size, then the input is padded
        (``padding_mode``, with ``np.pad``'s meaning for any width) and ``conv`` is applied.
        """

        polyconv_padded = True

        def __init__(self, conv: Any, padding: object, padding_mode: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.conv = conv
            self.polyconv_padding = padding
            self.padding_mode = padding_mode

        def build(self, input_shape: Any) -> None:
            _build_channels(self.conv, input_shape)

        def call(self, x: Any) -> Any:
            conv = self.conv
            axes = _spatial_axes(conv.data_format, conv.rank, len(x.shape))
            pairs = padding_for(
                [x.shape[axis] for axis in axes],
                conv.kernel_size,
                conv.strides,
                conv.dilation_rate,
                self.polyconv_padding,
            )
            if self.padding_mode == "zeros":
                widths = [[0, 0] for _ in x.shape]
                for axis, pair in zip(axes, pairs, strict=True):
                    widths[axis] = list(pair)
                x = keras.ops.pad(x, widths)
            else:
                x = pad_by_gather(x, pairs, axes, self.padding_mode, _take)
            return conv(x)

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "conv": keras.saving.serialize_keras_object(self.conv),
                "padding": self.polyconv_padding,
                "padding_mode": self.padding_mode,
            }

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            config = dict(config)
            conv = keras.saving.deserialize_keras_object(config.pop("conv"))
            padding = _padding_from_config(config.pop("padding"))
            return cls(conv, padding, config.pop("padding_mode"), **config)

    return PaddedConv


@functools.cache
def cropped_conv_transpose_class() -> type:
    """``CroppedConvTranspose``, a ``keras.layers.Layer`` (made on first use; registered as
    ``"polyconv>CroppedConvTranspose"`` for ``keras.saving``)."""
    import keras

    @keras.saving.register_keras_serializable(package="polyconv")
    class CroppedConvTranspose(keras.layers.Layer):
        """A Keras ``ConvNDTranspose`` run without padding (``keras.ops.conv_transpose``,
        ``padding="valid"``, ``output_padding=0``), its output cropped (or extended with zeros)
        afterwards, written by polyconv where the Keras layer cannot express the padding (it
        pads only by its "valid" and "same" rules, e.g. not torch's ``padding=1,
        output_padding=1`` at stride 2 with a 3-wide kernel).

        ``padding`` and ``output_padding`` are polyconv's (those of
        :func:`polyconv.correlate_transpose`): on each input ``conv``'s kernel is applied
        unpadded, the result cut to the transpose's output per axis, and ``conv``'s bias added.
        """

        polyconv_padded = True

        def __init__(
            self, conv: Any, padding: object, output_padding: tuple[int, ...], **kwargs: Any
        ) -> None:
            super().__init__(**kwargs)
            self.conv = conv
            self.polyconv_padding = padding
            self.output_padding = tuple(output_padding)
            self.padding_mode = "zeros"

        def build(self, input_shape: Any) -> None:
            _build_channels(self.conv, input_shape)

        def call(self, x: Any) -> Any:
            conv = self.conv
            axes = _spatial_axes(conv.data_format, conv.rank, len(x.shape))
            crops = crop_of_transpose(
                [x.shape[axis] for axis in axes], conv.kernel_size, conv.strides,
                conv.dilation_rate, self.polyconv_padding, self.output_padding,
            )  # fmt: skip
            full = keras.ops.conv_transpose(
                x,
                conv.kernel,
                conv.strides,
                padding="valid",
                output_padding=(0,) * conv.rank,
                data_format=conv.data_format,
                dilation_rate=conv.dilation_rate,
            )
            index = [slice(None)] * len(x.shape)
            widths = [[0, 0] for _ in x.shape]
            for axis, (start, stop, zeros) in zip(axes, crops, strict=True):
                index[axis] = slice(start, stop)
                widths[axis][1] = zeros
            y = keras.ops.pad(full[tuple(index)], widths)
            if conv.bias is not None:
                last = conv.data_format == "channels_last"
                y = y + keras.ops.reshape(conv.bias, (-1,) if last else (-1, *(1,) * conv.rank))
            return y

        def get_config(self) -> dict[str, Any]:
            return {
                **super().get_config(),
                "conv": keras.saving.serialize_keras_object(self.conv),
                "padding": self.polyconv_padding,
                "output_padding": list(self.output_padding),
            }

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            config = dict(config)
            conv = keras.saving.deserialize_keras_object(config.pop("conv"))
            padding = _padding_from_config(config.pop("padding"))
            return cls(conv, padding, tuple(config.pop("output_padding")), **config)

    return CroppedConvTranspose


def _take(x: Any, index: np.ndarray, axis: int) -> Any:
    import keras

    return keras.ops.take(x, keras.ops.convert_to_tensor(index), axis=axis)


def owns(module: object) -> bool:
    """Whether ``module`` is a Keras convolution this adapter reads."""
    import keras

    conv = getattr(module, "conv", None) if getattr(module, "polyconv_padded", False) else module
    forward = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
    return isinstance(conv, forward) or _is_transpose(conv)


def _is_transpose(conv: Any) -> bool:
    import keras

    layers = keras.layers
    return isinstance(
        conv, (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
    )


def _lax_pads(
    kernel_size: tuple[int, ...],
    strides: tuple[int, ...],
    padding: str,
    output_padding: tuple[int, ...] | None,
    dilation: tuple[int, ...],
) -> list[tuple[int, int]]:
    """The pads of the stride-dilated input a Keras transposed layer computes with: Keras' own
    rule (``compute_conv_transpose_padding_args_for_jax``, which its torch backend follows),
    restated here so that ``explain`` can use it without importing keras; the Keras checks
    hold it to Keras' layers."""
    pads = []
    for axis, (k, s, d) in enumerate(zip(kernel_size, strides, dilation, strict=True)):
        extent = (k - 1) * d + 1
        extra = None if output_padding is None else output_padding[axis]
        if padding == "valid":
            lo = extent - 1
            hi = extent - 1 + (max(extent, s) - extent if extra is None else extra)
        else:
            total = s + extent - 2 if extra is None else extent + extent % 2 - 2 + extra
            lo = min(total // 2 + total % 2, extent - 1)
            hi = total - lo
        pads.append((lo, hi))
    return pads


def describe(module: Any) -> ConvDescription:
    """The description of a built Keras ``ConvND`` (or of polyconv's ``PaddedConv``)."""
    padded = getattr(module, "polyconv_padded", False)
    conv = module.conv if padded else module
    if not conv.built:
        raise ValueError(
            f"the Keras layer {conv.name!r} is not built yet, so it has no kernel: call it on "
            "an input (or layer.build(input_shape)) first"
        )
    rank = conv.rank
    kernel = kernel_from_channels_last(np.asarray(keras_to_numpy(conv.kernel)))
    if _is_transpose(conv):
        return _describe_transpose(module, kernel)
    if padded:
        padding: object = module.polyconv_padding
        mode = module.padding_mode
        native = f"{padding!r} by polyconv's PaddedConv"
    else:
        mode = "zeros"
        native = repr(conv.padding)
        padding = conv.padding
        if padding == "causal":
            padding = (((conv.kernel_size[0] - 1) * conv.dilation_rate[0], 0),)
    return ConvDescription(
        framework=FRAMEWORK,
        backend=keras_backend(),
        rank=rank,
        in_channels=kernel.shape[1] * conv.groups,
        out_channels=conv.filters,
        kernel_size=tuple(conv.kernel_size),
        stride=tuple(conv.strides),
        padding=padding,  # type: ignore[arg-type]
        dilation=tuple(conv.dilation_rate),
        groups=conv.groups,
        padding_mode=mode,
        data_format=conv.data_format,
        weight=kernel,
        bias=None if conv.bias is None else keras_to_numpy(conv.bias),
        native_padding=native,
    )


def _describe_transpose(module: Any, kernel: np.ndarray) -> ConvDescription:
    """A Keras ``ConvNDTranspose`` (or polyconv's ``CroppedConvTranspose`` around one): its
    kernel ``(*k, filters, C_in)`` is the forward's kernel in Keras' layout, so ``kernel``
    (read as a forward kernel) is already polyconv's."""
    padded = getattr(module, "polyconv_padded", False)
    conv = module.conv if padded else module
    if padded:
        pairs, output_padding = module.polyconv_padding, tuple(module.output_padding)
        native = f"{pairs!r} by polyconv's CroppedConvTranspose"
    else:
        lax_pairs = _lax_pads(
            tuple(conv.kernel_size), tuple(conv.strides), conv.padding, conv.output_padding,
            tuple(conv.dilation_rate),
        )  # fmt: skip
        field = f"keras padding={conv.padding!r}, output_padding={conv.output_padding!r}"
        pairs, output_padding = transpose_from_lax_pads(
            lax_pairs, conv.kernel_size, conv.strides, conv.dilation_rate, field
        )
        native = f"{conv.padding!r} with output_padding={conv.output_padding!r}"
    return ConvDescription(
        framework=FRAMEWORK,
        backend=keras_backend(),
        rank=conv.rank,
        in_channels=kernel.shape[0],
        out_channels=conv.filters,
        kernel_size=tuple(conv.kernel_size),
        stride=tuple(conv.strides),
        padding=pairs,
        dilation=tuple(conv.dilation_rate),
        groups=1,
        padding_mode="zeros",
        data_format=conv.data_format,
        weight=kernel,
        bias=None if conv.bias is None else keras_to_numpy(conv.bias),
        native_padding=native,
        transpose=True,
        output_padding=output_padding,
    )


def _transpose_arguments(
    description: ConvDescription,
) -> tuple[str, tuple[int, ...] | None] | None:
    """Keras' ``padding`` and ``output_padding`` giving the description's pads, or ``None``
    (Keras pads a transpose only by its "valid" and "same" rules); a ValueError for groups or
    a padding mode other than zeros, which no Keras transposed layer has."""
    if description.groups != 1 or description.padding_mode != "zeros":
        raise ValueError(
            f"keras.layers.Conv{description.rank}DTranspose has no groups and pads with zeros "
            "only (polyconv writes no wrapper for these); this layer has "
            f"groups={description.groups}, padding_mode={description.padding_mode!r} "
            "(polyconv computes it: pc.correlate_transpose)"
        )
    wanted = lax_pads_of_transpose(description)
    if wanted is not None:
        for padding in ("valid", "same"):
            for output_padding in _output_paddings(description.stride):
                pads = _lax_pads(
                    description.kernel_size, description.stride, padding, output_padding,
                    description.dilation,
                )  # fmt: skip
                if pads == wanted:
                    return padding, output_padding
    return None


def _output_paddings(stride: tuple[int, ...]) -> list[tuple[int, ...] | None]:
    """Keras' choices of ``output_padding``: None, or each axis below its stride."""
    import itertools

    return [None, *itertools.product(*(range(s) for s in stride))]


def keras_to_numpy(variable: Any) -> np.ndarray:
    """A Keras variable's value (a JAX array or a torch parameter) as a NumPy array."""
    return to_numpy(variable.value)


def _native_padding(description: ConvDescription) -> str | None:
    """What ``keras.layers.ConvND(padding=...)`` takes for this description, or ``None``."""
    if description.padding_mode != "zeros":
        return None
    if description.padding in ("valid", "same"):
        return str(description.padding)
    causal = (((description.kernel_size[0] - 1) * description.dilation[0], 0),)
    if description.rank == 1 and explicit_pairs(description) == causal:
        return "causal"
    if explicit_pairs(description) == ((0, 0),) * description.rank:
        return "valid"
    return None


def build(description: ConvDescription) -> Any:
    """A Keras ``ConvND`` computing ``description`` in its ``data_format``, or polyconv's
    ``PaddedConv`` around one."""
    import keras

    keras_backend()
    if description.transpose:
        return _build_transpose(description)
    if max(description.stride) > 1 and max(description.dilation) > 1:
        raise ValueError(
            f"keras.layers.Conv{description.rank}D refuses strides={description.stride} together "
            f"with dilation_rate={description.dilation} (both above 1)"
        )
    native = _native_padding(description)
    conv = getattr(keras.layers, f"Conv{description.rank}D")(
        filters=description.out_channels,
        kernel_size=description.kernel_size,
        strides=description.stride,
        padding="valid" if native is None else native,
        data_format=description.data_format,
        dilation_rate=description.dilation,
        groups=description.groups,
        use_bias=description.bias is not None,
        dtype=description.dtype,
    )
    spatial = (None,) * description.rank
    channels = (description.in_channels,)
    last = description.data_format == "channels_last"
    conv.build((None, *spatial, *channels) if last else (None, *channels, *spatial))
    conv.kernel.assign(kernel_to_channels_last(description.weight))
    if description.bias is not None:
        conv.bias.assign(description.bias)
    if native is not None:
        return conv
    padded = padded_conv_class()(conv, description.padding, description.padding_mode)
    padded.build((None, *spatial, *channels) if last else (None, *channels, *spatial))
    return padded


def _build_transpose(description: ConvDescription) -> Any:
    """A Keras ``ConvNDTranspose`` computing the transposed ``description``, or polyconv's
    ``CroppedConvTranspose`` around one (unpadded) where Keras' rules cannot pad so."""
    import keras

    arguments = _transpose_arguments(description)
    padding, output_padding = ("valid", (0,) * description.rank) if arguments is None else arguments
    conv = getattr(keras.layers, f"Conv{description.rank}DTranspose")(
        filters=description.out_channels,
        kernel_size=description.kernel_size,
        strides=description.stride,
        padding=padding,
        output_padding=output_padding,
        data_format=description.data_format,
        dilation_rate=description.dilation,
        use_bias=description.bias is not None,
        dtype=description.dtype,
    )
    spatial = (None,) * description.rank
    channels = (description.in_channels,)
    last = description.data_format == "channels_last"
    conv.build((None, *spatial, *channels) if last else (None, *channels, *spatial))
    conv.kernel.assign(kernel_to_channels_last(description.weight))
    if description.bias is not None:
        conv.bias.assign(description.bias)
    if arguments is not None:
        return conv
    assert description.output_padding is not None
    cropped = cropped_conv_transpose_class()(conv, description.padding, description.output_padding)
    cropped.build((None, *spatial, *channels) if last else (None, *channels, *spatial))
    return cropped


def run(
    module: Any, x: np.ndarray, grad_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``y`` and the gradients of ``<y, grad_y>`` for ``x``, the kernel and the bias, through
    the Keras backend's autodiff; ``x``, ``grad_y`` and the results channels-first, the
    weight's gradient in polyconv's layout."""
    conv = module.conv if getattr(module, "polyconv_padded", False) else module
    last = conv.data_format == "channels_last"
    x_native = np.ascontiguousarray(np.moveaxis(x, 1, -1) if last else x)
    g_native = np.ascontiguousarray(np.moveaxis(grad_y, 1, -1) if last else grad_y)
    variables = [conv.kernel] + ([] if conv.bias is None else [conv.bias])
    if keras_backend() == "jax":
        import jax

        trainable = list(module.trainable_variables)
        positions = [next(i for i, v in enumerate(trainable) if v is want) for want in variables]
        fixed = [v.value for v in module.non_trainable_variables]

        def apply(x_in: Any, values: Any) -> Any:
            return module.stateless_call(values, fixed, x_in)[0]

        y, vjp = jax.vjp(apply, x_native, [v.value for v in trainable])
        grad_x, grad_values = vjp(g_native)
        grads = [to_numpy(grad_x)] + [to_numpy(grad_values[i]) for i in positions]
        y_np = to_numpy(y)
    else:
        import torch

        x_t = torch.from_numpy(x_native).requires_grad_(True)
        y_t = module(x_t)
        found = torch.autograd.grad(
            y_t, [x_t, *(v.value for v in variables)], torch.from_numpy(g_native)
        )
        grads = [to_numpy(g) for g in found]
        y_np = to_numpy(y_t)
    if last:
        y_np, grads[0] = np.moveaxis(y_np, -1, 1), np.moveaxis(grads[0], -1, 1)
    return y_np, grads[0], kernel_from_channels_last(grads[1]), grads[2] if len(grads) > 2 else None
