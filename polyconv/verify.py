"""``pc.verify`` and ``polyconv verify``: does every backend compute the same correlation?

For one problem, every selected backend computes the forward result and the three gradients
(:func:`polyconv.correlate_vjp`) in the chosen dtype, and each is compared with the float64
reference (:mod:`polyconv.reference`) on the same inputs, element by element, against the error
bound of :mod:`polyconv._bounds` (the bound the test suite uses): ``c * eps * K * sum(|terms|)``.
A backend passes when every element of every result is within its bound.

``polyconv verify --random N`` draws N problems with :func:`polyconv.testing.problems` (so it
needs Hypothesis), reports the worst one found, shrunk by Hypothesis when a backend disagrees,
and the command that reproduces it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _spec_args, reference
from ._api import correlate, correlate_vjp
from ._bounds import DEFAULT_C, assert_within, error_bound, to_numpy, vjp_error_bounds
from ._dtypes import DTYPES, numpy_dtype, result_dtype
from ._methods import method_for
from ._spec import METHODS, CorrSpec, IntOrTuple, PaddingArg, normalize
from .backends import Array, Backend, available, get

__all__ = ["BackendResult", "Check", "VerifyReport", "add_arguments", "run", "verify"]

RESULTS = ("y", "grad_x", "grad_w", "grad_bias")
# Timing: repeat a call until this much time has passed (at least MIN_REPEATS calls, at most
# MAX_REPEATS), then report the median.
TIMING_BUDGET_S = 0.2
MIN_REPEATS, MAX_REPEATS = 3, 100


@dataclass(frozen=True)
class Check:
    """One result of one backend against the reference.

    ``max_rel_error`` is normwise: the largest error over the largest reference magnitude (an
    element-wise ratio explodes where the reference is near zero). ``bound`` is the error bound
    at ``worst_ratio``'s element: the element nearest to (or farthest past) its own bound.
    """

    result: str
    max_abs_error: float
    max_rel_error: float
    bound: float
    worst_ratio: float
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class BackendResult:
    """What one backend computed: its checks, or the error it raised; median times per call."""

    backend: str
    dtype: str
    device: str
    method: str = "direct"  # what the call computed by: "direct" or "fft"
    checks: tuple[Check, ...] = ()
    forward_seconds: float | None = None
    vjp_seconds: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(check.passed for check in self.checks)

    @property
    def worst_ratio(self) -> float:
        """The largest error/bound ratio of any result (infinite when the backend failed)."""
        if self.error is not None:
            return math.inf
        return max((c.worst_ratio for c in self.checks), default=0.0)


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`: one :class:`BackendResult` per backend. ``str()`` gives a
    table; ``ok`` is whether every backend agreed with the reference."""

    spec: CorrSpec
    spec_kwargs: Mapping[str, Any]
    dtype: str
    seed: int
    results: tuple[BackendResult, ...]
    c: float = DEFAULT_C
    method: str = "auto"

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def worst_ratio(self) -> float:
        return max((r.worst_ratio for r in self.results), default=0.0)

    @property
    def failed(self) -> list[str]:
        return [r.backend for r in self.results if not r.ok]

    def command(self) -> str:
        """The ``polyconv verify`` command that runs this check again (for inputs given as
        arrays it reruns the shapes and keywords, on values drawn from the seed)."""
        x_shape = self.spec.x_shape if self.spec.batched else self.spec.x_shape[1:]
        flags = _spec_args.spec_flags(
            x_shape, self.spec.w_shape, self.spec_kwargs, bias=self.spec.has_bias
        )
        flags += ["--dtype", self.dtype, "--seed", str(self.seed)]
        if self.method != "auto":
            flags += ["--method", self.method]
        flags += ["--backends", ",".join(r.backend for r in self.results)]
        return _spec_args.command("verify", flags)

    def __str__(self) -> str:
        return _render(self)


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _format_error(value: float) -> str:
    return f"{value:.2e}" if math.isfinite(value) else str(value)


def _render(report: VerifyReport) -> str:
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


_DEFAULTS = {"stride": 1, "padding": "valid", "dilation": 1, "groups": 1, "padding_mode": "zeros"}


def _is_shape(obj: object) -> bool:
    return isinstance(obj, (tuple, list)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in obj
    )


def _values(rng: np.random.Generator, shape: Sequence[int], dtype: str) -> np.ndarray:
    """Uniform in [-1, 1), rounded to ``dtype`` and held in float64 (exact)."""
    return rng.uniform(-1.0, 1.0, tuple(shape)).astype(numpy_dtype(dtype)).astype(np.float64)


