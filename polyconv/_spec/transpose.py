"""The specification of the transposed correlation: its size rule and its checks.

``correlate_transpose(y, w, **spec)`` is the adjoint in ``x`` of ``correlate(x, w, **spec)``. It
is reduced here to a :class:`TransposeSpec` that holds the forward problem it is the adjoint of
(a :class:`~polyconv.CorrSpec` whose input shape is the transpose's output shape), so that every
backend computes it from the same geometry as the forward.

Size rule, per spatial axis, for an input of ``i`` samples: the output has the smallest size
``n0`` whose forward output size is ``i``, plus ``output_padding``. With int padding ``p`` that
is torch's ``(i - 1) * s - 2p + d * (k - 1) + 1 + output_padding``; "valid" gives
``(i - 1) * s + extent``, "full" ``(i - 1) * s - extent + 2`` and "same" ``(i - 1) * s + 1``
(Keras' "same" transpose, ``i * s``, is ``output_padding = s - 1``); a size below 1 is an error.
When ``n0`` itself is below 1 the formula still counts, as torch's does. ``output_padding`` must lie
in ``[0, max(stride, dilation))`` (torch's rule), and below ``stride`` with a padding mode other
than zeros. When ``output_padding >= stride`` (possible with dilation) the forward problem of the
output's size has more than ``i`` outputs: the transpose is then the adjoint of the forward with
its output cut to ``i`` samples, so those extra forward outputs count as zeros
(:attr:`TransposeSpec.extra_outputs`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .options import IntOrTuple, PaddingArg, as_int, check_method, check_options
from .spec import CorrSpec, _freeze, _shape, is_plain, normalize


@dataclass(frozen=True)
class TransposeSpec:
    """One transposed-correlation problem, fully normalised.

    ``forward`` is the correlation whose adjoint in ``x`` this is: ``forward.x_shape`` is the
    transpose's (batched) output shape, ``forward.w_shape`` the kernel's. ``y_shape`` is the
    transpose's batched input ``(N, C_out, *i)``.
    """

    forward: CorrSpec
    y_shape: tuple[int, ...]
    output_padding: tuple[int, ...]
    batched: bool
    has_bias: bool

    @property
    def rank(self) -> int:
        return self.forward.rank

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The batched output shape ``(N, C_in, *n)``."""
        return self.forward.x_shape

    @property
    def user_out_shape(self) -> tuple[int, ...]:
        return self.out_shape if self.batched else self.out_shape[1:]

    @property
    def user_y_shape(self) -> tuple[int, ...]:
        return self.y_shape if self.batched else self.y_shape[1:]

    @property
    def extra_outputs(self) -> tuple[int, ...]:
        """Per axis, how many outputs the forward has beyond ``y``'s (non-zero only when
        ``output_padding >= stride``): they read nothing of ``y``."""
        return tuple(
            o - i for o, i in zip(self.forward.out_shape[2:], self.y_shape[2:], strict=True)
        )


def _output_padding(value: object, rank: int) -> tuple[int, ...]:
    items = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if items is None:
        items = (as_int(value, "output_padding"),) * rank
    elif len(items) != rank:
        raise ValueError(
            f"output_padding must be an int or a tuple of {rank} ints (one per spatial axis), "
            f"got {len(items)} values {value!r}"
        )
    return tuple(as_int(v, "output_padding") for v in items)


def check_output_padding(
    output_padding: object,
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    padding_mode: str,
) -> tuple[int, ...]:
    """``output_padding`` per axis, checked against ``[0, max(stride, dilation))`` (and
    ``[0, stride)`` with a padding mode other than zeros)."""
    result = _output_padding(output_padding, len(stride))
    for axis, (op, s, d) in enumerate(zip(result, stride, dilation, strict=True)):
        limit, why = max(s, d), f"max(stride, dilation) = max({s}, {d})"
        if padding_mode != "zeros":
            limit, why = s, f"stride = {s} with padding_mode={padding_mode!r}"
        if not 0 <= op < limit:
            raise ValueError(
                f"output_padding must satisfy 0 <= output_padding < {why} along every axis; "
                f"got {op} along spatial axis {axis} (output_padding={output_padding!r})"
            )
    return result


def smallest_input(
    size: int, kernel: int, stride: int, dilation: int, padding: str | tuple[int, int]
) -> int:
    """The input size ``n0`` from which ``stride`` sizes give a forward output of ``size``
    samples along one axis: the smallest such size when it is at least 1 (below, the formula's
    value, as torch's size formula counts it)."""
    extent = (kernel - 1) * dilation + 1
    if padding == "same":
        return (size - 1) * stride + 1
    if padding == "valid":
        lo = hi = 0
    elif padding == "full":
        lo = hi = extent - 1
    else:
        assert not isinstance(padding, str)
        lo, hi = padding
    return (size - 1) * stride + extent - lo - hi


