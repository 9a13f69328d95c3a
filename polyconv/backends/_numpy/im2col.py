"""The im2col scheme of the NumPy direct method (several input channels per group: CNN layers):
each block's windows copied into a matrix and multiplied by the kernels; and its VJP, which
is also the exact path for non-finite values; see :mod:`.direct`."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..._spec.spec import CorrSpec
from .blocks import (
    _IM2COL_BLOCK_BYTES,
    _element_strides,
    _row_blocks,
    _summed_over_images,
    _view,
    _worth_splitting,
)
from .parallel import blas_runs_one_thread, run_blocks, scratch, thread_count


class _Im2col:
    """Window matrices of a block of output rows, read from a padded image ``(G, Cg, *P)`` or
    from a slab of its rows (:meth:`slab`)."""

    def __init__(self, spec: CorrSpec, itemsize: int) -> None:
        self.spec = spec
        self.g = spec.groups
        self.cg = spec.w_shape[1]
        self.og = spec.w_shape[0] // spec.groups
        self.out = spec.out_shape[2:]
        self.taps = math.prod(spec.kernel_shape)
        row_bytes = self.g * self.cg * self.taps * math.prod(self.out[1:]) * itemsize
        self.row_bytes = row_bytes

    def blocks(self, units_wanted: int) -> list[tuple[int, int]]:
        return _row_blocks(self.out[0], self.row_bytes, _IM2COL_BLOCK_BYTES, units_wanted)

    def windows(
        self,
        image: np.ndarray,
        rows: tuple[int, int],
        tap: tuple[int, ...] | None = None,
        first_row: int = 0,
    ) -> np.ndarray:
        """``(G, Cg, *K, *out_block)`` view (or ``(G, Cg, *out_block)`` for one ``tap``) of
        ``image`` ``(G, Cg, *padded)``, whose first row is padded row ``first_row``."""
        spec = self.spec
        s = _element_strides(image.shape[2:])
        plane = math.prod(image.shape[2:])
        sizes = (rows[1] - rows[0], *self.out[1:])
        offset = (rows[0] * spec.stride[0] - first_row) * s[0]
        tap_strides = tuple(d * si for d, si in zip(spec.dilation, s, strict=True))
        out_strides = tuple(st * si for st, si in zip(spec.stride, s, strict=True))
        if tap is not None:
            offset += sum(k * ts for k, ts in zip(tap, tap_strides, strict=True))
            return _view(
                image, offset, (self.g, self.cg, *sizes), (self.cg * plane, plane, *out_strides)
            )
        shape = (self.g, self.cg, *spec.kernel_shape, *sizes)
        strides = (self.cg * plane, plane, *tap_strides, *out_strides)
        return _view(image, offset, shape, strides)

    def slab(self, x_n: np.ndarray, rows: tuple[int, int]) -> tuple[np.ndarray, int]:
        """The padded rows that output ``rows`` read, zero-padded from the unpadded image
        ``x_n`` ``(G, Cg, *spatial)`` into the thread's scratch, and the first one's index:
        the padding is made per block, in cache, instead of as a padded copy of the input."""
        spec = self.spec
        first, stop = rows[0] * spec.stride[0], (rows[1] - 1) * spec.stride[0] + spec.extents[0]
        slab = scratch(
            "im2col.slab", (*x_n.shape[:2], stop - first, *spec.padded_shape[1:]), x_n.dtype
        )
        slab.fill(0)
        lo = spec.padding[0][0]
        read = (max(first - lo, 0), min(stop - lo, x_n.shape[2]))
        inside = (
            slice(None),
            slice(None),
            slice(read[0] + lo - first, read[1] + lo - first),
            *(slice(p, p + n) for (p, _), n in zip(spec.padding[1:], x_n.shape[3:], strict=True)),
        )
        if read[1] > read[0]:  # else the block reads only padding
            slab[inside] = x_n[:, :, read[0] : read[1]]
        return slab, first

    def columns(self, windows: np.ndarray) -> np.ndarray:
        """The window matrix ``(G, Cg * taps, positions)`` of ``windows``, copied contiguous
        into the thread's scratch."""
        cols = scratch("im2col.columns", windows.shape, windows.dtype)
        np.copyto(cols, windows)
        return cols.reshape(self.g, self.cg * self.taps, -1)

    def output_block(self, y_n: np.ndarray, rows: tuple[int, int]) -> np.ndarray:
        """``(G, Og, positions)`` view of the block's rows in ``y_n`` ``(O, *out)``."""
        rest = math.prod(self.out[1:])
        plane = math.prod(self.out)
        shape = (self.g, self.og, (rows[1] - rows[0]) * rest)
        return _view(y_n, rows[0] * rest, shape, (self.og * plane, plane, 1))


