"""How the FFT method cuts a problem into transforms: FFT lengths and overlap-save blocks.

Shared by every backend's FFT path and by the cost model, so that the plan the model prices is
the plan that runs. Per spatial axis, the stride-1 ("full resolution") valid correlation of the
padded input has ``full = (out - 1) * stride + 1`` useful outputs; the FFT computes them in
``blocks`` blocks of ``block`` outputs each, every block from an input tile of ``length`` =
``block + extent - 1`` samples (overlap-save). A circular correlation of that length has no
wrap-around on the block's outputs, so no larger transform is needed. One block per axis is the
plain whole-image FFT; small kernels on large images use several shorter transforms, which costs
fewer operations (``length * log(length)`` per ``block`` outputs) and bounds the working memory.
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass

from .._spec.spec import CorrSpec

# Prime factors the FFT libraries (pocketfft in NumPy, SciPy and PyTorch's CPU path, XLA's
# DUCC) transform fastest. The last axis of a real transform has fewer fast radices.
_REAL_PRIMES = (2, 3, 5)
_COMPLEX_PRIMES = (2, 3, 5, 7, 11)

MAX_FFT_LENGTH = 1 << 40
"""The longest transform axis polyconv plans: 2^40 samples (8 TiB of float64) is beyond what any
machine allocates, so the fast lengths are tabulated up to it and a longer axis is refused at once
(``method="auto"`` then computes directly) instead of being searched for."""


@functools.cache
def _fast_lengths_table(real: bool) -> tuple[int, ...]:
    """Every length up to :data:`MAX_FFT_LENGTH` whose prime factors are all fast radices,
    ascending: a few thousand numbers (smooth numbers are sparse), built once by multiplying
    out the prime powers."""
    lengths = [1]
    for p in _REAL_PRIMES if real else _COMPLEX_PRIMES:
        multiples = []
        for n in lengths:
            while n <= MAX_FFT_LENGTH:
                multiples.append(n)
                n *= p
        lengths = multiples
    return tuple(sorted(lengths))


def check_fft_length(length: int, what: str = "an FFT axis") -> None:
    """Refuse a transform longer than :data:`MAX_FFT_LENGTH`, naming its size."""
    if length > MAX_FFT_LENGTH:
        raise ValueError(
            f"the FFT method would need {what} of {length} samples, more than the "
            f'{MAX_FFT_LENGTH} that could ever be allocated; use method="direct"'
        )


def fft_samples(spec: CorrSpec) -> int:
    """Padded input samples per channel that the FFT method transforms at least (the outputs'
    window): O(axes), without planning."""
    return math.prod(
        full + extent - 1 for extent, full in zip(spec.extents, spec.unstrided_out, strict=True)
    )


def fft_fits(spec: CorrSpec) -> bool:
    """Whether the FFT method's transform could ever be allocated for ``spec``."""
    return fft_samples(spec) <= MAX_FFT_LENGTH


def next_fast_length(target: int, real: bool = False) -> int:
    """The smallest ``n >= target`` whose prime factors are all fast radices (the idea of
    ``scipy.fft.next_fast_len``): 2, 3, 5 for the real (last) axis, also 7 and 11 otherwise.
    A binary search of a table: O(log target). A ``ValueError`` beyond :data:`MAX_FFT_LENGTH`."""
    if target < 1:
        raise ValueError(f"target must be a positive int, got {target}")
    check_fft_length(target)
    table = _fast_lengths_table(real)
    return table[bisect.bisect_left(table, target)]


def _fast_lengths(limit: int, real: bool) -> tuple[int, ...]:
    """Every fast length up to ``limit``, ascending (a slice of the table)."""
    table = _fast_lengths_table(real)
    return table[: bisect.bisect_right(table, limit)]


