"""Running independent pieces of NumPy work on every core.

NumPy releases the GIL inside its matrix products, copies, ufuncs and FFTs, so Python threads
that each run a block of rows use all cores. Work is only split when it is large enough to pay
for the hand-off (tens of microseconds).
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

ENV_VAR = "POLYCONV_NUM_THREADS"
# Multiply-adds below which a problem runs on the calling thread. Measured here on
# single-channel images: 128x128 with 5x5 took 2.4 ms split over two threads and 0.8 ms on
# one; 512x512 with 3x3 (2.4M multiply-adds) still gains from the split.
PARALLEL_MIN_WORK = 1 << 21


@functools.cache
def thread_count() -> int:
    """Threads the NumPy backend uses: ``$POLYCONV_NUM_THREADS``, else the usable cores."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            raise ValueError(f"{ENV_VAR} must be a positive int, got {configured!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=thread_count(), thread_name_prefix="polyconv")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], parallel: bool = True) -> Iterator[R]:
    """``map(fn, items)``, run on the thread pool when ``parallel`` and there is more than one
    item and thread; results come back in order, so callers can reduce them deterministically."""
    items = list(items)
    if not parallel or len(items) < 2 or thread_count() < 2:
        return map(fn, items)
    return _pool().map(fn, items)


def split(total: int, pieces: int) -> list[tuple[int, int]]:
    """``range(total)`` as at most ``pieces`` contiguous ``(start, stop)`` chunks of near-equal size."""
    pieces = max(1, min(pieces, total))
    bounds = [total * i // pieces for i in range(pieces + 1)]
    return [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]
