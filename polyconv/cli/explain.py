"""``polyconv explain``: the command line of :func:`polyconv.explain`."""

from __future__ import annotations

import argparse
import sys

from ..explain import explain
from . import spec_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    spec_args.add_spec_arguments(parser, bias=False)


def run(args: argparse.Namespace) -> int:
    try:
        text = explain(args.input, args.kernel, bias=args.bias, **spec_args.spec_kwargs(args))
    except (ValueError, TypeError) as error:
        print(f"polyconv explain: {error}", file=sys.stderr)
        return 2
    print(text)
    return 0
