"""The properties every polyconv backend must have; see :mod:`polyconv.conformance`.

The backend under test is named by ``$POLYCONV_CONFORMANCE_BACKEND``; a missing or unusable name
is a usage error, never a silent pass.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import polyconv
from polyconv import normalize
from polyconv._spec.dtypes import FLOAT_DTYPES
from polyconv.backends import Backend, get, registered
from polyconv.testing import (
    Problem,
    assert_close,
    assert_vjp_close,
    problems,
    unavailable_reason,
    unsupported_dtype_reason,
)

from . import BACKEND_VARIABLE, DEFAULT_MAX_EXAMPLES, MAX_EXAMPLES_VARIABLE


def _backend_name() -> str:
    name = os.environ.get(BACKEND_VARIABLE, "")
    if not name:
        raise pytest.UsageError(
            f"set {BACKEND_VARIABLE} to the backend to check (registered: "
            f"{', '.join(sorted(registered()))}), e.g. "
            f"{BACKEND_VARIABLE}=numpy pytest --pyargs polyconv.conformance"
        )
    reason = unavailable_reason(name)
    if reason is not None:
        raise pytest.UsageError(f"{BACKEND_VARIABLE}={name}: {reason}")
    return name


def _max_examples() -> int:
    text = os.environ.get(MAX_EXAMPLES_VARIABLE, str(DEFAULT_MAX_EXAMPLES))
    if not text.isdigit() or int(text) < 1:
        raise pytest.UsageError(f"{MAX_EXAMPLES_VARIABLE} must be a positive int, got {text!r}")
    return int(text)


NAME = _backend_name()
SUPPORTED_DTYPES = tuple(d for d in FLOAT_DTYPES if unsupported_dtype_reason(NAME, d) is None)
# The same examples on every run: a conformance report must be reproducible.
EXAMPLES = settings(
    max_examples=_max_examples(),
    deadline=None,
    database=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _native(problem: Problem) -> dict[str, Any]:
    """The problem's arrays as the backend's own arrays, in the problem's dtype."""
    backend = get(NAME)
    arrays = {"x": problem.x, "w": problem.w, "bias": problem.bias, "grad_y": problem.grad_y}
    return {
        key: None if a is None else backend.convert(a.astype(problem.dtype), problem.dtype, None)
        for key, a in arrays.items()
    }


def _requires(dtype: str) -> None:
    reason = unsupported_dtype_reason(NAME, dtype)
    if reason is not None:
        pytest.skip(reason)


def test_backend_loads_under_its_registered_name() -> None:
    backend = get(NAME)
    assert isinstance(backend, Backend)
    assert backend.name == NAME, f"the class says name = {backend.name!r}, registered as {NAME!r}"


def test_float32_is_supported() -> None:
    assert "float32" in SUPPORTED_DTYPES, unsupported_dtype_reason(NAME, "float32")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_convert_and_to_numpy_round_trip_values_and_dtype(dtype: str) -> None:
    _requires(dtype)
    backend = get(NAME)
    values = np.linspace(-1.0, 1.0, 24).reshape(2, 3, 4).astype(dtype)
    converted = backend.convert(values, dtype, None)
    assert backend.owns(converted)
    assert backend.dtype_name(converted) == dtype
    np.testing.assert_array_equal(backend.to_numpy(converted), values)


def test_framework_arrays_are_dispatched_to_the_backend() -> None:
    backend = get(NAME)
    x = backend.convert(np.ones((1, 2, 5)), "float32", None)
    w = backend.convert(np.ones((3, 2, 2)), "float32", None)
    y = polyconv.correlate(x, w)  # no backend=: chosen by the arrays' type
    assert backend.owns(y), f"got {type(y).__name__}, not an array of backend {NAME!r}"


@pytest.mark.parametrize("rank", [1, 2])
def test_choose_method_answers_direct_or_fft_and_both_are_accepted(rank: int) -> None:
    backend = get(NAME)
    x_shape, w_shape = (1, 2, *(9,) * rank), (3, 2, *(3,) * rank)
    spec = normalize(x_shape, w_shape)
    assert backend.choose_method(spec) in ("direct", "fft")
    x = backend.convert(np.linspace(-1, 1, math.prod(x_shape)).reshape(x_shape), "float32", None)
    w = backend.convert(np.linspace(1, -1, math.prod(w_shape)).reshape(w_shape), "float32", x)
    for method in ("direct", "fft"):
        y = backend.correlate(x, w, None, spec, method=method)
        grads = backend.correlate_vjp(x, w, None, y, spec, method=method)
        assert backend.owns(y) and all(backend.owns(g) for g in grads[:2])


def test_result_stays_on_the_input_device() -> None:
    backend = get(NAME)
    x = backend.convert(np.ones((1, 2, 5, 5)), "float32", None)
    w = backend.convert(np.ones((3, 2, 2, 2)), "float32", x)
    y = polyconv.correlate(x, w, backend=NAME)
    grad_x, grad_w, _ = polyconv.correlate_vjp(x, w, None, y, backend=NAME)
    devices = {backend.device(a) for a in (y, grad_x, grad_w)}
    assert devices == {backend.device(x)}


@EXAMPLES
@given(problems(dtypes=SUPPORTED_DTYPES))
def test_correlate_matches_the_reference(problem: Problem) -> None:
    a = _native(problem)
    y = polyconv.correlate(a["x"], a["w"], a["bias"], backend=NAME, **problem.spec_kwargs)
    assert_close(
        y,
        problem.reference(),
        problem.x,
        problem.w,
        problem.bias,
        dtype=problem.dtype,
        spec_kwargs=problem.spec_kwargs,
    )


@EXAMPLES
@given(problems(dtypes=SUPPORTED_DTYPES, with_grad_y=True))
def test_correlate_vjp_matches_the_reference(problem: Problem) -> None:
    a = _native(problem)
    grads = polyconv.correlate_vjp(
        a["x"], a["w"], a["bias"], a["grad_y"], backend=NAME, **problem.spec_kwargs
    )
    assert_vjp_close(
        grads,
        problem.reference_vjp(),
        problem.x,
        problem.w,
        problem.bias,
        problem.grad_y,
        dtype=problem.dtype,
        spec_kwargs=problem.spec_kwargs,
    )


@EXAMPLES
@given(problems(dtypes=SUPPORTED_DTYPES))
def test_convolve_correlates_with_the_flipped_kernel(problem: Problem) -> None:
    a = _native(problem)
    y = polyconv.convolve(a["x"], a["w"], a["bias"], backend=NAME, **problem.spec_kwargs)
    flipped = np.flip(problem.w, axis=tuple(range(2, problem.w.ndim)))
    expected = polyconv.reference.correlate(problem.x, flipped, problem.bias, **problem.spec_kwargs)
    assert_close(
        y,
        expected,
        problem.x,
        flipped,
        problem.bias,
        dtype=problem.dtype,
        spec_kwargs=problem.spec_kwargs,
    )