def _im2col_correlate(
    xg: np.ndarray, wg: np.ndarray, y: np.ndarray, spec: CorrSpec, padded: bool = True
) -> None:
    """Each block (image, rows) copies its windows and multiplies them by the kernels: on the
    pool's threads where OpenBLAS runs each product on one thread, so that the copies run in
    parallel too (docs/benchmarks.md, "Design measurements", im2col-pool), else on the calling
    thread with OpenBLAS threading each product (:func:`blas_runs_one_thread`). With
    ``padded`` false, ``xg`` is the unpadded input and each block zero-pads the rows it reads
    (:meth:`_Im2col.slab`)."""
    geometry = _Im2col(spec, xg.itemsize)
    kernels = wg.reshape(geometry.g, geometry.og, -1)
    parallel = _worth_splitting(spec) and blas_runs_one_thread()
    wanted = -(-2 * thread_count() // xg.shape[0]) if parallel else 1
    units = [(n, rows) for n in range(xg.shape[0]) for rows in geometry.blocks(wanted)]

    def run(unit: tuple[int, tuple[int, int]]) -> None:
        n, rows = unit
        image, first = (xg[n], 0) if padded else geometry.slab(xg[n], rows)
        cols = geometry.columns(geometry.windows(image, rows, first_row=first))
        np.matmul(kernels, cols, out=geometry.output_block(y[n], rows))

    run_blocks(run, units, parallel)


def _im2col_vjp(
    xg: np.ndarray, wg: np.ndarray, grad_y: np.ndarray, spec: CorrSpec, grad_xp: np.ndarray | None
) -> np.ndarray:
    """``grad_w``, and with ``grad_xp`` (zeros shaped like ``xg``) the padded input's gradient
    added into it.

    Per block of rows, ``grad_w`` gains ``grad_y``'s block times its window matrix, and the
    block's windows in ``grad_xp`` gain ``w^T @ grad_y``, scattered back tap by tap. Runs of
    whole images are the pieces of work (:func:`_summed_over_images`). Without ``grad_xp``,
    and where OpenBLAS runs each product on one thread (:func:`blas_runs_one_thread`), the
    pieces go to the pool; else they run one after another, OpenBLAS threading each product
    (with ``grad_xp`` because the scatter's many small additions on two pool threads mostly
    hand the GIL back and forth: docs/benchmarks.md, "Design measurements", im2col-scatter)."""
    geometry = _Im2col(spec, xg.itemsize)
    g, og, cg = geometry.g, geometry.og, geometry.cg
    kernels_t = wg.reshape(g, og, -1).transpose(0, 2, 1)
    block_shape = (g, cg, *spec.kernel_shape)

    def run(images: tuple[int, int]) -> np.ndarray:
        grad_w = np.zeros((g, og, cg * geometry.taps), dtype=xg.dtype)
        for n, rows in itertools.product(range(*images), geometry.blocks(1)):
            cols = geometry.columns(geometry.windows(xg[n], rows))
            gy = geometry.output_block(grad_y[n], rows)
            grad_w += gy @ cols.transpose(0, 2, 1)
            if grad_xp is None:
                continue
            grad_cols = scratch("im2col.grad_columns", cols.shape, xg.dtype)
            np.matmul(kernels_t, gy, out=grad_cols)
            by_tap = grad_cols.reshape(*block_shape, rows[1] - rows[0], *geometry.out[1:])
            for tap in np.ndindex(*spec.kernel_shape):
                geometry.windows(grad_xp[n], rows, tap)[...] += by_tap[
                    (slice(None), slice(None), *tap)
                ]
        return grad_w

    parallel = grad_xp is None and _worth_splitting(spec) and blas_runs_one_thread()
    return _summed_over_images(run, xg.shape[0], parallel).reshape(wg.shape)
