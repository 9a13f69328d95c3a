"""The transposed correlation: the adjoint of correlate, on every backend, against torch.

A transposed problem is drawn from a forward problem of :func:`polyconv.testing.problems` (every
padding form and mode): ``y`` has the forward's output shape and ``output_padding`` is drawn in
its allowed range, so the transpose's output is the forward's input size plus at most that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import BACKEND_NAMES, FLOAT_DTYPES, PAIR_C, native
from hypothesis import given
from hypothesis import strategies as st

import polyconv as pc
from polyconv import reference
from polyconv.backends import Backend, get
from polyconv.testing import (
    TransposeProblem,
    assert_within,
    to_numpy,
    transpose_error_bound,
    transpose_problems,
    transpose_vjp_error_bounds,
    unavailable_reason,
    unsupported_dtype_reason,
    values,
)

USABLE = [get(name) for name in BACKEND_NAMES if unavailable_reason(name) is None]
USABLE_IN_DTYPE = [
    (backend, dtype)
    for backend in USABLE
    for dtype in FLOAT_DTYPES
    if unsupported_dtype_reason(backend.name, dtype) is None
]


def _without_extra_outputs(p: TransposeProblem) -> TransposeProblem:
    """``p`` itself when the forward of the transpose's output size has exactly ``y``'s
    outputs, else ``p`` without output padding (which then has)."""
    spec = pc.normalize_transpose(p.y.shape, p.w.shape, **p.kwargs)
    if any(spec.extra_outputs):
        return TransposeProblem(p.y, p.w, p.bias, {**p.kwargs, "output_padding": 0}, p.dtype)
    return p


def _inner(a: object, b: object) -> float:
    return float(np.sum(to_numpy(a).astype(np.float64) * to_numpy(b).astype(np.float64)))


def _run(backend: Backend, p: TransposeProblem, method: str = "direct") -> Any:
    arrays = (native(backend, a, p.dtype) for a in (p.y, p.w, p.bias))
    return pc.correlate_transpose(*arrays, method=method, backend=backend.name, **p.kwargs)


# --- the definition ------------------------------------------------------------------------


@given(p=transpose_problems(), data=st.data())
def test_transpose_is_the_adjoint_of_correlate(p: TransposeProblem, data: st.DataObject) -> None:
    x = data.draw(values(p.out_shape, "float64"), label="x")
    forward = pc.correlate(x, p.w, **p.forward_kwargs)
    kept = forward[(..., *(slice(0, i) for i in p.y.shape[-len(p.w.shape) + 2 :]))]
    transposed = pc.correlate_transpose(p.y, p.w, **p.kwargs)
    lhs, rhs = _inner(kept, p.y), _inner(x, transposed)
    scale = _inner(np.abs(kept), np.abs(p.y)) + _inner(np.abs(x), np.abs(transposed))
    assert abs(lhs - rhs) <= 1e-12 * max(scale, 1.0)


@given(p=transpose_problems())
def test_reference_transpose_is_correlate_vjp_input_gradient(p: TransposeProblem) -> None:
    p = _without_extra_outputs(p)
    x = np.zeros(p.out_shape)
    grad_x, _, _ = reference.correlate_vjp(x, p.w, None, p.y, **p.forward_kwargs)
    np.testing.assert_array_equal(reference.correlate_transpose(p.y, p.w, **p.kwargs), grad_x)


@pytest.mark.jax_x64  # compared in float64 on every backend
@given(p=transpose_problems(), data=st.data())
def test_transpose_equals_correlate_vjp_input_gradient(
    p: TransposeProblem, data: st.DataObject
) -> None:
    backend = data.draw(st.sampled_from(USABLE), label="backend")
    p = _without_extra_outputs(p)
    x = native(backend, np.zeros(p.out_shape), "float64")
    y, w = native(backend, p.y, "float64"), native(backend, p.w, "float64")
    grad_x, _, _ = pc.correlate_vjp(x, w, None, y, backend=backend.name, **p.forward_kwargs)
    bound = transpose_error_bound(p.y, p.w, None, "float64", p.kwargs, c=PAIR_C)
    without_bias = TransposeProblem(p.y, p.w, None, p.kwargs, p.dtype)
    assert_within(_run(backend, without_bias), to_numpy(grad_x), bound)


# --- every backend against the reference --------------------------------------------------
# Each example draws its backend (and dtype and method): every backend is covered, and JAX's
# compilation per problem is paid for a share of the examples only.


@given(data=st.data())
def test_transpose_equals_reference_within_error_bound(data: st.DataObject) -> None:
    backend, dtype = data.draw(st.sampled_from(USABLE_IN_DTYPE), label="backend, dtype")
    method = data.draw(st.sampled_from(["direct", "fft"]), label="method")
    p = data.draw(transpose_problems(dtype), label="problem")
    out = _run(backend, p, method)
    expected = reference.correlate_transpose(p.y, p.w, p.bias, **p.kwargs)
    assert to_numpy(out).dtype == np.dtype(dtype)
    bound = transpose_error_bound(p.y, p.w, p.bias, dtype, p.kwargs, method=method)
    assert_within(out, expected, bound)


@given(data=st.data())
def test_transpose_gradients_equal_reference_within_error_bounds(data: st.DataObject) -> None:
    backend = data.draw(st.sampled_from(USABLE), label="backend")
    method = data.draw(st.sampled_from(["direct", "fft"]), label="method")
    p = data.draw(transpose_problems(), label="problem")
    grad_out = data.draw(values(p.out_shape, "float64"), label="grad_out")
    arrays = [native(backend, a, "float64") for a in (p.y, p.w, p.bias, grad_out)]
    grads = pc.correlate_transpose_vjp(*arrays, method=method, backend=backend.name, **p.kwargs)
    expected = reference.correlate_transpose_vjp(p.y, p.w, p.bias, grad_out, **p.kwargs)
    bounds = transpose_vjp_error_bounds(
        p.y, p.w, p.bias, grad_out, "float64", p.kwargs, method=method
    )
    names = ("grad_y", "grad_w", "grad_bias")
    for name, got, want, bound in zip(names, grads, expected, bounds, strict=True):
        assert (got is None) == (want is None), name
        if want is not None:
            assert_within(got, want, bound, what=name)


# --- parity with PyTorch ---------------------------------------------------------------------


@given(p=transpose_problems(padding_modes=["zeros"], padding_forms=["int", "ints"], max_batch=2))
def test_transpose_equals_torch_conv_transpose_in_float64(p: TransposeProblem) -> None:
    torch = pytest.importorskip("torch")
    rank = p.w.ndim - 2
    conv_transpose = getattr(torch.nn.functional, f"conv_transpose{rank}d")
    expected = conv_transpose(
        torch.as_tensor(p.y),
        torch.as_tensor(p.w),
        None if p.bias is None else torch.as_tensor(p.bias),
        stride=p.kwargs["stride"],
        padding=p.kwargs["padding"],
        output_padding=p.kwargs["output_padding"],
        groups=p.kwargs["groups"],
        dilation=p.kwargs["dilation"],
    )
    for backend in ("numpy", "torch"):
        ours = pc.correlate_transpose(p.y, p.w, p.bias, backend=backend, **p.kwargs)
        bound = transpose_error_bound(p.y, p.w, p.bias, "float64", p.kwargs, c=PAIR_C)
        assert_within(ours, expected.numpy(), bound, what=backend)


def test_torch_autograd_through_correlate_transpose_equals_its_vjp() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    y, w, bias = rng.standard_normal((2, 4, 3, 5)), rng.standard_normal((4, 3, 3, 2)), None
    kwargs = dict(stride=2, padding="same", output_padding=1, padding_mode="reflect")
    y_t, w_t = torch.tensor(y, requires_grad=True), torch.tensor(w, requires_grad=True)
    out = pc.correlate_transpose(y_t, w_t, bias, **kwargs)
    grad_out = rng.standard_normal(tuple(out.shape))
    out.backward(torch.as_tensor(grad_out))
    grad_y, grad_w, _ = reference.correlate_transpose_vjp(y, w, None, grad_out, **kwargs)
    np.testing.assert_allclose(y_t.grad.numpy(), grad_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(w_t.grad.numpy(), grad_w, rtol=1e-10, atol=1e-10)


@pytest.mark.jax_x64  # compared with the float64 reference to 1e-10
def test_jax_grad_through_correlate_transpose_equals_its_vjp() -> None:
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(1)
    y, w = rng.standard_normal((4, 6)), rng.standard_normal((4, 2, 3))
    kwargs = dict(stride=3, padding=((1, 2),), output_padding=2, padding_mode="circular")
    grad_out = rng.standard_normal(pc.output_shape(y.shape, w.shape, transpose=True, **kwargs))

    def loss(y: Any, w: Any) -> Any:
        return (pc.correlate_transpose(y, w, **kwargs) * grad_out).sum()

    grad_y, grad_w = jax.jit(jax.grad(loss, argnums=(0, 1)))(
        jax.numpy.asarray(y), jax.numpy.asarray(w)
    )
    expected_y, expected_w, _ = reference.correlate_transpose_vjp(y, w, None, grad_out, **kwargs)
    np.testing.assert_allclose(np.asarray(grad_y), expected_y, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(grad_w), expected_w, rtol=1e-10, atol=1e-10)


# --- the size rule and its checks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("padding", "expected"),
    [(1, 10), ("valid", 12), ("same", 10), ("full", 8), (((0, 2),), 10)],
)
def test_transpose_size_is_the_smallest_forward_input_plus_output_padding(
    padding: object, expected: int
) -> None:
    # i = 5, k = 3, s = 2, output_padding = 1
    shape = pc.output_shape(
        (1, 2, 5), (2, 1, 3), stride=2, padding=padding, output_padding=1, transpose=True
    )
    assert shape == (1, 1, expected)


def test_keras_same_transpose_size_is_output_padding_stride_less_one() -> None:
    shape = pc.output_shape(
        (4, 6), (4, 2, 3), stride=3, padding="same", output_padding=2, transpose=True
    )
    assert shape == (2, 18)  # i * s


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"stride": 2, "output_padding": 2},
            "output_padding must satisfy 0 <= output_padding < max",
        ),
        ({"stride": 1, "dilation": 3, "output_padding": 3}, "max(stride, dilation) = max(1, 3)"),
        (
            {
                "stride": 1,
                "dilation": 3,
                "output_padding": 1,
                "padding_mode": "reflect",
                "padding": 2,
            },
            "stride = 1 with padding_mode='reflect'",
        ),
        ({"output_padding": -1}, "output_padding"),
        ({"output_padding": (0, 0)}, "output_padding must be an int or a tuple of 1 ints"),
    ],
)
def test_bad_output_padding_is_a_value_error_naming_it(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match="output_padding") as error:
        pc.correlate_transpose(np.ones((2, 5)), np.ones((2, 1, 3)), **kwargs)
    assert message in str(error.value)


def test_output_padding_without_transpose_is_refused_by_output_shape() -> None:
    with pytest.raises(ValueError, match="transpose=True"):
        pc.output_shape((1, 5), (1, 1, 3), output_padding=1)


def test_transpose_bias_needs_c_in_entries() -> None:
    with pytest.raises(ValueError, match=r"shape \(C_in,\) = \(3,\)"):
        pc.correlate_transpose(np.ones((2, 5)), np.ones((2, 3, 3)), np.ones(2))


def test_y_with_wrong_channels_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"y of shape \(3, 5\) for w of shape \(2, 1, 3\)"):
        pc.correlate_transpose(np.ones((3, 5)), np.ones((2, 1, 3)))


def test_a_repeated_transpose_call_is_served_by_the_call_cache() -> None:
    from polyconv._core.callcache import CALLS

    pc.clear_caches()
    y, w = np.ones((1, 2, 4)), np.ones((2, 3, 3))
    first = pc.correlate_transpose(y, w, stride=2, output_padding=1)
    assert len(CALLS) == 1
    np.testing.assert_array_equal(pc.correlate_transpose(y, w, stride=2, output_padding=1), first)
    assert len(CALLS) == 1
    pc.clear_caches()
    assert len(CALLS) == 0
