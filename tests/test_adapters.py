"""Framework layers in and out (``pc.from_module``, ``layer.to_module``) and ``pc.compare``, for
torch and Flax; Keras runs in its own interpreters (tests/test_adapters_keras.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from adapter_strategies import (
    EXPLAIN_PROBLEMS,
    FEW,
    Geometry,
    assert_module_call_computes_what_polyconv_computes,
    assert_same_function,
    assert_same_spec_and_weights,
    geometries,
    layers,
    pads,
    random_input,
)
from hypothesis import given
from hypothesis import strategies as st

import polyconv as pc

torch = pytest.importorskip("torch")
nnx = pytest.importorskip("flax.nnx")
jnp = pytest.importorskip("jax.numpy")


@st.composite
def torch_modules(draw: st.DrawFn) -> tuple[Any, Geometry]:
    g = draw(geometries(max_rank=3))
    options = ["valid", "int"] + (["same"] if set(g.stride) == {1} else [])
    kind = draw(st.sampled_from(options))
    padding = draw(st.integers(0, 2)) if kind == "int" else kind
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    cls = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[g.rank]
    torch.manual_seed(draw(st.integers(0, 100)))
    module = cls(
        g.in_channels,
        g.out_channels,
        g.kernel_size,
        stride=g.stride,
        padding=padding,
        dilation=g.dilation,
        groups=g.groups,
        bias=g.bias,
        padding_mode=mode,
    )
    return module, g


@st.composite
def flax_modules(draw: st.DrawFn) -> tuple[Any, Geometry]:
    g = draw(geometries())
    strings = ["SAME", "VALID", "CIRCULAR", "REFLECT"] + (["CAUSAL"] if g.rank == 1 else [])
    padding = draw(st.one_of(st.sampled_from(strings), st.just(None)))
    if padding is None:
        padding = pads(draw, g.rank)
        padding = (
            [tuple(p) if isinstance(p, tuple) else p for p in padding]
            if isinstance(padding, tuple)
            else padding
        )
    module = nnx.Conv(
        g.in_channels,
        g.out_channels,
        g.kernel_size,
        strides=g.stride,
        padding=padding,
        kernel_dilation=g.dilation,
        feature_group_count=g.groups,
        use_bias=g.bias,
        rngs=nnx.Rngs(draw(st.integers(0, 100))),
    )
    if g.bias:  # Flax starts the bias at zero: a random one checks that it is read
        module.bias.set_value(jnp.linspace(-1.0, 1.0, g.out_channels, dtype=jnp.float32))
    return module, g


@FEW
@given(torch_modules())
def test_from_torch_module_computes_what_the_module_computes(drawn: tuple[Any, Geometry]) -> None:
    module, g = drawn
    layer = pc.from_module(module)
    assert layer.backend.name == "torch"
    x = torch.from_numpy(random_input(g))
    with torch.no_grad():
        assert_same_function(module(x), layer(x), layer, x.numpy())


@FEW
@given(flax_modules())
def test_from_flax_module_takes_its_channels_last_input_and_computes_what_it_computes(
    drawn: tuple[Any, Geometry],
) -> None:
    module, g = drawn
    layer = pc.from_module(module)
    assert layer.backend.name == "jax"
    assert layer.data_format == "channels_last"
    x_first = random_input(g)
    x = jnp.asarray(np.moveaxis(x_first, 1, -1))
    assert_same_function(module(x), layer(x), layer, x_first)


@FEW
@given(layers("torch"))
def test_torch_round_trip_keeps_spec_and_weights(drawn: tuple[Any, Geometry]) -> None:
    layer, g = drawn
    back = pc.from_module(layer.to_module("torch"))
    assert_same_spec_and_weights(layer, back, g.x_shape)


@FEW
@given(layers("jax"))
def test_flax_round_trip_keeps_spec_and_weights(drawn: tuple[Any, Geometry]) -> None:
    layer, g = drawn
    back = pc.from_module(layer.to_module("flax"))
    assert_same_spec_and_weights(layer, back, g.x_shape)


# torch's own note that "same" with an even kernel pads a copy of the input: expected here.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@FEW
@given(layers("numpy"), st.sampled_from(["torch", "flax"]))
def test_to_module_computes_what_the_layer_computes_forward_and_backward(
    drawn: tuple[Any, Geometry], framework: str
) -> None:
    layer, g = drawn
    report = pc.compare(layer, layer.to_module(framework), g.x_shape)
    assert report.ok, str(report)
    assert report.differences == ()


def test_to_module_pads_first_where_torch_cannot_and_says_so() -> None:
    layer = pc.Conv2D(3, in_channels=2, out_channels=2, stride=2, padding="same")
    module = layer.to_module("torch")
    assert type(module).__name__ == "PaddedConv"
    assert "pads first" in repr(module) and "pads its input first" in type(module).__doc__
    assert isinstance(module.conv, torch.nn.Conv2d)
    assert isinstance(pc.Conv2D(3, padding=1).to_module("torch"), torch.nn.Conv2d)


def test_to_module_pads_first_where_flax_cannot_and_says_so() -> None:
    module = pc.Conv1D(3, padding="same", padding_mode="replicate").to_module("flax")
    assert type(module).__name__ == "PaddedConv"
    assert "pads its channels-last input first" in type(module).__doc__
    assert isinstance(module.conv, nnx.Conv)
    assert isinstance(
        pc.Conv1D(3, padding="same", padding_mode="circular").to_module("flax"), nnx.Conv
    )


def _ported_pair(padding: Any) -> tuple[Any, Any]:
    """A ResNet-style stride-2 torch conv and an nnx.Conv with its weights copied (transposed)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    port = nnx.Conv(3, 4, (3, 3), strides=2, padding=padding, rngs=nnx.Rngs(0))
    port.kernel.set_value(jnp.asarray(conv.weight.detach().numpy().transpose(2, 3, 1, 0)))
    port.bias.set_value(jnp.asarray(conv.bias.detach().numpy()))
    return conv, port