def _check(
    result: str,
    backend: Backend,
    actual: Array,
    expected: np.ndarray,
    bound: np.ndarray,
    dtype: str,
) -> Check:
    got_dtype = backend.dtype_name(actual)
    got = backend.to_numpy(actual).astype(np.float64)
    if got.shape != expected.shape:
        detail = f"shape {got.shape}, expected {expected.shape}"
        return Check(result, math.nan, math.nan, math.nan, math.inf, False, detail)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        error = np.abs(got - expected)
        ratios = np.where(
            bound > 0, error / np.where(bound > 0, bound, 1.0), np.where(error > 0, np.inf, 0.0)
        )
        ratios = np.where(np.isnan(ratios), np.inf, ratios)
    worst = np.unravel_index(int(np.argmax(ratios)), ratios.shape) if ratios.size else ()
    max_abs = float(np.max(error)) if error.size else 0.0
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    worst_ratio = float(ratios[worst]) if ratios.size else 0.0
    bound_at_worst = float(bound[worst]) if bound.size else 0.0
    detail = ""
    try:
        assert_within(got, expected, bound, what=result)
    except AssertionError as failure:
        detail = str(failure)
    if not detail and got_dtype != dtype:
        detail = f"{result} has dtype {got_dtype}, expected {dtype}"
    return Check(result, max_abs, max_rel, bound_at_worst, worst_ratio, not detail, detail)


def _median_seconds(call: Callable[[], Array], backend: Backend, timing: bool) -> float | None:
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


def _run_backend(
    name: str,
    method: str,
    inputs: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray],
    expected: Sequence[np.ndarray | None],
    bounds: Sequence[np.ndarray | None],
    dtype: str,
    kwargs: Mapping[str, Any],
    timing: bool,
) -> BackendResult:
    backend = get(name)
    device = "?"
    try:
        x, w, b, g = (
            None if a is None else backend.convert(a.astype(numpy_dtype(dtype)), dtype, None)
            for a in inputs
        )
        device = backend.device(x) or "?"
        y = correlate(x, w, b, backend=name, **kwargs)
        backend.synchronize(y)  # the first call compiles (JAX) or warms up; it is not timed
        grads = correlate_vjp(x, w, b, g, backend=name, **kwargs)
        backend.synchronize(grads[0])
        forward = _median_seconds(
            lambda: correlate(x, w, b, backend=name, **kwargs), backend, timing
        )
        vjp = _median_seconds(
            lambda: correlate_vjp(x, w, b, g, backend=name, **kwargs)[0], backend, timing
        )
    except Exception as error:  # a backend that raises fails the check; the report says how
        return BackendResult(
            name, dtype, device, method, error=f"raised {type(error).__name__}: {error}"
        )
    checks = [
        _check(result, backend, actual, want, bound, dtype)
        for result, actual, want, bound in zip(RESULTS, (y, *grads), expected, bounds, strict=True)
        if want is not None and bound is not None
    ]
    if (grads[2] is None) != (expected[3] is None):
        checks.append(
            Check(
                "grad_bias",
                math.nan,
                math.nan,
                math.nan,
                math.inf,
                False,
                f"grad_bias is {grads[2]!r}",
            )
        )
    return BackendResult(name, dtype, device, method, tuple(checks), forward, vjp)


def _as_float64(name: str, obj: object, dtype: str) -> np.ndarray:
    try:
        array = to_numpy(obj)
    except Exception as error:
        raise TypeError(
            f"{name} must be a shape (a tuple of ints) or an array, got {type(obj).__name__}: {error}"
        ) from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    return array.astype(numpy_dtype(dtype)).astype(np.float64)


