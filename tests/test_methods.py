"""``method="auto"``: the cost model picks the method that measured faster on the benchmarks.

``benchmarks/results.json`` is the record of the latest full ``python -m benchmarks --json``
run (docs/benchmarks.md). For every case where it timed both the direct and the FFT method of
one backend, the model's choice for that problem must be the faster one, or within ``TIE`` of
it, or within ``SLACK_S`` seconds of it: medians on the 2-core machine move by that much between
runs (more than 25% for sub-millisecond calls). Nothing is timed here.
"""

from __future__ import annotations

import pytest

import polyconv as pc
from benchmarks.fit_methods import RESULTS, measured_cases
from polyconv.backends import get
from polyconv.backends._cost import MODELS, choose_method, direct_cost, fft_cost

TIE = 1.25
SLACK_S = 0.25e-3

MEASURED = [(backend, *case) for backend in MODELS for case in measured_cases(RESULTS, backend)]


def test_the_record_times_both_methods_on_every_backend_and_each_wins_somewhere() -> None:
    assert {backend for backend, *_ in MEASURED} == {"numpy", "torch", "jax"}
    winners = {"direct" if direct < fft else "fft" for *_, direct, fft in MEASURED}
    assert winners == {"direct", "fft"}, "a record where one method always wins tests nothing"


@pytest.mark.parametrize(
    ("backend", "spec", "direct", "fft"),
    [(backend, spec, direct, fft) for backend, _, spec, direct, fft in MEASURED],
    ids=[f"{backend}:{case}" for backend, case, *_ in MEASURED],
)
def test_auto_picks_the_method_that_measured_faster(
    backend: str, spec: pc.CorrSpec, direct: float, fft: float
) -> None:
    times = {"direct": direct, "fft": fft}
    chosen = choose_method(spec, backend)
    faster = min(times, key=times.__getitem__)
    assert times[chosen] <= max(TIE * times[faster], times[faster] + SLACK_S), (
        f"auto chose {chosen} ({times[chosen] * 1e3:.3g} ms) over {faster} "
        f"({times[faster] * 1e3:.3g} ms); model: direct {direct_cost(spec, backend) * 1e3:.3g} "
        f"ms, fft {fft_cost(spec, backend) * 1e3:.3g} ms"
    )


def test_each_builtin_backend_chooses_by_its_own_cost_model() -> None:
    for backend, _, spec, _, _ in MEASURED:
        assert get(backend).choose_method(spec) == choose_method(spec, backend)


def test_a_one_tap_kernel_never_uses_the_fft() -> None:
    spec = pc.normalize((1, 1, 4096, 4096), (1, 1, 1, 1))
    for backend in ("numpy", "torch", "jax"):
        assert get(backend).choose_method(spec) == "direct"
