"""The NumPy backend's direct method: the defining sum, evaluated block by block.

Three schemes, all working on blocks of output rows (of the first spatial axis), each block an
independent piece of work for the thread pool:

- **Taps** (one input and one output channel, kernels of at most 9 taps): for every tap, its
  window of the block's inputs, a strided view, times its weight, added to the block: two
  elementwise passes per tap and output, no copy and no wasted multiply-add.
- **Toeplitz tiles** (other problems with one input channel per group: single-channel images
  with larger kernels, depthwise layers).
  Along the last axis, ``t`` consecutive outputs read ``L = (t - 1) * stride + extent`` inputs,
  and their correlation with one kernel row is a product with a banded ``(L, t)`` matrix ``T``.
  A block copies the tile windows of the input rows it reads once; each kernel row (along the
  first axis) is then one product of a slice of those rows with its ``T`` (stacked over the
  offsets of any other leading axes), and the products are summed. ``T`` wastes
  ``L / kernel`` of the multiply-adds, which BLAS more than repays against one whole-image
  pass per kernel tap.
- **im2col** (several input channels per group: CNN layers). The block's windows are copied
  into a ``(C_in/G * prod(kernel), positions)`` matrix and multiplied by the kernel matrix,
  one BLAS ``gemm`` that writes straight into the output.

Gradients are the transposes of the same products: ``grad_w`` is a product of ``grad_y`` with
the same windows, and ``grad_x`` is the correlation of the stride-dilated, fully padded
``grad_y`` with the flipped kernel, or, with stride (except on tiles), ``w^T @ grad_y`` added
back onto the windows, read from the input's stride phases (:class:`_Phases`) so that every
window is a contiguous run. The exact path (non-finite values) scatters onto im2col's windows.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator

import numpy as np

from .._methods import numpy_tile_length, numpy_tile_width
from .._methods import numpy_uses_taps as uses_taps
from .._methods import numpy_uses_tiles as uses_tiles
from .._spec import CorrSpec, normalize
from ._numpy_parallel import (
    PARALLEL_MIN_WORK,
    ordered_map,
    run_blocks,
    scratch,
    single_thread_matmul,
    split,
    thread_count,
)

# Bytes of a block's working set: the gradient's per-block products (tiles), well inside one
# core's L2; the copied windows of the forward's tiles and of im2col, larger, because fewer,
# larger blocks measured faster here (tiles' shared rows, interleaved: 1 MB level with 2 MB,
# 256 KB 1.2 to 1.4x slower on 512x512 and 2048x2048 images with 3x3 and 11x11).
_TILE_BLOCK_BYTES = 256 * 1024
_SHARED_BLOCK_BYTES = 1024 * 1024
_IM2COL_BLOCK_BYTES = 2 * 1024 * 1024
# Output bytes of a block of the taps scheme: measured here, interleaved, on 512x512 and
# 2048x2048 images with 3x3: 1 MB (or half the image per thread) fastest; 0.5 MB 1.1x slower
# (2048x2048); 128 KB 1.4x (512x512, 64 rows) to 2.5x (2048x2048, 16 rows) slower: each of a
# block's elementwise passes is a NumPy call, and the two threads hand the GIL back and forth.
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


# --- Toeplitz tiles --------------------------------------------------------------------------


def _tile_groups(width: int, t: int) -> list[tuple[int, int, int]]:
    """``(tile width, tile count, first column)``: full tiles, then one narrower remainder."""
    count = width // t
    groups = [(t, count, 0)] if count else []
    if width - count * t:
        groups.append((width - count * t, 1, count * t))
    return groups


@functools.lru_cache(maxsize=256)
def _toeplitz_scatter(spec: CorrSpec, t: int) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Where the kernel's taps go in the Toeplitz matrices of tile width ``t``: their shape
    ``(G, offsets, L, Og, t)`` (kernel offsets along the leading axes), and the flat positions
    in those matrices and in the kernel ``(G, Og, 1, *K)`` of every tap's copies."""
    g, og = spec.groups, spec.w_shape[0] // spec.groups
    kernel = spec.kernel_shape
    offsets, kw = math.prod(kernel[:-1]), kernel[-1]
    length = numpy_tile_length(spec, t)
    gi, oi, off, j, b = np.ix_(range(g), range(og), range(offsets), range(t), range(kw))
    rows = j * spec.stride[-1] + b * spec.dilation[-1]
    shape = (g, offsets, length, og, t)
    target = np.ravel_multi_index(np.broadcast_arrays(gi, off, rows, oi, j), shape)
    source = np.ravel_multi_index(np.broadcast_arrays(gi, oi, off, b), (g, og, offsets, kw))
    return shape, target.reshape(-1), np.broadcast_to(source, target.shape).reshape(-1)


