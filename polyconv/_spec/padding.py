"""Padding as a gather: for each padded position, the input index it reads (NumPy semantics).

Every padding mode is linear and reads one input element per padded element, so a mode is fully
described by an index map. Backends gather with it (``take``/``index_select``), and the NumPy
backend scatters gradients back with it, which is exactly the transpose of the padding.
"""

from __future__ import annotations

import functools

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
