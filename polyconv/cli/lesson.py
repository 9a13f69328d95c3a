"""``polyconv lesson``: the command line of :mod:`polyconv.lesson`."""

from __future__ import annotations

import argparse
import sys

from .. import lesson
from ..backends import available
from ..backends import get as get_backend
from ..lesson import (
    LEARNING_RATE,
    STEPS,
    BackendRun,
    plot_loss_curves,
    report,
    run_backend,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        metavar="NAME",
        help=f"run on this backend only (installed: {', '.join(available())}); default: all",
    )
    parser.add_argument(
        "--plot", metavar="FILE.png", help="save the loss curves of every backend to this file"
    )
    parser.add_argument(
        "--lr", type=float, default=LEARNING_RATE, help="learning rate (%(default)g)"
    )
    parser.add_argument("--steps", type=int, default=STEPS, help="gradient steps (%(default)s)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the initial kernel (%(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    if args.backend is not None:
        try:
            get_backend(args.backend)
        except ValueError as error:
            print(f"polyconv lesson: --backend: {error}", file=sys.stderr)
            return 2
        names = [args.backend]
    else:
        names = available()
    if args.plot is not None and lesson.matplotlib_missing():
        print(
            "polyconv lesson: --plot needs matplotlib, which is not installed; install it with "
            "`pip install -e .[plot]` in the polyconv checkout",
            file=sys.stderr,
        )
        return 2
    if args.steps < 1 or not args.lr > 0:
        print("polyconv lesson: --steps must be at least 1 and --lr positive", file=sys.stderr)
        return 2

    runs: dict[str, BackendRun] = {}
    failed = False
    for name in names:
        try:
            runs[name] = run_backend(name, lr=args.lr, steps=args.steps, seed=args.seed)
        except Exception as error:  # one broken framework must not hide the others' lesson
            print(
                f"polyconv lesson: backend {name!r} failed: {type(error).__name__}: {error}",
                file=sys.stderr,
            )
            failed = True
    if not runs:
        return 1
    ok = report(runs, lr=args.lr, steps=args.steps, out=sys.stdout)
    if args.plot is not None:
        plot_loss_curves(
            args.plot,
            {name: run.history for name, run in runs.items()},
            title=f"Learning the edge kernel [[1, -1]] (lr {args.lr:g})",
        )
        print(f"\nLoss curves saved to {args.plot}")
    return 0 if ok and not failed else 1
