"""How the NumPy direct schemes cut their work into blocks of output rows: block sizes, views
of C-contiguous buffers by element strides, and the fixed-order sum of partial kernel
gradients (so that results do not depend on the threads)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..._spec.spec import CorrSpec
from .parallel import PARALLEL_MIN_WORK, run_blocks, split

# Bytes of a block's working set: the gradient's per-block products (tiles), well inside one
# core's L2; the copied windows of the forward's tiles and of im2col, larger, because fewer,
# larger blocks are faster (docs/benchmarks.md, "Design measurements", block-bytes).
_TILE_BLOCK_BYTES = 256 * 1024
_SHARED_BLOCK_BYTES = 1024 * 1024
_IM2COL_BLOCK_BYTES = 2 * 1024 * 1024
# Output bytes of a block of the taps scheme: each of a block's elementwise passes is a NumPy
# call, and the two threads hand the GIL back and forth, so larger blocks are faster
# (docs/benchmarks.md, "Design measurements", taps-block-bytes).
_TAPS_BLOCK_BYTES = 1024 * 1024
# Runs of images that im2col's VJP cuts a batch into, each holding a partial grad_w.
_VJP_PIECES = 8


def _view(
    base: np.ndarray, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]
) -> np.ndarray:
    """A view of C-contiguous ``base`` at element ``offset`` with element ``strides`` (checked
    to lie inside ``base``; writeable when ``base`` is). ``np.ndarray`` over the base's buffer
    costs well under a microsecond, ``as_strided`` about 5."""
    item = base.itemsize
    return np.ndarray(shape, base.dtype, base, offset * item, tuple(s * item for s in strides))


def _element_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _row_blocks(rows: int, row_bytes: int, target: int, units_wanted: int) -> list[tuple[int, int]]:
    """Blocks of the first output axis: each near ``target`` bytes, and enough of them to give
    every thread work."""
    per_block = max(1, target // max(row_bytes, 1))
    pieces = max(-(-rows // per_block), min(rows, units_wanted))
    return split(rows, pieces)


def _worth_splitting(spec: CorrSpec) -> bool:
    """Whether the work pays for handing blocks to the thread pool."""
    work = spec.out_shape[0] * math.prod(spec.out_shape[1:])
    return work * spec.w_shape[1] * math.prod(spec.kernel_shape) >= PARALLEL_MIN_WORK


def _summed_over_images(
    run: Callable[[tuple[int, int]], np.ndarray], images: int, parallel: bool
) -> np.ndarray:
    """The sum of ``run``'s partial ``grad_w`` over runs of whole images: a fixed number of
    runs, summed in order, so the sum does not depend on the threads."""
    parts = run_blocks(run, split(images, _VJP_PIECES), parallel)
    return np.sum(parts, axis=0)
