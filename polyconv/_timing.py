"""How ``pc.verify`` times a backend's call: repeated until a time budget is spent (at least
``MIN_REPEATS`` calls, at most ``MAX_REPEATS``), each result waited for, the median kept.
(``benchmarks/_timer.py`` times implementations in interleaved rounds for the record of
``docs/benchmarks.md``; this is the quick figure a report shows.)"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from .backends import Array, Backend

TIMING_BUDGET_S = 0.2
MIN_REPEATS, MAX_REPEATS = 3, 100


def median_seconds(call: Callable[[], Array], backend: Backend, timing: bool) -> float | None:
    """The median seconds of ``call`` on ``backend`` (its result waited for), or None without
    ``timing``."""
    if not timing:
        return None
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < MAX_REPEATS and (
        len(times) < MIN_REPEATS or time.perf_counter() - started < TIMING_BUDGET_S
    ):
        start = time.perf_counter()
        backend.synchronize(call())
        times.append(time.perf_counter() - start)
    return statistics.median(times)
