"""The Toeplitz-tile scheme of the NumPy direct method (one input channel per group: single-channel
images with larger kernels, depthwise layers); see :mod:`.direct`."""

from __future__ import annotations

import functools
import math

import numpy as np

from ..._spec.spec import CorrSpec
from .blocks import (
    _SHARED_BLOCK_BYTES,
    _TILE_BLOCK_BYTES,
    _element_strides,
    _row_blocks,
    _view,
    _worth_splitting,
)
from .parallel import run_blocks, scratch, single_thread_matmul, thread_count

# When the direct method runs as tiles, and their width; the cost model (backends/_cost.py)
# prices the same scheme. A tile's
# product has ``t * Og`` columns: from 8, and up to 16 for wider kernels, whose longer windows
# (``L = t + kernel - 1``) waste fewer multiply-adds per output as ``t`` grows
# (docs/benchmarks.md, "Design measurements", tile-width).
NUMPY_TILE_COLUMNS = 8
NUMPY_TILE_MAX_COLUMNS = 16
NUMPY_TILES_MAX_OUTPUTS_PER_GROUP = 4


def numpy_uses_tiles(spec: CorrSpec) -> bool:
    """Whether the NumPy direct method runs as Toeplitz tiles (one input channel per group and
    few outputs per group) rather than im2col."""
    return (
        spec.w_shape[1] == 1 and spec.w_shape[0] // spec.groups <= NUMPY_TILES_MAX_OUTPUTS_PER_GROUP
    )


def numpy_tile_width(spec: CorrSpec) -> int:
    """Outputs per Toeplitz tile along the last axis (``t``). A width that divides the output
    row is preferred, up to 1.5x the base width: a narrower remainder tile costs a second copy
    and product per block (docs/benchmarks.md, "Design measurements", tile-width)."""
    columns = min(NUMPY_TILE_MAX_COLUMNS, max(NUMPY_TILE_COLUMNS, 2 * spec.kernel_shape[-1]))
    t = max(2, columns // (spec.w_shape[0] // spec.groups))
    width = spec.out_shape[-1]
    return next((c for c in range(t, t + t // 2 + 1) if width % c == 0), t)


def numpy_tile_length(spec: CorrSpec, t: int) -> int:
    """Inputs that ``t`` consecutive outputs along the last axis read (``L``)."""
    return (t - 1) * spec.stride[-1] + (spec.kernel_shape[-1] - 1) * spec.dilation[-1] + 1


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
    ``kernel[0]`` times less and spends more, smaller products (docs/benchmarks.md, "Design
    measurements", tile-rows). With a stride along the first axis, each kernel row's
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
