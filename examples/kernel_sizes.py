"""Exercise: learn kernels of several sizes on the same data; which size fits best?

The data: random black-and-white images, and their diagonal edge maps made with the 2x2 kernel
[[1, 0], [0, -1]]. Every candidate kernel is anchored at its top-left tap and padded at the bottom
and right, so all of them see the same windows and give same-sized outputs: a 3x3 kernel can
represent the 2x2 one (with zeros in its extra row and column), a 1x2 kernel cannot.

    python examples/kernel_sizes.py --backend torch --plot kernel_sizes.png
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

import polyconv as pc
from polyconv import plots

TRUE_KERNEL = np.array([[1.0, 0.0], [0.0, -1.0]], dtype=np.float32)
KERNEL_SIZES = ((1, 2), (2, 2), (3, 3))
# A kernel "fits" when the error left is below this fraction of the target's mean square.
FIT_THRESHOLD = 1e-4


def anchored_padding(kernel_size: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Pad only after each axis, so output (i, j) always reads the window starting at (i, j)."""
    return tuple((0, k - 1) for k in kernel_size)


def make_data(samples: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = (rng.random((samples, 1, size, size)) < 0.5).astype(np.float32)
    edges = pc.correlate(images, TRUE_KERNEL[None, None], padding=anchored_padding((2, 2)))
    return images, np.asarray(edges)


def learn(
    kernel_size: tuple[int, int],
    images: np.ndarray,
    edges: np.ndarray,
    *,
    lr: float,
    steps: int,
    backend: str | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Train a kernel of this size on the data: (loss per step, the learned kernel)."""
    layer = pc.Conv2D(
        kernel_size,
        padding=anchored_padding(kernel_size),
        bias=False,
        backend=backend,
        seed=seed,
    )
    history = pc.fit(layer, images, edges, lr=lr, steps=steps, loss="mse")
    return history, layer.backend.to_numpy(layer.weight)[0, 0]


def figure(histories: dict[str, np.ndarray], kernels: dict[str, np.ndarray]) -> object:
    """The target and the learned kernels on one colour scale, and the loss curves."""
    return plots.kernels_and_losses_figure(
        {"target (2x2)": TRUE_KERNEL, **{f"learned {name}": k for name, k in kernels.items()}},
        histories,
        title="Which kernel size can learn diagonal edges? (mean squared error)",
        ylabel="mean squared error",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", help="polyconv backend (default: $POLYCONV_BACKEND or numpy)")
    parser.add_argument("--steps", type=int, default=100, help="gradient steps (%(default)s)")
    parser.add_argument("--lr", type=float, default=0.2, help="learning rate (%(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="FILE.png", help="save the kernels and loss curves")
    args = parser.parse_args(argv)
    if args.plot and (message := plots.missing_matplotlib("--plot")) is not None:
        print(f"{parser.prog}: {message}", file=sys.stderr)
        return 2

    images, edges = make_data(samples=8, size=8, seed=args.seed)
    target_power = float(np.mean(edges**2))
    print(f"Learning diagonal edges {TRUE_KERNEL.tolist()} from {len(images)} random 8x8 images")
    print(f"with kernels of size {', '.join('x'.join(map(str, k)) for k in KERNEL_SIZES)}")
    print(f"(mean squared error, lr {args.lr:g}, {args.steps} steps):\n")

    results = {}
    histories = {}
    for kernel_size in KERNEL_SIZES:
        history, kernel = learn(
            kernel_size,
            images,
            edges,
            lr=args.lr,
            steps=args.steps,
            backend=args.backend,
            seed=args.seed,
        )
        results[kernel_size] = (history[-1] / target_power, kernel)
        histories["x".join(map(str, kernel_size))] = history

    print(f"  {'kernel':<8}{'weights':>8}{'error left':>13}   learned kernel (rounded)")
    for kernel_size, (relative_error, kernel) in results.items():
        name = "x".join(map(str, kernel_size))
        rows = np.round(kernel.astype(np.float64), 2) + 0.0  # + 0.0 turns -0.0 into 0.0
        print(f"  {name:<8}{math.prod(kernel_size):>8}{relative_error:>13.2e}   {rows.tolist()}")

    fitting = [k for k, (error, _) in results.items() if error < FIT_THRESHOLD]
    if fitting:
        best = min(fitting, key=math.prod)
        verdict = "the smallest kernel that fits"
        others = [k for k in fitting if k != best]
        if others:
            names = ", ".join("x".join(map(str, k)) for k in others)
            verdict += f"; {names} also fit{'s' if len(others) == 1 else ''}, with more weights"
    else:
        best = min(results, key=lambda k: results[k][0])
        verdict = "the lowest error, though no size fits (try more steps)"
    misfits = [k for k in results if k not in fitting]
    print(f"\nBest: {'x'.join(map(str, best))}, {verdict}.")
    if misfits:
        print(
            f"Not fitting after {args.steps} steps (error left above {FIT_THRESHOLD:g} of the "
            "target's mean square): " + ", ".join("x".join(map(str, k)) for k in misfits) + "."
        )
    if args.plot:
        kernels = {"x".join(map(str, k)): kernel for k, (_, kernel) in results.items()}
        plots.save(figure(histories, kernels), args.plot)
        print(f"Figure saved to {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
