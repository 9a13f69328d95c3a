"""A :class:`~polyconv.verify.VerifyReport` as text: the table ``polyconv verify`` prints."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ._spec.spec import CorrSpec
from .backends import get

if TYPE_CHECKING:
    from .verify import VerifyReport

# Options at their defaults are left out of the table's header.
_DEFAULTS = {
    "stride": 1,
    "padding": "valid",
    "output_padding": 0,
    "dilation": 1,
    "groups": 1,
    "padding_mode": "zeros",
}


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _format_error(value: float) -> str:
    return f"{value:.2e}" if math.isfinite(value) else str(value)


def render(report: VerifyReport) -> str:
    """The report as the table ``polyconv verify`` prints."""
    spec, kind = report.spec, report.kind
    shown = {k: v for k, v in report.spec_kwargs.items() if v != _DEFAULTS[k]}
    if kind.data_format != "channels_first":
        shown["data_format"] = kind.data_format
    if kind.kernel_format != "channels_first":
        shown["kernel_format"] = kind.kernel_format
    keywords = ", ".join(f"{k}={v!r}" for k, v in shown.items()) or "defaults"
    kernel = kind.shape_in_format(report.kernel_shape, 0, kernel=True)
    names = kind.results
    if isinstance(spec, CorrSpec):
        bias = f", b ({spec.w_shape[0]},)" if spec.has_bias else ""
        terms = f"{spec.terms_per_output + spec.has_bias} terms per output"
        what = "polyconv verify"
    else:
        bias = f", b ({spec.out_shape[1]},)" if spec.has_bias else ""
        terms = "the terms each output sums (the padding's folds too)"
        what = "polyconv verify --transpose"
    lines = [
        f"{what}: {kind.input_name} {report.input_shape}, w {kernel}{bias} in {report.dtype}; "
        f"{keywords} -> {names[0]} {report.output_shape}",
        f"reference: float64 (polyconv.reference); bound per element: c * eps({report.dtype}) * "
        f"K * sum(|terms|), c = {report.c:g}, K = {terms}, + c * K * eta for underflow; the "
        "FFT method adds a global term (polyconv.testing.fft_error) in the precision its "
        "transforms ran in",
        *(f"{r.backend} precision: {get(r.backend).precision_summary()}" for r in report.results),
        "",
    ]
    header = (
        "backend", "dtype", "device", "method", "result", "max abs err", "max rel err", "bound",
        "err/bound", "time/call", "status",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = [header]
    for result in report.results:
        first = (result.backend, result.dtype, result.device, result.method)
        if result.skipped is not None:
            rows.append((*first, "-", "", "", "", "", "", "skipped"))
            continue
        if result.error is not None:
            rows.append((*first, "-", "", "", "", "", "", "FAIL"))
            continue
        for check in result.checks:
            seconds = {names[0]: result.forward_seconds, names[1]: result.vjp_seconds}.get(
                check.result
            )
            rows.append(
                (
                    *first,
                    check.result,
                    _format_error(check.max_abs_error),
                    _format_error(check.max_rel_error),
                    _format_error(check.bound),
                    f"{check.worst_ratio:.3g}",
                    _format_seconds(seconds),
                    "ok" if check.passed else "FAIL",
                )
            )
            first = ("", "", "", "")
    timed = any(r.forward_seconds is not None for r in report.results)
    if not timed:  # --no-timing: no column of blanks
        rows = [row[:-2] + row[-1:] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    details = []
    for result in report.results:
        if result.skipped is not None:
            details.append(f"{result.backend}: skipped, nothing compared: {result.skipped}")
        if result.error is not None:
            details.append(f"{result.backend}: {result.error}")
        details += [
            f"{result.backend} {c.result}: {c.detail}" for c in result.checks if not c.passed
        ]
    lines.append("")
    if any(r.vjp_seconds is not None for r in report.results):
        lines.append(f"time/call: median; the {names[1]} row times one VJP call (all gradients)")
    lines += details
    skipped = [r.backend for r in report.results if r.skipped is not None]
    also = f" ({', '.join(skipped)} skipped)" if skipped else ""
    if report.ok:
        lines.append(f"ok: {len(report.checked)} backend(s) agree with the reference{also}")
    elif not report.checked:
        lines.append(f"FAIL: no backend was checked{also}")
    else:
        lines.append(f"FAIL: {', '.join(report.failed)} disagree(s) with the reference{also}")
    return "\n".join(lines)
