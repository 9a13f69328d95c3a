"""``method="auto"``: the cost model picks the method that measured faster on the benchmarks.

``benchmarks/results.json`` is the record of the latest full ``python -m benchmarks --json``
run (docs/benchmarks.md). For every case where it timed both the direct and the FFT method of
one backend, the model's choice for that problem must be the faster one, or within ``TIE`` of
it, or within ``SLACK_S`` seconds of it: medians on the 2-core machine move by that much between
runs (more than 25% for sub-millisecond calls). Nothing is timed here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import polyconv as pc
from polyconv._methods import choose_method, direct_cost, fft_cost

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results.json"
TIE = 1.25
SLACK_S = 0.25e-3


def _measured() -> list[tuple[str, str, dict[str, float], dict[str, object]]]:
    """``(case, backend, {method: median seconds}, problem)`` for every case that timed both."""
    found: dict[tuple[str, str], tuple[dict[str, float], dict[str, object]]] = {}
    for row in json.loads(RESULTS.read_text())["results"]:
        match = re.fullmatch(r"polyconv (\w+) (direct|fft)", row["implementation"])
        if match and row["problem"] and row["median_s"]:
            times, _ = found.setdefault((row["case"], match[1]), ({}, row["problem"]))
            times[match[2]] = row["median_s"]
    return [
        (case, backend, times, problem)
        for (case, backend), (times, problem) in found.items()
        if len(times) == 2
    ]


MEASURED = _measured()


def _spec(problem: dict[str, object], backend: str) -> pc.CorrSpec:
    options = dict(problem["options"])  # type: ignore[call-overload]
    return pc.normalize(problem["x_shape"], problem["w_shape"], backend=backend, **options)


def test_the_record_times_both_methods_on_every_backend_and_each_wins_somewhere() -> None:
    assert {backend for _, backend, _, _ in MEASURED} == {"numpy", "torch", "jax"}
    winners = {min(times, key=times.__getitem__) for _, _, times, _ in MEASURED}
    assert winners == {"direct", "fft"}, "a record where one method always wins tests nothing"


@pytest.mark.parametrize(
    ("backend", "times", "problem"),
    [case[1:] for case in MEASURED],
    ids=[f"{backend}:{case}" for case, backend, _, _ in MEASURED],
)
def test_auto_picks_the_method_that_measured_faster(
    backend: str, times: dict[str, float], problem: dict[str, object]
) -> None:
    spec = _spec(problem, backend)
    chosen = choose_method(spec, backend)
    faster = min(times, key=times.__getitem__)
    assert times[chosen] <= max(TIE * times[faster], times[faster] + SLACK_S), (
        f"auto chose {chosen} ({times[chosen] * 1e3:.3g} ms) over {faster} "
        f"({times[faster] * 1e3:.3g} ms); model: direct {direct_cost(spec, backend) * 1e3:.3g} "
        f"ms, fft {fft_cost(spec, backend) * 1e3:.3g} ms"
    )


def test_normalize_resolves_auto_with_the_cost_model() -> None:
    _, backend, _, problem = MEASURED[0]
    auto = pc.normalize(
        problem["x_shape"],  # type: ignore[arg-type]
        problem["w_shape"],  # type: ignore[arg-type]
        method="auto",
        backend=backend,
        **dict(problem["options"]),  # type: ignore[call-overload]
    )
    assert auto.method == choose_method(_spec(problem, backend), backend)


def test_a_one_tap_kernel_never_uses_the_fft() -> None:
    for backend in ("numpy", "torch", "jax"):
        spec = pc.normalize((1, 1, 4096, 4096), (1, 1, 1, 1), method="auto", backend=backend)
        assert spec.method == "direct"
