"""The NumPy backend's FFT method: overlap-save correlation with ``numpy.fft``, and its VJP.

The plan (:func:`polyconv._plan.fft.fft_plan`) cuts the padded input into tiles of FFT length
``length`` that overlap by ``extent - 1``; each tile gives ``block`` stride-1 outputs of the
circular correlation ``irfft(rfft(tile) * conj(rfft(kernel)))`` without wrap-around. The
kernel's transform is summed tap by tap (taps ``dilation`` apart); stride keeps every
``stride``-th stride-1 output; channels are summed in the frequency domain (one spectral
product per channel pair).
Tiles are processed in groups of block rows, which bounds the memory and feeds the thread pool.

The VJP comes from the same plan: ``grad_w`` is the correlation of the input tiles with the
output gradient's blocks, summed over batch and tiles in the frequency domain, and the padded
input's gradient is the convolution of those blocks with the kernel, added back onto the
overlapping tiles (overlap-add).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..._plan.fft import PARALLEL_TRANSFORM_SAMPLES, AxisPlan, fft_plan
from ..._spec._byte_cache import ByteBoundedCache
from ..._spec.spec import CorrSpec
from .parallel import SINGLE_THREAD_PRODUCT, ordered_map, scratch, split, thread_count

# Spectra held at once by one piece of work (bytes): bounds the memory, and keeps a piece
# large enough that the per-call overhead of numpy.fft does not dominate.
_UNIT_BYTES = 2 * 1024 * 1024


def _array(shape: tuple[int, ...], dtype: np.dtype | type, buffer: str | None) -> np.ndarray:
    """A new array, or the thread's scratch array named ``buffer``."""
    return np.empty(shape, dtype=dtype) if buffer is None else scratch(buffer, shape, dtype)


def _pieces(size: int, parallel: bool, samples: int) -> list[tuple[int, int]]:
    """``range(size)`` cut for the threads when ``parallel`` and the transform is large."""
    large = parallel and samples >= PARALLEL_TRANSFORM_SAMPLES
    return split(size, thread_count() if large else 1)


def _along(axis: int, ndim: int, piece: tuple[int, int]) -> tuple[slice, ...]:
    """Index of ``piece`` along ``axis`` (negative) of an ``ndim``-array."""
    index = [slice(None)] * ndim
    index[axis] = slice(*piece)
    return tuple(index)


