"""Framework transformations through polyconv: each gives what the eager call defines.

``torch.compile``, ``torch.func.jvp``/``jacfwd``/``vmap``/``grad`` and ``jax.jit``/``vmap``/
``jvp``/``jacfwd``/``jacrev``/``hessian``/``checkpoint``/``linear_transpose``, on both methods
and every padding mode. The correlation is bilinear in ``(x, w)``, so every derivative is known
exactly from the float64 reference: its Jacobians are correlations of unit arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import polyconv as pc
from polyconv import reference

METHODS = ("direct", "fft")

# (x shape, w shape, keyword arguments), one per padding mode; small and 1-D, with more than one
# input channel per group, stride, dilation and asymmetric padding between them.
CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "zeros": ((1, 4, 7), (4, 2, 3), {"padding": [(2, 1)], "groups": 2, "stride": 2}),
    "reflect": ((1, 2, 6), (3, 2, 3), {"padding": "same", "padding_mode": "reflect"}),
    "replicate": ((1, 2, 5), (2, 2, 2), {"padding": "full", "padding_mode": "replicate"}),
    "circular": (
        (1, 2, 6),
        (2, 2, 3),
        {"padding": [(3, 2)], "dilation": 2, "padding_mode": "circular"},
    ),
    "symmetric": (
        (1, 2, 5),
        (2, 1, 3),
        {"padding": [(4, 1)], "groups": 2, "padding_mode": "symmetric"},
    ),
}
# The transformations that compile most (each differentiates or batches every step): on zeros
# padding (a native padding=) and on an index map (the other modes' one path).
COSTLY_CASES = ("zeros", "symmetric")
RTOL = ATOL = 2e-5  # float32 against the float64 reference, on values of order one


def case_arrays(case: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    x_shape, w_shape, kwargs = CASES[case]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    return x, w, kwargs


def jacobian(of: str, x: np.ndarray, w: np.ndarray, kwargs: dict[str, Any]) -> np.ndarray:
    """d correlate(x, w) / d ``of`` as (*out_shape, *of_shape), from the float64 reference:
    the correlation is linear in each argument, so column j is the correlation of unit j."""
    arg = x if of == "x" else w
    columns = []
    for j in range(arg.size):
        unit = np.zeros(arg.size)
        unit[j] = 1
        unit = unit.reshape(arg.shape)
        pair = (unit, w) if of == "x" else (x, unit)
        columns.append(reference.correlate(*pair, **kwargs))
    return np.stack(columns, axis=-1).reshape(*columns[0].shape, *arg.shape)


def expected_jvp(x: np.ndarray, w: np.ndarray, tx: np.ndarray, tw: np.ndarray, kwargs: Any) -> Any:
    """The directional derivative of the bilinear correlation."""
    return reference.correlate(tx, w, **kwargs) + reference.correlate(x, tw, **kwargs)


def output_gradient(x: np.ndarray, w: np.ndarray, kwargs: dict[str, Any]) -> np.ndarray:
    shape = pc.output_shape(x.shape, w.shape, **kwargs)
    return np.random.default_rng(3).standard_normal(shape).astype(np.float32)


def assert_equal_to(got: Any, want: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=RTOL, atol=ATOL)


# --- PyTorch ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch() -> Any:
    return pytest.importorskip("torch")


def torch_correlate(case: str, method: str) -> Callable[..., Any]:
    kwargs = CASES[case][2]
    return lambda x, w: pc.correlate(x, w, method=method, **kwargs)


def test_torch_compile_equals_the_eager_call_on_every_padding_mode_and_method(torch: Any) -> None:
    # One compiled function for every mode and method, all of one shape: each compilation
    # (and each recompilation for a new shape) takes seconds.
    x = torch.tensor(np.random.default_rng(0).standard_normal((1, 2, 6)), dtype=torch.float32)
    w = torch.tensor(np.random.default_rng(1).standard_normal((2, 2, 3)), dtype=torch.float32)

    def every_mode_and_method(x: Any, w: Any) -> list[Any]:
        return [
            pc.correlate(x, w, padding=[(2, 1)], padding_mode=mode, method=method)
            for mode in CASES
            for method in METHODS
        ]

    compiled = torch.compile(every_mode_and_method)(x, w)
    eager = every_mode_and_method(x, w)
    assert len(compiled) == len(eager) == len(CASES) * len(METHODS)
    for got, want in zip(compiled, eager, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_torch_func_jvp_is_the_directional_derivative(torch: Any, case: str, method: str) -> None:
    x, w, kwargs = case_arrays(case)
    tx, tw, _ = case_arrays(case, seed=1)
    f = torch_correlate(case, method)
    primals = (torch.tensor(x), torch.tensor(w))
    y, ty = torch.func.jvp(f, primals, (torch.tensor(tx), torch.tensor(tw)))
    assert_equal_to(y, reference.correlate(x, w, **kwargs))
    assert_equal_to(ty, expected_jvp(x, w, tx, tw, kwargs))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_torch_func_jacfwd_is_the_jacobian(torch: Any, case: str, method: str) -> None:
    x, w, kwargs = case_arrays(case)
    jx, jw = torch.func.jacfwd(torch_correlate(case, method), argnums=(0, 1))(
        torch.tensor(x), torch.tensor(w)
    )
    assert_equal_to(jx, jacobian("x", x, w, kwargs))
    assert_equal_to(jw, jacobian("w", x, w, kwargs))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_torch_func_vmap_equals_one_call_per_example(torch: Any, case: str, method: str) -> None:
    x, w, kwargs = case_arrays(case)
    examples = np.stack([x, 2 * x, -x])
    examples[1, 0, 0, 0] = np.nan  # one example's non-finite value stays in that example
    y = torch.func.vmap(torch_correlate(case, method), in_dims=(0, None))(
        torch.tensor(examples), torch.tensor(w)
    )
    for got, example in zip(y, examples, strict=True):
        want = pc.correlate(example, w, method="direct", **kwargs)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_torch_func_grad_equals_the_reference_vjp(torch: Any, case: str, method: str) -> None:
    x, w, kwargs = case_arrays(case)
    grad_y = output_gradient(x, w, kwargs)
    f = torch_correlate(case, method)
    grads = torch.func.grad(lambda x, w: (f(x, w) * torch.tensor(grad_y)).sum(), argnums=(0, 1))(
        torch.tensor(x), torch.tensor(w)
    )
    want = reference.correlate_vjp(x, w, None, grad_y, **kwargs)
    assert_equal_to(grads[0], want[0])
    assert_equal_to(grads[1], want[1])


# --- JAX --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jax() -> Any:
    return pytest.importorskip("jax")


def jax_correlate(case: str, method: str) -> Callable[..., Any]:
    kwargs = CASES[case][2]
    return lambda x, w: pc.correlate(x, w, method=method, **kwargs)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_jax_jit_equals_the_reference(jax: Any, case: str, method: str) -> None:
    x, w, kwargs = case_arrays(case)
    assert_equal_to(jax.jit(jax_correlate(case, method))(x, w), reference.correlate(x, w, **kwargs))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_jax_vmap_equals_one_call_per_example(jax: Any, case: str, method: str) -> None:
    x, w, kwargs = case_arrays(case)
    examples = np.stack([x, 2 * x, -x])
    examples[1, 0, 0, 0] = np.nan  # one example's non-finite value stays in that example
    y = jax.vmap(jax_correlate(case, method), in_axes=(0, None))(examples, w)
    for got, example in zip(y, examples, strict=True):
        want = pc.correlate(example, w, method="direct", **kwargs)
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_jax_jvp_is_the_directional_derivative(jax: Any, case: str, method: str) -> None:
    x, w, kwargs = case_arrays(case)
    tx, tw, _ = case_arrays(case, seed=1)
    y, ty = jax.jvp(jax_correlate(case, method), (x, w), (tx, tw))
    assert_equal_to(y, reference.correlate(x, w, **kwargs))
    assert_equal_to(ty, expected_jvp(x, w, tx, tw, kwargs))


@pytest.mark.parametrize("transform", ["jacfwd", "jacrev"])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", COSTLY_CASES)
def test_jax_jacobians_are_the_jacobian(jax: Any, case: str, method: str, transform: str) -> None:
    x, w, kwargs = case_arrays(case)
    # Jitted whole: one compilation instead of one per primitive the transformation adds.
    jx, jw = jax.jit(getattr(jax, transform)(jax_correlate(case, method), argnums=(0, 1)))(x, w)
    assert_equal_to(jx, jacobian("x", x, w, kwargs))
    assert_equal_to(jw, jacobian("w", x, w, kwargs))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", COSTLY_CASES)
def test_jax_hessian_of_the_squared_norm_is_j_transpose_j(jax: Any, case: str, method: str) -> None:
    x, w, kwargs = case_arrays(case)
    f = jax_correlate(case, method)
    hessian = jax.jit(jax.hessian(lambda x: 0.5 * (f(x, w) ** 2).sum()))(x)
    j = jacobian("x", x, w, kwargs).reshape(-1, x.size)
    assert_equal_to(np.asarray(hessian).reshape(x.size, x.size), j.T @ j)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", COSTLY_CASES)
def test_jax_grad_through_checkpoint_equals_the_reference_vjp(
    jax: Any, case: str, method: str
) -> None:
    x, w, kwargs = case_arrays(case)
    grad_y = output_gradient(x, w, kwargs)
    f = jax.checkpoint(jax_correlate(case, method))
    grads = jax.jit(jax.grad(lambda x, w: (f(x, w) * grad_y).sum(), argnums=(0, 1)))(x, w)
    want = reference.correlate_vjp(x, w, None, grad_y, **kwargs)
    assert_equal_to(grads[0], want[0])
    assert_equal_to(grads[1], want[1])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES)
def test_jax_linear_transpose_equals_the_reference_vjp(jax: Any, case: str, method: str) -> None:
    x, w, kwargs = case_arrays(case)
    grad_y = output_gradient(x, w, kwargs)
    f = jax_correlate(case, method)
    (grad_x,) = jax.linear_transpose(lambda x: f(x, w), x)(grad_y)
    (grad_w,) = jax.linear_transpose(lambda w: f(x, w), w)(grad_y)
    want = reference.correlate_vjp(x, w, None, grad_y, **kwargs)
    assert_equal_to(grad_x, want[0])
    assert_equal_to(grad_w, want[1])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("padding", ["full", "same", 1])
def test_jax_non_finite_tap_reaches_outputs_that_read_zero_padding(
    jax: Any, method: str, padding: Any
) -> None:
    # The spec's w[k] * P(x)[...] is NaN where a NaN or inf tap meets a padding zero.
    x = np.ones((1, 2, 4, 5), np.float32)
    w = np.ones((3, 2, 1, 3), np.float32)
    w[0, 1, 0, 2], w[2, 0, 0, 0] = np.nan, np.inf
    kwargs = {"padding": padding, "method": method}
    got = np.asarray(pc.correlate(jax.numpy.asarray(x), jax.numpy.asarray(w), **kwargs))
    want = pc.correlate(x, w, **kwargs)  # NumPy's, as the spec defines
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