def test_compare_flags_flax_same_at_stride_2_against_torch_padding_1() -> None:
    conv, port = _ported_pair("SAME")
    report = pc.compare(conv, port, (2, 3, 8, 8))
    assert not report.ok
    assert report.sides[0].ok and not report.sides[1].ok
    (difference,) = report.differences
    assert difference.startswith("padding: torch padding=(1, 1) pads (1, 1)")
    assert "flax padding='SAME' at stride 2 pads (0, 1)" in difference
    assert "FAIL" in str(report)


def test_compare_passes_the_corrected_port() -> None:
    conv, port = _ported_pair(((1, 1), (1, 1)))
    report = pc.compare(conv, port, (2, 3, 8, 8))
    assert report.ok, str(report)
    assert report.differences == ()


def test_compare_passes_a_channels_last_flax_layer_with_transposed_torch_weights() -> None:
    torch.manual_seed(1)
    conv = torch.nn.Conv1d(4, 6, 3, dilation=2, groups=2, padding=2, padding_mode="circular")
    port = nnx.Conv(
        4, 6, (3,), kernel_dilation=2, feature_group_count=2, padding="CIRCULAR", rngs=nnx.Rngs(0)
    )
    port.kernel.set_value(jnp.asarray(conv.weight.detach().numpy().transpose(2, 1, 0)))
    port.bias.set_value(jnp.asarray(conv.bias.detach().numpy()))
    report = pc.compare(port, conv, (3, 4, 9))
    assert report.ok, str(report)


def test_compare_names_a_kernel_copied_without_its_transpose() -> None:
    conv, port = _ported_pair(((1, 1), (1, 1)))
    port.kernel.set_value(jnp.asarray(conv.weight.detach().numpy().reshape(3, 3, 3, 4)))
    report = pc.compare(conv, port, (1, 3, 8, 8))
    assert not report.ok
    assert any("without its transpose" in d for d in report.differences)


def test_flax_input_dilation_on_a_forward_conv_is_refused_by_name() -> None:
    module = nnx.Conv(1, 1, (3,), input_dilation=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="input_dilation"):
        pc.from_module(module)


