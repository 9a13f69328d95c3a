"""The Keras adapter's properties, run by tests/test_adapters_keras.py in a fresh interpreter per
Keras backend (``$KERAS_BACKEND`` must be set before keras is first imported, so it cannot be
switched inside the test session). Exits non-zero, with the failure, when a property fails."""

from __future__ import annotations

import os
import sys
from typing import Any

import keras
import numpy as np
from adapter_strategies import (
    EXPLAIN_PROBLEMS,
    EXPLAIN_TRANSPOSED,
    FEW,
    Geometry,
    assert_module_call_computes_what_polyconv_computes,
    assert_same_function,
    assert_same_spec_and_weights,
    assert_transposed_module_call_computes_what_polyconv_computes,
    geometries,
    layers,
    random_input,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import polyconv as pc
from polyconv import testing
from polyconv.adapters import keras_custom_objects

# Keras builds every layer eagerly and slowly: fewer examples than the other adapters' tests.
KERAS_FEW = settings(FEW, max_examples=3)


@st.composite
def keras_layers(draw: st.DrawFn) -> tuple[Any, Geometry]:
    g = draw(geometries())
    if max(g.stride) > 1 and max(g.dilation) > 1:  # Keras refuses the two together
        g = Geometry(**{**g.__dict__, "dilation": (1,) * g.rank})
    data_format = draw(st.sampled_from(["channels_first", "channels_last"]))
    paddings = ["valid", "same"] + (["causal"] if g.rank == 1 else [])
    layer = getattr(keras.layers, f"Conv{g.rank}D")(
        g.out_channels,
        g.kernel_size,
        strides=g.stride,
        padding=draw(st.sampled_from(paddings)),
        data_format=data_format,
        dilation_rate=g.dilation,
        groups=g.groups,
        use_bias=g.bias,
        # Seeded: an unseeded initializer draws from Python's random, which Hypothesis forbids.
        kernel_initializer=keras.initializers.GlorotUniform(seed=draw(st.integers(0, 100))),
    )
    spatial = (None,) * g.rank
    layer.build(
        (None, *spatial, g.in_channels)
        if data_format == "channels_last"
        else (None, g.in_channels, *spatial)
    )
    if g.bias:
        layer.bias.assign(np.linspace(-1.0, 1.0, g.out_channels, dtype=np.float32))
    return layer, g


@KERAS_FEW
@given(keras_layers())
def from_keras_layer_computes_what_the_layer_computes(drawn: tuple[Any, Geometry]) -> None:
    module, g = drawn
    layer = pc.from_module(module)
    assert layer.backend.name == os.environ["KERAS_BACKEND"]
    x_first = random_input(g)
    last = module.data_format == "channels_last"
    x = layer.backend.convert(np.moveaxis(x_first, 1, -1) if last else x_first, "float32", None)
    assert_same_function(module(x), layer(x), layer, x_first)


@KERAS_FEW
@given(layers("numpy"))
def keras_round_trip_keeps_spec_and_weights_and_computes_the_same(
    drawn: tuple[Any, Geometry],
) -> None:
    layer, g = drawn
    if max(g.stride) > 1 and max(g.dilation) > 1:
        return  # Keras refuses it: tested below
    module = layer.to_module("keras")
    assert_same_spec_and_weights(layer, pc.from_module(module), g.x_shape)
    report = pc.compare(layer, module, g.x_shape)
    assert report.ok, str(report)


@st.composite
def keras_transposed_layers(draw: st.DrawFn) -> tuple[Any, Geometry]:
    g = draw(geometries())
    if max(g.stride) > 1 and max(g.dilation) > 1:
        g = Geometry(**{**g.__dict__, "dilation": (1,) * g.rank})
    g = Geometry(**{**g.__dict__, "groups": 1})
    data_format = draw(st.sampled_from(["channels_first", "channels_last"]))
    output_padding = draw(
        st.one_of(st.none(), st.tuples(*[st.integers(0, s - 1) for s in g.stride]))
    )
    layer = getattr(keras.layers, f"Conv{g.rank}DTranspose")(
        g.out_channels,
        g.kernel_size,
        strides=g.stride,
        padding=draw(st.sampled_from(["valid", "same"])),
        output_padding=output_padding,
        data_format=data_format,
        dilation_rate=g.dilation,
        use_bias=g.bias,
        kernel_initializer=keras.initializers.GlorotUniform(seed=draw(st.integers(0, 100))),
    )
    spatial = (None,) * g.rank
    layer.build(
        (None, *spatial, g.in_channels)
        if data_format == "channels_last"
        else (None, g.in_channels, *spatial)
    )
    if g.bias:
        layer.bias.assign(np.linspace(-1.0, 1.0, g.out_channels, dtype=np.float32))
    return layer, g


@KERAS_FEW
@given(keras_transposed_layers())
def from_keras_transposed_layer_computes_what_it_computes_and_round_trips(
    drawn: tuple[Any, Geometry],
) -> None:
    module, g = drawn
    layer = pc.from_module(module)
    report = pc.compare(module, layer, g.x_shape)
    assert report.ok, str(report)
    assert report.differences == ()
    assert_same_spec_and_weights(module, pc.from_module(layer.to_module("keras")), g.x_shape)


def keras_refuses_stride_with_dilation_by_name() -> None:
    layer = pc.Conv1D(3, stride=2, dilation=2)
    try:
        layer.to_module("keras")
    except ValueError as error:
        assert "dilation_rate" in str(error) and "strides" in str(error)
    else:
        raise AssertionError("to_module('keras') accepted stride 2 with dilation 2")


def compare_flags_keras_same_at_stride_2_against_torch_padding_1() -> None:
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    port = keras.layers.Conv2D(4, 3, strides=2, padding="same", data_format="channels_first")
    port.build((None, 3, 8, 8))
    port.kernel.assign(conv.weight.detach().numpy().transpose(2, 3, 1, 0))
    port.bias.assign(conv.bias.detach().numpy())
    report = pc.compare(conv, port, (2, 3, 8, 8))
    assert not report.ok
    assert "keras padding='same' at stride 2 pads (0, 1)" in report.differences[0]
    corrected = pc.from_module(conv).to_module("keras")
    assert pc.compare(conv, corrected, (2, 3, 8, 8)).ok


def explained_keras_module_computes_what_polyconv_computes() -> None:
    for name in EXPLAIN_PROBLEMS:
        assert_module_call_computes_what_polyconv_computes(
            name, "keras", keras.ops.convert_to_tensor
        )


def keras_writes_a_cropping_layer_where_its_transpose_rules_cannot_pad_and_reads_it_back() -> None:
    import torch

    torch.manual_seed(0)
    ported = torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
    specs = [
        (pc.from_module(ported), (2, 3, 5, 4)),
        (pc.ConvTranspose1D(2, in_channels=3, out_channels=2, stride=3, padding="same",
                            output_padding=2, data_format="channels_last"), (2, 3, 5)),
    ]  # fmt: skip
    for layer, x_shape in specs:
        module = layer.to_module("keras")
        assert type(module).__name__ == "CroppedConvTranspose"
        assert "cropped" in str(type(module).__doc__)
        report = pc.compare(layer, module, x_shape)
        assert report.ok, str(report)
        assert_same_spec_and_weights(layer, pc.from_module(module), x_shape)
    assert pc.compare(ported, pc.from_module(ported).to_module("keras"), (2, 3, 5, 4)).ok


def keras_model_holding_polyconv_wrappers_saves_and_loads() -> None:
    import tempfile
    import warnings

    wrappers = [
        (pc.ConvTranspose2D(3, in_channels=3, out_channels=2, stride=2, padding=1,
                            output_padding=1, seed=1), (3, 5, 4)),
        (pc.Conv1D(3, in_channels=2, out_channels=2, stride=2, padding="same",
                   padding_mode="reflect", seed=2), (2, 7)),
    ]  # fmt: skip
    for layer, shape in wrappers:
        module = layer.to_module("keras")
        model = keras.Sequential([keras.Input(shape), module])
        path = os.path.join(tempfile.mkdtemp(), "model.keras")
        with warnings.catch_warnings():
            # Keras' own saving calls np.array on an object without NumPy 2's copy keyword.
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            model.save(path)
        # As in a fresh interpreter: the wrappers not registered, passed as custom objects.
        registered = keras.saving.get_custom_objects()
        ours = {name: registered.pop(name) for name in list(registered) if "polyconv>" in name}
        try:
            loaded = keras.saving.load_model(path, custom_objects=keras_custom_objects()).layers[0]
        finally:
            registered.update(ours)
        assert type(loaded).__name__ == type(module).__name__
        assert_same_spec_and_weights(module, pc.from_module(loaded), (2, *shape))
        report = pc.compare(module, loaded, (2, *shape))
        assert report.ok and report.differences == (), str(report)


def explained_keras_transposed_module_computes_what_polyconv_computes() -> None:
    for name in EXPLAIN_TRANSPOSED:
        code = assert_transposed_module_call_computes_what_polyconv_computes(
            name, "keras", keras.ops.convert_to_tensor
        )
        assert "keras.layers.Conv" in code and "DTranspose(" in code
        cropped = name != "same-stride-2-unbatched"
        assert ("full = conv(" in code) == cropped, code


if __name__ == "__main__":
    testing.load_profile()
    checks = [
        from_keras_layer_computes_what_the_layer_computes,
        keras_round_trip_keeps_spec_and_weights_and_computes_the_same,
        keras_refuses_stride_with_dilation_by_name,
        compare_flags_keras_same_at_stride_2_against_torch_padding_1,
        explained_keras_module_computes_what_polyconv_computes,
        from_keras_transposed_layer_computes_what_it_computes_and_round_trips,
        keras_writes_a_cropping_layer_where_its_transpose_rules_cannot_pad_and_reads_it_back,
        keras_model_holding_polyconv_wrappers_saves_and_loads,
        explained_keras_transposed_module_computes_what_polyconv_computes,
    ]
    for check in checks:
        check()
        print(f"ok {check.__name__}")
    sys.exit(0)
