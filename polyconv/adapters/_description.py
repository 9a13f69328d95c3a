"""One framework-neutral description of a convolution layer: what every adapter reads and writes.

A :class:`ConvDescription` holds a layer's geometry in polyconv's terms (padding as polyconv's
forms, the kernel in polyconv's layout ``(C_out, C_in // groups, *k)``) together with how the
module's own framework wrote the padding, so that :func:`polyconv.compare` can name a difference in
the user's terms ("flax 'SAME' at stride 2 pads (0, 1)").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .._spec.layouts import kernel_to_first, kernel_to_last
from .._spec.padding import pad_indices
from .._spec.spec import normalize
from .._spec.transpose import normalize_transpose

ArrayT = TypeVar("ArrayT")


@dataclass(frozen=True, eq=False)
class ConvDescription:
    """A convolution layer, read from any framework.

    ``padding`` is polyconv's: ``"valid"``, ``"same"``, ``"full"`` or ``(lo, hi)`` pairs per
    spatial axis. ``native_padding`` is how the module's framework spells it (for messages).
    ``weight`` is ``(out_channels, in_channels // groups, *kernel_size)`` and ``bias``
    ``(out_channels,)`` or ``None``, as NumPy arrays of the module's dtype. A transposed
    convolution (``transpose=True``) is the adjoint of the forward correlation that ``padding``,
    ``stride``, ``dilation`` and ``groups`` describe (polyconv's ``correlate_transpose``): its
    weight has that forward's layout, ``(in_channels, out_channels // groups, *kernel_size)``.
    """

    framework: str
    backend: str
    rank: int
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: str | tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str
    data_format: str
    weight: np.ndarray
    bias: np.ndarray | None
    native_padding: str
    transpose: bool = False
    output_padding: tuple[int, ...] | None = None

    @property
    def dtype(self) -> str:
        return self.weight.dtype.name

    @property
    def kind(self) -> str:
        return f"{'transposed ' if self.transpose else ''}{self.rank}-D convolution"

    def correlate_kwargs(self) -> dict[str, Any]:
        """The keywords of :func:`polyconv.correlate` (or of ``correlate_transpose``, with
        ``output_padding``) this layer computes with."""
        kwargs: dict[str, Any] = {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "padding_mode": self.padding_mode,
        }
        if self.transpose:
            kwargs["output_padding"] = self.output_padding
        return kwargs

    def padding_at(self, x_shape: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        """The ``(lo, hi)`` pairs per spatial axis (of the forward correlation, for a transposed
        layer) for a channels-first input of ``x_shape``."""
        if self.transpose:
            kwargs = self.correlate_kwargs()
            return normalize_transpose(x_shape, self.weight.shape, **kwargs).forward.padding
        return normalize(x_shape, self.weight.shape, **self.correlate_kwargs()).padding


def effective_padding(description: ConvDescription, x_shape: tuple[int, ...]) -> tuple[object, ...]:
    """What decides the function at a channels-first input of ``x_shape``: the ``(lo, hi)``
    pairs of a forward layer; for a transposed one ``(lo, hi - output_padding)`` per axis,
    since a pad after the input and an output padding trade one for one (the same output size,
    the same values)."""
    pairs = description.padding_at(x_shape)
    if not description.transpose:
        return pairs
    assert description.output_padding is not None
    return tuple(
        (lo, hi - extra) for (lo, hi), extra in zip(pairs, description.output_padding, strict=True)
    )


def kernel_from_channels_last(kernel: np.ndarray) -> np.ndarray:
    """A Flax/Keras kernel ``(*k, C_in // g, C_out)`` in polyconv's ``(C_out, C_in // g, *k)``."""
    return np.ascontiguousarray(np.transpose(kernel, kernel_to_first(kernel.ndim)))


def kernel_to_channels_last(weight: np.ndarray) -> np.ndarray:
    """polyconv's ``(C_out, C_in // g, *k)`` as Flax's and Keras' ``(*k, C_in // g, C_out)``."""
    return np.ascontiguousarray(np.transpose(weight, kernel_to_last(weight.ndim)))


def per_axis(value: object, rank: int) -> tuple[int, ...]:
    """A framework's int-or-sequence field (``None`` meaning 1) as one int per axis."""
    if value is None:
        return (1,) * rank
    if isinstance(value, int):
        return (value,) * rank
    return tuple(int(v) for v in value)  # type: ignore[attr-defined]


def centred_pairs(
    kernel_size: tuple[int, ...], dilation: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """``((e - 1) // 2, e // 2)`` per axis for the dilated extent ``e``: the stride-1 "same"
    padding, which Flax's CIRCULAR and REFLECT padding use at every stride."""
    extents = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation, strict=True)]
    return tuple(((e - 1) // 2, e // 2) for e in extents)


def explicit_pairs(description: ConvDescription) -> tuple[tuple[int, int], ...] | None:
    """The description's padding as pairs that do not depend on the input's size, or ``None``
    for "same" at a stride above 1 (its pairs do)."""
    padding = description.padding
    if not isinstance(padding, str):
        return padding
    if padding == "valid":
        return ((0, 0),) * description.rank
    if padding == "full":
        return tuple(
            ((k - 1) * d, (k - 1) * d)
            for k, d in zip(description.kernel_size, description.dilation, strict=True)
        )
    if set(description.stride) == {1}:
        return centred_pairs(description.kernel_size, description.dilation)
    return None


def padding_for(
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    padding: object,
) -> tuple[tuple[int, int], ...]:
    """The ``(lo, hi)`` pairs polyconv's ``padding`` gives on an input of spatial shape
    ``spatial``: what a ``PaddedConv`` resolves on each call."""
    return normalize(
        (1, 1, *spatial),
        (1, 1, *kernel_size),
        stride=tuple(stride),
        padding=padding,  # type: ignore[arg-type]  # validated by normalize
        dilation=tuple(dilation),
    ).padding


def pad_by_gather(
    x: ArrayT,
    pairs: Sequence[tuple[int, int]],
    axes: Sequence[int],
    mode: str,
    take: Callable[[ArrayT, np.ndarray, int], ArrayT],
) -> ArrayT:
    """``x`` padded along ``axes`` in a mode other than zeros, with ``np.pad``'s meaning for any
    width: each axis gathered with :func:`polyconv._padding.pad_indices` by the framework's
    ``take(x, index, axis)``."""
    for axis, (lo, hi) in zip(axes, pairs, strict=True):
        x = take(x, pad_indices(x.shape[axis], lo, hi, mode), axis)  # type: ignore[attr-defined]
    return x


def transpose_from_lax_pads(
    lax_pairs: Sequence[tuple[int, int]],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    field: str,
) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """``lax.conv_transpose``'s pads of the stride-dilated input (what Flax's and Keras'
    transposed layers compute with) as the forward correlation's ``(lo, hi)`` pairs and the
    ``output_padding`` of polyconv's transpose; a ValueError naming ``field`` where no pads do.

    The transpose correlates the dilated input, padded by ``(a, b)``, with the flipped kernel:
    the adjoint of a forward padded by ``lo = e - 1 - a`` before and ``e - 1 - b`` after
    (``e`` the dilated kernel's extent), a negative pad after being an output padding.
    """
    pairs, output_padding = [], []
    for (a, b), k, s, d in zip(lax_pairs, kernel_size, stride, dilation, strict=True):
        extent = (k - 1) * d + 1
        lo, hi = extent - 1 - a, extent - 1 - b
        extra = max(-hi, 0)
        if lo < 0 or extra >= max(s, d):
            raise ValueError(
                f"{field} pads the stride-dilated input by ({a}, {b}) on an axis of kernel extent "
                f"{extent}; polyconv's transpose pads at most extent - 1 = {extent - 1} before and "
                f"extent - 1 + output_padding (< max(stride, dilation) = {max(s, d)}) after"
            )
        pairs.append((lo, max(hi, 0)))
        output_padding.append(extra)
    return tuple(pairs), tuple(output_padding)


def lax_pads_of_transpose(description: ConvDescription) -> list[tuple[int, int]] | None:
    """The inverse of :func:`transpose_from_lax_pads`, or ``None`` for "same" at a stride above
    1 (its pads depend on the output's size)."""
    pairs = explicit_pairs(description)
    if pairs is None:
        return None
    assert description.output_padding is not None
    return [
        ((k - 1) * d - lo, (k - 1) * d - hi + extra)
        for k, d, (lo, hi), extra in zip(
            description.kernel_size,
            description.dilation,
            pairs,
            description.output_padding,
            strict=True,
        )
    ]


def crop_of_transpose(
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    padding: object,
    output_padding: Sequence[int],
) -> list[tuple[int, int, int]]:
    """Where a transposed layer's output lies in the unpadded native transpose of an input of
    spatial shape ``spatial`` (``(n - 1) * s + e`` long per axis, ``e`` the dilated kernel's
    extent): per axis ``(start, stop, zeros)``, the output being ``[start, stop)`` followed by
    ``zeros`` zeros (output ``j`` is position ``lo + j`` of the forward's padded input).
    What the cropping wrappers of the Flax and Keras adapters resolve on each call."""
    spec = normalize_transpose(
        (1, 1, *spatial),
        (1, 1, *kernel_size),
        stride=tuple(stride),
        padding=padding,  # type: ignore[arg-type]  # validated by normalize_transpose
        output_padding=tuple(output_padding),
        dilation=tuple(dilation),
    )
    crops = []
    for n, k, s, d, (lo, _), size in zip(
        spatial, kernel_size, stride, dilation, spec.forward.padding, spec.out_shape[2:],
        strict=True,
    ):  # fmt: skip
        full = (n - 1) * s + (k - 1) * d + 1
        stop = min(lo + size, full)
        crops.append((lo, stop, lo + size - stop))
    return crops
