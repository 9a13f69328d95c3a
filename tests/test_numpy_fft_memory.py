"""The NumPy FFT method's memory is of the order of its transforms, and its caches are bounded
in bytes: a long kernel on a long signal needs megabytes, not the gigabytes of a dense
(taps x frequencies) DFT matrix."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import polyconv as pc
from polyconv._spec._byte_cache import ByteBoundedCache
from polyconv.backends import get
from polyconv.backends._numpy import fft as _numpy_fft

SIGNAL = 200_000
MAX_PEAK_BYTES = 64 << 20  # the signal is 0.8 MB in float32; its transforms a few MB each


@pytest.mark.parametrize("taps", [2047, 8191])
@pytest.mark.parametrize("method", ["fft", "auto"])
def test_a_long_kernel_on_a_long_signal_needs_memory_of_the_order_of_its_transforms(
    taps: int, method: str
) -> None:
    rng = np.random.default_rng(taps)
    x = rng.uniform(-1, 1, (1, 1, SIGNAL)).astype(np.float32)
    w = rng.uniform(-1, 1, (1, 1, taps)).astype(np.float32)
    assert get("numpy").choose_method(pc.normalize(x.shape, w.shape)) == "fft"  # also "auto"
    tracemalloc.start()
    try:
        y = pc.correlate(x, w, method=method, backend="numpy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"peak {peak / 2**20:.0f} MiB"
    assert _numpy_fft._dft_matrices.nbytes <= _numpy_fft._dft_matrices.max_bytes
    # (The reference's padding matrices would be quadratic in the signal: float64 direct.)
    exact = pc.correlate(x.astype(np.float64), w.astype(np.float64), method="direct")
    assert np.abs(y - exact).max() <= 1e-5 * np.abs(exact).max()


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 400)), max_size=40))
def test_a_byte_bounded_cache_never_holds_more_than_its_bound(requests) -> None:
    cache: ByteBoundedCache[np.ndarray] = ByteBoundedCache(1000)
    for key, size in requests:
        value = cache.get(key, lambda size=size: np.zeros(size, np.uint8))
        assert cache.get(key, lambda: np.zeros(0, np.uint8)).nbytes in (0, value.nbytes)
        assert cache.nbytes <= 1000