def _toeplitz(wg: np.ndarray, spec: CorrSpec, t: int) -> np.ndarray:
    """``(G, offsets, L, Og * t)``: for each kernel offset along the leading axes, column
    ``(o, j)`` holds that kernel row of output channel ``o`` at rows ``j * stride + b *
    dilation``, so that ``window @ T`` correlates ``t`` outputs at once."""
    shape, target, source = _toeplitz_scatter(spec, t)
    toeplitz = np.zeros(math.prod(shape), dtype=wg.dtype)
    toeplitz[target] = wg.reshape(-1)[source]
    return toeplitz.reshape(*shape[:3], -1)


class _TileGeometry:
    """Views of one padded image for the Toeplitz scheme (``x_n`` is ``(G, *padded)``)."""

    def __init__(self, spec: CorrSpec) -> None:
        self.spec = spec
        self.g = spec.groups
        self.og = spec.w_shape[0] // spec.groups
        self.out = spec.out_shape[2:]
        self.lead = self.out[:-1]  # output axes other than the last
        self.padded_strides = _element_strides(spec.padded_shape)
        self.plane = math.prod(spec.padded_shape)
        self.t = numpy_tile_width(spec)
        self.groups = _tile_groups(self.out[-1], self.t)

    def window_view(
        self,
        x_n: np.ndarray,
        lead_offset: tuple[int, ...],
        rows: tuple[int, int],
        group: tuple[int, int, int],
    ) -> np.ndarray:
        """``(G, *lead_block[:-1], nt, lead_block[-1], L)``: the input windows of every tile of
        the block ``rows`` (of the first output axis), for kernel offset ``lead_offset`` along
        the leading axes; a copy (BLAS needs it) when there are no leading axes."""
        spec, s = self.spec, self.padded_strides
        t, count, col0 = group
        sw = spec.stride[-1]
        length = numpy_tile_length(spec, t)
        offset = col0 * sw * s[-1]
        for axis, a in enumerate(lead_offset):
            start = rows[0] if axis == 0 else 0
            offset += (start * spec.stride[axis] + a * spec.dilation[axis]) * s[axis]
        if not self.lead:
            view = _view(x_n, offset, (self.g, count, length), (self.plane, t * sw * s[-1], s[-1]))
            return np.ascontiguousarray(view)
        sizes = [rows[1] - rows[0], *self.lead[1:]]
        steps = [spec.stride[axis] * s[axis] for axis in range(len(self.lead))]
        shape = (self.g, *sizes[:-1], count, sizes[-1], length)
        strides = (self.plane, *steps[:-1], t * sw * s[-1], steps[-1], s[-1])
        return _view(x_n, offset, shape, strides)

    @property
    def length(self) -> int:
        """Inputs read by one full tile (``L``)."""
        return numpy_tile_length(self.spec, self.t)

    def shared_view(
        self, x_n: np.ndarray, rows: tuple[int, int], group: tuple[int, int, int]
    ) -> np.ndarray:
        """``(G, rows_in, *lead[1:], nt, *K_lead[1:], L)`` view of the input windows that the
        block ``rows`` (of the first output axis) reads: every input row its kernel rows
        reach, once, with each tile's window for every kernel offset along the other leading
        axes. Kernel row ``a`` of output row ``i`` reads row ``i * stride + a * dilation``."""
        spec, s = self.spec, self.padded_strides
        t, count, col0 = group
        sw = spec.stride[-1]
        m = len(self.lead)
        rows_in = (rows[1] - rows[0] - 1) * spec.stride[0] + spec.extents[0]
        shape = (
            self.g,
            rows_in,
            *self.lead[1:],
            count,
            *spec.kernel_shape[1:-1],
            numpy_tile_length(spec, t),
        )
        strides = (
            self.plane,
            s[0],
            *(spec.stride[axis] * s[axis] for axis in range(1, m)),
            t * sw * s[-1],
            *(spec.dilation[axis] * s[axis] for axis in range(1, m)),
            s[-1],
        )
        offset = rows[0] * spec.stride[0] * s[0] + col0 * sw * s[-1]
        return _view(x_n, offset, shape, strides)

    def output_view(
        self, y_n: np.ndarray, rows: tuple[int, int], group: tuple[int, int, int]
    ) -> np.ndarray:
        """``(G, Og, *lead_block, nt, t)``: where the tiles of a block go in ``y_n`` ``(O, *out)``."""
        t, count, col0 = group
        s = _element_strides(self.out)
        plane = math.prod(self.out)
        sizes = [rows[1] - rows[0], *self.lead[1:]] if self.lead else []
        offset = rows[0] * s[0] + col0 if self.lead else col0
        shape = (self.g, self.og, *sizes, count, t)
        strides = (self.og * plane, plane, *s[:-1], t, 1)
        return _view(y_n, offset, shape, strides)

    @property
    def parallel(self) -> bool:
        return _worth_splitting(self.spec)

    def blocks(self, n: int, itemsize: int, shared: bool = False) -> list[tuple[int, int]]:
        """Blocks of output rows: their gradient products, or with ``shared`` their copied
        windows (:meth:`shared_view`), about a block's target size."""
        if not self.lead:
            return [(0, 1)]
        if shared:
            tiles = -(-self.out[-1] // self.t) * math.prod(self.out[1:-1])
            width = math.prod(self.spec.kernel_shape[1:-1]) * self.length
            row_bytes = self.g * tiles * width * self.spec.stride[0] * itemsize
            target, wanted = _SHARED_BLOCK_BYTES, -(-thread_count() // n)
        else:
            row_bytes = self.g * self.og * math.prod(self.out[1:]) * itemsize
            target, wanted = _TILE_BLOCK_BYTES, 2 * thread_count() // n
        return _row_blocks(self.out[0], row_bytes, target, wanted if self.parallel else 1)


_tile_geometry = functools.lru_cache(maxsize=256)(_TileGeometry)


def _lead_offsets(spec: CorrSpec) -> list[tuple[int, ...]]:
    return list(np.ndindex(*spec.kernel_shape[:-1]))


def _tiles_correlate(xg: np.ndarray, wg: np.ndarray, y: np.ndarray, spec: CorrSpec) -> None:
    """``y`` ``(N, O, *out)`` from padded ``xg`` ``(N, G, 1, *P)`` and ``wg`` ``(G, Og, 1, *K)``.
    Per block of rows, the input rows it reads are copied once (:meth:`_TileGeometry.shared_view`)
    and each kernel row ``a`` (along the first axis) is one matrix product of the rows it reads,
    a slice of that copy, with its Toeplitz matrices; the products are summed into the output.
    Against copying every kernel row's windows side by side for one product, this copies
    ``kernel[0]`` times less and spends more, smaller products (512x512 images, interleaved:
    3x3 0.86 to 0.89x the time, 11x11 0.90x). With a stride along the first axis, each kernel row's
    rows are copied out of the block's copy for their product. Temporaries are scratch."""
    geometry = _tile_geometry(spec)
    g, og, lead = geometry.g, geometry.og, geometry.lead
    kernel_rows = spec.kernel_shape[0] if lead else 1
    matrices = {  # (G, kernel rows, K, Og * t): K the other leading offsets times L
        t: _toeplitz(wg, spec, t).reshape(g, kernel_rows, -1, og * t) for t, _, _ in geometry.groups
    }

    def run(unit: tuple[int, tuple[int, int]]) -> None:
        n, rows = unit
        x_n = xg[n, :, 0]
        for group in geometry.groups:
            toeplitz = matrices[group[0]]
            outputs = geometry.output_view(y[n], rows, group)  # (G, Og, *lead_block, nt, t)
            ndim = outputs.ndim
            in_product_order = outputs.transpose(0, *range(2, ndim - 1), 1, ndim - 1)
            if lead:
                windows = geometry.shared_view(x_n, rows, group)
                copied = scratch("tiles.windows", windows.shape, xg.dtype)
                np.copyto(copied, windows)
            else:
                copied = geometry.window_view(x_n, (), rows, group)  # a copy already
            count, step = rows[1] - rows[0], spec.stride[0]
            positions = math.prod(in_product_order.shape[1:-2])  # tiles of the block
            total = scratch("tiles.sum", (g, positions, og * group[0]), xg.dtype)
            term = scratch("tiles.term", total.shape, xg.dtype)
            for a in range(kernel_rows):
                first = a * spec.dilation[0]
                read = copied[:, first : first + (count - 1) * step + 1 : step] if lead else copied
                # A view for stride 1; else reshape copies this kernel row's rows.
                matrices_a = read.reshape(g, positions, toeplitz.shape[2])
                single_thread_matmul(matrices_a, toeplitz[:, a], out=term if a else total)
                if a == kernel_rows - 1 and a:  # the last sum goes straight to the output
                    np.add(
                        total.reshape(in_product_order.shape),
                        term.reshape(in_product_order.shape),
                        out=in_product_order,
                    )
                elif a:
                    total += term
            if kernel_rows == 1:
                in_product_order[...] = total.reshape(in_product_order.shape)

    units = [
        (n, rows)
        for n in range(xg.shape[0])
        for rows in geometry.blocks(xg.shape[0], xg.itemsize, shared=True)
    ]
    run_blocks(run, units, geometry.parallel)


def _tiles_grad_w(xg: np.ndarray, grad_y: np.ndarray, spec: CorrSpec) -> np.ndarray:
    """``grad_w`` ``(G, Og, 1, *K)`` for the tiles scheme: for each tile, ``grad_y``'s tile
    (``t`` outputs) times the tile's input windows gives a ``(t, L)`` matrix whose diagonals
    ``[j, j * stride + b * dilation]`` sum to the kernel row's gradient."""
    geometry = _tile_geometry(spec)
    offsets = _lead_offsets(spec)
    g, og = geometry.g, geometry.og
    m = len(geometry.lead)

    def run(unit: tuple[int, tuple[int, int]]) -> dict[tuple[int, tuple[int, ...]], np.ndarray]:
        n, rows = unit
        x_n = xg[n, :, 0]
        partial = {}
        for group in geometry.groups:
            t = group[0]
            # grad_y's block as (G, Og, *lead[:-1], nt, t, lead[-1]): (t, rows) matrices.
            gy = geometry.output_view(grad_y[n], rows, group)
            if m:
                gy = np.moveaxis(gy, 2 + m - 1, -1)
            for offset in offsets:
                windows = geometry.window_view(x_n, offset, rows, group)
                if m:
                    products = single_thread_matmul(gy, windows[:, None])  # (G, Og, .., nt, t, L)
                    summed = products.sum(axis=tuple(range(2, 2 + m)))
                else:
                    summed = np.einsum("gont,gnl->gotl", gy, windows)
                partial[t, offset] = summed
        return partial

    units = [
        (n, rows) for n in range(xg.shape[0]) for rows in geometry.blocks(xg.shape[0], xg.itemsize)
    ]
    totals: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    for partial in run_blocks(run, units, geometry.parallel):
        for key, value in partial.items():
            totals[key] = totals[key] + value if key in totals else value

    kw, dw, sw = spec.kernel_shape[-1], spec.dilation[-1], spec.stride[-1]
    grad_w = np.zeros((g, og, *spec.kernel_shape), dtype=xg.dtype)
    b = np.arange(kw)
    for (t, offset), z in totals.items():
        j = np.arange(t)[:, None]
        diagonals = z[:, :, j, j * sw + b[None, :] * dw]  # (G, Og, t, kw)
        grad_w[(slice(None), slice(None), *offset)] += diagonals.sum(axis=2)  # type: ignore[arg-type]
    return grad_w[:, :, None]


# --- taps ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _taps_plan(
    spec: CorrSpec, threads: int, itemsize: int
) -> tuple[list[tuple[int, tuple[slice, ...]]], list[tuple[int, int]], bool]:
    """Per kernel tap, where its windows start along the first axis (before the block's own
    offset) and their slices of the other axes; the blocks of output rows; whether the blocks
    go to the thread pool. (Built once per spec: about 70 us of Python per call otherwise.)"""
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


# --- im2col ----------------------------------------------------------------------------------


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
    """Each block (image, rows) copies its windows and multiplies them by the kernels, on the
    pool's threads, each product on one BLAS thread: the copies then run in parallel too
    (measured here on the benchmark layers: 15 to 30% faster than one block at a time with
    OpenBLAS threading each product). With ``padded`` false, ``xg`` is the unpadded input and
    each block zero-pads the rows it reads (:meth:`_Im2col.slab`)."""
    geometry = _Im2col(spec, xg.itemsize)
    kernels = wg.reshape(geometry.g, geometry.og, -1)
    parallel = _worth_splitting(spec)
    wanted = -(-2 * thread_count() // xg.shape[0]) if parallel else 1
    units = [(n, rows) for n in range(xg.shape[0]) for rows in geometry.blocks(wanted)]

    def run(unit: tuple[int, tuple[int, int]]) -> None:
        n, rows = unit
        image, first = (xg[n], 0) if padded else geometry.slab(xg[n], rows)
        cols = geometry.columns(geometry.windows(image, rows, first_row=first))
        single_thread_matmul(kernels, cols, out=geometry.output_block(y[n], rows))

    run_blocks(run, units, parallel)


def _worth_splitting(spec: CorrSpec) -> bool:
    """Whether the work pays for handing blocks to the thread pool."""
    work = spec.out_shape[0] * math.prod(spec.out_shape[1:])
    return work * spec.w_shape[1] * math.prod(spec.kernel_shape) >= PARALLEL_MIN_WORK


def _im2col_vjp(
    xg: np.ndarray, wg: np.ndarray, grad_y: np.ndarray, spec: CorrSpec, grad_xp: np.ndarray | None
) -> np.ndarray:
    """``grad_w``, and with ``grad_xp`` (zeros shaped like ``xg``) the padded input's gradient
    added into it.

    Per block of rows, ``grad_w`` gains ``grad_y``'s block times its window matrix, and the
    block's windows in ``grad_xp`` gain ``w^T @ grad_y``, scattered back tap by tap. Runs of
    whole images are the pieces of work (:func:`_summed_over_images`). Without ``grad_xp``
    the pieces go to the pool; with it they run one after another, OpenBLAS
    threading each product, because the scatter's many small additions on two pool threads
    mostly hand the GIL back and forth (stride 2 layer, interleaved: 32.1 ms on the pool
    against 29.0 ms)."""
    geometry = _Im2col(spec, xg.itemsize)
    g, og, cg = geometry.g, geometry.og, geometry.cg
    kernels_t = wg.reshape(g, og, -1).transpose(0, 2, 1)
    block_shape = (g, cg, *spec.kernel_shape)

    def run(images: tuple[int, int]) -> np.ndarray:
        grad_w = np.zeros((g, og, cg * geometry.taps), dtype=xg.dtype)
        for n, rows in itertools.product(range(*images), geometry.blocks(1)):
            cols = geometry.columns(geometry.windows(xg[n], rows))
            gy = geometry.output_block(grad_y[n], rows)
            grad_w += single_thread_matmul(gy, cols.transpose(0, 2, 1))
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

    parallel = grad_xp is None and _worth_splitting(spec)
    return _summed_over_images(run, xg.shape[0], parallel).reshape(wg.shape)


def _summed_over_images(
    run: Callable[[tuple[int, int]], np.ndarray], images: int, parallel: bool
) -> np.ndarray:
    """The sum of ``run``'s partial ``grad_w`` over runs of whole images: a fixed number of
    runs, summed in order, so the sum does not depend on the threads."""
    parts = run_blocks(run, split(images, _VJP_PIECES), parallel)
    return np.sum(parts, axis=0)


# --- stride phases ---------------------------------------------------------------------------


class _Phases:
    """A padded image ``(G, Cg, *P)`` split into its stride phases: phase ``a`` holds the
    positions ``a + stride * j``, so every tap of a strided correlation reads one phase at
    stride 1 (tap ``k`` reads phase ``k * dilation % stride`` from ``k * dilation // stride``
    on). The phases are ``(G, Cg, phases, *L)`` with ``L = ceil(P / stride)`` (the shorter
    phases zero-filled), and the outputs are laid out with the element strides ``S`` of
    ``L``: output ``o`` at ``sum(o * S)``, the positions past a row's last output left as
    unused columns. A tap's window of a block of output rows is then one contiguous run of
    each channel's phase, so the window matrix is copied, and its gradient added back, in long
    contiguous runs rather than in the strided rows of :class:`_Im2col`, whose copies and
    additions cost most of a strided VJP (runs of 32 elements at stride 2 on the benchmark's
    stride-2 layer). The unused columns' ``grad_y`` is zero, so they add nothing to either
    gradient (as long as every product is finite)."""

    def __init__(self, spec: CorrSpec, itemsize: int) -> None:
        self.spec = spec
        self.g, self.cg = spec.groups, spec.w_shape[1]
        self.og = spec.w_shape[0] // spec.groups
        self.out = spec.out_shape[2:]
        self.lengths = tuple(
            -(-p // s) for p, s in zip(spec.padded_shape, spec.stride, strict=True)
        )
        self.steps = _element_strides(self.lengths)  # S
        self.plane = math.prod(self.lengths)
        self.count = math.prod(spec.stride)
        self.starts = [  # per tap: where its window starts in the flattened phases
            self._start(tap) for tap in np.ndindex(*spec.kernel_shape)
        ]
        self.taps = len(self.starts)
        self.phase_slices = [
            tuple(slice(a, None, s) for a, s in zip(phase, spec.stride, strict=True))
            for phase in np.ndindex(*spec.stride)
        ]
        # Positions from a block's first output to its last, past its first row.
        self.row_tail = (
            sum((o - 1) * s for o, s in zip(self.out[1:], self.steps[1:], strict=True)) + 1
        )
        row_bytes = self.g * self.cg * self.taps * self.steps[0] * itemsize
        self.blocks = _row_blocks(self.out[0], row_bytes, _IM2COL_BLOCK_BYTES, 1)

    def _start(self, tap: tuple[int, ...]) -> int:
        spec = self.spec
        reach = [k * d for k, d in zip(tap, spec.dilation, strict=True)]
        phase = np.ravel_multi_index(
            [r % s for r, s in zip(reach, spec.stride, strict=True)], spec.stride
        )
        offset = sum(
            r // s * step for r, s, step in zip(reach, spec.stride, self.steps, strict=True)
        )
        return int(phase) * self.plane + offset

    def _phase_views(
        self, image: np.ndarray, phases: np.ndarray
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each phase of ``image`` ``(G, Cg, *P)`` (a strided view) with its place in
        ``phases`` ``(G, Cg, count, *L)``."""
        for i, phase in enumerate(self.phase_slices):
            strided = image[(slice(None), slice(None), *phase)]
            inside: tuple[slice | int, ...] = (slice(None), slice(None), i)
            yield strided, phases[inside + tuple(map(slice, strided.shape[2:]))]

    def split(self, image: np.ndarray) -> np.ndarray:
        """The phases of ``image``, flattened to ``(G, Cg, count * plane)``, in the thread's
        scratch."""
        phases = scratch("phases.x", (self.g, self.cg, self.count, *self.lengths), image.dtype)
        phases.fill(0)
        for strided, place in self._phase_views(image, phases):
            place[...] = strided
        return phases.reshape(self.g, self.cg, -1)

    def merge(self, flat: np.ndarray, image: np.ndarray) -> None:
        """Write the flattened phases ``flat`` back into every position of ``image``
        ``(G, Cg, *P)``."""
        phases = flat.reshape(self.g, self.cg, self.count, *self.lengths)
        for strided, place in self._phase_views(image, phases):
            strided[...] = place

    def positions(self, rows: tuple[int, int]) -> tuple[int, int]:
        """The first and the number of a block's positions (its outputs and unused columns)."""
        return rows[0] * self.steps[0], (rows[1] - rows[0] - 1) * self.steps[0] + self.row_tail

    def columns(self, flat: np.ndarray, rows: tuple[int, int]) -> np.ndarray:
        """The block's window matrix ``(G, Cg * taps, positions)`` from the flattened phases."""
        first, count = self.positions(rows)
        cols = scratch("phases.columns", (self.g, self.cg, self.taps, count), flat.dtype)
        for t, start in enumerate(self.starts):
            cols[:, :, t] = flat[:, :, first + start : first + start + count]
        return cols.reshape(self.g, self.cg * self.taps, count)

    def add_columns(self, flat: np.ndarray, grad_cols: np.ndarray, rows: tuple[int, int]) -> None:
        """The transpose of :meth:`columns`: add ``grad_cols`` back into the flattened phases."""
        first, count = self.positions(rows)
        by_tap = grad_cols.reshape(self.g, self.cg, self.taps, count)
        for t, start in enumerate(self.starts):
            flat[:, :, first + start : first + start + count] += by_tap[:, :, t]

    def spread(self, y_n: np.ndarray, rows: tuple[int, int]) -> np.ndarray:
        """A block of ``y_n`` ``(O, *out)`` at its positions, ``(G, Og, positions)``, zero
        on the unused columns, in the thread's scratch."""
        _, count = self.positions(rows)
        spread = scratch("phases.spread", (self.g, self.og, count), y_n.dtype)
        spread.fill(0)
        place = _view(
            spread,
            0,
            (self.g, self.og, rows[1] - rows[0], *self.out[1:]),
            (self.og * count, count, *self.steps),
        )
        place[...] = y_n.reshape(self.g, self.og, *self.out)[:, :, rows[0] : rows[1]]
        return spread


def _phases_vjp(
    xg: np.ndarray, wg: np.ndarray, grad_y: np.ndarray, spec: CorrSpec
) -> tuple[np.ndarray, np.ndarray]:
    """``(grad_xp, grad_w)`` with stride, by :class:`_Phases`: per block of rows, ``grad_w``
    gains the spread ``grad_y`` times the window matrix, and the windows gain ``w^T`` times
    it, added back into the image's phases, which are then merged into ``grad_xp``. Runs of
    whole images are the pieces of work on the pool (:func:`_summed_over_images`)."""
    geometry = _Phases(spec, xg.itemsize)
    kernels_t = wg.reshape(geometry.g, geometry.og, -1).transpose(0, 2, 1)
    grad_xp = np.empty_like(xg)

    def run(images: tuple[int, int]) -> np.ndarray:
        grad_w = np.zeros((geometry.g, geometry.og, geometry.cg * geometry.taps), xg.dtype)
        for n in range(*images):
            phases = geometry.split(xg[n])
            grad_phases = scratch("phases.grad", phases.shape, xg.dtype)
            grad_phases.fill(0)
            for rows in geometry.blocks:
                cols = geometry.columns(phases, rows)
                gy = geometry.spread(grad_y[n], rows)
                grad_w += single_thread_matmul(gy, cols.transpose(0, 2, 1))
                grad_cols = scratch("phases.grad_columns", cols.shape, xg.dtype)
                products = single_thread_matmul(kernels_t, gy, out=grad_cols)
                geometry.add_columns(grad_phases, products, rows)
            geometry.merge(grad_phases, grad_xp[n])
        return grad_w

    grad_w = _summed_over_images(run, xg.shape[0], _worth_splitting(spec))
    return grad_xp, grad_w.reshape(wg.shape)


# --- entry points ----------------------------------------------------------------------------


def correlate(
    xg: np.ndarray, wg: np.ndarray, spec: CorrSpec, *, exact: bool = False, padded: bool = True
) -> np.ndarray:
    """``y`` ``(N, O, *out)`` from padded, contiguous ``xg`` ``(N, G, Cg, *P)`` and ``wg``
    ``(G, Og, Cg, *K)``, both in the compute dtype. ``exact`` forces im2col, whose every
    product is a term of the defining sum (non-finite values reach exactly the outputs that
    read them). With ``padded`` false (im2col only, zero padding), ``xg`` is the unpadded
    input ``(N, G, Cg, *spatial)``."""
    y = np.empty(spec.out_shape, dtype=xg.dtype)
    if uses_taps(spec):
        _taps_correlate(xg, wg, y, spec)
    elif uses_tiles(spec) and not exact:
        _tiles_correlate(xg, wg, y, spec)
    else:
        _im2col_correlate(xg, wg, y, spec, padded)
    return y


def is_exact(spec: CorrSpec) -> bool:
    """Whether :func:`correlate` computes this problem from the defining sum's terms alone (taps
    and im2col), so that a non-finite input reaches exactly the outputs that read it."""
    return uses_taps(spec) or not uses_tiles(spec)


def pads_per_block(spec: CorrSpec) -> bool:
    """Whether :func:`correlate` takes this problem's input unpadded (``padded=False``): im2col
    with zero padding pads each block's rows in cache, so no padded copy of the input is made."""
    return (
        spec.padding_mode == "zeros"
        and any(lo or hi for lo, hi in spec.padding)
        and not uses_tiles(spec)
    )


def _input_gradient(wg: np.ndarray, grad_y: np.ndarray, spec: CorrSpec) -> np.ndarray:
    """``grad_xp`` ``(N, C_in, *P)``, the gradient of the padded input, as a correlation:
    ``grad_y`` spread to stride 1 (zeros between samples), padded by the kernel extent less one,
    correlated with the flipped kernel with its channel axes swapped
    (``grad_xp[p] = sum_k grad_y_up[p - k * d] * w[k]``). Without stride, im2col pads each
    block's rows itself, so ``grad_y`` is not copied at all."""
    g, og, cg = wg.shape[:3]
    n = grad_y.shape[0]
    extents = spec.extents
    flipped = np.flip(wg, axis=tuple(range(3, wg.ndim)))
    w_t = np.ascontiguousarray(flipped.transpose(0, 2, 1, *range(3, wg.ndim)))  # (G, Cg, Og, *K)
    if all(s == 1 for s in spec.stride):
        t_spec = normalize(
            grad_y.shape,
            (g * cg, og, *spec.kernel_shape),
            padding=[(e - 1, e - 1) for e in extents],
            dilation=spec.dilation,
            groups=g,
        )
        if pads_per_block(t_spec):
            gy = grad_y.reshape(n, g, og, *grad_y.shape[2:])
            return correlate(gy, w_t, t_spec, padded=False)
    length = [p + e - 1 for p, e in zip(spec.padded_shape, extents, strict=True)]
    spread = np.zeros((n, g, og, *length), dtype=grad_y.dtype)
    placed = tuple(
        slice(e - 1, e - 1 + full, s)
        for e, full, s in zip(extents, spec.unstrided_out, spec.stride, strict=True)
    )
    spread.reshape(n, g * og, *length)[(slice(None), slice(None), *placed)] = grad_y
    t_spec = normalize(
        (n, g * og, *length),
        (g * cg, og, *spec.kernel_shape),
        dilation=spec.dilation,
        groups=g,
    )
    return correlate(spread, w_t, t_spec)


def correlate_vjp(
    xg: np.ndarray, wg: np.ndarray, grad_y: np.ndarray, spec: CorrSpec, *, exact: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(grad_xp, grad_w)`` for :func:`correlate`: ``grad_xp`` ``(N, C_in, *P)`` is the
    gradient of the padded input; ``grad_y`` is ``(N, O, *out)`` contiguous. ``exact`` forces
    im2col with ``grad_x`` scattered from ``w^T @ grad_y``, whose every product is a term of
    the defining sum (a correlation with the zero-padded ``grad_y`` also multiplies the kernel
    by the padding's zeros, which makes an infinite weight a NaN). With stride (tiles aside),
    the windows' gradients are added back into the input's stride phases
    (:func:`_phases_vjp`), since the correlation would spend most of its products on the
    spread's zeros: on the stride-2 benchmark layer, interleaved, 0.68 to 0.76x the time of
    the scatter (forward included or not). Otherwise ``grad_x`` is that correlation
    (:func:`_input_gradient`), which runs on the pool like any forward: on the benchmark layers
    without stride, interleaved, 0.62 to 0.89x the time of the scatter."""
    if exact:
        grad_xp = np.zeros_like(xg)
        grad_w = _im2col_vjp(xg, wg, grad_y, spec, grad_xp)
        return grad_xp.reshape(spec.x_shape[:2] + spec.padded_shape), grad_w
    if uses_tiles(spec):
        grad_w = _tiles_grad_w(xg, grad_y, spec)
    elif any(s > 1 for s in spec.stride):
        grad_xp, grad_w = _phases_vjp(xg, wg, grad_y, spec)
        return grad_xp.reshape(spec.x_shape[:2] + spec.padded_shape), grad_w
    else:
        grad_w = _im2col_vjp(xg, wg, grad_y, spec, None)
    return _input_gradient(wg, grad_y, spec), grad_w
