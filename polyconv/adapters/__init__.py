"""Framework layers in and out: read a torch, Flax or Keras convolution into a polyconv layer,
write a polyconv layer as one (:func:`from_module`, :func:`to_module`).

One module per framework (``_torch``, ``_flax``, ``_keras``) reads a layer into a
:class:`~polyconv.adapters._description.ConvDescription`, builds a native layer from one, and runs
one forward and backward (for :func:`polyconv.compare`). Each imports its framework only when a
layer of that framework is passed or asked for: ``import polyconv`` imports none.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from ..layers import Conv1D, Conv2D, Conv3D, _ConvND
from ..transposed_layers import ConvTranspose1D, ConvTranspose2D, ConvTranspose3D, _ConvTransposeND
from ._description import ConvDescription

__all__ = [
    "FRAMEWORKS",
    "ConvDescription",
    "describe",
    "from_module",
    "keras_custom_objects",
    "to_module",
]

FRAMEWORKS: tuple[str, ...] = ("torch", "flax", "keras")
_LAYERS: dict[tuple[bool, int], type[_ConvND]] = {
    (False, 1): Conv1D,
    (False, 2): Conv2D,
    (False, 3): Conv3D,
    (True, 1): ConvTranspose1D,
    (True, 2): ConvTranspose2D,
    (True, 3): ConvTranspose3D,
}


def _adapter(framework: str) -> ModuleType:
    return importlib.import_module(f"{__name__}._{framework}")


def framework_of(module: object) -> str | None:
    """The framework a module's class comes from, read from its class's bases (nothing is
    imported): ``"torch"``, ``"flax"``, ``"keras"``, or ``None``."""
    for cls in type(module).__mro__:
        root = cls.__module__.split(".")[0]
        if root in FRAMEWORKS:
            return root
    return None


def describe(module: object) -> ConvDescription:
    """The :class:`ConvDescription` of a polyconv layer or of a torch, Flax or Keras convolution;
    a TypeError for anything else, a ValueError naming a field polyconv cannot express."""
    if isinstance(module, _ConvND):
        return _describe_layer(module)
    framework = framework_of(module)
    if framework is not None:
        adapter = _adapter(framework)
        if adapter.owns(module):
            description: ConvDescription = adapter.describe(module)
            return description
    raise TypeError(
        "expected a polyconv layer, torch.nn.Conv1d/2d/3d or ConvTranspose1d/2d/3d, "
        "flax.nnx.Conv or ConvTranspose, or keras.layers.Conv1D/2D/3D or Conv1D/2D/3DTranspose; "
        f"got {type(module).__module__}.{type(module).__qualname__}"
    )


def _describe_layer(layer: _ConvND) -> ConvDescription:
    backend = layer.backend
    bias = None if layer.bias is None else np.asarray(backend.to_numpy(layer.bias))
    return ConvDescription(
        framework="polyconv",
        backend=backend.name,
        rank=layer.rank,
        in_channels=layer.in_channels,
        out_channels=layer.out_channels,
        kernel_size=layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
        padding_mode=layer.padding_mode,
        data_format=layer.data_format,
        weight=np.asarray(backend.to_numpy(layer.params.weight)),
        bias=bias,
        native_padding=repr(layer.padding),
        transpose=isinstance(layer, _ConvTransposeND),
        output_padding=getattr(layer, "output_padding", None),
    )


def layer_from(description: ConvDescription) -> _ConvND:
    """The polyconv layer of ``description``, on its backend, with its weights."""
    options: dict[str, Any] = {}
    if description.transpose:
        options["output_padding"] = description.output_padding
    layer = _LAYERS[description.transpose, description.rank](
        description.kernel_size,
        in_channels=description.in_channels,
        out_channels=description.out_channels,
        stride=description.stride,
        padding=description.padding,
        dilation=description.dilation,
        groups=description.groups,
        padding_mode=description.padding_mode,
        bias=description.bias is not None,
        backend=description.backend,
        dtype=description.dtype,
        data_format=description.data_format,
        **options,
    )
    layer.weight = description.weight
    if description.bias is not None:
        layer.bias = description.bias
    return layer


def from_module(module: object) -> _ConvND:
    """The polyconv layer computing the same function as ``module``, with its weights in
    polyconv's layout ``(C_out, C_in // groups, *k)``.

    ``module`` is a ``torch.nn.Conv1d/2d/3d`` (every ``padding``, ``padding_mode``,
    ``dilation``, ``groups``) or ``torch.nn.ConvTranspose1d/2d/3d`` (``output_padding``), a
    ``flax.nnx.Conv`` (padding "SAME", "VALID", "CIRCULAR", "REFLECT", "CAUSAL", ints and pairs;
    ``kernel_dilation``, ``feature_group_count``) or ``flax.nnx.ConvTranspose`` ("SAME",
    "VALID", ints and pairs; ``transpose_kernel`` either way), a built Keras 3 ``Conv1D/2D/3D``
    or ``Conv1D/2D/3DTranspose`` on the JAX or torch backend (``data_format``, ``padding``,
    ``dilation_rate``, ``groups``, ``output_padding``), or a module written by
    :func:`to_module`. A transposed module gives a ``pc.ConvTranspose*D``. The layer runs on
    the backend of the module's framework (torch: "torch", Flax: "jax", Keras: its backend) and
    keeps the module's data layout, so it takes the very arrays the module takes. A field
    polyconv cannot express (Flax's ``input_dilation`` on a forward conv, a ``mask``) is a
    ValueError naming it.
    """
    return layer_from(describe(module))


def to_module(layer: object, framework: str) -> Any:
    """A ``framework`` layer (``"torch"``, ``"flax"`` or ``"keras"``) with ``layer``'s weights,
    computing the same function; data in that framework's layout (torch: channels-first, Flax:
    channels-last, Keras: the layer's ``data_format``).

    Transposed layers (``pc.ConvTranspose*D``) become ``torch.nn.ConvTranspose*d``,
    ``nnx.ConvTranspose`` (``transpose_kernel=True``) or Keras ``Conv*DTranspose``, or, where
    their padding cannot say it, a ``CroppedConvTranspose`` of that framework (the native
    transpose run without padding, its output cut after); a padding mode other than zeros, or
    groups in Flax or Keras, are a ValueError saying which.

    Where the native layer cannot express the padding (torch has no "same" at a stride above 1
    nor asymmetric pads, Flax and Keras no replicate or symmetric mode...), the result is a small
    native module, ``PaddedConv``, that pads first and applies the native convolution; its
    docstring and repr say so. :func:`from_module` reads it back. torch's own reflect and
    circular padding (used where they express the spec) refuse pads wider than the input, where
    polyconv's pad any width as ``np.pad`` does. The Keras wrappers save with their model;
    to load one in a fresh interpreter pass ``custom_objects=keras_custom_objects()``.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    description = describe(layer)
    if framework == "keras":
        return _adapter("keras").build(description)
    if framework == "flax" and description.data_format != "channels_last":
        description = _with_data_format(description, "channels_last")
    if framework == "torch" and description.data_format != "channels_first":
        description = _with_data_format(description, "channels_first")
    return _adapter(framework).build(description)


def keras_custom_objects() -> dict[str, type]:
    """polyconv's Keras wrappers by their registered names, for
    ``keras.saving.load_model(path, custom_objects=keras_custom_objects())`` in an interpreter
    that has not made them yet."""
    keras_adapter = _adapter("keras")
    classes = (keras_adapter.padded_conv_class(), keras_adapter.cropped_conv_transpose_class())
    return {f"polyconv>{cls.__name__}": cls for cls in classes}


def _with_data_format(description: ConvDescription, data_format: str) -> ConvDescription:
    from dataclasses import replace

    return replace(description, data_format=data_format)
