"""The options of a correlation, checked one way for every caller: :func:`normalize` and the
layers' constructors. Each error names the argument and what was expected."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Literal, NamedTuple

PaddingMode = Literal["zeros", "reflect", "replicate", "circular", "symmetric"]
PaddingArg = str | int | Sequence[int] | Sequence[Sequence[int]]
IntOrTuple = int | Sequence[int]

PADDING_MODES: tuple[str, ...] = ("zeros", "reflect", "replicate", "circular", "symmetric")
PADDING_STRINGS: tuple[str, ...] = ("valid", "same", "full")
METHODS: tuple[str, ...] = ("auto", "direct", "fft")

# Names other libraries use for our padding modes: an error suggests ours instead of guessing.
_MODE_ALIASES = {
    "constant": "zeros",
    "fill": "zeros",
    "zero": "zeros",
    "edge": "replicate",
    "nearest": "replicate",
    "wrap": "circular",
    "symm": "symmetric",
    "mirror": "reflect",
}


def as_int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]  # TypeError below
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    return int(number)


def per_axis(value: object, rank: int, name: str) -> tuple[int, ...]:
    """An int or a tuple of ``rank`` positive ints, as a tuple."""
    items = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if items is None:
        items = (as_int(value, name),) * rank
    elif len(items) != rank:
        raise ValueError(
            f"{name} must be an int or a tuple of {rank} ints (one per spatial axis), "
            f"got {len(items)} values {value!r}"
        )
    result = tuple(as_int(v, name) for v in items)
    if any(v <= 0 for v in result):
        raise ValueError(f"{name} must be positive, got {value!r}")
    return result


def explicit_padding(padding: object, rank: int) -> tuple[tuple[int, int], ...]:
    """Reduce an int, a tuple of ints or a tuple of (lo, hi) pairs to (lo, hi) pairs."""
    expected = (
        f"'valid', 'same', 'full', an int, a tuple of {rank} ints "
        f"or a tuple of {rank} (lo, hi) pairs"
    )
    if isinstance(padding, Sequence) and not isinstance(padding, str):
        if len(padding) != rank:
            raise ValueError(f"padding must be {expected}; got {len(padding)} values {padding!r}")
        pairs = []
        for item in padding:
            if isinstance(item, Sequence) and not isinstance(item, str):
                if len(item) != 2:
                    raise ValueError(f"padding pairs must be (lo, hi); got {item!r} in {padding!r}")
                pairs.append((as_int(item[0], "padding"), as_int(item[1], "padding")))
            else:
                p = as_int(item, "padding")
                pairs.append((p, p))
    else:
        try:
            p = as_int(padding, "padding")
        except TypeError:
            raise TypeError(f"padding must be {expected}; got {padding!r}") from None
        pairs = [(p, p)] * rank
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return tuple(pairs)


def check_padding_mode(padding_mode: object) -> str:
    if padding_mode in PADDING_MODES:
        return str(padding_mode)
    hint = ""
    if isinstance(padding_mode, str) and padding_mode.lower() in _MODE_ALIASES:
        hint = f" (polyconv calls {padding_mode!r} {_MODE_ALIASES[padding_mode.lower()]!r})"
    elif isinstance(padding_mode, str) and padding_mode.lower() in PADDING_MODES:
        hint = f" (did you mean {padding_mode.lower()!r}?)"
    raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}{hint}")


def check_padding(padding: object, rank: int) -> str | tuple[tuple[int, int], ...]:
    """One of ``PADDING_STRINGS``, or explicit ``(lo, hi)`` pairs for any other form."""
    if isinstance(padding, str):
        if padding in PADDING_STRINGS:
            return padding
        hint = f" (did you mean {padding.lower()!r}?)" if padding.lower() in PADDING_STRINGS else ""
        raise ValueError(
            f"padding must be one of {PADDING_STRINGS}, an int or a tuple; got {padding!r}{hint}"
        )
    return explicit_padding(padding, rank)


def positive_int(value: object, name: str) -> int:
    number = as_int(value, name)
    if number <= 0:
        raise ValueError(f"{name} must be a positive int, got {number}")
    return number


def check_method(method: object) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return str(method)


class Options(NamedTuple):
    """The checked options: per-axis tuples, padding as a string or ``(lo, hi)`` pairs."""

    stride: tuple[int, ...]
    padding: str | tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str


def check_options(
    rank: int,
    stride: object,
    padding: object,
    dilation: object,
    groups: object,
    padding_mode: object,
) -> Options:
    """The options of a problem with ``rank`` spatial axes, checked."""
    groups_int = positive_int(groups, "groups")
    return Options(
        stride=per_axis(stride, rank, "stride"),
        padding=check_padding(padding, rank),
        dilation=per_axis(dilation, rank, "dilation"),
        groups=groups_int,
        padding_mode=check_padding_mode(padding_mode),
    )
