"""Properties of the specification, checked on every backend against the float64 reference.

Each test states one property; Hypothesis draws the problems (:func:`polyconv.testing.problems`)
and every comparison uses the problem-derived error bound of :mod:`polyconv.testing`. Tests take
the backend's own arrays as input (torch in, torch out) and run once per registered backend; a
backend whose module or framework is missing, or that cannot compute in a dtype, is skipped with
the reason.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from conftest import (
    BACKEND_NAMES,
    FLOAT_DTYPES,
    PAIR_C,
    check_nonfinite_gradients,
    check_nonfinite_outputs,
    float64_enabled,
    ignore_float_warnings,
    native,
    problem_arrays,
    run_forward,
    run_vjp,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import polyconv as pc
from polyconv import reference
from polyconv.backends import Array, Backend, get
from polyconv.testing import (
    DEFAULT_C,
    Problem,
    assert_close,
    assert_vjp_close,
    assert_within,
    dtype_name,
    eps,
    error_bound,
    problems,
    to_numpy,
    unavailable_reason,
    unsupported_dtype_reason,
    vjp_error_bounds,
)


@pytest.fixture(scope="session", params=FLOAT_DTYPES)
def backends_in_dtype(request: pytest.FixtureRequest) -> tuple[str, list[Backend]]:
    """A float dtype and every registered backend that computes in it here (at least two, else
    the test is skipped with the reasons). Each example runs every backend once and compares
    every pair, so adding a backend adds one computation per example, not one per pair."""
    dtype = str(request.param)
    usable, reasons = [], []
    for name in BACKEND_NAMES:
        reason = unavailable_reason(name) or unsupported_dtype_reason(name, dtype)
        if reason is None:
            usable.append(get(name))
        else:
            reasons.append(reason)
    if len(usable) < 2:
        pytest.skip(f"fewer than two backends compute in {dtype} here: {'; '.join(reasons)}")
    return dtype, usable


# --- every backend against the reference -----------------------------------------------------


@given(data=st.data())
def test_forward_equals_reference_within_error_bound(backend: Backend, dtype: str, data) -> None:
    problem = data.draw(problems(dtypes=[dtype]), label="problem")
    y = run_forward(backend, problem)
    assert_close(
        y,
        problem.reference(),
        *problem_arrays(problem),
        dtype=dtype,
        spec_kwargs=problem.spec_kwargs,
    )


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_long_signals_and_kernels_equal_reference_within_error_bound(
    backend: Backend, method: str
) -> None:
    """1-D signals of up to 2000 samples and kernels of up to 300 taps (JAX compiles each shape:
    fewer examples there)."""

    @settings(max_examples=3 if backend.name == "jax" else 8)
    @given(
        problem=problems(
            ranks=[1], dtypes=["float64", "float32"], max_size=2000, max_kernel=300,
            max_dilation=2, max_padding=40, max_batch=1, max_groups=1,
        )
    )  # fmt: skip
    def check(problem: Problem) -> None:
        y = run_forward(backend, problem, method=method)
        with float64_enabled(backend, problem.dtype):  # the setting the call ran at
            fft_dtype = backend.fft_dtype(problem.dtype)
        assert_close(
            y,
            problem.reference(),
            *problem_arrays(problem),
            dtype=problem.dtype,
            spec_kwargs=problem.spec_kwargs,
            method=method,
            fft_dtype=fft_dtype,
        )

    check()


@given(data=st.data())
def test_vjp_equals_reference_vjp_within_error_bound(backend: Backend, dtype: str, data) -> None:
    problem = data.draw(problems(dtypes=[dtype], with_grad_y=True), label="problem")
    grads = run_vjp(backend, problem)
    assert_vjp_close(
        grads,
        problem.reference_vjp(),
        *problem_arrays(problem),
        problem.grad_y,
        dtype=dtype,
        spec_kwargs=problem.spec_kwargs,
    )


@given(problem=problems(dtypes=["float32"]))
def test_output_shape_equals_computed_shape(backend: Backend, problem: Problem) -> None:
    y = run_forward(backend, problem)
    expected = pc.output_shape(problem.x.shape, problem.w.shape, **problem.spec_kwargs)
    assert tuple(to_numpy(y).shape) == expected


def _holds(backend: Backend, dtype: str) -> bool:
    """Whether the backend has arrays of ``dtype`` here."""
    try:
        backend.convert(np.zeros(1, dtype), dtype, None)
    except TypeError:
        return False
    return True


@given(data=st.data())
def test_result_dtype_follows_the_dtype_rule(backend: Backend, data) -> None:
    """The widest float input dtype wins; integer and bool inputs alone compute in float32."""
    floats = [d for d in FLOAT_DTYPES if unsupported_dtype_reason(backend.name, d) is None]
    problem = data.draw(problems(dtypes=["float64"], ranks=[1]), label="problem")
    # (JAX with 64-bit mode off holds no int64 arrays: it would make them int32.)
    integers = [d for d in ("int32", "int64", "bool") if _holds(backend, d)]
    input_dtypes = st.sampled_from([*floats, *integers])
    x_dtype, w_dtype = (
        data.draw(input_dtypes, label="x dtype"),
        data.draw(input_dtypes, label="w dtype"),
    )

    # Integer inputs get integer values (the grid style makes them non-trivial), clipped to
    # what every dtype drawn holds: only the result's dtype is checked here.
    def values(a: np.ndarray, dtype: str) -> np.ndarray:
        return np.clip(np.round(a * 4), -1000, 1000).astype(dtype)

    x = backend.convert(values(problem.x, x_dtype), x_dtype, None)
    w = backend.convert(values(problem.w, w_dtype), w_dtype, None)
    y = pc.correlate(x, w, backend=backend.name, **problem.spec_kwargs)
    present = {d for d in (x_dtype, w_dtype) if d in FLOAT_DTYPES}
    if present == {"float16", "bfloat16"}:  # neither holds the other
        present = {"float32"}
    expected = max(present, key=lambda d: np.dtype(d).itemsize) if present else "float32"
    assert dtype_name(y) == expected


# --- backends against each other -------------------------------------------------------------


@given(data=st.data())
def test_backends_agree_on_forward(backends_in_dtype: tuple[str, list[Backend]], data) -> None:
    dtype, backends = backends_in_dtype
    problem = data.draw(problems(dtypes=[dtype]), label="problem")
    results = {b.name: to_numpy(run_forward(b, problem)) for b in backends}
    bound = error_bound(*problem_arrays(problem), dtype, problem.spec_kwargs, c=PAIR_C)
    for (first, y_first), (second, y_second) in itertools.combinations(results.items(), 2):
        assert_within(y_first, y_second, bound, what=f"y ({first} vs {second})")


@given(data=st.data())
def test_backends_agree_on_vjp(backends_in_dtype: tuple[str, list[Backend]], data) -> None:
    dtype, backends = backends_in_dtype
    problem = data.draw(problems(dtypes=[dtype], with_grad_y=True), label="problem")
    results = {
        b.name: [None if g is None else to_numpy(g) for g in run_vjp(b, problem)] for b in backends
    }
    for (first, grads_first), (second, grads_second) in itertools.combinations(results.items(), 2):
        try:
            assert_vjp_close(
                grads_first,
                grads_second,
                *problem_arrays(problem),
                problem.grad_y,
                dtype=dtype,
                spec_kwargs=problem.spec_kwargs,
                c=PAIR_C,
            )
        except AssertionError as error:
            raise AssertionError(f"{first} vs {second}: {error}") from None


# --- native autodiff -------------------------------------------------------------------------


@given(problem=problems(dtypes=["float64", "float32"], with_grad_y=True))
def test_torch_backward_equals_correlate_vjp(torch_backend: Backend, problem: Problem) -> None:
    import torch

    leaves = [
        None if a is None else torch.tensor(a.astype(problem.dtype), requires_grad=True)
        for a in problem_arrays(problem)
    ]
    grad_y = torch.tensor(problem.grad_y.astype(problem.dtype))
    y = pc.correlate(*leaves, **problem.spec_kwargs)
    (y * grad_y).sum().backward()
    autograd = [None if leaf is None else leaf.grad for leaf in leaves]
    detached = [None if leaf is None else leaf.detach() for leaf in leaves]
    expected = pc.correlate_vjp(*detached, grad_y, **problem.spec_kwargs)
    assert_vjp_close(
        autograd,
        [None if g is None else to_numpy(g) for g in expected],
        *problem_arrays(problem),
        problem.grad_y,
        dtype=problem.dtype,
        spec_kwargs=problem.spec_kwargs,
        c=PAIR_C,
    )


@pytest.mark.jax_x64  # float64 problems too
@given(problem=problems(dtypes=["float64", "float32"], with_grad_y=True))
def test_jax_grad_equals_correlate_vjp(jax_backend: Backend, problem: Problem) -> None:
    import jax
    import jax.numpy as jnp

    args = [jnp.asarray(a.astype(problem.dtype)) for a in problem_arrays(problem) if a is not None]
    grad_y = jnp.asarray(problem.grad_y.astype(problem.dtype))

    def loss(*arrays: Array) -> Array:
        return jnp.sum(pc.correlate(*arrays, **problem.spec_kwargs) * grad_y)

    grads = list(jax.grad(loss, argnums=tuple(range(len(args))))(*args))
    if problem.bias is None:
        grads.append(None)
    bias = args[2] if problem.bias is not None else None
    expected = pc.correlate_vjp(args[0], args[1], bias, grad_y, **problem.spec_kwargs)
    assert_vjp_close(
        grads,
        [None if g is None else to_numpy(g) for g in expected],
        *problem_arrays(problem),
        problem.grad_y,
        dtype=problem.dtype,
        spec_kwargs=problem.spec_kwargs,
        c=PAIR_C,
    )


# --- convolve and shapes ---------------------------------------------------------------------


@given(problem=problems(dtypes=["float64", "float32"]))
def test_convolve_equals_correlate_with_flipped_kernel(backend: Backend, problem: Problem) -> None:
    x, w, bias = (native(backend, a, problem.dtype) for a in problem_arrays(problem))
    flipped = np.flip(problem.w, axis=tuple(range(2, problem.w.ndim)))
    with float64_enabled(backend, problem.dtype):
        convolved = pc.convolve(x, w, bias, backend=backend.name, **problem.spec_kwargs)
        correlated = pc.correlate(
            x,
            native(backend, flipped, problem.dtype),
            bias,
            backend=backend.name,
            **problem.spec_kwargs,
        )
    bound = error_bound(
        problem.x, flipped, problem.bias, problem.dtype, problem.spec_kwargs, c=PAIR_C
    )
    assert_within(convolved, to_numpy(correlated), bound, what="convolve")


def _padded_length(size: int, extent: int, stride: int, padding: object, axis: int) -> int:
    """The padded length per the spec's padding rules, written out independently of polyconv."""
    if padding == "valid":
        return size
    if padding == "full":
        return size + 2 * (extent - 1)
    if padding == "same":
        return size + max((math.ceil(size / stride) - 1) * stride + extent - size, 0)
    if isinstance(padding, int):
        return size + 2 * padding
    item = padding[axis]  # type: ignore[index]
    return size + (2 * item if isinstance(item, int) else item[0] + item[1])


