"""Data and kernel layouts: channels last is channels first read through a permutation, forward
and backward, on every operation and backend; layers keep their layouts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import BACKEND_NAMES, PAIR_C, native
from hypothesis import given
from hypothesis import strategies as st

import polyconv as pc
from polyconv._spec.layouts import data_to_first, data_to_last, kernel_to_first, kernel_to_last
from polyconv.backends import get
from polyconv.testing import (
    assert_within,
    error_bound,
    problems,
    to_numpy,
    transpose_problems,
    unavailable_reason,
    values,
    vjp_error_bounds,
)

USABLE = [get(name) for name in BACKEND_NAMES if unavailable_reason(name) is None]
FORMATS = ("channels_first", "channels_last")


def _data_last(a: np.ndarray, batched: bool) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(data_to_last(a.ndim, batched)))


def _data_first(a: np.ndarray, batched: bool) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(data_to_first(a.ndim, batched)))


def _kernel_last(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(kernel_to_last(w.ndim)))


def _layouts(data: st.DataObject, batched: bool) -> tuple[str, str, Any, Any, Any]:
    """A drawn pair of formats, with the functions that put data and kernels in them and read
    data back channels first."""
    data_format = data.draw(st.sampled_from(FORMATS), label="data_format")
    kernel_format = data.draw(st.sampled_from(FORMATS), label="kernel_format")
    last = data_format == "channels_last"
    to_data = (lambda a: _data_last(a, batched)) if last else (lambda a: a)
    from_data = (lambda a: _data_first(a, batched)) if last else (lambda a: a)
    to_kernel = _kernel_last if kernel_format == "channels_last" else (lambda w: w)
    return data_format, kernel_format, to_data, from_data, to_kernel


@pytest.mark.jax_x64  # compared in float64 on every backend
@given(data=st.data())
def test_channels_last_correlation_is_the_permuted_channels_first_one(data: st.DataObject) -> None:
    backend = data.draw(st.sampled_from(USABLE), label="backend")
    p = data.draw(problems(dtypes=["float64"]), label="problem")
    operation = data.draw(st.sampled_from([pc.correlate, pc.convolve]), label="operation")
    batched = p.spec.batched
    data_format, kernel_format, to_data, from_data, to_kernel = _layouts(data, batched)
    x, w, b = (native(backend, a, "float64") for a in (to_data(p.x), to_kernel(p.w), p.bias))
    y = operation(
        x,
        w,
        b,
        backend=backend.name,
        data_format=data_format,
        kernel_format=kernel_format,
        **p.spec_kwargs,
    )
    expected = operation(p.x, p.w, p.bias, **p.spec_kwargs)
    w_for_bound = p.w if operation is pc.correlate else np.flip(p.w, tuple(range(2, p.w.ndim)))
    bound = error_bound(p.x, w_for_bound, p.bias, "float64", p.spec_kwargs, c=PAIR_C)
    assert_within(from_data(to_numpy(y)), expected, bound)
    shape = pc.output_shape(
        to_data(p.x).shape,
        to_kernel(p.w).shape,
        data_format=data_format,
        kernel_format=kernel_format,
        **p.spec_kwargs,
    )
    assert shape == tuple(y.shape)


@pytest.mark.jax_x64  # compared in float64 on every backend
@given(data=st.data())
def test_channels_last_gradients_are_the_permuted_channels_first_ones(
    data: st.DataObject,
) -> None:
    backend = data.draw(st.sampled_from(USABLE), label="backend")
    p = data.draw(problems(dtypes=["float64"], with_grad_y=True), label="problem")
    batched = p.spec.batched
    data_format, kernel_format, to_data, from_data, to_kernel = _layouts(data, batched)
    arrays = (to_data(p.x), to_kernel(p.w), p.bias, to_data(p.grad_y))
    grads = pc.correlate_vjp(
        *(native(backend, a, "float64") for a in arrays),
        backend=backend.name,
        data_format=data_format,
        kernel_format=kernel_format,
        **p.spec_kwargs,
    )
    grad_x, grad_w, grad_b = (None if g is None else to_numpy(g) for g in grads)
    expected = p.reference_vjp()
    bounds = vjp_error_bounds(p.x, p.w, p.bias, p.grad_y, "float64", p.spec_kwargs, c=PAIR_C)
    assert_within(from_data(grad_x), expected[0], bounds[0], what="grad_x")
    kernel_first = (
        grad_w
        if kernel_format == "channels_first"
        else grad_w.transpose(kernel_to_first(grad_w.ndim))
    )
    assert_within(kernel_first, expected[1], bounds[1], what="grad_w")
    assert (grad_b is None) == (expected[2] is None)


@pytest.mark.jax_x64  # compared in float64 on every backend
@given(data=st.data())
def test_channels_last_transpose_is_the_permuted_channels_first_one(data: st.DataObject) -> None:
    backend = data.draw(st.sampled_from(USABLE), label="backend")
    p = data.draw(transpose_problems(), label="problem")
    batched = p.y.ndim == p.w.ndim
    data_format, kernel_format, to_data, from_data, to_kernel = _layouts(data, batched)
    y = native(backend, to_data(p.y), "float64")
    w = native(backend, to_kernel(p.w), "float64")
    options = dict(
        backend=backend.name, data_format=data_format, kernel_format=kernel_format, **p.kwargs
    )
    out = pc.correlate_transpose(y, w, **options)
    expected = pc.correlate_transpose(p.y, p.w, **p.kwargs)
    np.testing.assert_allclose(from_data(to_numpy(out)), expected, rtol=1e-10, atol=1e-10)
    grad_out = data.draw(values(expected.shape, "float64"), label="grad_out")
    grads = pc.correlate_transpose_vjp(
        y, w, None, native(backend, to_data(grad_out), "float64"), **options
    )
    want = pc.correlate_transpose_vjp(p.y, p.w, None, grad_out, **p.kwargs)
    np.testing.assert_allclose(from_data(to_numpy(grads[0])), want[0], rtol=1e-10, atol=1e-10)
    grad_w = to_numpy(grads[1])
    if kernel_format == "channels_last":
        grad_w = grad_w.transpose(kernel_to_first(grad_w.ndim))
    np.testing.assert_allclose(grad_w, want[1], rtol=1e-10, atol=1e-10)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["data_format", "kernel_format"])
def test_an_unknown_format_is_a_value_error_listing_the_accepted_ones(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be one of \('channels_first', "):
        pc.correlate(np.ones((1, 2, 5)), np.ones((1, 2, 3)), **{name: "NWC"})


def test_a_format_alias_gets_a_suggestion() -> None:
    with pytest.raises(ValueError, match="did you mean 'channels_last'"):
        pc.correlate(np.ones((1, 5, 2)), np.ones((3, 2, 1)), data_format="NHWC")


def test_a_kernel_in_the_wrong_layout_names_both_shapes_and_the_formats() -> None:
    x = np.ones((1, 8, 8, 3))  # channels last
    flax_kernel = np.ones((3, 3, 3, 16))  # (kH, kW, C_in, C_out)
    with pytest.raises(ValueError) as error:
        pc.correlate(
            x, flax_kernel[:, :, :2], data_format="channels_last", kernel_format="channels_last"
        )
    message = str(error.value)
    assert "(1, 8, 8, 3)" in message and "(3, 3, 2, 16)" in message
    assert "data_format='channels_last'" in message and "kernel_format='channels_last'" in message


def test_output_shape_in_channels_last() -> None:
    shape = pc.output_shape(
        (8, 32, 32, 3),
        (3, 3, 3, 16),
        stride=2,
        padding="same",
        data_format="channels_last",
        kernel_format="channels_last",
    )
    assert shape == (8, 16, 16, 16)
    transposed = pc.output_shape(
        (8, 16, 16, 16),
        (3, 3, 3, 16),
        stride=2,
        padding="same",
        output_padding=1,
        transpose=True,
        data_format="channels_last",
        kernel_format="channels_last",
    )
    assert transposed == (8, 32, 32, 3)


def test_torch_channels_last_result_is_contiguous_in_the_callers_layout() -> None:
    torch = pytest.importorskip("torch")
    x = torch.rand(2, 9, 9, 3, dtype=torch.float64)
    w = torch.rand(4, 3, 3, 3, dtype=torch.float64)
    y = pc.correlate(x, w, padding=1, data_format="channels_last")
    assert y.shape == (2, 9, 9, 4) and y.is_contiguous()


# --- layers ----------------------------------------------------------------------------------


@pytest.mark.jax_x64  # float64 layers
@pytest.mark.parametrize("backend", [b.name for b in USABLE if b.name != "array_api"])
def test_conv_transpose_layer_equals_torch_conv_transpose_module(backend: str) -> None:
    torch = pytest.importorskip("torch")
    module = torch.nn.ConvTranspose2d(
        4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2, dilation=(1, 2)
    ).double()
    layer = pc.ConvTranspose2D(
        (3, 2),
        in_channels=4,
        out_channels=6,
        stride=2,
        padding=1,
        output_padding=1,
        groups=2,
        dilation=(1, 2),
        dtype="float64",
        backend=backend,
    )
    layer.weight = module.weight.detach().numpy()
    layer.bias = module.bias.detach().numpy()
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 4))
    expected = module(torch.as_tensor(x)).detach().numpy()
    np.testing.assert_allclose(to_numpy(layer(x)), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer_class", [pc.Conv1D, pc.ConvTranspose1D])
def test_channels_last_layer_is_the_channels_first_layer_on_permuted_data(
    layer_class: type,
) -> None:
    options = dict(in_channels=2, out_channels=4, stride=2, padding="same", dtype="float64")
    first = layer_class(3, **options)
    last = layer_class(3, data_format="channels_last", kernel_format="channels_last", **options)
    last.weight = _kernel_last(first.weight)
    assert last.weight.shape == _kernel_last(first.weight).shape
    x = np.random.default_rng(1).standard_normal((3, 2, 7))
    np.testing.assert_array_equal(_data_first(last(_data_last(x, True)), True), first(x))


@pytest.mark.jax_x64  # float64 layers
@pytest.mark.parametrize("backend", [b.name for b in USABLE if b.name != "array_api"])
def test_fit_learns_a_channels_last_transposed_layer(backend: str) -> None:
    options = dict(in_channels=2, out_channels=3, stride=2, padding=1, output_padding=1)
    options |= dict(dtype="float64", data_format="channels_last", kernel_format="channels_last")
    target = pc.ConvTranspose2D(3, seed=1, **options)
    layer = pc.ConvTranspose2D(3, seed=2, backend=backend, **options)
    x = np.random.default_rng(3).standard_normal((4, 5, 5, 2))
    history = pc.fit(layer, x, target(x), lr=1e-3, steps=15, momentum=0.9)
    assert history[-1] < 0.5 * history[0]


def test_transposed_layer_saves_loads_and_moves(tmp_path: Any) -> None:
    layer = pc.ConvTranspose3D(
        (1, 2, 2),
        in_channels=2,
        out_channels=2,
        output_padding=(0, 1, 1),
        stride=2,
        kernel_format="channels_last",
        seed=4,
    )
    path = tmp_path / "layer.npz"
    layer.save(path)
    loaded = pc.ConvTranspose3D.from_file(path)
    assert loaded.config == layer.config
    np.testing.assert_array_equal(loaded.weight, layer.weight)
    moved = layer.to("torch") if "torch" in pc.backends() else layer.to("numpy")
    np.testing.assert_array_equal(to_numpy(moved.weight), layer.weight)
    with pytest.raises(ValueError, match="output_padding"):
        pc.ConvTranspose3D((1, 2, 2), in_channels=2, out_channels=2, output_padding=(0, 1, 0)).load(
            path
        )


def test_jax_channels_last_call_compiles_to_one_convolution_in_that_layout() -> None:
    jax = pytest.importorskip("jax")
    import re

    from polyconv._core import layouts as _layout_calls

    x, w = jax.numpy.ones((2, 6, 6, 3)), jax.numpy.ones((3, 3, 3, 5))
    options = dict(padding=1, data_format="channels_last", kernel_format="channels_last")
    pc.correlate(x, w, **options)
    compiled = [
        f
        for key, f in _layout_calls._COMPILED.items()
        if key[0] == "jax" and key[1] is pc.correlate
    ]
    text = compiled[-1].lower(x, w, None).compile().as_text()
    entry = text[text.index("ENTRY") :]
    assert entry.count(" convolution(") == 1
    assert "dim_labels=b01f_01io->b01f" in entry  # NHWC data, HWIO kernel, natively
    # No transpose of the data of its own: the output is written once, by the elementwise
    # fusion that applies the non-finite-kernel mask (polyconv.backends.jax_backend).
    assert not re.search(r"= \S+ transpose\(", entry)
    # and the result does not pass through a branch (which would fix its layout): only the
    # mask, one image's worth, does.
    branches = [line for line in entry.splitlines() if " conditional(" in line]
    assert all("[2," not in line.split("conditional(")[0] for line in branches)
