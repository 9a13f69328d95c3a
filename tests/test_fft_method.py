"""Properties of ``method="fft"``, checked on every backend against the float64 reference.

The FFT's rounding error is normwise, not per element: every output carries an error of about
``eps * log2(L)`` times the problem's norms (``L`` samples per transform), however small the
output itself, and an output that only reads zeros comes out as ``1e-17`` rather than ``0``.
Every backend computes the FFT in float64 (JAX with 64-bit mode on, as in this suite), so the
comparisons add to the per-element bound of :mod:`polyconv.testing` the global term of
:func:`fft_slack`, in float64's epsilon: still far below the size of one misplaced or missing
term (products are at least ``2**-12``), so wrong indices still fail, in every dtype.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import require_backend, require_dtype
from hypothesis import given, settings
from hypothesis import strategies as st

import polyconv as pc
from polyconv import reference
from polyconv.backends import Array, Backend
from polyconv.testing import (
    DEFAULT_C,
    Problem,
    assert_within,
    dtype_name,
    eps,
    error_bound,
    problems,
    to_numpy,
    vjp_error_bounds,
)

FLOAT_DTYPES = ("float64", "float32", "float16")
# Two computations that are each within the bound of the exact result differ by at most twice it.
PAIR_C = 2 * DEFAULT_C
# Fewer examples than the profile's 30. JAX compiles every new spec (about a second for a
# forward and its VJP on the project's machine), so it draws fewer again.
EXAMPLES = 12
JAX_EXAMPLES = 3


def for_backend(backend: Backend, examples: int = EXAMPLES) -> settings:
    """The Hypothesis settings of a property checked on ``backend``."""
    return settings(max_examples=min(examples, JAX_EXAMPLES) if backend.name == "jax" else examples)


@pytest.fixture(scope="session", params=FLOAT_DTYPES)
def dtype(request: pytest.FixtureRequest, backend: Backend) -> str:
    """Each float dtype the backend supports (float16 is probed; skipped with the reason)."""
    require_dtype(backend.name, request.param)
    return str(request.param)


@pytest.fixture(scope="session")
def torch_backend() -> Backend:
    return require_backend("torch")


@pytest.fixture(scope="session")
def jax_backend() -> Backend:
    return require_backend("jax")


def native(backend: Backend, a: np.ndarray | None, dtype: str) -> Array | None:
    """``a`` as the backend's own array of ``dtype`` (None stays None)."""
    return None if a is None else backend.convert(a.astype(dtype), dtype, None)


