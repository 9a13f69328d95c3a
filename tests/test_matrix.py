"""as_matrix: correlation as the dense matrix of a fully-connected layer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import polyconv as pc
from polyconv import reference, testing
from polyconv.backends import Backend


@given(testing.problems(dtypes=("float64",), bias=False))
def test_matrix_times_flattened_input_is_the_correlation(problem: testing.Problem) -> None:
    matrix = pc.as_matrix(problem.w, problem.x.shape, **problem.spec_kwargs)
    expected = problem.reference()
    assert matrix.shape == (expected.size, problem.x.size)
    bound = testing.error_bound(problem.x, problem.w, None, "float64", problem.spec_kwargs)
    testing.assert_within(matrix @ problem.x.ravel(), expected.ravel(), bound.ravel())


@given(testing.problems(dtypes=("float64",), bias=False, batched=True, max_batch=3))
def test_batched_matrix_is_block_diagonal_with_one_block_per_sample(
    problem: testing.Problem,
) -> None:
    batch = problem.x.shape[0]
    whole = pc.as_matrix(problem.w, problem.x.shape, **problem.spec_kwargs)
    one = pc.as_matrix(problem.w, problem.x.shape[1:], **problem.spec_kwargs)
    np.testing.assert_array_equal(whole, np.kron(np.eye(batch), one))


def test_matrix_of_a_backend_array_equals_the_matrix_of_its_values(backend: Backend) -> None:
    w = np.random.default_rng(0).uniform(-1, 1, (2, 3, 2, 2)).astype(np.float32)
    native = backend.convert(w, "float32", None)
    spec = {"stride": 2, "padding": "same", "padding_mode": "circular"}
    matrix = pc.as_matrix(native, (3, 5, 4), **spec)
    assert isinstance(matrix, np.ndarray)
    np.testing.assert_array_equal(matrix, pc.as_matrix(w, (3, 5, 4), **spec))


@pytest.mark.parametrize(
    ("w_dtype", "matrix_dtype"),
    [("float16", "float16"), ("float32", "float32"), ("float64", "float64"), ("int64", "float32")],
)
def test_matrix_dtype_is_the_correlation_dtype_of_w(w_dtype: str, matrix_dtype: str) -> None:
    w = np.ones((1, 1, 2), dtype=w_dtype)
    assert pc.as_matrix(w, (1, 4)).dtype == matrix_dtype


def test_lesson_kernel_matrix_has_one_row_per_window() -> None:
    matrix = pc.as_matrix(np.array([[[[1.0, -1.0]]]]), (1, 2, 3))
    expected = np.array(
        [
            [1, -1, 0, 0, 0, 0],
            [0, 1, -1, 0, 0, 0],
            [0, 0, 0, 1, -1, 0],
            [0, 0, 0, 0, 1, -1],
        ]
    )
    np.testing.assert_array_equal(matrix, expected)


def test_padding_modes_that_reuse_an_input_sum_the_taps_that_read_it() -> None:
    # replicate padding reads x[0] for the padded position too: the column of x[0] gets both taps.
    matrix = pc.as_matrix(
        np.array([[[2.0, 3.0]]]), (1, 3), padding=((1, 0),), padding_mode="replicate"
    )
    np.testing.assert_array_equal(matrix, [[5, 0, 0], [2, 3, 0], [0, 2, 3]])
    x = np.array([[1.0, 10.0, 100.0]])
    np.testing.assert_array_equal(
        matrix @ x.ravel(),
        reference.correlate(x, [[[2.0, 3.0]]], padding=((1, 0),), padding_mode="replicate").ravel(),
    )


@pytest.mark.parametrize("input_shape", ["1,6", 6, (1, 6.5)])
def test_input_shape_must_be_a_tuple_of_ints(input_shape: object) -> None:
    with pytest.raises(TypeError, match="input_shape"):
        pc.as_matrix(np.ones((1, 1, 2)), input_shape)  # type: ignore[arg-type]


def test_input_shape_inconsistent_with_w_is_refused_naming_x() -> None:
    with pytest.raises(ValueError, match=r"C_in"):
        pc.as_matrix(np.ones((1, 2, 2)), (3, 6))