def test_from_module_refuses_what_is_not_a_convolution_by_type() -> None:
    with pytest.raises(TypeError, match=r"got torch\.nn\.modules\.linear\.Linear"):
        pc.from_module(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("name", EXPLAIN_PROBLEMS)
def test_explained_torch_module_computes_what_polyconv_computes(name: str) -> None:
    assert_module_call_computes_what_polyconv_computes(name, "torch", torch.from_numpy)


@pytest.mark.parametrize("name", EXPLAIN_PROBLEMS)
def test_explained_flax_module_computes_what_polyconv_computes(name: str) -> None:
    assert_module_call_computes_what_polyconv_computes(name, "flax", jnp.asarray)


def test_explain_prints_the_module_calls_and_the_kernel_transpose() -> None:
    text = pc.explain((2, 3, 8, 8), (4, 3, 3, 3), stride=2, padding="same")
    assert "torch.nn.Conv2d(3, 4, kernel_size=3, stride=2, bias=False)" in text
    assert "nnx.Conv(3, 4, kernel_size=(3, 3), strides=(2, 2), padding='SAME'" in text
    assert 'keras.layers.Conv2D(4, kernel_size=(3, 3), strides=(2, 2), padding="same"' in text
    assert (
        "set_value(jnp.transpose(w, (2, 3, 1, 0)))  # (C_out, C_in // groups, kH, kW) -> "
        "(kH, kW, C_in // groups, C_out)" in text
    )


@st.composite
def torch_transposed_modules(draw: st.DrawFn) -> tuple[Any, Geometry]:
    g = draw(geometries())
    output_padding = tuple(
        draw(st.integers(0, max(s, d) - 1)) for s, d in zip(g.stride, g.dilation, strict=True)
    )
    cls = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d}[g.rank]
    torch.manual_seed(draw(st.integers(0, 100)))
    module = cls(
        g.in_channels,
        g.out_channels,
        g.kernel_size,
        stride=g.stride,
        padding=draw(st.integers(0, 1)),
        output_padding=output_padding,
        dilation=g.dilation,
        groups=g.groups,
        bias=g.bias,
    )
    return module, g


@FEW
@given(torch_transposed_modules())
def test_from_torch_transposed_module_computes_what_it_computes_forward_and_backward(
    drawn: tuple[Any, Geometry],
) -> None:
    module, g = drawn
    layer = pc.from_module(module)
    assert isinstance(layer, pc.ConvTranspose1D | pc.ConvTranspose2D)
    report = pc.compare(module, layer, g.x_shape)
    assert report.ok, str(report)
    assert report.differences == ()
    back = layer.to_module("torch")
    assert type(back) is type(module) and back.output_padding == module.output_padding
    assert_same_spec_and_weights(module, back, g.x_shape)


@FEW
@given(layers("numpy", transpose=True))
def test_torch_transposed_module_crops_after_where_torch_cannot_pad_so(
    drawn: tuple[Any, Geometry],
) -> None:
    layer, g = drawn
    if layer.padding_mode != "zeros":  # torch's transposed layers pad with zeros only
        with pytest.raises(ValueError, match="pads with zeros only"):
            layer.to_module("torch")
        return
    module = layer.to_module("torch")
    report = pc.compare(layer, module, g.x_shape)
    assert report.ok, str(report)
    assert_same_spec_and_weights(layer, pc.from_module(module), g.x_shape)


def test_cropped_transposed_module_says_it_crops_after() -> None:
    module = pc.ConvTranspose1D(3, stride=2, padding=((0, 1),)).to_module("torch")
    assert type(module).__name__ == "CroppedConvTranspose"
    assert "crops after" in repr(module)
    assert isinstance(
        pc.ConvTranspose1D(3, stride=2, padding=1).to_module("torch"), torch.nn.ConvTranspose1d
    )


@st.composite
def flax_transposed_modules(draw: st.DrawFn) -> tuple[Any, Geometry]:
    g = draw(geometries())
    g = Geometry(**{**g.__dict__, "groups": 1})  # nnx.ConvTranspose has no groups
    if draw(st.booleans()):
        padding: Any = draw(st.sampled_from(["SAME", "VALID"]))
    else:  # lax.conv_transpose's pads of the dilated input that a transpose can have
        padding = [
            (draw(st.integers(0, e - 1)), draw(st.integers(0, e - 2 + max(s, d))))
            for e, s, d in zip(g.extents, g.stride, g.dilation, strict=True)
        ]
    module = nnx.ConvTranspose(
        g.in_channels,
        g.out_channels,
        g.kernel_size,
        strides=g.stride,
        padding=padding,
        kernel_dilation=g.dilation,
        use_bias=g.bias,
        transpose_kernel=draw(st.booleans()),
        rngs=nnx.Rngs(draw(st.integers(0, 100))),
    )
    if g.bias:
        module.bias.set_value(jnp.linspace(-1.0, 1.0, g.out_channels, dtype=jnp.float32))
    return module, g


@FEW
@given(flax_transposed_modules())
def test_from_flax_transposed_module_computes_what_it_computes_and_round_trips(
    drawn: tuple[Any, Geometry],
) -> None:
    module, g = drawn
    layer = pc.from_module(module)
    assert layer.data_format == "channels_last"
    report = pc.compare(module, layer, g.x_shape)
    assert report.ok, str(report)
    assert report.differences == ()
    assert_same_spec_and_weights(module, pc.from_module(layer.to_module("flax")), g.x_shape)


