"""``polyconv lesson``: the command line of :mod:`polyconv.lesson`."""

from __future__ import annotations

import argparse
import os
import sys

from .. import lesson, plots
from ..backends import available
from ..backends import get as get_backend
from ..lesson import LEARNING_RATE, STEPS, BackendRun, report, run_backend


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        metavar="NAME",
        help=f"run on this backend only (installed: {', '.join(available())}); default: all",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="save the lesson as one figure: X, K, Y, the kernel learned step by step, the loss "
        "and the backends' differences",
    )
    parser.add_argument(
        "--animate",
        metavar="FILE.gif",
        help="save an animation of the kernel sliding over X while Y fills in",
    )
    parser.add_argument(
        "--lr", type=float, default=LEARNING_RATE, help="learning rate (%(default)g)"
    )
    parser.add_argument("--steps", type=int, default=STEPS, help="gradient steps (%(default)s)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the initial kernel (%(default)s)"
    )


def _unwritable_reason(path: str) -> str | None:
    """Why a file cannot be written at ``path`` (its directory is missing or not writable, or
    it is a directory), or None."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"the directory {directory} does not exist"
    if os.path.isdir(path):
        return "is a directory"
    if not os.access(directory, os.W_OK):
        return f"the directory {directory} is not writable"
    return None


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
    for option, path in (("--plot", args.plot), ("--animate", args.animate)):
        if path is None:
            continue
        message = plots.missing_matplotlib(option)
        if message is None and (unwritable := _unwritable_reason(path)) is not None:
            message = f"{option} {path}: {unwritable}"  # said now, not after the lesson has run
        if message is not None:
            print(f"polyconv lesson: {message}", file=sys.stderr)
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
        plots.save(lesson.figure(runs, lr=args.lr), args.plot)
        print(f"\nFigure saved to {args.plot}")
    if args.animate is not None:
        edges = next(iter(runs.values())).edges
        frames = plots.save_sliding_animation(
            args.animate, lesson.band_image(), lesson.EDGE_KERNEL, edges
        )
        print(f"\nAnimation ({frames} frames) saved to {args.animate}")
    return 0 if ok and not failed else 1
