"""The ``polyconv`` command: ``polyconv lesson``, ``polyconv verify``, ``polyconv explain``.

Each subcommand's command line lives in its own module here (``verify.py``, ``explain.py``,
``lesson.py``), which provides ``add_arguments(parser)`` and ``run(args) -> int`` (the exit
status), and is imported only when its subcommand runs; the tools themselves take no argparse.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "lesson": ("polyconv.cli.lesson", "run the corr2d / edge-detection / learn-the-kernel lesson"),
    "verify": (
        "polyconv.cli.verify",
        "check that every installed backend computes the same correlation",
    ),
    "explain": ("polyconv.cli.explain", "print the native call each framework needs for a spec"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="polyconv", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = args[0] if args and args[0] in SUBCOMMANDS else None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the chosen subcommand's module is imported
            importlib.import_module(module_name).add_arguments(sub)
    parsed = parser.parse_args(args)
    module = importlib.import_module(SUBCOMMANDS[parsed.command][0])
    return int(module.run(parsed))


if __name__ == "__main__":
    sys.exit(main())
