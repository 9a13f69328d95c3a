"""Padding as a gather: for each padded position, the input index it reads (NumPy semantics).

Every padding mode is linear and reads one input element per padded element, so a mode is fully
described by an index map. Backends gather with it (``take``/``index_select``), and the NumPy
backend scatters gradients back with it, which is exactly the transpose of the padding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._byte_cache import ByteBoundedCache

# polyconv's mode names, as np.pad spells them.
NUMPY_PAD_MODE = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
    "symmetric": "symmetric",
}


# Index maps kept for repeated calls: 8 MiB in all (an int64 map of a 1-D signal is 8 bytes per
# sample, so a long signal's map is built per call rather than pinned).
INDEX_CACHE_BYTES = 8 << 20
_kept_indices: ByteBoundedCache[np.ndarray] = ByteBoundedCache(INDEX_CACHE_BYTES)


def pad_indices(size: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Source index of each of the ``lo + size + hi`` padded positions; -1 marks a zero.

    Any pad width works (wider than the input too), exactly as ``np.pad`` defines it. Read-only;
    kept for the next call while small (:data:`INDEX_CACHE_BYTES` in all).
    """
    return _kept_indices.get((size, lo, hi, mode), lambda: _pad_indices(size, lo, hi, mode))


def _pad_indices(size: int, lo: int, hi: int, mode: str) -> np.ndarray:
    if mode == "zeros":
        index = np.pad(np.arange(size), (lo, hi), mode="constant", constant_values=-1)
    else:
        index = np.pad(np.arange(size), (lo, hi), mode=NUMPY_PAD_MODE[mode])  # type: ignore[call-overload]
    index.setflags(write=False)
    return index


def pad_source_index(positions: Any, size: int, mode: str, xp: Any) -> Any:
    """:func:`pad_indices` by arithmetic on an array of padded ``positions`` (``-lo`` up to
    ``size + hi``) in array namespace ``xp`` (NumPy, or torch: whose tracers can follow it where
    they cannot follow NumPy code), for every mode but zeros: each mode repeats the input with a
    period (circular ``size``, reflect ``2 (size - 1)``, symmetric ``2 size``), or clamps
    (replicate)."""
    if mode == "replicate":
        return xp.clip(positions, 0, size - 1)
    if mode == "circular":
        return xp.remainder(positions, size)
    if mode == "reflect" and size == 1:  # a period of 0: every position reads the one sample
        return positions * 0
    period = 2 * size if mode == "symmetric" else 2 * (size - 1)
    phase = xp.remainder(positions, period)
    mirrored = period - phase - 1 if mode == "symmetric" else period - phase
    return xp.where(phase < size, phase, mirrored)
