"""``polyconv compare``: the command line of :func:`polyconv.compare`."""

from __future__ import annotations

import argparse
import sys

from .._spec.dtypes import FLOAT_DTYPES
from ..compare import compare, load
from . import spec_args

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run two convolution layers (polyconv layer files, or import paths package.module:name "
        "of torch, Flax or Keras layers) on the same random input, forward and backward, "
        "against the float64 reference of the first; print the report and the fields that "
        "differ. The exit status is 1 when they differ, 2 for a usage error."
    )
    parser.add_argument("a", help="the reference layer: a .npz file or package.module:name")
    parser.add_argument("b", help="the layer to check against it")
    parser.add_argument(
        "--input",
        type=spec_args.shape,
        required=True,
        metavar="N,C,...",
        help="channels-first input shape, e.g. 2,3,32,32",
    )
    parser.add_argument("--dtype", choices=FLOAT_DTYPES, default="float32")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    try:
        report = compare(load(args.a), load(args.b), args.input, seed=args.seed, dtype=args.dtype)
    except (ValueError, TypeError, ImportError, AttributeError) as error:
        print(f"polyconv compare: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1
