"""Timing callables: warm up, then repeat until a time budget or a run count is used up.

Medians rather than means or minima: on a shared machine a neighbour's burst lands in a few runs,
and the median ignores those without rewarding a lucky outlier the way the minimum does. The
implementations of one case are sampled in interleaved rounds (A B C, A C B, C A B, C B A,
...), so that a burst of load lasting seconds slows all of them a little rather than one of them
entirely, and the machine's slower and faster phases fall on all of them alike. Each round of an
implementation starts with one untimed call, because the first call after another
implementation's work runs slower: torch's threads keep spinning after a call, and the NumPy
backend's layer right after ``F.conv2d`` measured 1.15 to 1.21x slower here than the same call
right after another NumPy call.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._bench import Timed
from ._device import wait

#: A call slower than this gets only ``SLOW_RUNS`` timed runs (2048x2048 direct 31x31 takes
#: seconds; a median of three is enough to compare it and keeps the suite's total bounded).
SLOW_CALL_S = 1.0
SLOW_RUNS = 3
BUDGET_S = 0.6  # timed seconds per implementation, spread over the rounds
ROUNDS = 6
MIN_RUNS = ROUNDS  # at least one timed run per round


@dataclass(frozen=True)
class Timing:
    median: float  # seconds
    runs: int
    times: tuple[float, ...]


def block(result: object) -> object:
    """Wait for an asynchronous result: JAX dispatches asynchronously, so a timer that did not
    wait would measure the dispatch only. Torch and NumPy on the CPU are synchronous."""
    if isinstance(result, (tuple, list)):
        for item in result:
            block(item)
    elif hasattr(result, "block_until_ready"):
        result.block_until_ready()
    else:
        wait(result)  # torch on CUDA
    return result


class Sampler:
    """The runs of one implementation, taken a round at a time."""

    def __init__(self, fn: Callable[[], object], max_runs: int) -> None:
        self.fn = fn
        self.max_runs = max_runs
        self.min_runs = min(MIN_RUNS, max_runs)
        self.times: list[float] = []
        self.spent = 0.0
        self.slow = False  # the last call took over SLOW_CALL_S

    def warm_up(self) -> None:
        start = time.perf_counter()
        block(self.fn())  # the first call compiles (JAX) and faults in fresh buffers
        self.slow = time.perf_counter() - start > SLOW_CALL_S

    @property
    def done(self) -> bool:
        return len(self.times) >= self.max_runs or (
            self.spent >= BUDGET_S and len(self.times) >= self.min_runs
        )

    def run(self, budget_s: float, max_new_runs: int | None = None) -> None:
        """After one untimed call (none for a slow call, whose few runs it would double), timed
        runs until ``budget_s`` more seconds are spent (at least one run), or ``max_new_runs``
        more runs are taken."""
        if self.done:
            return
        if not self.slow:
            block(self.fn())  # settles what another implementation's call left running
        until = self.spent + budget_s
        stop_at = len(self.times) + (max_new_runs or self.max_runs)
        while not self.done and len(self.times) < stop_at:
            start = time.perf_counter()
            result = block(self.fn())
            elapsed = time.perf_counter() - start
            self.spent += elapsed
            self.times.append(result.seconds if isinstance(result, Timed) else elapsed)
            self.slow = elapsed > SLOW_CALL_S
            if self.slow:
                self.min_runs = self.max_runs = min(SLOW_RUNS, self.max_runs)
            if self.spent >= until:
                break

    def timing(self) -> Timing:
        return Timing(statistics.median(self.times), len(self.times), tuple(self.times))


def measure_all(fns: dict[str, Callable[[], object]], max_runs: int) -> dict[str, Timing]:
    """Median timings of every callable, sampled in interleaved rounds after one warm-up each."""
    samplers = {name: Sampler(fn, max_runs) for name, fn in fns.items()}
    for sampler in samplers.values():
        sampler.warm_up()
    order = list(samplers.values())
    for round_ in range(ROUNDS):
        # Each round starts with the next implementation, every other round in reverse order
        # (so that each runs after two different ones), and takes at most its share of the
        # runs, so that fast calls too are spread over every round.
        rotated = order[round_ % len(order) :] + order[: round_ % len(order)]
        for sampler in rotated[::-1] if round_ % 2 else rotated:
            sampler.run(BUDGET_S / ROUNDS, max_new_runs=-(-sampler.max_runs // ROUNDS))
    for sampler in samplers.values():  # top up to the minimum run count
        while not sampler.done:
            sampler.run(BUDGET_S)
    return {name: s.timing() for name, s in samplers.items()}
