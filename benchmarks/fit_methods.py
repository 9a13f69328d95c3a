"""Refit the cost model of ``method="auto"`` (``polyconv/backends/_cost.py``) to a benchmark record.

    python -m benchmarks --json benchmarks/results.json   # measure (docs/benchmarks.md)
    python -m benchmarks.fit_methods                      # fit, print the new MODELS entries

For every backend, the constants of its ``CostModel`` are fitted by least squares to the cases
where the record timed both its direct and its FFT method: on the log of each case's
direct/FFT time ratio (what the choice depends on), plus a lighter weight on the log of each
time, so that the constants stay plausible. Constants are fitted on a log scale with a floor;
one that ends at the floor is printed as 0 (that term does not limit this backend on the
benchmark cases). The script prints the entries to paste into ``MODELS`` and how many cases
each choice gets right; ``tests/test_methods.py`` then checks the choice against the record.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np

import polyconv as pc
from polyconv.backends import _cost as _methods

RESULTS = Path(__file__).resolve().parent / "results.json"
TIME_WEIGHT = 0.3  # weight of each time's log residual, next to 1 for the ratio's
FLOOR, CEILING = 1e-14, 1e3  # bounds of every constant, in seconds per unit (or taps)

Case = tuple[str, pc.CorrSpec, float, float]  # (case, spec, direct seconds, FFT seconds)


def measured_cases(results: Path, backend: str) -> list[Case]:
    """The record's cases that timed both methods on ``backend``, with their specs."""
    found: dict[str, tuple[dict[str, float], dict[str, object]]] = {}
    for row in json.loads(results.read_text())["results"]:
        match = re.fullmatch(rf"polyconv {backend} (direct|fft)", row["implementation"])
        if match and row["problem"] and row["median_s"]:
            times, _ = found.setdefault(row["case"], ({}, row["problem"]))
            times[match[1]] = row["median_s"]
    cases = []
    for case, (times, problem) in found.items():
        if len(times) == 2:
            options = dict(problem["options"])  # type: ignore[call-overload]
            spec = pc.normalize(
                problem["x_shape"],  # type: ignore[arg-type]
                problem["w_shape"],  # type: ignore[arg-type]
                **options,
            )
            cases.append((case, spec, times["direct"], times["fft"]))
    return cases


def _costs(model: _methods.CostModel, backend: str, spec: pc.CorrSpec) -> tuple[float, float]:
    saved = _methods.MODELS[backend]
    _methods.MODELS[backend] = model
    try:
        return _methods.direct_cost(spec, backend), _methods.fft_cost(spec, backend)
    finally:
        _methods.MODELS[backend] = saved


def fit(backend: str, cases: list[Case]) -> _methods.CostModel:
    from scipy.optimize import least_squares

    names = [f.name for f in dataclasses.fields(_methods.CostModel)]
    start = dataclasses.asdict(_methods.MODELS[backend])
    x0 = np.log(np.clip([start[n] for n in names], FLOOR * 10, CEILING / 10))

    def model_of(log_params: np.ndarray) -> _methods.CostModel:
        return _methods.CostModel(**dict(zip(names, np.exp(log_params).tolist(), strict=True)))

    def residuals(log_params: np.ndarray) -> np.ndarray:
        model = model_of(log_params)
        out = []
        for _, spec, direct, fft in cases:
            direct_model, fft_model = _costs(model, backend, spec)
            out.append(math.log(direct_model / fft_model) - math.log(direct / fft))
            out.append(TIME_WEIGHT * math.log(direct_model / direct))
            out.append(TIME_WEIGHT * math.log(fft_model / fft))
        return np.asarray(out)

    solution = least_squares(residuals, x0, bounds=(math.log(FLOOR), math.log(CEILING)))
    fitted = dataclasses.asdict(model_of(solution.x))
    return _methods.CostModel(
        **{n: 0.0 if v <= FLOOR * 1.01 else float(f"{v:.2g}") for n, v in fitted.items()}
    )


def _right(model: _methods.CostModel, backend: str, cases: list[Case], tie: float) -> int:
    right = 0
    for _, spec, direct, fft in cases:
        direct_model, fft_model = _costs(model, backend, spec)
        chosen = fft if fft_model < direct_model else direct
        right += chosen <= tie * min(direct, fft)
    return right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--tie", type=float, default=1.25, help="a choice this close is right")
    args = parser.parse_args()
    for backend in _methods.MODELS:
        cases = measured_cases(args.results, backend)
        if not cases:
            print(f"# {backend}: no case timed both methods")
            continue
        model = fit(backend, cases)
        before = _right(_methods.MODELS[backend], backend, cases, args.tie)
        after = _right(model, backend, cases, args.tie)
        print(f"# {backend}: {len(cases)} cases; right within {args.tie}x: {before} -> {after}")
        fields = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(model).items())
        print(f'"{backend}": CostModel({fields}),')


if __name__ == "__main__":
    main()
