"""The stride phases of the NumPy direct method's strided VJP: the input split so that every
window of a strided correlation is a contiguous run; see :mod:`.direct`."""

from __future__ import annotations

import math
from collections.abc import Iterator

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
from .parallel import blas_runs_one_thread, scratch


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
    whole images are the pieces of work, on the pool where OpenBLAS runs each product on one
    thread (:func:`blas_runs_one_thread`), else one after another, OpenBLAS threading each
    product (:func:`_summed_over_images`)."""
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
                grad_w += gy @ cols.transpose(0, 2, 1)
                grad_cols = scratch("phases.grad_columns", cols.shape, xg.dtype)
                products = np.matmul(kernels_t, gy, out=grad_cols)
                geometry.add_columns(grad_phases, products, rows)
            geometry.merge(grad_phases, grad_xp[n])
        return grad_w

    parallel = _worth_splitting(spec) and blas_runs_one_thread()
    grad_w = _summed_over_images(run, xg.shape[0], parallel)
    return grad_xp, grad_w.reshape(wg.shape)