def problem_arrays(problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    return problem.x, problem.w, problem.bias


def run_forward(backend: Backend, problem: Problem, method: str = "fft") -> Array:
    arrays = (native(backend, a, problem.dtype) for a in problem_arrays(problem))
    return pc.correlate(*arrays, method=method, backend=backend.name, **problem.spec_kwargs)


def run_vjp(backend: Backend, problem: Problem) -> tuple[Array, Array, Array | None]:
    arrays = (native(backend, a, problem.dtype) for a in (*problem_arrays(problem), problem.grad_y))
    return pc.correlate_vjp(*arrays, method="fft", backend=backend.name, **problem.spec_kwargs)


def fft_slack(problem: Problem) -> float:
    """A bound on the FFT's global rounding error, for the forward result and every gradient.

    A transform of ``L`` samples errs by at most ``~eps * log2(L)`` times its input's 2-norm
    (Higham, 24.1), so a circular correlation by FFT errs by ``~eps * log2(L)`` times
    ``||x||_2 * max|rfft(w)| <= sqrt(L) * max|x| * sum|w|`` (and the same with the operands
    swapped), per channel pair. ``L`` here over-counts every transform (padded length plus
    kernel extent, doubled per axis), the magnitude ``M`` covers all three products a VJP takes
    (``x`` with ``w``, ``grad_y`` with ``w``, ``x`` with ``grad_y``) summed over the batch, and
    the factor 8 covers the transforms, the spectral product and the inverse.
    """
    spec = problem.spec
    extents = [(k - 1) * d + 1 for k, d in zip(spec.kernel_shape, spec.dilation, strict=True)]
    length = math.prod(2 * (p + e) for p, e in zip(spec.padded_shape, extents, strict=True))
    x_max, w_sum = float(np.abs(problem.x).max()), float(np.abs(problem.w).sum())
    magnitude = x_max * w_sum
    if problem.grad_y is not None:
        g_max, g_sum = float(np.abs(problem.grad_y).max()), float(np.abs(problem.grad_y).sum())
        magnitude = max(magnitude, g_max * w_sum, x_max * g_sum)
    batch = spec.x_shape[0]
    return 8 * eps("float64") * math.log2(length) * length * batch * magnitude


def assert_fft_close(actual: Array, expected: np.ndarray, problem: Problem, c: float) -> None:
    bound = error_bound(*problem_arrays(problem), problem.dtype, problem.spec_kwargs, c=c)
    assert_within(actual, expected, bound + fft_slack(problem), what="y")


def assert_fft_vjp_close(
    actual: tuple[Array, Array, Array | None],
    expected: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    problem: Problem,
    c: float,
) -> None:
    bounds = vjp_error_bounds(
        *problem_arrays(problem), problem.grad_y, problem.dtype, problem.spec_kwargs, c=c
    )
    slack = fft_slack(problem)
    for name, got, want, bound in zip(
        ("grad_x", "grad_w", "grad_bias"), actual, expected, bounds, strict=True
    ):
        assert (got is None) == (want is None), name
        if got is not None:
            assert dtype_name(got) == problem.dtype, name
            assert_within(got, want, bound + slack, what=name)


# --- against the reference -------------------------------------------------------------------
#
# Each property is a Hypothesis test inside the pytest test, so that the number of examples can
# follow the backend (see for_backend).


def test_fft_forward_equals_reference_within_error_bound(backend: Backend, dtype: str) -> None:
    @for_backend(backend)
    @given(problem=problems(dtypes=[dtype]))
    def check(problem: Problem) -> None:
        y = run_forward(backend, problem)
        assert dtype_name(y) == dtype
        assert_fft_close(y, problem.reference(), problem, c=DEFAULT_C)

    check()


def test_fft_vjp_equals_reference_vjp_within_error_bound(backend: Backend, dtype: str) -> None:
    @for_backend(backend)
    @given(problem=problems(dtypes=[dtype], with_grad_y=True))
    def check(problem: Problem) -> None:
        expected = problem.reference_vjp()
        assert_fft_vjp_close(run_vjp(backend, problem), expected, problem, DEFAULT_C)

    check()


def test_fft_and_direct_methods_agree(backend: Backend, dtype: str) -> None:
    @for_backend(backend)
    @given(problem=problems(dtypes=[dtype]))
    def check(problem: Problem) -> None:
        by_fft = run_forward(backend, problem, method="fft")
        direct = to_numpy(run_forward(backend, problem, method="direct"))
        assert_fft_close(by_fft, direct, problem, c=PAIR_C)

    check()


def test_fft_result_keeps_the_input_dtype_and_device(backend: Backend, dtype: str) -> None:
    @for_backend(backend, examples=4)
    @given(problem=problems(dtypes=[dtype], ranks=[2], bias=False))
    def check(problem: Problem) -> None:
        x, w = native(backend, problem.x, dtype), native(backend, problem.w, dtype)
        y = pc.correlate(x, w, method="fft", backend=backend.name, **problem.spec_kwargs)
        assert dtype_name(y) == dtype
        assert backend.device(y) == backend.device(x)

    check()


# --- native autodiff -------------------------------------------------------------------------


@settings(max_examples=EXAMPLES)
@given(problem=problems(dtypes=["float64", "float32"], with_grad_y=True))
def test_torch_backward_through_fft_equals_correlate_vjp(
    torch_backend: Backend, problem: Problem
) -> None:
    import torch

    leaves = [
        None if a is None else torch.tensor(a.astype(problem.dtype), requires_grad=True)
        for a in problem_arrays(problem)
    ]
    grad_y = torch.tensor(problem.grad_y.astype(problem.dtype))
    y = pc.correlate(*leaves, method="fft", **problem.spec_kwargs)
    (y * grad_y).sum().backward()
    autograd = (leaves[0].grad, leaves[1].grad, None if leaves[2] is None else leaves[2].grad)
    detached = [None if leaf is None else leaf.detach() for leaf in leaves]
    expected = pc.correlate_vjp(*detached, grad_y, method="fft", **problem.spec_kwargs)
    assert_fft_vjp_close(
        autograd, tuple(None if g is None else to_numpy(g) for g in expected), problem, PAIR_C
    )


@settings(max_examples=JAX_EXAMPLES)
@given(problem=problems(dtypes=["float64", "float32"], with_grad_y=True))
def test_jax_grad_through_fft_equals_correlate_vjp(jax_backend: Backend, problem: Problem) -> None:
    import jax
    import jax.numpy as jnp

    args = [jnp.asarray(a.astype(problem.dtype)) for a in problem_arrays(problem) if a is not None]
    grad_y = jnp.asarray(problem.grad_y.astype(problem.dtype))

    def loss(*arrays: Array) -> Array:
        return jnp.sum(pc.correlate(*arrays, method="fft", **problem.spec_kwargs) * grad_y)

    # Under the user's jit too: the FFT path (and its fallback) is traced into the computation.
    grads = list(jax.jit(jax.grad(loss, argnums=tuple(range(len(args)))))(*args))
    if problem.bias is None:
        grads.append(None)
    bias = args[2] if problem.bias is not None else None
    expected = pc.correlate_vjp(args[0], args[1], bias, grad_y, method="fft", **problem.spec_kwargs)
    assert_fft_vjp_close(
        (grads[0], grads[1], grads[2]),
        tuple(None if g is None else to_numpy(g) for g in expected),
        problem,
        PAIR_C,
    )


# --- non-finite input ------------------------------------------------------------------------


# NumPy warns about inf - inf and inf * 0 (also in the NumPy backend's worker threads, where
# np.errstate does not reach); those warnings are not what these properties are about.
ignore_float_warnings = pytest.mark.filterwarnings(
    "ignore:invalid value encountered:RuntimeWarning",
    "ignore:overflow encountered:RuntimeWarning",
)


def _with_nonfinite(problem: Problem, data) -> tuple[np.ndarray, np.ndarray, float]:
    """``x`` with one element made NaN or +-inf, and the indicator of that element."""
    index = data.draw(st.integers(0, problem.x.size - 1), label="index")
    value = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]), label="value")
    x = problem.x.copy()
    x.flat[index] = value
    indicator = np.zeros_like(problem.x)
    indicator.flat[index] = 1.0
    return x, indicator, value


