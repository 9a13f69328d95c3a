"""The block geometry of a chunked correlation: which input elements each output chunk reads.

Pure arithmetic on one spatial axis at a time (the spec's padding is separable), shared by the
Dask backend's forward and gradient graphs; no Dask here.

Output chunks follow the input's: an input chunk boundary ``b`` becomes the output boundary
``ceil(b / stride)`` (clipped to the output's length, empty chunks dropped), so a stride-2
result of 2048-wide chunks has 1024-wide chunks, and input chunk sizes need not be multiples
of the stride. Output index ``i`` reads the padded input from ``i * stride`` over the kernel's
extent, so an output chunk ``[i0, i1)`` reads the padded range
``[i0 * stride, (i1 - 1) * stride + extent)``: its halo. Each padded position reads one input
element (:func:`polyconv._spec.padding.pad_indices`, the global boundary, not a chunk's), or, in
zeros mode, a zero: zeros at a block's ends are left to the block's own computation as padding.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .._spec.padding import pad_indices

#: A selection along one axis: a slice where the positions are contiguous, else their indices.
Selector = slice | np.ndarray


def _selector(positions: np.ndarray) -> Selector:
    if positions.size and np.array_equal(
        positions, np.arange(positions[0], positions[0] + positions.size)
    ):
        return slice(int(positions[0]), int(positions[0]) + positions.size)
    return positions


def output_bounds(input_chunks: tuple[int, ...], stride: int, out_size: int) -> list[int]:
    """Boundaries of the output chunks along one axis (see the module docstring)."""
    inner = itertools.accumulate(input_chunks[:-1])
    cuts = {min(-(-b // stride), out_size) for b in inner}
    return sorted({0, out_size} | {c for c in cuts if 0 < c < out_size})


def chunks_scaled_up(y_chunks: tuple[int, ...], stride: int, size: int) -> tuple[int, ...]:
    """Chunks along one axis of a transpose's output (a forward's input) of ``size``: the
    boundaries ``b`` of its input ``y`` become ``b * stride`` (those inside ``size``), which
    :func:`output_bounds` maps back onto ``b``."""
    inner = {b * stride for b in itertools.accumulate(y_chunks[:-1])}
    bounds = sorted({0, size} | {b for b in inner if 0 < b < size})
    return tuple(b - a for a, b in itertools.pairwise(bounds))


@dataclass(frozen=True)
class AxisBlock:
    """What one output chunk reads along one axis.

    ``chunks`` are the input chunks it needs (indices, ascending) and ``crops`` the part of
    each it reads (so that a halo costs its own width, not its chunk's); ``select`` picks, from
    those parts concatenated, the input elements it reads in order (``sources`` are their
    global indices); ``pads`` the zeros before and after them (zeros mode only); ``out`` its
    outputs.
    """

    chunks: tuple[int, ...]
    crops: tuple[slice, ...]
    select: Selector
    sources: np.ndarray
    pads: tuple[int, int]
    out: tuple[int, int]


def axis_blocks(
    input_chunks: tuple[int, ...],
    padding: tuple[int, int],
    mode: str,
    extent: int,
    stride: int,
    out_size: int,
) -> list[AxisBlock]:
    """One :class:`AxisBlock` per output chunk along one axis."""
    size = sum(input_chunks)
    lo, hi = padding
    starts = [0, *itertools.accumulate(input_chunks)]
    bounds = output_bounds(input_chunks, stride, out_size)
    index = pad_indices(size, lo, hi, mode)
    blocks = []
    for i0, i1 in itertools.pairwise(bounds):
        first, stop = i0 * stride, (i1 - 1) * stride + extent  # the padded range read
        if mode == "zeros":
            begin, end = max(first - lo, 0), min(stop - lo, size)
            sources = np.arange(begin, max(begin, end))
            pads = (max(lo - first, 0), max(stop - lo - size, 0))
            if not sources.size:  # the block reads padding alone
                pads = (stop - first, 0)
        else:
            sources, pads = np.asarray(index[first:stop]), (0, 0)
        chunk_of = np.searchsorted(starts, sources, side="right") - 1
        within = sources - np.asarray(starts)[chunk_of]  # the position inside its chunk
        chunks = tuple(int(c) for c in np.unique(chunk_of))
        crops = tuple(
            slice(int(within[chunk_of == c].min()), int(within[chunk_of == c].max()) + 1)
            for c in chunks
        )
        lengths = [crop.stop - crop.start for crop in crops]
        offsets = dict(zip(chunks, itertools.accumulate([0, *lengths]), strict=False))
        local = np.asarray([offsets[c] for c in chunk_of.tolist()], dtype=np.intp)
        crop_starts = [crops[chunks.index(c)].start for c in chunk_of.tolist()]
        local += within - np.asarray(crop_starts, dtype=np.intp)
        blocks.append(AxisBlock(chunks, crops, _selector(local), sources, pads, (i0, i1)))
    return blocks


@dataclass(frozen=True)
class AxisFold:
    """How one output chunk's input gradient adds into one input chunk along one axis: the
    positions of its gradient (``take``) that land in the chunk, and where (``put``)."""

    take: Selector
    put: Selector


def axis_folds(
    input_chunks: tuple[int, ...], blocks: list[AxisBlock]
) -> list[list[tuple[int, AxisFold]]]:
    """For each input chunk along one axis, the blocks whose gradient lands in it, and how."""
    starts = [0, *itertools.accumulate(input_chunks)]
    folds: list[list[tuple[int, AxisFold]]] = [[] for _ in input_chunks]
    for b, block in enumerate(blocks):
        for c in block.chunks:
            positions = np.nonzero((block.sources >= starts[c]) & (block.sources < starts[c + 1]))[
                0
            ]
            targets = block.sources[positions] - starts[c]
            folds[c].append((b, AxisFold(_selector(positions), _selector(targets))))
    return folds
