"""``polyconv verify``: the command line of :func:`polyconv.verify` and its random search."""

from __future__ import annotations

import argparse
import sys

from .._spec.dtypes import DTYPES
from .._spec.options import METHODS
from ..backends import available
from ..verify import random_search, verify
from . import spec_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run one correlation problem on every installed backend, forward and backward, compare "
        "each with the float64 reference within the error bound, and print a table; the exit "
        "status is 1 when a backend disagrees (2 for a usage error)."
    )
    spec_args.add_spec_arguments(parser, bias=True, shapes_required=False)
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
            **spec_args.spec_kwargs(args),
        )
    except (ValueError, TypeError) as error:
        print(f"polyconv verify: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1
