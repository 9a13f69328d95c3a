"""``polyconv lesson``: the classic convolution lesson, run side by side on every backend.

1. ``corr2d`` of the 3x3 example;
2. edge detection: a 6x8 image with a dark vertical band, the kernel ``[[1, -1]]``, and the
   transposed image, where the same kernel finds nothing;
3. learning that kernel back from the image and its edge map (lr 3e-2, 10 steps, squared error);
4. a table showing that the backends' loss curves and learned kernels agree.

Every backend runs the same code on its own arrays. The exit status is 0 when every backend
reproduced the lesson and agreed, 1 when one did not, 2 for a usage error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from . import reference
from ._core.api import corr2d
from .backends import get as get_backend
from .layers import Conv2D
from .training import fit

LEARNING_RATE = 3e-2
STEPS = 10
PRINT_EVERY = 2
EDGE_KERNEL = np.array([[1.0, -1.0]], dtype=np.float32)
# Backends agree when their float32 results differ by no more than this (relative to the value,
# or absolute near zero): a few hundred float32 roundings, far below any real disagreement.
AGREEMENT_RTOL = 1e-5
AGREEMENT_ATOL = 1e-6


def example_3x3() -> tuple[np.ndarray, np.ndarray]:
    """The first example: ``X = arange(9).reshape(3, 3)``, ``K = [[0, 1], [2, 3]]``."""
    return (
        np.arange(9, dtype=np.float32).reshape(3, 3),
        np.arange(4, dtype=np.float32).reshape(2, 2),
    )


def band_image() -> np.ndarray:
    """The 6x8 image: ones (white) with a zero (black) band in columns 2 to 5."""
    image = np.ones((6, 8), dtype=np.float32)
    image[:, 2:6] = 0
    return image


@dataclass
class BackendRun:
    """What one backend computed in the lesson, as NumPy arrays for display."""

    corr2d_3x3: np.ndarray
    edges: np.ndarray
    transposed_edges: np.ndarray
    initial_kernel: np.ndarray
    history: np.ndarray
    kernel: np.ndarray


def run_backend(name: str, *, lr: float, steps: int, seed: int) -> BackendRun:
    """The whole lesson on backend ``name``; its arrays never leave that framework until shown."""
    backend = get_backend(name)
    x3, k3 = example_3x3()
    image = band_image()
    edges = corr2d(image, EDGE_KERNEL, backend=name)  # an array of that framework
    transposed_edges = corr2d(image.T, EDGE_KERNEL, backend=name)

    layer = Conv2D((1, 2), bias=False, backend=name, seed=seed)
    initial = backend.to_numpy(layer.weight)[0, 0]
    history = fit(layer, image, edges, lr=lr, steps=steps)
    return BackendRun(
        corr2d_3x3=backend.to_numpy(corr2d(x3, k3, backend=name)),
        edges=backend.to_numpy(edges),
        transposed_edges=backend.to_numpy(transposed_edges),
        initial_kernel=initial,
        history=history,
        kernel=backend.to_numpy(layer.weight)[0, 0],
    )


# --- display ------------------------------------------------------------------------------------


def _grid(array: np.ndarray, number_format: str = "g") -> list[str]:
    """A 2-D array as right-aligned rows of numbers (``-0`` shown as ``0``)."""
    cells = [[format(value + 0.0, number_format) for value in row] for row in array]
    width = max(len(cell) for row in cells for cell in row)
    return [" ".join(cell.rjust(width) for cell in row) for row in cells]


def _side_by_side(
    blocks: Mapping[str, list[str]], indent: str = "   ", gap: int = 4, numeric: bool = False
) -> str:
    """Blocks of lines in columns, each under its title; ``numeric`` right-aligns a table."""
    widths = {title: max(len(title), *map(len, lines)) for title, lines in blocks.items()}
    height = max(len(lines) for lines in blocks.values())

    def cell(text: str, title: str) -> str:
        return text.rjust(widths[title]) if numeric else text.ljust(widths[title])

    rows = [[cell(title, title) for title in blocks]]
    for i in range(height):
        rows.append([cell(lines[i] if i < len(lines) else "", t) for t, lines in blocks.items()])
    return "\n".join(indent + (" " * gap).join(row).rstrip() for row in rows)


def _same_everywhere(results: Sequence[np.ndarray], expected: np.ndarray) -> bool:
    return all(
        r.shape == expected.shape
        and np.allclose(r, expected, rtol=AGREEMENT_RTOL, atol=AGREEMENT_ATOL)
        for r in results
    )


def _mark(ok: bool) -> str:
    return "ok" if ok else "MISMATCH"


def report(runs: Mapping[str, BackendRun], *, lr: float, steps: int, out: TextIO) -> bool:
    """Print the lesson; ``True`` when every check held on every backend."""
    names = list(runs)
    all_ok = True

    def say(text: str = "") -> None:
        print(text, file=out)

    say("polyconv lesson: cross-correlation, edge detection and learning a kernel")
    say(f"Each column is computed by one framework on its own arrays: {', '.join(names)}.")

    x3, k3 = example_3x3()
    say("\n1. Cross-correlation")
    say("   corr2d(X, K) slides K over X and sums the elementwise products in each window.")
    say(_side_by_side({"X": _grid(x3), "K": _grid(k3)}))
    say("\n   corr2d(X, K):")
    say(_side_by_side({name: _grid(run.corr2d_3x3) for name, run in runs.items()}))
    ok = _same_everywhere(
        [r.corr2d_3x3 for r in runs.values()], reference.correlate(x3[None], k3[None, None])[0]
    )
    all_ok &= ok
    say(f"   [{_mark(ok)}] every backend matches the float64 reference")

    image = band_image()
    say("\n2. Edge detection")
    say("   A 6x8 image X: white (1) with a black (0) vertical band in columns 2 to 5.")
    say(_side_by_side({"X": _grid(image)}))
    say("\n   The kernel K = [[1, -1]] responds where neighbours differ: Y = corr2d(X, K) is")
    say("   1 at the white-to-black edge, -1 at the black-to-white edge, 0 elsewhere.")
    say(_side_by_side({name: _grid(run.edges) for name, run in runs.items()}))
    expected_edges = reference.correlate(image[None], EDGE_KERNEL[None, None])[0]
    ok = _same_everywhere([r.edges for r in runs.values()], expected_edges)
    all_ok &= ok
    say(f"   [{_mark(ok)}] edges found at columns 1 (value 1) and 5 (value -1) on every backend")
    say("\n   On the transposed image the band is horizontal; K only looks sideways, so")
    say("   corr2d(X.T, K) finds no edge at all:")
    say(_side_by_side({name: _grid(run.transposed_edges) for name, run in runs.items()}))
    ok = all(not r.transposed_edges.any() for r in runs.values())
    all_ok &= ok
    say(f"   [{_mark(ok)}] all zeros on every backend")

    first = runs[names[0]]
    say("\n3. Learning the kernel")
    say("   Can we recover K from X and Y alone? A Conv2D layer with a 1x2 kernel (no bias)")
    say(f"   starts from weights drawn uniformly from [0, 1): {_kernel_text(first.initial_kernel)}")
    say("   (the same seed gives the same start on every backend). Gradient descent on the")
    say(f"   squared error sum((conv(X) - Y) ** 2) with lr {lr:g} for {steps} steps:\n")
    table = {"step": [str(step + 1) for step in range(steps) if (step + 1) % PRINT_EVERY == 0]}
    for name, run in runs.items():
        table[name] = [
            f"{run.history[step]:.4f}" for step in range(steps) if (step + 1) % PRINT_EVERY == 0
        ]
    say(_side_by_side(table, numeric=True))
    say("\n   learned kernel (the target is [[1, -1]]):")
    width = max(len(name) for name in runs) + 2
    for name, run in runs.items():
        distance = float(np.abs(run.kernel - EDGE_KERNEL[0]).max())
        say(f"   {name:<{width}}{_kernel_text(run.kernel)}   largest error {distance:.4f}")

    if len(runs) > 1:
        say(f"\n4. Do the backends agree? (compared with {names[0]}, step by step)")
        rows: dict[str, list[str]] = {
            "backend": [],
            "max loss difference": [],
            "max kernel difference": [],
            "agree": [],
        }
        for name, run in list(runs.items())[1:]:
            loss_gap = np.abs(run.history - first.history).max(initial=0.0)
            kernel_gap = np.abs(run.kernel - first.kernel).max()
            agree = bool(
                np.allclose(run.history, first.history, rtol=AGREEMENT_RTOL, atol=AGREEMENT_ATOL)
                and np.allclose(run.kernel, first.kernel, rtol=AGREEMENT_RTOL, atol=AGREEMENT_ATOL)
            )
            all_ok &= agree
            for column, value in zip(
                rows,
                (name, f"{loss_gap:.2e}", f"{kernel_gap:.2e}", "yes" if agree else "NO"),
                strict=True,
            ):
                rows[column].append(value)
        say(_side_by_side(rows, numeric=True))
        say(
            f"   (agreement: within {AGREEMENT_RTOL:g} relative, {AGREEMENT_ATOL:g} absolute, "
            "the rounding of float32)"
        )
    if not all_ok:
        say("\nSomething above did not hold: see the MISMATCH / NO marks.")
    elif len(runs) > 1:
        say(f"\nThe same lesson ran unchanged on {len(runs)} frameworks, and they agree.")
    else:
        say(f"\nThe lesson ran on {names[0]}; run without --backend to compare frameworks.")
    return all_ok


def _kernel_text(kernel: np.ndarray) -> str:
    return "[[" + ", ".join(f"{value:+.4f}" for value in kernel.ravel()) + "]]"


# --- plotting (shared with the examples) ------------------------------------------------------


def plot_loss_curves(
    path: str, curves: Mapping[str, np.ndarray], *, title: str, log_scale: bool = True
) -> None:
    """Save the loss curves (label -> per-step losses) in one figure at ``path``.

    Needs matplotlib (``pip install -e .[plot]``); raises ``ImportError`` saying so otherwise.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib, which is not installed; install it with "
            "`pip install matplotlib` or `pip install -e .[plot]` in the polyconv checkout"
        ) from None
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    markers = "os^Dv<>p"
    for i, (label, losses) in enumerate(curves.items()):
        steps = np.arange(1, len(losses) + 1)
        # Distinct markers and dashes keep identical curves from hiding each other.
        axes.plot(
            steps,
            losses,
            label=label,
            marker=markers[i % len(markers)],
            markersize=4,
            linestyle=("-", "--", ":", "-.")[i % 4],
        )
    if log_scale:
        axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.legend()
    figure.savefig(path)


def matplotlib_missing() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False
