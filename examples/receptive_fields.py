"""Exercise: which input pixels reach one output pixel through stacked layers?

Back-propagate a single 1 from the centre output through 1, 2, 3 stacked 3x3 layers
(``pc.correlate_vjp`` gives the gradient with respect to the input). With kernels of ones the
gradient counts the paths from each input pixel to that output: the receptive field grows by
``kernel - 1`` per layer (by more with dilation), and its centre weighs most.

    python examples/receptive_fields.py --backend jax --plot receptive_fields.png
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import polyconv as pc
from polyconv import plots


def receptive_fields(
    layers: int, *, size: int = 9, kernel: int = 3, dilation: int = 1, backend: str | None = None
) -> list[np.ndarray]:
    """For 1 to ``layers`` stacked layers ("same" padding, kernels of ones), the gradient of the
    centre output of a ``size`` x ``size`` map with respect to the input."""
    ones = np.ones((1, 1, kernel, kernel), dtype=np.float32)
    gradient = np.zeros((1, 1, size, size), dtype=np.float32)
    gradient[0, 0, size // 2, size // 2] = 1  # d(centre output) / d(itself)
    fields = []
    for _ in range(layers):
        gradient, _, _ = pc.correlate_vjp(
            np.zeros_like(gradient),  # the input's values do not matter: the layers are linear
            ones,
            None,
            gradient,
            padding="same",
            dilation=dilation,
            backend=backend,
        )
        gradient = np.asarray(gradient)
        fields.append(gradient[0, 0])
    return fields


def extent(field: np.ndarray) -> tuple[int, int]:
    """(rows, columns) spanned by the nonzero pixels."""
    rows, columns = np.nonzero(field)
    return int(np.ptp(rows)) + 1, int(np.ptp(columns)) + 1


def figure(fields: list[np.ndarray], kernel: int = 3, dilation: int = 1) -> object:
    titled = {}
    for layers, field in enumerate(fields, start=1):
        height, width = extent(field)
        titled[f"{layers} layer{'s' if layers > 1 else ''}: {height}x{width}"] = field
    spacing = f", dilation {dilation}" if dilation > 1 else ""
    return plots.arrays_figure(
        titled,
        title=f"Receptive field of the centre output through stacked {kernel}x{kernel} layers"
        f"{spacing}: the paths from each input pixel",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", help="polyconv backend (default: $POLYCONV_BACKEND or numpy)")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--kernel", type=int, default=3, help="kernel size (%(default)s)")
    parser.add_argument("--dilation", type=int, default=1)
    parser.add_argument("--plot", metavar="FILE.png", help="save the receptive fields")
    args = parser.parse_args(argv)
    if args.plot and (message := plots.missing_matplotlib("--plot")) is not None:
        print(f"{parser.prog}: {message}", file=sys.stderr)
        return 2

    span = args.layers * (args.kernel - 1) * args.dilation + 1
    size = span + 2  # a margin of one pixel each side shows where the field ends
    fields = receptive_fields(
        args.layers, size=size, kernel=args.kernel, dilation=args.dilation, backend=args.backend
    )
    print(f"Receptive field of one output through {args.kernel}x{args.kernel} layers:")
    for layers, field in enumerate(fields, start=1):
        height, width = extent(field)
        print(f"  {layers} layer(s): {height}x{width} input pixels, {int(field.sum())} paths")
    if args.plot:
        plots.save(figure(fields, args.kernel, args.dilation), args.plot)
        print(f"Figure saved to {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
