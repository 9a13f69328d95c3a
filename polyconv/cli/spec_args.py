"""The command-line flags that describe one problem, shared by ``polyconv verify`` and
``polyconv explain``, and their inverse: the flags that reproduce a problem."""

from __future__ import annotations

import argparse
import ast
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from .._spec.options import PADDING_MODES, PADDING_STRINGS

PADDING_HELP = (
    "'valid', 'same', 'full', one int for every axis (1), one per axis (1,2) "
    "or (lo, hi) pairs per axis (0:1,0:1); default valid"
)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}")
    return values


def shape(text: str) -> tuple[int, ...]:
    """``8,3,32,32`` (or ``8x3x32x32``) as a shape."""
    return _ints(text)


def int_or_ints(text: str) -> int | tuple[int, ...]:
    """``2`` as an int, ``2,1`` as one int per axis."""
    values = _ints(text)
    return values[0] if len(values) == 1 and "," not in text else values


def padding(text: str) -> object:
    """Every form of ``padding`` the API takes, written for a shell (see :data:`PADDING_HELP`)."""
    text = text.strip()
    if text in PADDING_STRINGS:
        return text
    if text.startswith(("(", "[")):  # a Python literal: ((0, 1), (0, 1))
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise argparse.ArgumentTypeError(f"padding: cannot read {text!r}") from None
    if ":" in text:
        try:
            return tuple(
                tuple(int(v) for v in pair.split(":", 1)) for pair in text.split(",") if pair
            )
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"padding pairs must be written lo:hi,lo:hi; got {text!r}"
            ) from None
    return int_or_ints(text)


def add_spec_arguments(
    parser: argparse.ArgumentParser, *, bias: bool, shapes_required: bool = True
) -> None:
    """``--input``, ``--kernel``, ``--bias`` and the keywords of :func:`polyconv.correlate`."""
    problem = parser.add_argument_group("the problem (the keywords of polyconv.correlate)")
    problem.add_argument(
        "--input",
        type=shape,
        required=shapes_required,
        metavar="N,C,...",
        help="shape of x: (N, C_in, *spatial) or unbatched (C_in, *spatial), e.g. 8,3,32,32",
    )
    problem.add_argument(
        "--kernel",
        type=shape,
        required=shapes_required,
        metavar="O,I,...",
        help="shape of w: (C_out, C_in // groups, *kernel), e.g. 16,3,3,3",
    )
    problem.add_argument(
        "--bias",
        action=argparse.BooleanOptionalAction,
        default=bias,
        help=f"with a bias b of shape (C_out,) (default: {'yes' if bias else 'no'})",
    )
    problem.add_argument("--stride", type=int_or_ints, default=1, help="int or ints per axis")
    problem.add_argument("--padding", type=padding, default="valid", help=PADDING_HELP)
    problem.add_argument("--dilation", type=int_or_ints, default=1, help="int or ints per axis")
    problem.add_argument("--groups", type=int, default=1, help="channel groups (default 1)")
    problem.add_argument(
        "--padding-mode",
        choices=PADDING_MODES,
        default="zeros",
        help="what the padding holds (default zeros)",
    )


def spec_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :func:`polyconv.correlate` that the parsed flags give."""
    return {
        "stride": args.stride,
        "padding": args.padding,
        "dilation": args.dilation,
        "groups": args.groups,
        "padding_mode": args.padding_mode,
    }


def _flag_value(value: object) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if all(isinstance(v, Sequence) for v in value):  # (lo, hi) pairs
            return ",".join(f"{lo}:{hi}" for lo, hi in value)
        return ",".join(str(v) for v in value) + ("," if len(value) == 1 else "")
    return str(value)


def spec_flags(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    kwargs: Mapping[str, Any],
    *,
    bias: bool,
) -> list[str]:
    """The flags that describe this problem again (defaults left out, except ``--[no-]bias``)."""
    flags = ["--input", _flag_value(tuple(x_shape)), "--kernel", _flag_value(tuple(w_shape))]
    flags.append("--bias" if bias else "--no-bias")
    defaults = {
        "stride": 1,
        "padding": "valid",
        "dilation": 1,
        "groups": 1,
        "padding_mode": "zeros",
    }
    for name, default in defaults.items():
        value = kwargs.get(name, default)
        if value != default:
            flags += [f"--{name.replace('_', '-')}", _flag_value(value)]
    return flags


def command(subcommand: str, flags: Sequence[str]) -> str:
    """A shell command line running ``polyconv SUBCOMMAND FLAGS``."""
    return shlex.join(["polyconv", subcommand, *flags])
