"""Properties of ``method="fft"``, checked on every backend against the float64 reference.

The FFT's rounding error is normwise, not per element: every output carries an error of about
``eps * log2(L)`` times the problem's norms (``L`` samples per transform), however small the
output itself, and an output that only reads zeros comes out as ``1e-17`` rather than ``0``.
Every backend computes the FFT in float64 but JAX with 64-bit mode off (its default, at which
this suite runs its float32, float16 and bfloat16 problems), which transforms in float32, and
the spec's bound for the method (``method="fft"`` in :func:`polyconv.testing.assert_close`)
adds the global term :func:`polyconv.testing.fft_error` in that precision
(``Backend.fft_dtype``) to the per-element bound: in float64 still far below the size of one
misplaced or missing term (products are at least ``2**-12``), so wrong indices still fail, in
every dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    PAIR_C,
    check_nonfinite_gradients,
    check_nonfinite_outputs,
    ignore_float_warnings,
    native,
    problem_arrays,
    run_forward,
    run_vjp,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import polyconv as pc
from polyconv._plan.fft import WHOLE_AXIS_MAX, fft_plan, next_fast_length
from polyconv.backends import Array, Backend
from polyconv.backends._numpy.fft import _Layout
from polyconv.testing import (
    DEFAULT_C,
    Problem,
    assert_close,
    assert_vjp_close,
    dtype_name,
    problems,
    to_numpy,
)

# Fewer examples than the profile's 30. JAX compiles every new spec (about a second for a
# forward and its VJP on the project's machine), so it draws fewer again.
EXAMPLES = 12
JAX_EXAMPLES = 3


def for_backend(backend: Backend, examples: int = EXAMPLES) -> settings:
    """The Hypothesis settings of a property checked on ``backend``."""
    return settings(max_examples=min(examples, JAX_EXAMPLES) if backend.name == "jax" else examples)


def assert_fft_close(
    actual: Array, expected: np.ndarray, problem: Problem, c: float, fft_dtype: str = "float64"
) -> None:
    assert_close(
        actual,
        expected,
        *problem_arrays(problem),
        dtype=problem.dtype,
        spec_kwargs=problem.spec_kwargs,
        c=c,
        method="fft",
        fft_dtype=fft_dtype,
    )


def assert_fft_vjp_close(
    actual: tuple[Array, Array, Array | None],
    expected: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    problem: Problem,
    c: float,
    fft_dtype: str = "float64",
) -> None:
    assert_vjp_close(
        actual,
        expected,
        *problem_arrays(problem),
        problem.grad_y,
        dtype=problem.dtype,
        spec_kwargs=problem.spec_kwargs,
        c=c,
        method="fft",
        fft_dtype=fft_dtype,
    )


# --- against the reference -------------------------------------------------------------------
#
# Each property is a Hypothesis test inside the pytest test, so that the number of examples can
# follow the backend (see for_backend).


def test_fft_forward_equals_reference_within_error_bound(backend: Backend, dtype: str) -> None:
    @for_backend(backend)
    @given(problem=problems(dtypes=[dtype]))
    def check(problem: Problem) -> None:
        y = run_forward(backend, problem, method="fft")
        assert dtype_name(y) == dtype
        assert_fft_close(y, problem.reference(), problem, DEFAULT_C, backend.fft_dtype(dtype))

    check()


def test_fft_vjp_equals_reference_vjp_within_error_bound(backend: Backend, dtype: str) -> None:
    @for_backend(backend)
    @given(problem=problems(dtypes=[dtype], with_grad_y=True))
    def check(problem: Problem) -> None:
        expected = problem.reference_vjp()
        actual = run_vjp(backend, problem, method="fft")
        assert_fft_vjp_close(actual, expected, problem, DEFAULT_C, backend.fft_dtype(dtype))

    check()


def test_fft_and_direct_methods_agree(backend: Backend, dtype: str) -> None:
    @for_backend(backend)
    @given(problem=problems(dtypes=[dtype]))
    def check(problem: Problem) -> None:
        by_fft = run_forward(backend, problem, method="fft")
        direct = to_numpy(run_forward(backend, problem, method="direct"))
        assert_fft_close(by_fft, direct, problem, PAIR_C, backend.fft_dtype(dtype))

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


@pytest.mark.jax_x64  # float64 problems too
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


@ignore_float_warnings
def test_fft_nonfinite_input_reaches_exactly_the_outputs_that_read_it(backend: Backend) -> None:
    @for_backend(backend)
    @given(problem=problems(dtypes=["float64", "float32"]), data=st.data())
    def check(problem: Problem, data) -> None:
        check_nonfinite_outputs(backend, problem, data, method="fft")

    check()


@ignore_float_warnings
def test_fft_nonfinite_input_reaches_exactly_the_gradients_that_read_it(backend: Backend) -> None:
    @for_backend(backend)
    @given(problem=problems(dtypes=["float64", "float32"], with_grad_y=True), data=st.data())
    def check(problem: Problem, data) -> None:
        check_nonfinite_gradients(backend, problem, data, method="fft")

    check()


# --- the NumPy plan ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "options"),
    [
        ((1, 1, 512, 512), (1, 1, 31, 31), {}),
        ((2, 4, 40, 50), (6, 2, 3, 5), {"groups": 2, "dilation": (2, 3)}),
        ((1, 2, 30, 20, 25), (3, 2, 3, 2, 4), {"dilation": (1, 2, 3)}),
        ((1, 1, 300), (1, 1, 7), {"dilation": 4}),
    ],
)
@pytest.mark.parametrize("conjugate", [False, True])
def test_numpy_kernel_spectrum_is_the_transform_of_the_dilated_zero_extended_kernel(
    x_shape, w_shape, options, conjugate
) -> None:
    spec = pc.normalize(x_shape, w_shape, **options)
    layout = _Layout(spec, 8)
    g, r = spec.groups, spec.rank
    wg = np.random.default_rng(8).standard_normal(w_shape).reshape(g, -1, *w_shape[1:])
    dilated = np.zeros((*wg.shape[:3], *spec.extents))
    dilated[(..., *(slice(None, None, d) for d in spec.dilation))] = wg
    expected = np.fft.rfftn(dilated, s=layout.lengths, axes=tuple(range(-r, 0)))
    np.testing.assert_allclose(
        layout.kernel_spectrum(wg, conjugate=conjugate),
        np.conj(expected) if conjugate else expected,
        rtol=0,
        atol=1e-12 * np.abs(wg).sum(),
    )


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fft_plan_transforms_short_axes_whole_and_cuts_the_first_for_the_threads(threads) -> None:
    plans = fft_plan(pc.normalize((1, 1, 512, 512), (1, 1, 11, 11)), threads=threads)
    assert [p.blocks for p in plans] == [threads, 1]
    assert plans[1].length == next_fast_length(512, real=True) <= WHOLE_AXIS_MAX
    long_rows = fft_plan(pc.normalize((1, 1, 64, 2048), (1, 1, 11, 11)), threads=threads)
    assert long_rows[1].blocks > 1
