"""Draw the figures of docs/lesson.md (and docs/verify.md) into docs/images/, from the code.

    python examples/make_lesson_figures.py            # writes docs/images/*.png, *.gif
    python examples/make_lesson_figures.py --out DIR  # anywhere else

The lesson runs on the built-in backends that are installed (NumPy, JAX, PyTorch); each exercise
is its script in examples/ run with ``--plot``; the verify figure is ``polyconv verify --plot`` of
one small problem. Needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import runpy
import sys
from pathlib import Path

import polyconv as pc
from polyconv import lesson, plots
from polyconv.backends import available

EXAMPLES = Path(__file__).resolve().parent
DEFAULT_OUT = EXAMPLES.parent / "docs" / "images"
BUILT_IN = ("numpy", "jax", "torch")
# (script, file name, its arguments besides --plot); the training ones take --steps.
EXERCISES = (
    ("kernel_sizes", "kernel_sizes.png", []),
    ("receptive_fields", "receptive_fields.png", []),
    ("learning_rate_and_batch_size", "learning_rate_and_batch_size.png", []),
    ("fully_connected_view", "fully_connected_view.png", []),
)
TRAINING = {"kernel_sizes", "learning_rate_and_batch_size"}


def _run_example(script: str, argv: list[str]) -> None:
    main = runpy.run_path(str(EXAMPLES / f"{script}.py"), run_name=f"example_{script}")["main"]
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(argv)
    if status != 0:
        raise RuntimeError(f"examples/{script}.py {' '.join(argv)} exited with {status}")


def make_figures(out: Path, *, steps: int | None = None) -> list[Path]:
    """Write every figure into ``out``; returns their paths. ``steps`` shortens the exercises'
    training (default: each script's own) for a quick check that every figure still draws."""
    out.mkdir(parents=True, exist_ok=True)
    names = [name for name in BUILT_IN if name in available()]
    runs = {
        name: lesson.run_backend(name, lr=lesson.LEARNING_RATE, steps=lesson.STEPS, seed=0)
        for name in names
    }
    written = [out / "lesson.png", out / "sliding_kernel.gif"]
    plots.save(lesson.figure(runs, lr=lesson.LEARNING_RATE), str(written[0]))
    plots.save_sliding_animation(
        str(written[1]), lesson.band_image(), lesson.EDGE_KERNEL, runs[names[0]].edges
    )
    for script, file_name, argv in EXERCISES:
        written.append(out / file_name)
        shorter = ["--steps", str(steps)] if steps is not None and script in TRAINING else []
        _run_example(script, [*argv, *shorter, "--plot", str(written[-1])])
    report = pc.verify(
        (2, 3, 12, 16), (4, 3, 3, 3), padding="same", seed=0, timing=False, backends=names
    )
    written.append(out / "verify.png")
    plots.save(plots.verify_figure(report), str(written[-1]))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder (%(default)s)")
    args = parser.parse_args(argv)
    message = plots.missing_matplotlib("drawing the figures")
    if message is not None:
        print(message, file=sys.stderr)
        return 2
    for path in make_figures(args.out):
        print(f"{path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
