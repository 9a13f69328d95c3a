"""Padding as a gather: for each padded position, the input index it reads (NumPy semantics).

Every padding mode is linear and reads one input element per padded element, so a mode is fully
described by an index map. Backends gather with it (``take``/``index_select``), and the NumPy
backend scatters gradients back with it, which is exactly the transpose of the padding.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

# polyconv's mode names, as np.pad spells them.
NUMPY_PAD_MODE = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
    "symmetric": "symmetric",
}


@functools.lru_cache(maxsize=1024)
def pad_indices(size: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Source index of each of the ``lo + size + hi`` padded positions; -1 marks a zero.

    Any pad width works (wider than the input too), exactly as ``np.pad`` defines it.
    """
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
