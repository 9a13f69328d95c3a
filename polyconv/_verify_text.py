"""A :class:`~polyconv.verify.VerifyReport` as text: the table ``polyconv verify`` prints."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .backends import get

if TYPE_CHECKING:
    from .verify import VerifyReport

# Options at their defaults are left out of the table's header.
_DEFAULTS = {"stride": 1, "padding": "valid", "dilation": 1, "groups": 1, "padding_mode": "zeros"}


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
    spec = report.spec
    shown = {k: v for k, v in report.spec_kwargs.items() if v != _DEFAULTS[k]}
    keywords = ", ".join(f"{k}={v!r}" for k, v in shown.items()) or "defaults"
    x_shape = spec.x_shape if spec.batched else spec.x_shape[1:]
    bias = f", b ({spec.w_shape[0]},)" if spec.has_bias else ""
    lines = [
        f"polyconv verify: x {x_shape}, w {spec.w_shape}{bias} in {report.dtype}; "
        f"{keywords} -> y {spec.user_out_shape}",
        f"reference: float64 (polyconv.reference); bound per element: c * eps({report.dtype}) * "
        f"K * sum(|terms|), c = {report.c:g}, K = {spec.terms_per_output + spec.has_bias} terms "
        "per output, + c * K * eta for underflow; the FFT method adds a global term "
        "(polyconv.testing.fft_error) in the precision its transforms ran in",
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
        if result.error is not None:
            rows.append((*first, "-", "", "", "", "", "", "FAIL"))
            continue
        for check in result.checks:
            seconds = {"y": result.forward_seconds, "grad_x": result.vjp_seconds}.get(check.result)
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    details = []
    for result in report.results:
        if result.error is not None:
            details.append(f"{result.backend}: {result.error}")
        details += [
            f"{result.backend} {c.result}: {c.detail}" for c in result.checks if not c.passed
        ]
    lines.append("")
    if any(r.vjp_seconds is not None for r in report.results):
        lines.append(
            "time/call: median; the grad_x row times one correlate_vjp call (all gradients)"
        )
    lines += details
    if report.ok:
        lines.append(f"ok: {len(report.results)} backend(s) agree with the reference")
    elif not report.results:
        lines.append("FAIL: no backend was checked")
    else:
        lines.append(f"FAIL: {', '.join(report.failed)} disagree(s) with the reference")
    return "\n".join(lines)
