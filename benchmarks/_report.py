"""Running cases into rows, judging targets, and writing the markdown report and the JSON."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass

from polyconv._timing import measure_all
from polyconv.backends._numpy.parallel import release_scratch

from ._bench import Bench, Case, Target
from ._cases import NOTES, SECTIONS
from ._device import wait


@dataclass
class Row:
    case: str
    section: str
    implementation: str
    median_s: float | None  # None for memory rows
    runs: int
    method: str | None  # what method="auto" chose, for the auto rows
    ratio: float | None  # to the fastest baseline row (memory: peak / (input + output bytes))
    peak_bytes: int | None = None
    times_s: tuple[float, ...] = ()  # every timed run, in order
    problem: dict[str, object] | None = None  # x_shape, w_shape, options (see Bench.problem)


@dataclass
class Verdict:
    case: str
    target: str
    implementation: str
    value: float
    limit: float
    kind: str
    strict: bool
    held: bool


def _peak_bytes(fn: Callable[[], object]) -> int:
    """Peak traced bytes allocated during ``fn()``; warmed up first, so caches (FFT plans,
    normalised specs) built on the first call are not counted, but the scratch buffers that
    the NumPy backend's threads keep between calls are released first, so they are."""
    wait(fn())
    release_scratch()
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        wait(fn())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_case(
    case: Case, max_runs: int, log: Callable[[str], None]
) -> tuple[list[Row], list[Verdict]]:
    """Measure every implementation of ``case`` and judge its targets."""
    bench = case.setup()
    if bench.memory_bytes is not None:
        peaks = {name: _peak_bytes(fn) for name, fn in bench.impls.items()}
        rows = [
            Row(case.name, case.section, name, None, 1, None, peak / bench.memory_bytes, peak)
            for name, peak in peaks.items()
        ]
    else:
        timings = measure_all(bench.impls, max_runs, wait=wait)
        rows = [
            Row(case.name, case.section, name, t.median, t.runs, None, None, times_s=t.times)
            for name, t in timings.items()
        ]
    for row in rows:
        row.method = bench.methods.get(row.implementation)
        row.problem = bench.problem
        log(f"  {case.name}: {row.implementation}: {_value(row)} ({row.runs} runs)")
    _set_ratios(bench, rows)
    return rows, _judge(case, bench.targets, rows)


def _set_ratios(bench: Bench, rows: list[Row]) -> None:
    medians = {r.implementation: r.median_s for r in rows if r.median_s is not None}
    if not bench.baseline:
        return
    best = min(medians[name] for name in bench.baseline)
    for row in rows:
        row.ratio = None if row.median_s is None else row.median_s / best


def _judge(case: Case, targets: list[Target], rows: list[Row]) -> list[Verdict]:
    by_name = {r.implementation: r for r in rows}
    verdicts = []
    for t in targets:
        measured = by_name[t.measured]
        if t.kind == "memory":
            value = measured.ratio or 0.0
        else:
            mine = measured.median_s or 0.0
            best = min(by_name[a].median_s or 0.0 for a in t.against)
            value = mine - best if t.kind == "overhead" else mine / best
        held = value < t.limit if t.strict else value <= t.limit
        verdicts.append(
            Verdict(case.name, t.label, t.measured, value, t.limit, t.kind, t.strict, held)
        )
    return verdicts


# --- formatting -----------------------------------------------------------------------------------


def _seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def _value(row: Row) -> str:
    if row.peak_bytes is not None:
        return f"{row.peak_bytes / 2**20:.1f} MiB"
    return _seconds(row.median_s or 0.0)


def _verdict_value(v: Verdict) -> str:
    if v.kind == "overhead":
        return f"{v.value * 1e6:+.1f} us (limit {_op(v)} {v.limit * 1e6:g} us)"
    return f"{v.value:.2f}x (limit {_op(v)} {v.limit:g}x)"


def _op(v: Verdict) -> str:
    return "<" if v.strict else "<="


def markdown(machine: str, rows: list[Row], verdicts: list[Verdict], header: str) -> str:
    out = [header, "", "Machine:", "", machine, ""]
    for section, title in SECTIONS.items():
        section_rows = [r for r in rows if r.section == section]
        if not section_rows:
            continue
        memory = section == "memory"
        out += [f"### {title}", "", NOTES[section], ""]
        out.append(
            "| case | implementation | peak traced | auto chose | peak / (in + out) |"
            if memory
            else "| case | implementation | median | runs | auto chose | ratio |"
        )
        out.append("|---|---|---:|---|---:|" if memory else "|---|---|---:|---:|---|---:|")
        for r in section_rows:
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
            method = r.method or ""
            if memory:
                out.append(f"| {r.case} | {r.implementation} | {_value(r)} | {method} | {ratio} |")
            else:
                out.append(
                    f"| {r.case} | {r.implementation} | {_value(r)} | {r.runs} | {method} | {ratio} |"
                )
        out.append("")
    out += [
        "### Targets",
        "",
        "| case | implementation | target | measured | held |",
        "|---|---|---|---|---|",
    ]
    for v in verdicts:
        mark = "yes" if v.held else "NO"
        out.append(f"| {v.case} | {v.implementation} | {v.target} | {_verdict_value(v)} | {mark} |")
    out += ["", f"{sum(v.held for v in verdicts)} of {len(verdicts)} targets held."]
    return "\n".join(out)


def as_json(
    machine: dict[str, object], options: dict[str, object], rows: list[Row], verdicts: list[Verdict]
) -> dict[str, object]:
    return {
        "machine": machine,
        "options": options,
        "results": [asdict(r) for r in rows],
        "targets": [asdict(v) for v in verdicts],
    }