def _rfftn(
    a: np.ndarray, lengths: tuple[int, ...], parallel: bool, buffer: str | None = None
) -> np.ndarray:
    """The float64 real transform of the last ``len(lengths)`` axes at ``lengths`` (zero-extended
    or cut), one axis at a time into one buffer: the last axis line by line, then every other
    axis in place, each axis cut into pieces for the threads when large and ``parallel``.

    One buffer, because a fresh large array costs its page faults on every call (``np.fft.rfftn``
    allocates one per axis: docs/benchmarks.md, "Design measurements", fft-buffer). float64,
    because NumPy's float64 transforms are faster than its float32 ones, and exact enough that
    the FFT's rounding error is negligible next to the float32 result's. With ``buffer``, the
    result is the thread's scratch array of that name (:func:`scratch`)."""
    r = len(lengths)
    kept = tuple(min(n, length) for n, length in zip(a.shape[-r:-1], lengths[:-1], strict=True))
    out = _array((*a.shape[:-r], *lengths[:-1], lengths[-1] // 2 + 1), np.complex128, buffer)
    rows: tuple[Any, ...] = (..., *(slice(0, n) for n in kept), slice(None))
    source, target = a[rows], out[rows]
    for axis, n in enumerate(kept, start=-r):  # the extension of the other axes is zeros
        out[_along(axis, out.ndim, (n, out.shape[axis]))] = 0

    def last_axis(piece: tuple[int, int]) -> None:
        index = _along(-2, a.ndim, piece) if r > 1 else (...,)
        # A complex128 ``out`` makes NumPy transform in float64, casting float32 lines as it
        # reads them: no float64 copy of the input.
        np.fft.rfft(source[index], n=lengths[-1], axis=-1, out=target[index])

    list(ordered_map(last_axis, _pieces(source.shape[-2] if r > 1 else 1, parallel, out.size)))
    lines = out.reshape(-1, *out.shape[-r:], copy=False)  # NumPy loops faster over fewer axes
    for axis in range(-2, -r - 1, -1):

        def other_axis(piece: tuple[int, int], axis: int = axis) -> None:
            part = lines[_along(-1, lines.ndim, piece)]
            np.fft.fft(part, axis=axis, out=part)

        list(ordered_map(other_axis, _pieces(out.shape[-1], parallel, out.size)))
    return out


def _irfftn(
    spectra: np.ndarray,
    lengths: tuple[int, ...],
    keep: tuple[int, ...],
    parallel: bool,
    dtype: np.dtype | type = np.float64,
    buffer: str | None = None,
) -> np.ndarray:
    """The inverse of :func:`_rfftn`, keeping the first ``keep`` samples of every axis, rounded
    once to ``dtype`` (the transforms run in float64); it transforms ``spectra`` in place
    (callers pass a temporary). Each axis is cut to ``keep`` as soon as it is transformed, so
    later axes transform fewer lines. ``buffer`` as in :func:`_rfftn`."""
    r = len(lengths)
    current = spectra.reshape(-1, *spectra.shape[-r:], copy=False)  # see _rfftn
    for axis in range(-r, -1):

        def other_axis(piece: tuple[int, int], axis: int = axis, source: Any = current) -> None:
            part = source[_along(-1, source.ndim, piece)]
            np.fft.ifft(part, axis=axis, out=part)

        list(ordered_map(other_axis, _pieces(current.shape[-1], parallel, spectra.size)))
        current = current[_along(axis, current.ndim, (0, keep[axis]))]
    out = _array((*current.shape[:-1], lengths[-1]), dtype, buffer)

    def last_axis(piece: tuple[int, int]) -> None:
        index = _along(-2, current.ndim, piece) if r > 1 else (...,)
        np.fft.irfft(current[index], n=lengths[-1], axis=-1, out=out[index])

    list(ordered_map(last_axis, _pieces(current.shape[-2] if r > 1 else 1, parallel, out.size)))
    return out.reshape(*spectra.shape[:-r], *out.shape[-r:])[..., : keep[-1]]


# The DFT-matrix form of the kernel's spectrum (see _Layout.kernel_spectrum) is used while each
# axis's matrix stays below this many bytes; the matrices are kept, up to 16 times that in all.
DFT_MATRIX_MAX_BYTES = 1 << 20
_dft_matrices: ByteBoundedCache[np.ndarray] = ByteBoundedCache(16 * DFT_MATRIX_MAX_BYTES)


def _dft_bins(length: int, real: bool) -> int:
    return length // 2 + 1 if real else length


def _dft_matrix(length: int, taps: int, dilation: int, real: bool, conjugate: bool) -> np.ndarray:
    """``(taps, bins)`` read-only: ``exp(-+2 pi i f a dilation / length)`` for tap ``a`` and
    frequency ``f`` (``bins = length // 2 + 1`` for the real axis, else ``length``), with the
    plus sign for ``conjugate``. Products of the kernel with these sum its taps into the
    transform of the dilated kernel zero-extended to ``length``."""

    def make() -> np.ndarray:
        bins = _dft_bins(length, real)
        turns = np.outer(np.arange(taps) * dilation, np.arange(bins)) % length  # exact integers
        matrix = np.exp((2j if conjugate else -2j) * np.pi / length * turns)
        matrix.setflags(write=False)
        return matrix

    return _dft_matrices.get((length, taps, dilation, real, conjugate), make)


def _extended(xg: np.ndarray, plans: tuple[AxisPlan, ...], first_axis: bool = True) -> np.ndarray:
    """``xg`` zero-extended at the end of every multi-tile axis (but the first unless
    ``first_axis``), so the last tile fits: in the calling thread's scratch, which the call
    holds until it returns."""
    extra = [
        max(p.span - n, 0) if p.blocks > 1 and (axis or first_axis) else 0
        for axis, (p, n) in enumerate(zip(plans, xg.shape[3:], strict=True))
    ]
    if not any(extra):
        return xg
    shape = (*xg.shape[:3], *(n + e for n, e in zip(xg.shape[3:], extra, strict=True)))
    extended = scratch("fft.extended", shape, xg.dtype)
    inside: tuple[Any, ...] = (..., *(slice(0, n) for n in xg.shape[3:]))
    extended[inside] = xg
    for axis, (n, e) in enumerate(zip(xg.shape[3:], extra, strict=True), start=3):
        if e:
            extended[(slice(None),) * axis + (slice(n, None),)] = 0
    return extended


def _tiles(xe: np.ndarray, plans: tuple[AxisPlan, ...]) -> np.ndarray:
    """``(N, G, Cg, *blocks, *tile)`` overlapping view of the tiles of ``xe`` ``(N, G, Cg, *S)``.

    A single-tile axis reads at most the array (the transform zero-pads to its length)."""
    spatial = xe.shape[3:]
    tile = [
        min(p.length, n) if p.blocks == 1 else p.length for p, n in zip(plans, spatial, strict=True)
    ]
    blocks = [p.blocks for p in plans]
    steps = [p.block * s for p, s in zip(plans, xe.strides[3:], strict=True)]
    return as_strided(
        xe,
        shape=(*xe.shape[:3], *blocks, *tile),
        strides=(*xe.strides[:3], *steps, *xe.strides[3:]),
        writeable=False,
    )


class _Layout:
    """Shapes and pieces of work shared by the forward pass and the VJP."""

    def __init__(self, spec: CorrSpec, itemsize: int) -> None:
        self.spec = spec
        self.plans = fft_plan(spec, threads=thread_count())
        self.rank = spec.rank
        self.lengths = tuple(p.length for p in self.plans)
        self.axes = tuple(range(-self.rank, 0))
        self.g = spec.groups
        self.cg = spec.w_shape[1]
        self.og = spec.w_shape[0] // spec.groups
        self.freq_shape = (*self.lengths[:-1], self.lengths[-1] // 2 + 1)
        freq = math.prod(self.freq_shape)
        row_tiles = math.prod(p.blocks for p in self.plans[1:])
        complex_size = 2 * max(itemsize, 4)
        self.row_bytes = self.g * (self.cg + self.og) * row_tiles * freq * complex_size

    def units(self, batch: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        """Pieces of work: (batch range, range of tile rows along the first axis)."""
        rows = self.plans[0].blocks
        per_unit = max(1, _UNIT_BYTES // self.row_bytes)
        if per_unit >= rows:  # whole images per piece: group several
            images = max(1, per_unit // rows)
            pieces = max(-(-batch // images), min(batch, thread_count()))
            return [(n, (0, rows)) for n in split(batch, pieces)]
        pieces = max(-(-rows // per_unit), min(rows, thread_count()))
        return [((n, n + 1), r) for n in range(batch) for r in split(rows, pieces)]

    def kernel_spectrum(self, wg: np.ndarray, conjugate: bool = False) -> np.ndarray:
        """``(G, Og, Cg, *freq)``, the transform of the dilated kernel at the tile length (or
        its conjugate), in the calling thread's scratch: the call holds it until it returns
        (its items, on any thread, only read it).

        Computed as sums over the taps, one matrix product per axis with that axis's DFT
        matrix (:func:`_dft_matrix`), rather than as transforms of the kernel zero-extended to
        the tile: a tile is much longer than a kernel, so the transforms would mostly move
        zeros (docs/benchmarks.md, "Design measurements", fft-kernel-spectrum). Where a matrix
        would exceed ``DFT_MATRIX_MAX_BYTES`` (long kernels on long tiles: taps x bins complex
        numbers), or a product be large enough for OpenBLAS to thread it (its threads would then
        spin on the cores the transforms need: docs/benchmarks.md, "Design measurements",
        fft-blas-threads; and polyconv never changes OpenBLAS's process-wide thread count), the
        transform of the dilated, zero-extended kernel instead, whose memory is that of the
        spectrum."""
        if not self._dft_matrices_fit(wg.shape[3:]):
            return self._transformed_kernel(wg, conjugate)
        spec, r = self.spec, self.rank
        real_axis = _dft_matrix(self.lengths[-1], wg.shape[-1], spec.dilation[-1], True, conjugate)
        spectrum = scratch("fft.kernel", (*wg.shape[:-r], *self.freq_shape), np.complex128)
        current = np.matmul(wg.astype(np.float64), real_axis, out=spectrum if r == 1 else None)
        for axis in range(r - 2, -1, -1):
            # current: (G, Og, Cg, *K[: axis + 1], *lengths[axis + 1 : -1], F), contiguous
            matrix = _dft_matrix(
                self.lengths[axis], wg.shape[3 + axis], spec.dilation[axis], False, conjugate
            ).T
            lines = current.reshape(-1, matrix.shape[1], math.prod(current.shape[4 + axis :]))
            out = spectrum.reshape(lines.shape[0], matrix.shape[0], -1) if axis == 0 else None
            current = np.matmul(matrix, lines, out=out).reshape(
                *wg.shape[: 3 + axis], matrix.shape[0], *current.shape[4 + axis :]
            )
        return spectrum

    def _dft_matrices_fit(self, kernel: tuple[int, ...]) -> bool:
        """Whether every DFT matrix fits ``DFT_MATRIX_MAX_BYTES`` and every product of
        :meth:`kernel_spectrum` has at most ``SINGLE_THREAD_PRODUCT`` multiply-adds."""
        r, freq = self.rank, self.freq_shape
        sizes = [
            taps * _dft_bins(length, axis == r - 1) * 16
            for axis, (taps, length) in enumerate(zip(kernel, self.lengths, strict=True))
        ]
        rows = kernel[-2] if r > 1 else self.cg  # of the real axis's products
        products = [rows * kernel[-1] * freq[-1]]
        products += [self.lengths[a] * kernel[a] * math.prod(freq[a + 1 :]) for a in range(r - 1)]
        return max(sizes) <= DFT_MATRIX_MAX_BYTES and max(products) <= SINGLE_THREAD_PRODUCT

    def _transformed_kernel(self, wg: np.ndarray, conjugate: bool) -> np.ndarray:
        """:meth:`kernel_spectrum` as the transform of the dilated kernel, zero-extended to the
        tile by the transform itself."""
        dilated = np.zeros((*wg.shape[:3], *self.spec.extents))
        taps: tuple[Any, ...] = (..., *(slice(None, None, d) for d in self.spec.dilation))
        dilated[taps] = wg
        spectrum = _rfftn(dilated, self.lengths, parallel=True, buffer="fft.kernel")
        return np.conjugate(spectrum, out=spectrum) if conjugate else spectrum

    def broadcast_kernel(self, spectrum: np.ndarray) -> np.ndarray:
        """Kernel spectrum ``(G, Og, Cg, *freq)`` as ``(G, Og, Cg, *1 per tile axis, *freq)``."""
        g, og, cg = spectrum.shape[:3]
        return spectrum.reshape(g, og, cg, *[1] * self.rank, *spectrum.shape[3:])

    def assemble(self, tiles: np.ndarray) -> np.ndarray:
        """``(n, C, *blocks, *block)`` tile outputs as one ``(n, C, *(blocks * block))`` array."""
        r = self.rank
        order = [0, 1]
        for axis in range(r):
            order += [2 + axis, 2 + r + axis]
        merged = tiles.transpose(order)
        sizes = [b * p.block for b, p in zip(tiles.shape[2 : 2 + r], self.plans, strict=True)]
        if all(b == 1 for b in tiles.shape[2 : 2 + r]):  # one tile: a view
            return merged.reshape(*tiles.shape[:2], *sizes)
        assembled = scratch("fft.assembled", (*tiles.shape[:2], *sizes), tiles.dtype)
        np.copyto(assembled.reshape(merged.shape), merged)
        return assembled


def _sum_channels(
    left: np.ndarray, right: np.ndarray, left_axis: int, right_axis: int, out_axis: int
) -> np.ndarray:
    """``sum_c left[.., c, ..] * right[.., c, ..]`` over the channel axes, broadcasting the rest;
    the result has a new axis at ``out_axis`` for the other operand's channels. With one channel
    and a result of ``left``'s shape, ``left`` is overwritten with it (no new spectrum array)."""
    total = None
    for c in range(left.shape[left_axis]):
        left_c = np.expand_dims(left[(slice(None),) * left_axis + (c,)], out_axis)
        right_c = right[(slice(None),) * right_axis + (c,)]
        if (
            left.shape[left_axis] == 1
            and np.broadcast_shapes(left_c.shape, right_c.shape) == left.shape
        ):
            return np.multiply(left, right_c.reshape(right_c.shape), out=left)
        if total is None:
            total = left_c * right_c
        else:
            total += left_c * right_c
    assert total is not None
    return total


def correlate(xg: np.ndarray, wg: np.ndarray, spec: CorrSpec) -> np.ndarray:
    """``y`` ``(N, O, *out)`` from padded ``xg`` ``(N, G, Cg, *P)`` and ``wg`` ``(G, Og, Cg, *K)``."""
    layout = _Layout(spec, xg.itemsize)
    plans = layout.plans
    first = plans[0]
    units = layout.units(xg.shape[0])
    # Pieces of one tile row each read their rows of the input, the last cut at its end (the
    # transform zero-extends it): no extended copy of the input along the first axis.
    row_by_row = all(b1 - b0 == 1 for _, (b0, b1) in units)
    xe = _extended(xg, plans, first_axis=not row_by_row)
    tiles = None if row_by_row else _tiles(xe, plans)
    one_row = (dataclasses.replace(first, blocks=1), *plans[1:])
    # (G, Og, Cg, *1, *freq) -> per input channel c: (G, Og, *1, *freq)
    kernel = layout.broadcast_kernel(layout.kernel_spectrum(wg, conjugate=True))
    y = np.empty(spec.out_shape, dtype=xg.dtype)
    split_transforms = len(units) < thread_count()
    blocks = tuple(p.block for p in plans)

    def run(unit: tuple[tuple[int, int], tuple[int, int]]) -> None:
        (n0, n1), (b0, b1) = unit
        if tiles is None:
            rows = xe[n0:n1, :, :, b0 * first.block : b0 * first.block + first.length]
            unit_tiles = _tiles(rows, one_row)
        else:
            unit_tiles = tiles[n0:n1, :, :, b0:b1]
        spectra = _rfftn(unit_tiles, layout.lengths, split_transforms, "fft.in")
        # spectra (n, G, Cg, *blocks, *freq); kernel (G, Og, Cg, *1, *freq)
        products = _sum_channels(spectra, kernel, left_axis=2, right_axis=2, out_axis=2)
        outputs = _irfftn(products, layout.lengths, blocks, split_transforms, y.dtype, "fft.out")
        full = layout.assemble(outputs.reshape(n1 - n0, -1, *outputs.shape[3:]))
        # Keep the stride-1 outputs at multiples of the stride, within this piece's rows.
        s0 = spec.stride[0]
        start, stop = b0 * first.block, min(b1 * first.block, first.full)
        i0, i1 = -(-start // s0), -(-stop // s0)
        picked: tuple[slice, ...] = (slice(i0 * s0 - start, (i1 - 1) * s0 - start + 1, s0),)
        picked += tuple(
            slice(0, p.full, s) for p, s in zip(plans[1:], spec.stride[1:], strict=True)
        )
        y[n0:n1, :, i0:i1] = full[(slice(None), slice(None), *picked)]

    for _ in ordered_map(run, units):
        pass
    return y


def _blocks_of(
    grad_y: np.ndarray, layout: _Layout, unit: tuple[tuple[int, int], tuple[int, int]]
) -> np.ndarray:
    """The output gradient of one piece at stride-1 resolution (zeros between strided
    outputs), cut into blocks: ``(n, G, Og, *blocks, *block)``."""
    spec, plans, r = layout.spec, layout.plans, layout.rank
    (n0, n1), (b0, b1) = unit
    counts = [b1 - b0, *(p.blocks for p in plans[1:])]
    sizes = [c * p.block for c, p in zip(counts, plans, strict=True)]
    spread = np.zeros((n1 - n0, spec.out_shape[1], *sizes), dtype=grad_y.dtype)
    s0 = spec.stride[0]
    start, stop = b0 * plans[0].block, min(b1 * plans[0].block, plans[0].full)
    i0, i1 = -(-start // s0), -(-stop // s0)
    target: tuple[slice, ...] = (slice(i0 * s0 - start, (i1 - 1) * s0 - start + 1, s0),)
    target += tuple(slice(0, p.full, s) for p, s in zip(plans[1:], spec.stride[1:], strict=True))
    spread[(slice(None), slice(None), *target)] = grad_y[n0:n1, :, i0:i1]
    split_shape = [n1 - n0, layout.g, layout.og]
    for c, p in zip(counts, plans, strict=True):
        split_shape += [c, p.block]
    order = [0, 1, 2, *(3 + 2 * a for a in range(r)), *(4 + 2 * a for a in range(r))]
    return spread.reshape(split_shape).transpose(order)


def correlate_vjp(
    xg: np.ndarray, wg: np.ndarray, grad_y: np.ndarray, spec: CorrSpec
) -> tuple[np.ndarray, np.ndarray]:
    """``(grad_xp, grad_w)``: the padded input's gradient ``(N, C_in, *P)`` and ``grad_w``."""
    layout = _Layout(spec, xg.itemsize)
    plans, r = layout.plans, layout.rank
    tiles = _tiles(_extended(xg, plans), plans)
    kernel = layout.broadcast_kernel(layout.kernel_spectrum(wg))  # (G, Og, Cg, *1, *freq)
    summed_axes = (0, *range(3, 3 + r))  # batch and tiles
    units = layout.units(xg.shape[0])
    split_transforms = len(units) < thread_count()

    def run(unit: tuple[tuple[int, int], tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        (n0, n1), (b0, b1) = unit
        x_spectra = _rfftn(tiles[n0:n1, :, :, b0:b1], layout.lengths, split_transforms)
        g_spectra = _rfftn(_blocks_of(grad_y, layout, unit), layout.lengths, split_transforms)
        # grad_w: the correlation of each input tile with its gradient block, conj(G) * X,
        # summed over batch and tiles before the one inverse transform.
        g_conj = np.conj(g_spectra)
        kernel_part = np.stack(
            [
                (np.expand_dims(np.take(g_conj, o, axis=2), 2) * x_spectra).sum(axis=summed_axes)
                for o in range(layout.og)
            ],
            axis=1,
        )  # (G, Og, Cg, *freq)
        # The padded input's gradient, tile by tile: sum over o of G * W, a convolution.
        input_part = _sum_channels(g_spectra, kernel, left_axis=2, right_axis=1, out_axis=2)
        return kernel_part, _irfftn(input_part, layout.lengths, layout.lengths, split_transforms)

    chunks = [-(-p.length // p.block) for p in plans]
    extended = [
        max(n, (p.blocks + m - 1) * p.block)
        for n, p, m in zip(spec.padded_shape, plans, chunks, strict=True)
    ]
    grad_ext = np.zeros((xg.shape[0], spec.x_shape[1], *extended), dtype=np.float64)
    kernel_spectrum = None
    for unit, (kernel_part, input_tiles) in zip(units, ordered_map(run, units), strict=True):
        kernel_spectrum = kernel_part if kernel_spectrum is None else kernel_spectrum + kernel_part
        _overlap_add(grad_ext, input_tiles, layout, unit, chunks)
    assert kernel_spectrum is not None

    lags = np.fft.irfftn(kernel_spectrum, s=layout.lengths, axes=layout.axes)
    taps: tuple[Any, ...] = (
        ...,
        *(slice(0, e, d) for e, d in zip(spec.extents, spec.dilation, strict=True)),
    )
    grad_w = lags[taps]
    grad_xp = grad_ext[(slice(None), slice(None), *(slice(0, n) for n in spec.padded_shape))]
    return np.ascontiguousarray(grad_xp, dtype=xg.dtype), grad_w.astype(xg.dtype, copy=False)


def _overlap_add(
    grad_ext: np.ndarray,
    input_tiles: np.ndarray,
    layout: _Layout,
    unit: tuple[tuple[int, int], tuple[int, int]],
    chunks: list[int],
) -> None:
    """Add one piece's tile results ``(n, G, Cg, *blocks, *length)`` onto ``grad_ext``: tile
    ``b`` starts at ``b * block``; each tile is added in ``block``-long chunks, every chunk of
    all tiles at once (chunks of different tiles never overlap)."""
    plans, r = layout.plans, layout.rank
    (n0, n1), (b0, _) = unit
    tiles = input_tiles.reshape(n1 - n0, grad_ext.shape[1], *input_tiles.shape[3:])
    counts = tiles.shape[2 : 2 + r]
    for chunk in np.ndindex(*chunks):
        lens = [min(p.block, p.length - j * p.block) for j, p in zip(chunk, plans, strict=True)]
        starts = [
            (j + (b0 if axis == 0 else 0)) * p.block
            for axis, (j, p) in enumerate(zip(chunk, plans, strict=True))
        ]
        dest = grad_ext[
            (
                slice(n0, n1),
                slice(None),
                *(slice(s, s + c * p.block) for s, c, p in zip(starts, counts, plans, strict=True)),
            )
        ]
        split_shape = [n1 - n0, grad_ext.shape[1]]
        for c, p in zip(counts, plans, strict=True):
            split_shape += [c, p.block]
        dest = dest.reshape(split_shape)
        dest = dest[
            (slice(None), slice(None), *[s for ln in lens for s in (slice(None), slice(0, ln))])
        ]
        block: tuple[Any, ...] = (
            ...,
            *(
                slice(j * p.block, j * p.block + ln)
                for j, p, ln in zip(chunk, plans, lens, strict=True)
            ),
        )
        source = tiles[block]
        order = [0, 1]
        for axis in range(r):
            order += [2 + axis, 2 + r + axis]
        dest += source.transpose(order)