def verify(
    x: Sequence[int] | Array,
    w: Sequence[int] | Array,
    bias: bool | Array | None = True,
    *,
    dtype: str | None = None,
    seed: int = 0,
    backends: Sequence[str] | None = None,
    grad_y: Array | None = None,
    timing: bool = True,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "auto",
) -> VerifyReport:
    """Run one correlation problem on every backend, forward and backward, against the float64
    reference; the report renders as a table (``print(report)``) and ``report.ok`` says whether
    every backend agreed within the error bound.

    ``x`` and ``w`` are shapes (``(8, 3, 32, 32)``; values drawn uniformly in [-1, 1) from
    ``seed``) or arrays of any backend. ``method`` is passed to every call; each backend's
    result is held to the bound of the method it computed by (``"auto"`` may choose the FFT). ``bias``: ``True`` draws one, ``False``/``None`` means
    none, or an array. ``dtype`` is the dtype every backend computes in (default float32 for
    shapes, the arrays' own dtype for arrays); inputs are rounded to it before the reference sees
    them, so only the computation's error is measured. ``backends``: names (default: every
    installed backend). ``grad_y``: the output gradient of the VJP (default: drawn from
    ``seed``). ``timing=False`` skips the timing. The other keywords are
    :func:`polyconv.correlate`'s.
    """
    kwargs: dict[str, Any] = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": padding_mode,
    }
    if dtype is None:
        given = {
            name: (to_numpy(a).dtype.name, False)
            for name, a in (("x", x), ("w", w), ("bias", bias), ("grad_y", grad_y))
            if a is not None and not isinstance(a, bool) and not (name in "xw" and _is_shape(a))
        }
        dtype = result_dtype(given) if given else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    names = list(available() if backends is None else backends)
    if isinstance(backends, str):
        raise TypeError(
            f"backends must be a sequence of names, e.g. [{backends!r}], got the string {backends!r}"
        )
    for name in names:
        get(name)  # an unknown or uninstalled backend is a ValueError naming the choices

    rng = np.random.default_rng(seed)
    x64 = _values(rng, x, dtype) if _is_shape(x) else _as_float64("x", x, dtype)
    w64 = _values(rng, w, dtype) if _is_shape(w) else _as_float64("w", w, dtype)
    if bias is True:
        b64: np.ndarray | None = _values(rng, (w64.shape[0],), dtype)
    elif bias is None or bias is False:
        b64 = None
    else:
        b64 = _as_float64("bias", bias, dtype)
    spec = normalize(x64.shape, w64.shape, None if b64 is None else b64.shape, **kwargs)
    if grad_y is None:
        g64 = _values(rng, spec.user_out_shape, dtype)
    else:
        g64 = _as_float64("grad_y", grad_y, dtype)
        if g64.shape != spec.user_out_shape:
            raise ValueError(
                f"grad_y must have the output's shape {spec.user_out_shape}, got {g64.shape}"
            )

    expected = (
        reference.correlate(x64, w64, b64, **kwargs),
        *reference.correlate_vjp(x64, w64, b64, g64, **kwargs),
    )
    direct_bounds = (
        error_bound(x64, w64, b64, dtype, kwargs),
        *vjp_error_bounds(x64, w64, b64, g64, dtype, kwargs),
    )
    fft_bounds: dict[str, tuple[np.ndarray | None, ...]] = {}
    results = []
    for name in names:
        asked = method_for(method, get(name), None)  # converted arrays go to the default device
        used = normalize(spec.x_shape, spec.w_shape, **kwargs, method=asked, backend=name).method
        bounds: tuple[np.ndarray | None, ...] = direct_bounds
        if used == "fft":  # with the global terms, in the precision this backend transforms in
            fft_dtype = get(name).fft_dtype(dtype)
            bounds = fft_bounds.get(fft_dtype) or fft_bounds.setdefault(
                fft_dtype,
                (
                    error_bound(x64, w64, b64, dtype, kwargs, method="fft", fft_dtype=fft_dtype),
                    *vjp_error_bounds(
                        x64, w64, b64, g64, dtype, kwargs, method="fft", fft_dtype=fft_dtype
                    ),
                ),
            )
        inputs = (x64, w64, b64, g64)
        call_kwargs = {**kwargs, "method": method}
        results.append(
            _run_backend(name, used, inputs, expected, bounds, dtype, call_kwargs, timing)
        )
    return VerifyReport(spec, kwargs, dtype, seed, tuple(results), method=method)


# --- the command ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run one correlation problem on every installed backend, forward and backward, compare "
        "each with the float64 reference within the error bound, and print a table; the exit "
        "status is 1 when a backend disagrees (2 for a usage error)."
    )
    _spec_args.add_spec_arguments(parser, bias=True, shapes_required=False)
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="dtype computed in (default float32)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the values (and of --random's search)"
    )
    parser.add_argument(
        "--backends",
        type=lambda text: [name for name in text.split(",") if name],
        metavar="A,B",
        help=f"backends to check (default: all installed: {','.join(available())})",
    )
    parser.add_argument(
        "--random",
        type=int,
        metavar="N",
        help="instead of one problem, check N random problems (polyconv.testing strategies, "
        "needs Hypothesis) and report the worst, shrunk when a backend disagrees",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="how every backend computes (default auto: each backend's cost model chooses)",
    )
    parser.add_argument("--no-timing", dest="timing", action="store_false", help="skip the timing")