@dataclass(frozen=True)
class AxisPlan:
    """The FFT blocking of one spatial axis (see the module docstring)."""

    extent: int  # dilated kernel extent: (kernel - 1) * dilation + 1
    full: int  # stride-1 outputs needed: (out - 1) * stride + 1
    length: int  # FFT length of one tile
    block: int  # outputs per tile: length - extent + 1
    blocks: int  # tiles along the axis: ceil(full / block)

    @property
    def span(self) -> int:
        """Input samples the tiles read, the last tile's zero extension included."""
        return (self.blocks - 1) * self.block + self.length


# Transforms of at least this many samples are split over the threads (NumPy): smaller ones
# cost less than a hand-off to the pool.
PARALLEL_TRANSFORM_SAMPLES = 1 << 17

# Per output sample, a transform costs about length * log2(length) / block; the term below
# stands for the per-sample work that does not shrink with the transform (tile copies, the
# spectral product), so that long tiles are not over-rewarded (docs/benchmarks.md, "Design
# measurements", fft-overhead).
_PER_SAMPLE_OVERHEAD = 8.0

# Axes whose whole transform is at most this long are not tiled (but for the threads): the cost
# above leaves out what every 1-D transform costs beyond its samples, which many short tiles pay
# many times (docs/benchmarks.md, "Design measurements", fft-whole-axis).
WHOLE_AXIS_MAX = 1024


def _axis_plan(
    extent: int, full: int, real: bool, max_length: int | None, min_blocks: int = 1
) -> AxisPlan:
    whole = next_fast_length(full + extent - 1, real)
    limit = (
        whole if max_length is None else min(whole, max(max_length, next_fast_length(extent, real)))
    )
    if max_length is None and whole <= WHOLE_AXIS_MAX:
        candidates: tuple[int, ...] = (whole,)  # no tiles along this axis
    else:
        candidates = _fast_lengths(limit, real) if limit > 16 else (limit,)
    best: tuple[float, int] | None = None
    for length in candidates:
        if length < extent or (length < whole and length - extent + 1 < extent):
            continue  # tiles that mostly overlap cost more than they save
        block = length - extent + 1
        blocks = -(-full // block)
        cost = blocks * length * (math.log2(max(length, 2)) + _PER_SAMPLE_OVERHEAD)
        if best is None or cost < best[0]:
            best = (cost, length)
    length = whole if best is None else best[1]
    if min_blocks > 1 and -(-full // (length - extent + 1)) < min_blocks:
        # The shortest length of radices 2, 3 and 5 only that gives ``min_blocks`` tiles
        # (docs/benchmarks.md, "Design measurements", fft-thread-tiles), if its tiles still give
        # more outputs than they overlap.
        target = next_fast_length(-(-full // min_blocks) + extent - 1, real=True)
        if target - extent + 1 >= extent:
            length = target
    block = length - extent + 1
    return AxisPlan(extent, full, length, block, -(-full // block))


@functools.lru_cache(maxsize=1024)
def fft_plan(
    spec: CorrSpec, max_length: int | None = None, threads: int = 1
) -> tuple[AxisPlan, ...]:
    """The overlap-save plan of every spatial axis (the last one is the real-transform axis).

    ``max_length`` caps the tile length, for backends that prefer many small transforms.
    ``threads``: a single image (batch of one) is cut into at least this many tiles along its
    first axis, so that each thread transforms its own tiles instead of sharing the passes of
    one transform (docs/benchmarks.md, "Design measurements", fft-thread-tiles).
    """
    axes = list(zip(spec.extents, spec.unstrided_out, strict=True))  # (extent, full)
    samples = fft_samples(spec)
    check_fft_length(samples, "a transform")
    split_rows = spec.x_shape[0] == 1 and spec.rank > 1 and samples >= PARALLEL_TRANSFORM_SAMPLES
    return tuple(
        _axis_plan(
            extent,
            full,
            axis == spec.rank - 1,
            max_length,
            threads if axis == 0 and split_rows else 1,
        )
        for axis, (extent, full) in enumerate(axes)
    )