@given(problem=problems(dtypes=["float64"]))
def test_output_shape_follows_the_shape_rule(problem: Problem) -> None:
    """Each spatial output size is ``(padded - dilated kernel extent) // stride + 1``, and
    ``"same"`` gives ``ceil(size / stride)``."""
    spec, kwargs = problem.spec, problem.spec_kwargs
    expected_spatial = []
    for axis, (size, k) in enumerate(zip(spec.x_shape[2:], spec.kernel_shape, strict=True)):
        stride, dilation = spec.stride[axis], spec.dilation[axis]
        extent = (k - 1) * dilation + 1
        padded = _padded_length(size, extent, stride, kwargs["padding"], axis)
        expected_spatial.append((padded - extent) // stride + 1)
        if kwargs["padding"] == "same":
            assert expected_spatial[-1] == math.ceil(size / stride)
    leading = (problem.x.shape[0],) if problem.x.ndim == problem.w.ndim else ()
    expected = (*leading, problem.w.shape[0], *expected_spatial)
    assert pc.output_shape(problem.x.shape, problem.w.shape, **kwargs) == expected


# --- non-finite input ------------------------------------------------------------------------


@ignore_float_warnings
@given(data=st.data())
def test_nonfinite_input_reaches_exactly_the_outputs_that_read_it(backend: Backend, data) -> None:
    problem = data.draw(problems(dtypes=["float64", "float32"]), label="problem")
    check_nonfinite_outputs(backend, problem, data, method="direct")


@ignore_float_warnings
@given(data=st.data())
def test_nonfinite_input_reaches_exactly_the_gradients_that_read_it(backend: Backend, data) -> None:
    problem = data.draw(problems(dtypes=["float64", "float32"], with_grad_y=True), label="problem")
    check_nonfinite_gradients(backend, problem, data, method="direct")


# --- the NumPy backend's gradients (issue 2) -------------------------------------------------


def _inner_product_tolerance(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, grad_y: np.ndarray, kwargs: dict
) -> float:
    """A bound on the rounding error of ``<correlate(x, w, bias), grad_y>`` computed either way:
    ``c * eps * (number of summed terms) * <correlate(|x|, |w|, |bias|), |grad_y|>``."""
    abs_bias = None if bias is None else np.abs(bias)
    magnitude = np.vdot(
        reference.correlate(np.abs(x), np.abs(w), abs_bias, **kwargs), np.abs(grad_y)
    )
    terms_per_output = pc.normalize(x.shape, w.shape, **kwargs).terms_per_output
    terms = grad_y.size * (terms_per_output + 1) + x.size + w.size
    return DEFAULT_C * eps("float64") * terms * float(magnitude)


def _adjoint_tolerance(problem: Problem) -> float:
    assert problem.grad_y is not None
    return _inner_product_tolerance(*problem_arrays(problem), problem.grad_y, problem.spec_kwargs)


@given(problem=problems(dtypes=["float64"], bias=False, with_grad_y=True))
def test_numpy_vjp_is_the_adjoint_in_x(numpy_backend: Backend, problem: Problem) -> None:
    """``<correlate(x, w), g> == <x, grad_x(g)>``: correlation is linear in x."""
    y = pc.correlate(problem.x, problem.w, backend="numpy", **problem.spec_kwargs)
    grad_x, _, _ = pc.correlate_vjp(
        problem.x, problem.w, None, problem.grad_y, backend="numpy", **problem.spec_kwargs
    )
    lhs, rhs = np.vdot(y, problem.grad_y), np.vdot(problem.x, grad_x)
    assert abs(lhs - rhs) <= _adjoint_tolerance(problem)


@given(problem=problems(dtypes=["float64"], with_grad_y=True))
def test_numpy_vjp_is_the_adjoint_in_w_and_bias(numpy_backend: Backend, problem: Problem) -> None:
    """``<correlate(x, w, b), g> == <w, grad_w(g)> + <b, grad_bias(g)>``: linear in (w, b)."""
    y = pc.correlate(problem.x, problem.w, problem.bias, backend="numpy", **problem.spec_kwargs)
    _, grad_w, grad_bias = pc.correlate_vjp(
        problem.x, problem.w, problem.bias, problem.grad_y, backend="numpy", **problem.spec_kwargs
    )
    rhs = np.vdot(problem.w, grad_w)
    if problem.bias is not None:
        rhs += np.vdot(problem.bias, grad_bias)
    assert abs(np.vdot(y, problem.grad_y) - rhs) <= _adjoint_tolerance(problem)


@given(problem=problems(dtypes=["float64"], max_size=3, with_grad_y=True))
def test_numpy_vjp_equals_central_differences(numpy_backend: Backend, problem: Problem) -> None:
    """Each gradient element equals ``(f(a + h e_i) - f(a - h e_i)) / 2h`` for
    ``f = <correlate(x, w, bias), grad_y>``. f is linear in each argument, so the difference
    quotient is exact up to rounding for any h; h = 1/2 keeps the steps well away from 0."""
    kwargs = problem.spec_kwargs
    arrays = list(problem_arrays(problem))

    def f(args: list[np.ndarray | None]) -> float:
        return float(np.vdot(pc.correlate(*args, backend="numpy", **kwargs), problem.grad_y))

    step = 0.5
    grads = pc.correlate_vjp(*arrays, problem.grad_y, backend="numpy", **kwargs)
    bounds = vjp_error_bounds(*arrays, problem.grad_y, "float64", kwargs)
    # Each evaluation of f errs by at most the inner-product tolerance on inputs grown by h.
    grown = [None if a is None else np.abs(a) + step for a in arrays]
    f_error = _inner_product_tolerance(*grown, problem.grad_y, kwargs)
    for position, (array, grad, bound) in enumerate(zip(arrays, grads, bounds, strict=True)):
        if array is None:
            continue
        for index in np.ndindex(array.shape):
            plus, minus = array.copy(), array.copy()
            plus[index] += step
            minus[index] -= step
            plus_args, minus_args = list(arrays), list(arrays)
            plus_args[position], minus_args[position] = plus, minus
            difference = (f(plus_args) - f(minus_args)) / (plus[index] - minus[index])
            tolerance = 2 * f_error / (plus[index] - minus[index]) + bound[index]
            assert abs(difference - grad[index]) <= tolerance, (position, index)


@given(problem=problems(dtypes=["float64"], ranks=[2, 3]))
def test_numpy_forward_equals_reference_with_non_square_stride_and_dilation(
    numpy_backend: Backend, problem: Problem
) -> None:
    spec = problem.spec
    assume(len(set(spec.stride)) > 1 and len(set(spec.dilation)) > 1)
    y = pc.correlate(problem.x, problem.w, problem.bias, backend="numpy", **problem.spec_kwargs)
    assert_close(
        y,
        problem.reference(),
        *problem_arrays(problem),
        dtype="float64",
        spec_kwargs=problem.spec_kwargs,
    )
