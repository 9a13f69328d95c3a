"""``polyconv verify``: the command line of :func:`polyconv.verify` and its random search."""

from __future__ import annotations

import argparse
import sys

from .. import plots
from .._spec.dtypes import DTYPES
from .._spec.options import METHODS
from ..backends import available
from ..verify import VerifyReport, random_search, verify
from . import spec_args


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _progress(line: str) -> None:
    """A progress line on stderr (stdout keeps the report alone)."""
    print(f"polyconv verify: {line}", file=sys.stderr, flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run one correlation problem on every installed backend, forward and backward, compare "
        "each with the float64 reference within the error bound, and print a table; the exit "
        "status is 1 when a backend disagrees (2 for a usage error)."
    )
    spec_args.add_spec_arguments(parser, shapes_required=False)
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="dtype computed in (default float32)",
    )
    parser.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help="seed of the values (and of --random's search)",
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
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="save an image per backend of y's error / bound at every output position",
    )


def run(args: argparse.Namespace) -> int:
    if args.plot is not None and (message := plots.missing_matplotlib("--plot")) is not None:
        print(f"polyconv verify: {message}", file=sys.stderr)
        return 2
    try:
        if args.random is not None:
            if args.random < 1:
                raise ValueError(f"--random must be at least 1, got {args.random}")
            layout = spec_args.layout_kwargs(args)
            if layout.pop("output_padding") != 0:
                raise ValueError("--random draws output_padding itself; leave --output-padding out")
            outcome = random_search(
                args.random,
                dtype=args.dtype,
                seed=args.seed,
                backends=args.backends,
                timing=args.timing,
                progress=_progress,
                **layout,
            )
            print(outcome.summary())
            _plot(args.plot, outcome.report)
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
            progress=_progress,
            **spec_args.spec_kwargs(args),
            **spec_args.layout_kwargs(args),
        )
    except (ValueError, TypeError, OverflowError) as error:
        print(f"polyconv verify: {error}", file=sys.stderr)
        return 2
    except MemoryError as error:  # the problem's arrays cannot exist here: a usage error too
        print(
            f"polyconv verify: the problem is too large for this machine: {error}", file=sys.stderr
        )
        return 2
    print(report)
    _plot(args.plot, report)
    return 0 if report.ok else 1


def _plot(path: str | None, report: VerifyReport) -> None:
    if path is not None:
        plots.save(plots.verify_figure(report), path)
        print(f"error / bound images saved to {path}")
