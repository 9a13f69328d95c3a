"""Exercise: a convolution is a fully-connected layer with two restrictions.

A fully-connected layer from an H x W image to an H' x W' map has one weight per (output pixel,
input pixel) pair: ``h[i, j] = sum_{k, l} V[i, j, k, l] x[k, l]``. Writing ``k = i + a`` and
``l = j + b``,

- translation invariance says the weight depends only on the offset: ``V[i, j, i+a, j+b] = K[a, b]``;
- locality says only small offsets matter: ``K[a, b] = 0`` unless ``0 <= a < kh`` and ``0 <= b < kw``.

This script builds that restricted weight matrix by hand, straight from the two rules, and checks
that it is exactly ``pc.as_matrix(K, x.shape)``, the matrix polyconv derives from the correlation,
and that multiplying by it is the correlation computed by the chosen backend.

    python examples/fully_connected_view.py --backend torch --plot fully_connected.png
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import polyconv as pc
from polyconv import plots


def restricted_dense_weights(kernel: np.ndarray, height: int, width: int) -> np.ndarray:
    """The fully-connected weights, (output pixels, input pixels), under the two rules."""
    kh, kw = kernel.shape
    out_h, out_w = height - kh + 1, width - kw + 1
    weights = np.zeros((out_h * out_w, height * width), dtype=kernel.dtype)
    for i in range(out_h):
        for j in range(out_w):
            for a in range(kh):  # locality: offsets inside the kernel only
                for b in range(kw):
                    # translation invariance: the same K[a, b] for every output (i, j)
                    weights[i * out_w + j, (i + a) * width + (j + b)] = kernel[a, b]
    return weights


def _show(matrix: np.ndarray) -> None:
    for row in matrix:
        print("   " + " ".join(f"{value:2g}" if value else " ." for value in row))


def figure(kernel: np.ndarray, image: np.ndarray, matrix: np.ndarray, output: np.ndarray) -> object:
    """K, x, the weight matrix M and M @ x reshaped to the output's shape, side by side."""
    return plots.arrays_figure(
        {
            "kernel K": kernel,
            "image x": image,
            "M = pc.as_matrix(K, x.shape)\n(rows: output pixels, columns: input pixels)": matrix,
            "M @ x, reshaped": output,
        },
        title="A convolution is a fully connected layer whose matrix repeats K along its rows",
        height=3.6,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", help="polyconv backend (default: $POLYCONV_BACKEND or numpy)")
    parser.add_argument("--height", type=int, default=4)
    parser.add_argument("--width", type=int, default=5)
    parser.add_argument("--plot", metavar="FILE.png", help="save K, x, the matrix and M @ x")
    args = parser.parse_args(argv)
    if args.plot and (message := plots.missing_matplotlib("--plot")) is not None:
        print(f"{parser.prog}: {message}", file=sys.stderr)
        return 2

    kernel = np.array([[1, 2], [3, 4]], dtype=np.float32)  # no zero tap, so every weight shows
    image = np.random.default_rng(0).integers(0, 10, (args.height, args.width)).astype(np.float32)
    out_h, out_w = args.height - 1, args.width - 1
    layer = pc.Conv2D(kernel.shape, bias=False, backend=args.backend)
    layer.weight = kernel[None, None]  # the kernel as an array of the chosen backend
    backend = layer.backend

    by_hand = restricted_dense_weights(kernel, args.height, args.width)
    derived = pc.as_matrix(layer.weight, (1, args.height, args.width))
    print(f"K = {kernel.tolist()} on a {args.height}x{args.width} image, backend {backend.name}.")
    print(
        f"A fully-connected layer would have {out_h * out_w} x {args.height * args.width} = "
        f"{by_hand.size} free weights; translation invariance and locality leave {kernel.size}.\n"
    )
    print("The restricted weight matrix (rows: output pixels, columns: input pixels, '.' = 0):")
    _show(by_hand)
    print(
        "\nEach row is the kernel laid over one window of the flattened image: the next output"
        "\npixel shifts it one column right, the next output row one image row."
    )

    same_matrix = np.array_equal(by_hand, derived)
    print(f"\nBuilt by hand from the two rules == pc.as_matrix(K, (1, H, W)): {same_matrix}")

    dense = derived @ image.ravel()
    convolved = backend.to_numpy(layer(image)).ravel()
    gap = float(np.abs(dense - convolved).max())
    print(f"max |M @ x - correlate(x, K)| on {backend.name}: {gap:.2g}")
    agrees = gap <= 1e-5 * max(1.0, float(np.abs(dense).max()))
    print(
        "So the convolution is exactly this fully-connected layer."
        if same_matrix and agrees
        else "MISMATCH: the two views disagree."
    )
    if args.plot:
        plots.save(figure(kernel, image, derived, dense.reshape(out_h, out_w)), args.plot)
        print(f"Figure saved to {args.plot}")
    return 0 if same_matrix and agrees else 1


if __name__ == "__main__":
    raise SystemExit(main())