CROPPED_TRANSPOSES = [
    (pc.ConvTranspose2D, {"kernel_size": 3, "stride": 2, "padding": "same"}, (2, 3, 5, 4)),
    (
        pc.ConvTranspose2D,
        {"kernel_size": (3, 2), "stride": (3, 2), "padding": "same", "output_padding": (1, 0)},
        (1, 2, 4, 3),
    ),
    (
        pc.ConvTranspose1D,
        {
            "kernel_size": 3,
            "stride": 2,
            "padding": "same",
            "dilation": 2,
            "output_padding": 1,
            "bias": False,
        },
        (2, 3, 5),
    ),
]


@pytest.mark.parametrize(("cls", "options", "x_shape"), CROPPED_TRANSPOSES)
def test_flax_writes_a_cropping_module_where_conv_transpose_cannot_pad_and_reads_it_back(
    cls: Any, options: dict[str, Any], x_shape: tuple[int, ...]
) -> None:
    layer = cls(in_channels=x_shape[1], out_channels=2, seed=3, **options)
    module = layer.to_module("flax")
    assert type(module).__name__ == "CroppedConvTranspose"
    assert "cropped" in type(module).__doc__
    report = pc.compare(layer, module, x_shape)
    assert report.ok, str(report)
    assert_same_spec_and_weights(layer, pc.from_module(module), x_shape)


@pytest.mark.parametrize(
    ("options", "named"), [({"groups": 2}, "groups=2"), ({"padding_mode": "reflect"}, "reflect")]
)
def test_flax_refuses_transposed_groups_and_padding_modes_by_name(
    options: dict[str, Any], named: str
) -> None:
    layer = pc.ConvTranspose1D(3, in_channels=2, out_channels=2, padding=1, **options)
    with pytest.raises(ValueError, match=named):
        layer.to_module("flax")


def test_compare_flags_a_naive_flax_port_of_a_torch_transposed_conv_and_passes_the_written_one() -> (
    None
):
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)
    naive = nnx.ConvTranspose(4, 6, (3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(0))
    naive.kernel.set_value(jnp.asarray(conv.weight.detach().numpy().transpose(2, 3, 0, 1)))
    naive.bias.set_value(jnp.asarray(conv.bias.detach().numpy()))
    report = pc.compare(conv, naive, (2, 4, 5, 5))
    assert not report.ok
    assert any("without its transpose" in d for d in report.differences)  # not flipped
    written = pc.from_module(conv).to_module("flax")
    assert pc.compare(conv, written, (2, 4, 5, 5)).ok


def test_flax_layers_in_and_out_with_jax_64_bit_mode_off_and_warnings_as_errors() -> None:
    """This session runs JAX with x64 on; users mostly run with it off: a fresh interpreter."""
    import subprocess
    import sys

    code = """
import warnings
warnings.simplefilter("error")
import jax
assert not jax.config.jax_enable_x64
from flax import nnx
import polyconv as pc

conv = nnx.Conv(3, 4, (3, 3), strides=2, padding="SAME", feature_group_count=1, rngs=nnx.Rngs(0))
layer = pc.from_module(conv)
port = pc.Conv2D(3, in_channels=3, out_channels=4, stride=2, padding="same",
                 padding_mode="reflect").to_module("flax")
assert pc.compare(layer, conv, (2, 3, 8, 8)).ok
assert pc.compare(pc.from_module(port), port, (2, 3, 8, 8)).ok
t = nnx.ConvTranspose(3, 2, (3,), strides=2, padding="SAME", rngs=nnx.Rngs(0))
assert pc.compare(t, pc.from_module(t), (1, 3, 5)).ok
print("ok")
"""
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"


def test_compare_command_reads_layer_files_and_import_paths_and_exits_by_the_verdict(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from polyconv.cli import main

    same = pc.Conv2D(3, in_channels=2, out_channels=2, stride=2, padding=1, seed=1)
    other = pc.Conv2D(3, in_channels=2, out_channels=2, stride=2, padding="same", seed=1)
    same.save(tmp_path / "a.npz")
    other.save(tmp_path / "b.npz")
    a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    assert main(["compare", a, a, "--input", "1,2,8,8"]) == 0
    assert "ok: both compute the same function" in capsys.readouterr().out
    assert main(["compare", a, b, "--input", "1,2,8,8"]) == 1
    assert "padding: polyconv padding=((1, 1), (1, 1))" in capsys.readouterr().out
    assert main(["compare", "torch.nn:Identity", a, "--input", "1,2,8,8"]) == 2
    assert "expected a polyconv layer" in capsys.readouterr().err
