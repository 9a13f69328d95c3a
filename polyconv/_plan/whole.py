"""Geometry of the whole-image FFT method, shared by the PyTorch and JAX backends.

Per spatial axis, the stride-1 ("full resolution") valid correlation of the padded input has
``full = (out - 1) * stride + 1`` useful outputs, which read the first ``need = full + extent - 1``
padded samples (``extent = (kernel - 1) * dilation + 1``). A circular correlation of any length
``length >= need`` has no wrap-around on those outputs, so one transform per axis of the next
fast length (:func:`polyconv._plan.fft.next_fast_length`) computes them all; the backends keep
every ``stride``-th. Pure Python on static shapes: no framework is imported here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import EllipsisType

from .._spec.spec import CorrSpec
from .fft import check_fft_length, fft_samples, next_fast_length

# An index expression: ``...`` (the leading axes), then one slice per spatial axis.
Index = tuple[EllipsisType | slice, ...]


@dataclass(frozen=True)
class WholeImageFFT:
    """Shapes and index expressions of one spec's whole-image FFT (see the module docstring)."""

    extents: tuple[int, ...]  # dilated kernel extent per axis
    full: tuple[int, ...]  # stride-1 outputs per axis: (out - 1) * stride + 1
    need: tuple[int, ...]  # padded input samples read per axis: full + extent - 1
    lengths: tuple[int, ...]  # FFT length per axis (the last one is the real-transform axis)

    @property
    def axes(self) -> tuple[int, ...]:
        """The spatial axes of an ``(N, G, C, *spatial)`` or ``(G, O, C, *spatial)`` array."""
        return tuple(range(3, 3 + len(self.lengths)))

    def placement(self, sizes: tuple[int, ...], offsets: tuple[int, ...]) -> tuple[Index, Index]:
        """Where an input of spatial ``sizes``, starting ``offsets`` into the padded input, goes
        in a zero buffer of ``lengths``: ``(buffer index, input index)``, both cropped to the
        samples some output reads."""
        stops = [
            max(0, min(n, need - lo)) for n, lo, need in zip(sizes, offsets, self.need, strict=True)
        ]
        return (
            (Ellipsis, *(slice(lo, lo + stop) for lo, stop in zip(offsets, stops, strict=True))),
            (Ellipsis, *(slice(0, stop) for stop in stops)),
        )

    @property
    def input_window(self) -> Index:
        """Index of the padded input's samples that any output reads (leading axes kept)."""
        return (Ellipsis, *(slice(0, n) for n in self.need))


@functools.lru_cache(maxsize=1024)
def whole_image_fft(spec: CorrSpec) -> WholeImageFFT:
    check_fft_length(fft_samples(spec), "a transform")
    need = tuple(f + e - 1 for e, f in zip(spec.extents, spec.unstrided_out, strict=True))
    lengths = tuple(next_fast_length(n, real=axis == spec.rank - 1) for axis, n in enumerate(need))
    return WholeImageFFT(spec.extents, spec.unstrided_out, need, lengths)


def output_window(spec: CorrSpec) -> Index:
    """Index of the strided outputs in the circular correlation's ``(..., *lengths)`` result."""
    return (
        Ellipsis,
        *(slice(0, full, s) for full, s in zip(spec.unstrided_out, spec.stride, strict=True)),
    )


def kernel_taps(spec: CorrSpec) -> Index:
    """Index of the kernel's taps in its dilated ``(..., *extents)`` form (zeros elsewhere)."""
    return (Ellipsis, *(slice(None, None, d) for d in spec.dilation))
