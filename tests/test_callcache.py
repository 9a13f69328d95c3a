"""The call cache of the public operations: one entry per call signature, bounded, cleared on
request and when the backend registry changes; never a different result."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import polyconv as pc
from polyconv._core.callcache import CALLS, CallCache

# (pc.backends is the function that lists them; the registry is the module.)
registry = importlib.import_module("polyconv.backends")

X = np.arange(2 * 3 * 5 * 5, dtype=np.float64).reshape(2, 3, 5, 5)
W = np.linspace(-1.0, 1.0, 4 * 3 * 2 * 2).reshape(4, 3, 2, 2)


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    pc.clear_caches()


def test_each_operation_keeps_one_entry_for_repeated_calls() -> None:
    grad_y = np.ones((2, 4, 4, 4))
    for _ in range(3):
        pc.correlate(X, W)
        pc.convolve(X, W)
        pc.correlate_vjp(X, W, None, grad_y)
    assert len(CALLS) == 3


def test_another_shape_dtype_or_setting_is_another_entry() -> None:
    pc.correlate(X, W)
    pc.correlate(X[:1], W)
    pc.correlate(X.astype(np.float32), W.astype(np.float32))
    pc.correlate(X, W, padding=1)
    assert len(CALLS) == 4


def test_a_call_whose_inputs_convert_is_not_kept() -> None:
    pc.correlate(X.tolist(), W)
    pc.correlate(X.astype(np.float32), W)  # promoted to float64: converted
    assert len(CALLS) == 0


def test_clear_caches_empties_it_and_the_next_call_computes_the_same() -> None:
    first = pc.correlate(X, W, padding="same")
    pc.clear_caches()
    assert len(CALLS) == 0
    np.testing.assert_array_equal(pc.correlate(X, W, padding="same"), first)


def test_a_registry_change_clears_it() -> None:
    pc.correlate(X, W)
    assert len(CALLS) == 1
    registry.registered.cache_clear()  # the entry points are read afresh: a new registry
    CALLS.get(("any key",))  # the next lookup sees it
    assert len(CALLS) == 0


def test_it_is_bounded_and_drops_the_oldest_entry_first() -> None:
    cache = CallCache(maxsize=2)
    for key in ("a", "b", "c"):
        cache.put((key,), print)
    assert len(cache) == 2
    assert cache.get(("a",)) is None
    assert cache.get(("c",)) is not None