def run(args: argparse.Namespace) -> int:
    try:
        if args.random is not None:
            if args.random < 1:
                raise ValueError(f"--random must be at least 1, got {args.random}")
            outcome = random_search(
                args.random, dtype=args.dtype, seed=args.seed, backends=args.backends
            )
            print(outcome.summary())
            return 0 if outcome.report.ok else 1
        if args.input is None or args.kernel is None:
            raise ValueError("--input and --kernel are required (or --random N)")
        report = verify(
            args.input,
            args.kernel,
            args.bias,
            dtype=args.dtype,
            seed=args.seed,
            backends=args.backends,
            timing=args.timing,
            method=args.method,
            **_spec_args.spec_kwargs(args),
        )
    except (ValueError, TypeError) as error:
        print(f"polyconv verify: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1


# --- random problems -----------------------------------------------------------------------


@dataclass(frozen=True)
class RandomOutcome:
    """The worst of ``examples`` random problems: the first disagreement found, shrunk, or the
    problem with the largest error/bound ratio when every backend agreed on every problem."""

    examples: int
    report: VerifyReport
    problem: Any  # polyconv.testing.Problem
    reproduced: bool  # the command (values drawn from the seed) fails too

    def summary(self) -> str:
        backends = ", ".join(r.backend for r in self.report.results)
        lines = [
            f"polyconv verify --random: {self.examples} problems in {self.report.dtype} on {backends}"
        ]
        if self.report.ok:
            lines.append(
                f"every backend agreed on every problem; the worst case (error/bound "
                f"{self.report.worst_ratio:.3g}):"
            )
        else:
            lines.append("a backend disagrees; the smallest failing problem Hypothesis found:")
        lines += ["", str(self.report), "", f"reproduce: {self.report.command()}"]
        if not self.report.ok and not self.reproduced:
            lines.append(
                "(that command draws other values and passes: this failure depends on the exact "
                "values, which are:)"
            )
            lines.append(repr(self.problem))
        return "\n".join(lines)


class _Disagreement(Exception):
    """Raised inside the Hypothesis search so that it shrinks the failing problem."""


def random_search(
    examples: int,
    *,
    dtype: str = "float32",
    seed: int = 0,
    backends: Sequence[str] | None = None,
) -> RandomOutcome:
    """Check ``examples`` random problems from :func:`polyconv.testing.problems`; a failing one is
    shrunk by Hypothesis to the smallest it finds."""
    try:
        import hypothesis
        from hypothesis import HealthCheck, Phase, settings

        from .testing import problems
    except ImportError as error:
        raise ValueError(f"--random needs Hypothesis (pip install hypothesis): {error}") from None

    worst: list[tuple[float, VerifyReport, Any]] = []
    failures: list[tuple[VerifyReport, Any]] = []

    def check(problem: Any) -> None:
        report = verify(
            problem.x,
            problem.w,
            False if problem.bias is None else problem.bias,
            grad_y=problem.grad_y,
            dtype=dtype,
            backends=backends,
            seed=seed,
            timing=False,
            **problem.spec_kwargs,
        )
        ratio = report.worst_ratio
        hypothesis.target(min(ratio, 1e9), label="error / bound")
        if not worst or ratio > worst[0][0]:
            worst[:] = [(ratio, report, problem)]
        if not report.ok:
            failures.append((report, problem))
            raise _Disagreement(report.failed)

    search = hypothesis.seed(seed)(
        settings(
            max_examples=examples,
            database=None,
            deadline=None,
            phases=(Phase.generate, Phase.target, Phase.shrink),
            report_multiple_bugs=False,
            suppress_health_check=list(HealthCheck),
        )(hypothesis.given(problems(dtypes=(dtype,), with_grad_y=True))(check))
    )
    try:
        search()
    except _Disagreement:
        # Hypothesis replays the shrunk example last before raising: it is the last failure.
        report, problem = failures[-1]
    else:
        _, report, problem = worst[0]
    # The command reruns the shapes and keywords on values drawn from the seed: when that gives
    # the same verdict, show its (timed) report; else the failure needs the drawn values.
    shaped = verify(
        problem.x.shape,
        problem.w.shape,
        problem.bias is not None,
        dtype=dtype,
        seed=seed,
        backends=[r.backend for r in report.results],
        **problem.spec_kwargs,
    )
    reproduced = shaped.ok == report.ok
    return RandomOutcome(examples, shaped if reproduced else report, problem, reproduced)
