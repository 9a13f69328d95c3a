"""Exercise: how do the learning rate and the batch size change how much the loss jitters?

A 3x3 kernel is learned from noisy data (random images, their correlation with a hidden kernel,
plus noise) by minibatch SGD for a few (learning rate, batch size) settings, all from the same
initial kernel. After every step the loss on *all* the data is recorded: its jitter is the
standard deviation of its step-to-step log change over the second half of the run, when the
kernel hovers around the best fit. Minibatch gradients are noisy estimates of the full gradient;
the learning rate scales how far each noisy step moves the kernel.

    python examples/learning_rate_and_batch_size.py --backend jax --plot jitter.png
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np

import polyconv as pc
from polyconv import plots
from polyconv.lesson import format_loss

LEARNING_RATES = (0.05, 0.3)
BATCH_SIZES = (2, 8, 64)
SAMPLES = 64
NOISE = 0.3


def make_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(SAMPLES, 1, 8, 8)).astype(np.float32)
    hidden_kernel = rng.normal(size=(1, 1, 3, 3)).astype(np.float32)
    clean = np.asarray(pc.correlate(images, hidden_kernel))
    return images, (clean + NOISE * rng.normal(size=clean.shape)).astype(np.float32)


def jitter(losses: np.ndarray) -> float:
    """Standard deviation of the step-to-step log change over the second half of the run."""
    tail = np.log(losses[len(losses) // 2 :])
    return float(np.std(np.diff(tail)))


def full_data_losses(
    images: np.ndarray,
    targets: np.ndarray,
    *,
    lr: float,
    batch_size: int,
    steps: int,
    backend: str | None,
) -> np.ndarray:
    layer = pc.Conv2D(3, backend=backend, seed=0)
    x = layer.backend.convert(images, layer.dtype, layer.weight)
    losses: list[float] = []

    def record(step: int, minibatch_loss: float) -> None:
        residual = layer.backend.to_numpy(layer(x)) - targets
        losses.append(float(np.mean(residual**2)))

    pc.fit(
        layer,
        images,
        targets,
        lr=lr,
        steps=steps,
        batch_size=batch_size,
        loss="mse",
        callback=record,
    )
    return np.asarray(losses)


def _change(before: float, after: float, what: str) -> str:
    """A change in words: 'multiplies the jitter by 23.7', 'divides it by 1.1e+06'."""
    if before == 0 or after == 0:
        return (
            f"leaves {what} at 0"
            if before == after
            else f"takes {what} from {before:.2g} to {after:.2g}"
        )
    ratio = after / before
    return (
        f"multiplies {what} by {ratio:.3g}" if ratio >= 1 else f"divides {what} by {1 / ratio:.3g}"
    )


def figure(curves: dict[tuple[float, int], np.ndarray]) -> object:
    """The second half of the full-data loss curves, where the jitter is measured: one panel per
    learning rate, one curve per batch size, labelled with its jitter."""
    panels: dict[str, dict[str, np.ndarray]] = {}
    steps = min(len(losses) for losses in curves.values())
    for (lr, batch_size), losses in curves.items():
        label = f"batch {batch_size}: jitter {jitter(losses):.1e}"
        panels.setdefault(f"lr {lr:g}", {})[label] = losses[steps // 2 : steps]
    return plots.loss_curves_figure(
        panels,
        title="The full-data loss over the second half of minibatch SGD: "
        "a larger learning rate jitters more, a larger batch less",
        ylabel="mean squared error on all the data",
        log_scale=False,
        first_step=steps // 2,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", help="polyconv backend (default: $POLYCONV_BACKEND or numpy)")
    parser.add_argument("--steps", type=int, default=200, help="gradient steps (%(default)s)")
    parser.add_argument("--plot", metavar="FILE.png", help="save the loss curves to this file")
    args = parser.parse_args(argv)
    if args.plot and (message := plots.missing_matplotlib("--plot")) is not None:
        print(f"{parser.prog}: {message}", file=sys.stderr)
        return 2

    images, targets = make_data(seed=0)
    curves: dict[tuple[float, int], np.ndarray] = {}
    jitters: dict[tuple[float, int], float] = {}
    print(f"Full-data loss jitter after {args.steps} steps ({SAMPLES} noisy samples):\n")
    print(f"  {'lr':>6}{'batch':>7}{'final loss':>12}{'jitter':>10}")
    for lr, batch_size in itertools.product(LEARNING_RATES, BATCH_SIZES):
        losses = full_data_losses(
            images, targets, lr=lr, batch_size=batch_size, steps=args.steps, backend=args.backend
        )
        curves[lr, batch_size] = losses
        jitters[lr, batch_size] = jitter(losses)
        print(
            f"  {lr:>6g}{batch_size:>7}{format_loss(losses[-1]):>12}{jitters[lr, batch_size]:>10.2e}"
        )

    low, high = min(LEARNING_RATES), max(LEARNING_RATES)
    small, large = min(BATCH_SIZES), max(BATCH_SIZES)
    by_lr = _change(jitters[low, small], jitters[high, small], "the jitter")
    by_batch = _change(jitters[high, small], jitters[high, large], "it")
    print(
        f"\nConclusion: at batch size {small}, raising the learning rate from {low:g} to {high:g} "
        f"{by_lr}; at lr {high:g}, growing the batch from {small} to {large} "
        f"{by_batch}."
    )
    if args.plot:
        plots.save(figure(curves), args.plot)
        print(f"Figure saved to {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
