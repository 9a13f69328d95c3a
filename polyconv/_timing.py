"""polyconv's timer: medians of repeated calls, each result waited for, several callables
sampled in interleaved rounds. ``pc.verify`` times one backend's call with it
(:func:`median_seconds`); the benchmarks behind ``docs/benchmarks.md`` time a case's
implementations against each other with it (:func:`measure_all`).

Medians rather than means or minima: on a shared machine a neighbour's burst lands in a few runs,
and the median ignores those without rewarding a lucky outlier the way the minimum does. The
implementations of one case are sampled in interleaved rounds (A B C, A C B, C A B, C B A,
...), so that a burst of load lasting seconds slows all of them a little rather than one of them
entirely, and the machine's slower and faster phases fall on all of them alike. Each round of an
implementation starts with one untimed call, because the first call after another
implementation's work runs slower (docs/benchmarks.md, "How it times").
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backends import Array, Backend

#: A call slower than this gets only ``SLOW_RUNS`` timed runs (a median of three is enough to
#: compare calls taking seconds and keeps a benchmark suite's total bounded).
SLOW_CALL_S = 1.0
SLOW_RUNS = 3
BUDGET_S = 0.6  # timed seconds per implementation in measure_all, spread over the rounds
ROUNDS = 6

# pc.verify's figure: a quick one.
TIMING_BUDGET_S = 0.2
MIN_REPEATS, MAX_REPEATS = 3, 100


@dataclass(frozen=True)
class Timed:
    """Returned by a callable that times itself (a training loop timing its steady-state steps
    from inside); the timer records ``seconds`` instead of the call's wall time."""

    seconds: float


@dataclass(frozen=True)
class Timing:
    median: float  # seconds
    runs: int
    times: tuple[float, ...]


def ready(result: object) -> object:
    """``result`` once computed: JAX dispatches asynchronously, so a timer that did not wait
    would measure the dispatch only (tuples and lists waited for item by item)."""
    if isinstance(result, (tuple, list)):
        for item in result:
            ready(item)
    elif hasattr(result, "block_until_ready"):
        result.block_until_ready()
    return result


class Sampler:
    """The timed runs of one callable, taken a round at a time; ``wait`` waits for a result
    (on the device it was computed on)."""

    def __init__(
        self,
        fn: Callable[[], object],
        max_runs: int,
        *,
        min_runs: int = ROUNDS,  # at least one timed run per round
        budget_s: float = BUDGET_S,
        wait: Callable[[object], object] = ready,
    ) -> None:
        self.fn = fn
        self.max_runs = max_runs
        self.min_runs = min(min_runs, max_runs)
        self.budget_s = budget_s
        self.wait = wait
        self.times: list[float] = []
        self.spent = 0.0
        self.slow = False  # the last call took over SLOW_CALL_S

    def call(self) -> object:
        result = self.fn()
        self.wait(result)
        return result

    def warm_up(self) -> None:
        start = time.perf_counter()
        self.call()  # the first call compiles (JAX) and faults in fresh buffers
        self.slow = time.perf_counter() - start > SLOW_CALL_S

    @property
    def done(self) -> bool:
        return len(self.times) >= self.max_runs or (
            self.spent >= self.budget_s and len(self.times) >= self.min_runs
        )

    def run(self, budget_s: float, max_new_runs: int | None = None, settle: bool = True) -> None:
        """After one untimed call (with ``settle``; none for a slow call, whose few runs it would
        double), timed runs until ``budget_s`` more seconds are spent (at least one run), or
        ``max_new_runs`` more runs are taken."""
        if self.done:
            return
        if settle and not self.slow:
            self.call()  # settles what another implementation's call left running
        until = self.spent + budget_s
        stop_at = len(self.times) + (max_new_runs or self.max_runs)
        while not self.done and len(self.times) < stop_at:
            start = time.perf_counter()
            result = self.call()
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


def measure_all(
    fns: dict[str, Callable[[], object]],
    max_runs: int,
    wait: Callable[[object], object] = ready,
) -> dict[str, Timing]:
    """Median timings of every callable, sampled in interleaved rounds after one warm-up each."""
    samplers = {name: Sampler(fn, max_runs, wait=wait) for name, fn in fns.items()}
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


def median_seconds(call: Callable[[], Array], backend: Backend, timing: bool) -> float | None:
    """``pc.verify``'s figure: the median seconds of ``call`` on ``backend`` (its result waited
    for), repeated until ``TIMING_BUDGET_S`` is spent (at least ``MIN_REPEATS`` calls, at most
    ``MAX_REPEATS``); None without ``timing``."""
    if not timing:
        return None
    sampler = Sampler(
        call,
        MAX_REPEATS,
        min_runs=MIN_REPEATS,
        budget_s=TIMING_BUDGET_S,
        wait=backend.synchronize,
    )
    while not sampler.done:
        sampler.run(TIMING_BUDGET_S, settle=False)
    return sampler.timing().median
