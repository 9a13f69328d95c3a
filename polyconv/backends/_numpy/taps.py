"""The taps scheme of the NumPy direct method (one input and one output channel, a small kernel):
one strided view times its weight per tap; see :mod:`.direct`."""

from __future__ import annotations

import functools
import math

import numpy as np

from ..._spec.spec import CorrSpec
from .blocks import _TAPS_BLOCK_BYTES, _row_blocks, _worth_splitting
from .parallel import ordered_map, scratch, thread_count

# When the direct method runs tap by tap; the cost model (backends/_cost.py) prices the same
# scheme.
NUMPY_TAPS_MAX = 9


def numpy_uses_taps(spec: CorrSpec) -> bool:
    """Whether the NumPy direct method runs tap by tap: one input and one output channel and a
    kernel of at most ``NUMPY_TAPS_MAX`` taps, where two elementwise passes per tap beat the
    tiles' copies and small products. Depthwise layers stay on the tiles: there each tap's
    weights broadcast over the channels (docs/benchmarks.md, "Design measurements", taps)."""
    return spec.w_shape[:2] == (1, 1) and math.prod(spec.kernel_shape) <= NUMPY_TAPS_MAX


@functools.lru_cache(maxsize=256)
def _taps_plan(
    spec: CorrSpec, threads: int, itemsize: int
) -> tuple[list[tuple[int, tuple[slice, ...]]], list[tuple[int, int]], bool]:
    """Per kernel tap, where its windows start along the first axis (before the block's own
    offset) and their slices of the other axes; the blocks of output rows; whether the blocks
    go to the thread pool. (Built once per spec: docs/benchmarks.md, "Design measurements", taps-plan.)"""
    out = spec.out_shape[2:]
    taps = [
        (
            tap[0] * spec.dilation[0],
            tuple(
                slice(k * d, k * d + (n - 1) * st + 1, st)
                for k, d, n, st in zip(
                    tap[1:], spec.dilation[1:], out[1:], spec.stride[1:], strict=True
                )
            ),
        )
        for tap in np.ndindex(*spec.kernel_shape)
    ]
    parallel = _worth_splitting(spec)
    row_bytes = math.prod(out[1:]) * itemsize
    wanted = -(-threads // spec.x_shape[0]) if parallel else 1
    return taps, _row_blocks(out[0], row_bytes, _TAPS_BLOCK_BYTES, wanted), parallel


def _taps_correlate(xg: np.ndarray, wg: np.ndarray, y: np.ndarray, spec: CorrSpec) -> None:
    """``y`` ``(N, 1, *out)`` from padded ``xg`` ``(N, 1, 1, *P)`` and ``wg`` ``(1, 1, 1, *K)``,
    the defining sum term by term: per block of output rows, for every kernel tap, the window
    it reads (a strided view) times its weight, added to the block. Two elementwise passes per
    tap, no copy and no wasted multiply-add; every product is a term of the sum, so the scheme
    is exact."""
    taps, blocks, parallel = _taps_plan(spec, thread_count(), y.itemsize)
    weights = list(wg.reshape(-1))  # NumPy scalars: faster elementwise loops than 0-d arrays
    step = spec.stride[0]

    def run(unit: tuple[int, tuple[int, int]]) -> None:
        n, (first, stop) = unit
        x_n = xg[n, 0, 0]
        block = y[n, 0, first:stop]
        term = scratch("taps.term", block.shape, y.dtype)
        for i, ((row, rest), weight) in enumerate(zip(taps, weights, strict=True)):
            rows = slice(first * step + row, (stop - 1) * step + row + 1, step)
            window = x_n[(rows, *rest)]
            if i == 0:
                np.multiply(window, weight, out=block)
            else:
                np.multiply(window, weight, out=term)
                block += term

    # Elementwise passes only, no matrix product: the pool whatever the BLAS.
    ordered_map(run, [(n, rows) for n in range(xg.shape[0]) for rows in blocks], parallel)
