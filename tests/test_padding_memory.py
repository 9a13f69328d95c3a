"""Padding index maps are kept only while small: 1-D signals of many lengths do not pin memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import require_backend

import polyconv as pc
from polyconv._spec import padding as _padding

LENGTHS = range(100_000, 100_040)  # 40 signals: their int64 maps would hold 32 MB


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_index_maps_of_many_signal_lengths_are_not_all_kept(backend: str) -> None:
    require_backend(backend)
    w = np.ones((1, 1, 3), np.float32)
    signals = [np.ones((1, 1, n), np.float32) for n in LENGTHS]
    if backend == "torch":
        import torch

        signals, w = [torch.from_numpy(x) for x in signals], torch.from_numpy(w)
    tracemalloc.start()
    try:
        for x in signals:
            pc.correlate(x, w, padding="same", padding_mode="reflect", backend=backend)
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept < 2 * _padding.INDEX_CACHE_BYTES, f"{kept / 2**20:.0f} MiB kept"
    if backend == "torch":
        from polyconv.backends import torch_backend

        assert torch_backend._kept_indices.nbytes <= _padding.INDEX_CACHE_BYTES


def test_pad_indices_are_np_pad_of_the_positions_whether_kept_or_not() -> None:
    for size in (5, 1_000_000):  # kept, and too large to keep
        index = _padding.pad_indices(size, 7, 3, "symmetric")
        expected = np.pad(np.arange(size), (7, 3), mode="symmetric")
        np.testing.assert_array_equal(index, expected)
        assert not index.flags.writeable
