"""The specification of cross-correlation: argument normalisation, shapes and padding arithmetic.

Everything a backend needs is reduced here to one frozen, hashable :class:`CorrSpec`, so that
backends only compute and every backend sees exactly the same geometry.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .options import (
    IntOrTuple,
    PaddingArg,
    as_int,
    check_method,
    check_options,
)


@dataclass(frozen=True)
class CorrSpec:
    """One correlation problem, fully normalised.

    Shapes are always batched: ``x_shape = (N, C_in, *spatial)``. ``padding`` is the explicit
    ``(lo, hi)`` pair per spatial axis that every user padding form reduces to.
    """

    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str
    batched: bool
    has_bias: bool

    @property
    def rank(self) -> int:
        """Number of spatial dimensions (1, 2 or 3)."""
        return len(self.stride)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return self.w_shape[2:]

    @property
    def extents(self) -> tuple[int, ...]:
        """The dilated kernel's extent per spatial axis: ``(kernel - 1) * dilation + 1``."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_shape, self.dilation, strict=True))

    @property
    def unstrided_out(self) -> tuple[int, ...]:
        """Stride-1 outputs per spatial axis from the first kept output to the last:
        ``(out - 1) * stride + 1`` (what an FFT computes before keeping every stride-th)."""
        return tuple((o - 1) * s + 1 for o, s in zip(self.out_shape[2:], self.stride, strict=True))

    @property
    def padded_shape(self) -> tuple[int, ...]:
        """Spatial shape of the input after padding."""
        return tuple(
            n + lo + hi for n, (lo, hi) in zip(self.x_shape[2:], self.padding, strict=True)
        )

    @property
    def terms_per_output(self) -> int:
        """How many products each output element sums: ``C_in / groups * prod(kernel)``."""
        return self.w_shape[1] * math.prod(self.kernel_shape)

    @property
    def user_out_shape(self) -> tuple[int, ...]:
        """The output shape as the user sees it (unbatched input gives unbatched output)."""
        return self.out_shape if self.batched else self.out_shape[1:]

    def transposed(self) -> CorrSpec:
        """The transposed problem, whose correlation gives the gradient of the *padded* input.

        Its input is the output's gradient spread to stride 1 (``stride - 1`` zeros between
        samples): ``(N, C_out, *unstrided_out)``; its kernel is this kernel flipped along the
        spatial axes with its channel axes swapped per group: ``(C_in, C_out // groups, *k)``;
        zero padding ``extent - 1`` before and up to the padded length after, stride 1, the
        same dilation and groups. Its output is ``(N, C_in, *padded_shape)``:
        ``grad_xp[p] = sum_k grad_y_spread[p - k * d] * w[k]``.
        """
        n, c_in = self.x_shape[:2]
        c_out = self.w_shape[0]
        padding = tuple(
            (e - 1, p - u)
            for e, p, u in zip(self.extents, self.padded_shape, self.unstrided_out, strict=True)
        )
        return normalize(
            (n, c_out, *self.unstrided_out),
            (c_in, c_out // self.groups, *self.kernel_shape),
            padding=padding,
            dilation=self.dilation,
            groups=self.groups,
        )


def _shape(value: object, name: str) -> tuple[int, ...]:
    """A shape as a tuple of non-negative ints."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"{name}'s shape must be a tuple of ints, got {value!r}")
    try:
        shape = tuple(as_int(n, name) for n in value)
    except TypeError:
        raise TypeError(f"{name}'s shape must be a tuple of ints, got {value!r}") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"{name}'s shape must not contain negative sizes, got {shape}")
    return shape


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """``ceil(size / stride)`` outputs; the odd extra pad goes at the end (the TF/JAX rule)."""
    extent = (kernel - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def _resolve_padding(
    padding: object,
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * len(spatial)
        if padding == "full":
            return tuple(((k - 1) * d,) * 2 for k, d in zip(kernel, dilation, strict=True))
        if padding == "same":
            return tuple(map(same_padding, spatial, kernel, stride, dilation))
        raise AssertionError(f"unchecked padding {padding!r}")  # check_options refused it
    return padding  # type: ignore[return-value]  # (lo, hi) pairs from check_options


def _freeze(value: object) -> object:
    """Lists to tuples, recursively, so that arguments can key the normalisation cache."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


# Exact types (``type(x) in``, so never bool): True == 1 and 1.0 == 1 as keys, not as arguments.
PLAIN_SCALARS = frozenset({int, str, type(None)})  # a set: the fastest membership test


def is_plain(value: object) -> bool:
    """Whether ``value`` is None, a str, an int (not a bool) or a tuple of plain values: an
    argument that equals another as a cache key only when it means the same."""
    if type(value) in PLAIN_SCALARS:
        return True
    return type(value) is tuple and all(map(is_plain, value))


def normalize(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    bias_shape: Sequence[int] | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "direct",
) -> CorrSpec:
    """Validate a problem and reduce it to a :class:`CorrSpec`; cached, so repeat calls are cheap.

    ``method`` (``"auto"``, ``"direct"`` or ``"fft"``) is checked here with the other arguments,
    but the spec is geometry only: how a backend computes it is chosen by that backend
    (:meth:`polyconv.backends.Backend.choose_method`).
    """
    frozen = map(_freeze, (x_shape, w_shape, bias_shape, stride, padding, dilation))
    args: tuple[Any, ...] = (*frozen, groups, padding_mode, method)
    # Only plain arguments key the cache: True == 1 and 1.0 == 1 as keys, not as arguments.
    return (_normalize_cached if all(map(is_plain, args)) else _normalize)(*args)


def _normalize(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    bias_shape: tuple[int, ...] | None,
    stride: object,
    padding: object,
    dilation: object,
    groups: object,
    padding_mode: object,
    method: object = "direct",
) -> CorrSpec:
    check_method(method)
    x_shape, w_shape = _shape(x_shape, "x"), _shape(w_shape, "w")
    rank = len(w_shape) - 2
    if not 1 <= rank <= 3:
        raise ValueError(
            "w must have shape (C_out, C_in // groups, *kernel) with 1, 2 or 3 spatial axes, "
            f"got shape {w_shape} ({len(w_shape)} dimensions)"
        )
    if len(x_shape) not in (rank + 1, rank + 2):
        raise ValueError(
            f"x must have shape (N, C_in, *spatial) or (C_in, *spatial) with {rank} spatial axes "
            f"to match w of shape {w_shape}; got shape {x_shape}"
        )
    batched = len(x_shape) == rank + 2
    if not batched:
        x_shape = (1, *x_shape)
    if 0 in x_shape:
        raise ValueError(f"x must not be empty, got shape {x_shape if batched else x_shape[1:]}")
    if 0 in w_shape:
        raise ValueError(f"w must not be empty, got shape {w_shape}")

    options = check_options(rank, stride, padding, dilation, groups, padding_mode)
    groups = options.groups
    c_in, c_out = x_shape[1], w_shape[0]
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"groups={groups} must divide both C_in={c_in} (x.shape[{1 if batched else 0}]) "
            f"and C_out={c_out} (w.shape[0])"
        )
    if w_shape[1] != c_in // groups:
        raise ValueError(
            f"w.shape[1] must be C_in // groups = {c_in} // {groups} = {c_in // groups}, "
            f"got w of shape {w_shape} for x of shape {x_shape if batched else x_shape[1:]}"
        )
    if bias_shape is not None and tuple(bias_shape) != (c_out,):
        raise ValueError(f"bias must have shape (C_out,) = ({c_out},), got {tuple(bias_shape)}")

    stride_t, dilation_t, mode = options.stride, options.dilation, options.padding_mode
    spatial, kernel = x_shape[2:], w_shape[2:]
    pads = _resolve_padding(options.padding, spatial, kernel, stride_t, dilation_t)

    out_spatial = []
    for axis, (n, k, s, d, (lo, hi)) in enumerate(
        zip(spatial, kernel, stride_t, dilation_t, pads, strict=True)
    ):
        extent, padded = (k - 1) * d + 1, n + lo + hi
        if extent > padded:
            raise ValueError(
                f"w's kernel, dilated to extent {extent} along spatial axis {axis} "
                f"(kernel {k}, dilation {d}), is larger than x padded along that axis "
                f"({n} + {lo} + {hi} = {padded}); pad more or use a smaller kernel or dilation"
            )
        out_spatial.append((padded - extent) // s + 1)

    return CorrSpec(
        x_shape=x_shape,
        w_shape=w_shape,
        out_shape=(x_shape[0], c_out, *out_spatial),
        stride=stride_t,
        padding=pads,
        dilation=dilation_t,
        groups=groups,
        padding_mode=mode,
        batched=batched,
        has_bias=bias_shape is not None,
    )


_normalize_cached = functools.lru_cache(maxsize=4096)(_normalize)


def clear_spec_cache() -> None:
    """Forget every cached :func:`normalize` result."""
    _normalize_cached.cache_clear()