def normalize_transpose(
    y_shape: Sequence[int],
    w_shape: Sequence[int],
    bias_shape: Sequence[int] | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "direct",
) -> TransposeSpec:
    """Validate a transposed problem and reduce it to a :class:`TransposeSpec` (cached).
    ``method`` is checked with the other arguments; the spec holds none."""
    frozen = map(_freeze, (y_shape, w_shape, bias_shape, stride, padding, output_padding))
    args: tuple[Any, ...] = (*frozen, _freeze(dilation), groups, padding_mode, method)
    return (_normalize_cached if all(map(is_plain, args)) else _normalize)(*args)


def _normalize(
    y_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    bias_shape: tuple[int, ...] | None,
    stride: object,
    padding: object,
    output_padding: object,
    dilation: object,
    groups: object,
    padding_mode: object,
    method: object,
) -> TransposeSpec:
    check_method(method)
    y_shape, w_shape = _shape(y_shape, "y"), _shape(w_shape, "w")
    rank = len(w_shape) - 2
    if not 1 <= rank <= 3:
        raise ValueError(
            "w must have the forward's shape (C_out, C_in // groups, *kernel) with 1, 2 or 3 "
            f"spatial axes, got shape {w_shape} ({len(w_shape)} dimensions)"
        )
    if len(y_shape) not in (rank + 1, rank + 2):
        raise ValueError(
            f"y must have shape (N, C_out, *spatial) or (C_out, *spatial) with {rank} spatial "
            f"axes to match w of shape {w_shape}; got shape {y_shape}"
        )
    batched = len(y_shape) == rank + 2
    y_batched = y_shape if batched else (1, *y_shape)
    if 0 in y_batched:
        raise ValueError(f"y must not be empty, got shape {y_shape}")
    if 0 in w_shape:
        raise ValueError(f"w must not be empty, got shape {w_shape}")
    options = check_options(rank, stride, padding, dilation, groups, padding_mode)
    groups, mode = options.groups, options.padding_mode
    stride_t, dilation_t = options.stride, options.dilation
    c_out = w_shape[0]
    if y_batched[1] != c_out:
        raise ValueError(
            f"y must have C_out = w.shape[0] = {c_out} channels (y.shape[{1 if batched else 0}]), "
            f"got y of shape {y_shape} for w of shape {w_shape}"
        )
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide C_out={c_out} (w.shape[0])")
    c_in = w_shape[1] * groups
    if bias_shape is not None and tuple(bias_shape) != (c_in,):
        raise ValueError(
            f"bias of the transpose must have shape (C_in,) = ({c_in},) "
            f"(C_in = w.shape[1] * groups), got {tuple(bias_shape)}"
        )
    extra = check_output_padding(output_padding, stride_t, dilation_t, mode)
    kernel = w_shape[2:]
    checked = options.padding
    forms: list[str | tuple[int, int]] = (
        [checked] * rank if isinstance(checked, str) else list(checked)
    )
    sizes = []
    for axis, (i, k, s, d, form, op) in enumerate(
        zip(y_batched[2:], kernel, stride_t, dilation_t, forms, extra, strict=True)
    ):
        n0 = smallest_input(i, k, s, d, form)
        # Below 1 the formula still counts (as torch's does): sizes n0 to n0 + s - 1 all give
        # i outputs, so n0 + output_padding may be a valid size although n0 is not.
        if n0 + op < 1:
            raise ValueError(
                f"the transpose of y's {i} samples along spatial axis {axis} with this padding "
                f"({padding!r}), kernel {k}, stride {s}, dilation {d} and output_padding {op} "
                f"would have {n0 + op} samples; use less padding, more output_padding or a "
                "larger y"
            )
        sizes.append(n0 + op)
    forward = normalize(
        (y_batched[0], c_in, *sizes),
        w_shape,
        stride=stride_t,
        padding=checked,
        dilation=dilation_t,
        groups=groups,
        padding_mode=mode,
    )
    assert all(o >= i for o, i in zip(forward.out_shape[2:], y_batched[2:], strict=True))
    return TransposeSpec(
        forward=forward,
        y_shape=y_batched,
        output_padding=extra,
        batched=batched,
        has_bias=bias_shape is not None,
    )


_normalize_cached = functools.lru_cache(maxsize=1024)(_normalize)


def clear_transpose_spec_cache() -> None:
    """Forget every cached :func:`normalize_transpose` result."""
    _normalize_cached.cache_clear()
