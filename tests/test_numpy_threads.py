"""The NumPy backend's threads: OpenBLAS is held to one thread while the pool runs matrix
products, and given back its own count afterwards, however many calls overlap."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import polyconv as pc
from polyconv.backends import _numpy_parallel
from polyconv.backends._numpy_parallel import single_threaded_blas

OPENBLAS = _numpy_parallel._openblas()


@pytest.fixture
def blas_count() -> Iterator[Callable[[], int]]:
    """OpenBLAS on two threads for the test (its own count restored after); yields the getter."""
    if OPENBLAS is None:
        pytest.skip("NumPy does not use OpenBLAS here")
    get, set_ = OPENBLAS
    before = get()
    set_(2)
    yield get
    set_(before)


def test_blas_runs_on_one_thread_inside_and_on_its_own_count_after(blas_count) -> None:
    with single_threaded_blas():
        assert blas_count() == 1
    assert blas_count() == 2


def test_overlapping_holders_restore_the_count_once_the_last_leaves(blas_count) -> None:
    get = blas_count
    entered, leave = threading.Barrier(2), threading.Event()
    seen: list[int] = []

    def hold() -> None:
        with single_threaded_blas():
            entered.wait()
            leave.wait()
        seen.append(get())

    other = threading.Thread(target=hold)
    other.start()
    try:
        with single_threaded_blas():
            entered.wait()
        assert get() == 1  # the other holder is still inside
    finally:
        leave.set()
        other.join()
    assert seen == [2] and get() == 2


def test_a_layer_split_over_the_pool_equals_the_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 40, 40))
    w = rng.standard_normal((16, 8, 3, 3))
    np.testing.assert_allclose(
        pc.correlate(x, w, padding=1, method="direct"),
        pc.reference.correlate(x, w, padding=1),
        rtol=1e-10,
        atol=1e-10,
    )
