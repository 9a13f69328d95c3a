"""``python -m benchmarks [--quick] [--only SUBSTRING] [--repeat N] [--json PATH]``."""

from __future__ import annotations

import argparse
import json
import sys
import time

from . import _device, _machine
from ._cases import all_cases
from ._report import as_json, markdown, run_case


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time polyconv against torch, JAX and SciPy; print a markdown report.",
    )
    parser.add_argument("--quick", action="store_true", help="a small subset (about a minute)")
    parser.add_argument("--only", metavar="SUBSTRING", help="only cases whose name contains it")
    parser.add_argument(
        "--repeat",
        type=int,
        default=200,
        metavar="N",
        help="at most N timed runs per row (default 200; runs stop after ~0.6 s, at least 6)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    parser.add_argument(
        "--torch-threads",
        type=int,
        metavar="N",
        help="torch.set_num_threads(N) first (default: torch's own default, one per core)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        metavar="DEVICE",
        help="where torch and JAX arrays live: cpu (default), cuda or cuda:N",
    )
    parser.add_argument("--list", action="store_true", help="list the selected cases and exit")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    cases = [
        c
        for c in all_cases()
        if (not args.quick or c.quick) and (args.only is None or args.only in c.name)
    ]
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    if not cases:
        parser.error("no case matches")

    try:
        _device.set_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    if args.torch_threads is not None:
        # On a loaded machine torch's OpenMP threads wait for each other at every call: tiny
        # calls then take milliseconds. One thread shows what the code costs without that.
        import torch

        torch.set_num_threads(args.torch_threads)
    machine = _machine.describe()

    def log(message: str) -> None:  # progress on stderr, so stdout is just the report
        print(message, file=sys.stderr, flush=True)

    start = time.perf_counter()
    rows, verdicts = [], []
    for case in cases:
        case_start = time.perf_counter()
        case_rows, case_verdicts = run_case(case, args.repeat, log)
        log(f"{case.name}: {time.perf_counter() - case_start:.1f} s")
        rows += case_rows
        verdicts += case_verdicts
    elapsed = time.perf_counter() - start

    selection = "--quick subset" if args.quick else "full suite"
    if args.only:
        selection += f", cases matching {args.only!r}"
    header = (
        f"## polyconv benchmarks ({selection}, {len(cases)} cases, {elapsed:.0f} s)\n\n"
        "Medians of repeated runs, float32; ratios are to the fastest native row of each case."
    )
    print(markdown(_machine.markdown(machine), rows, verdicts, header))
    if args.json:
        options = {**vars(args), "elapsed_s": elapsed}
        with open(args.json, "w") as f:
            json.dump(as_json(machine, options, rows, verdicts), f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
