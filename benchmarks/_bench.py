"""What a benchmark case is: named implementations of one computation, the rows they are
compared against, and the targets the project set for them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from polyconv._timing import Timed

__all__ = ["Bench", "Case", "Target", "Timed"]


@dataclass(frozen=True)
class Target:
    """``value(measured) <op> limit``, where the value depends on ``kind``:

    - ``"ratio"``: median of ``measured`` over the fastest median among ``against``;
    - ``"overhead"``: median of ``measured`` minus the fastest median among ``against`` (seconds);
    - ``"memory"``: peak traced bytes of ``measured`` over the bench's input + output bytes.
    """

    label: str
    measured: str
    against: tuple[str, ...] = ()
    limit: float = 1.0
    kind: str = "ratio"
    strict: bool = False  # "faster than": value < limit rather than <= limit


@dataclass
class Bench:
    """One case, set up: its arrays already built, each implementation a zero-argument call."""

    impls: dict[str, Callable[[], object]]
    baseline: tuple[str, ...]  # every row's ratio is to the fastest of these
    targets: list[Target] = field(default_factory=list)
    methods: dict[str, str] = field(default_factory=dict)  # row -> the method "auto" chose
    memory_bytes: int | None = None  # input + output bytes: set for memory cases only
    # The problem's x and w shapes and keywords, recorded in the JSON so that the cost model's
    # choice can be checked against the measured direct and FFT rows (tests/test_methods.py).
    problem: dict[str, object] | None = None


@dataclass(frozen=True)
class Case:
    name: str  # what --only matches
    section: str
    quick: bool  # part of --quick
    setup: Callable[[], Bench]