@ignore_float_warnings
def test_fft_nonfinite_input_reaches_exactly_the_outputs_that_read_it(backend: Backend) -> None:
    @for_backend(backend)
    @given(problem=problems(dtypes=["float64", "float32"]), data=st.data())
    def check(problem: Problem, data) -> None:
        x, indicator, value = _with_nonfinite(problem, data)
        reads = reference.correlate(indicator, np.ones_like(problem.w), **problem.spec_kwargs) > 0
        arrays = (native(backend, a, problem.dtype) for a in (x, problem.w, problem.bias))
        y = pc.correlate(*arrays, method="fft", backend=backend.name, **problem.spec_kwargs)
        y_np = to_numpy(y)
        np.testing.assert_array_equal(~np.isfinite(y_np), reads)
        if math.isnan(value):
            np.testing.assert_array_equal(np.isnan(y_np), reads)

    check()


@ignore_float_warnings
def test_fft_nonfinite_input_reaches_exactly_the_gradients_that_read_it(backend: Backend) -> None:
    """Non-finite x poisons the kernel gradients whose taps read it, and nothing else."""

    @for_backend(backend)
    @given(problem=problems(dtypes=["float64", "float32"], with_grad_y=True), data=st.data())
    def check(problem: Problem, data) -> None:
        x, indicator, _ = _with_nonfinite(problem, data)
        _, reads, _ = reference.correlate_vjp(
            indicator,
            np.ones_like(problem.w),
            None,
            np.ones_like(problem.grad_y),
            **problem.spec_kwargs,
        )
        arrays = (
            native(backend, a, problem.dtype) for a in (x, problem.w, problem.bias, problem.grad_y)
        )
        grad_x, grad_w, grad_bias = pc.correlate_vjp(
            *arrays, method="fft", backend=backend.name, **problem.spec_kwargs
        )
        assert np.isfinite(to_numpy(grad_x)).all()
        np.testing.assert_array_equal(~np.isfinite(to_numpy(grad_w)), reads > 0)
        if grad_bias is not None:
            assert np.isfinite(to_numpy(grad_bias)).all()

    check()
