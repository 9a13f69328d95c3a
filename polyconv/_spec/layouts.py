"""Data and kernel layouts: which axis holds the channels, as axis permutations.

polyconv computes channels first: data ``(N, C, *spatial)`` (unbatched ``(C, *spatial)``) and
kernels ``(C_out, C_in // groups, *kernel)``, as PyTorch holds them. Flax, Keras and TensorFlow
hold data channels last, ``(N, *spatial, C)``, and kernels ``(*kernel, C_in // groups, C_out)``.
Here are the permutations between the two, for any number of spatial axes; pure functions of
shapes, no arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"
FORMATS: tuple[str, ...] = (CHANNELS_FIRST, CHANNELS_LAST)

DATA_LAYOUTS = {
    CHANNELS_FIRST: "(N, C, *spatial) or (C, *spatial)",
    CHANNELS_LAST: "(N, *spatial, C) or (*spatial, C)",
}
KERNEL_LAYOUTS = {
    CHANNELS_FIRST: "(C_out, C_in // groups, *kernel)",
    CHANNELS_LAST: "(*kernel, C_in // groups, C_out)",
}


def check_format(value: object, name: str) -> str:
    """``value`` if it is one of :data:`FORMATS`, else a ValueError naming ``name``."""
    if value in FORMATS:
        return str(value)
    hint = ""
    if isinstance(value, str):
        lowered = value.lower().replace("-", "_")
        aliases = {"nchw": CHANNELS_FIRST, "nhwc": CHANNELS_LAST, "ncw": CHANNELS_FIRST}
        aliases |= {"nwc": CHANNELS_LAST, "ncdhw": CHANNELS_FIRST, "ndhwc": CHANNELS_LAST}
        aliases |= {"oihw": CHANNELS_FIRST, "hwio": CHANNELS_LAST}
        suggestion = lowered if lowered in FORMATS else aliases.get(lowered)
        if suggestion is not None:
            hint = f" (did you mean {suggestion!r}?)"
    raise ValueError(f"{name} must be one of {FORMATS}, got {value!r}{hint}")


def data_to_first(ndim: int, batched: bool) -> tuple[int, ...]:
    """The permutation that reads channels-last data of ``ndim`` axes channels first."""
    if batched:
        return (0, ndim - 1, *range(1, ndim - 1))
    return (ndim - 1, *range(ndim - 1))


def data_to_last(ndim: int, batched: bool) -> tuple[int, ...]:
    """The inverse of :func:`data_to_first`."""
    if batched:
        return (0, *range(2, ndim), 1)
    return (*range(1, ndim), 0)


def kernel_to_first(ndim: int) -> tuple[int, ...]:
    """``(*kernel, C_in // groups, C_out)`` read as ``(C_out, C_in // groups, *kernel)``."""
    return (ndim - 1, ndim - 2, *range(ndim - 2))


def kernel_to_last(ndim: int) -> tuple[int, ...]:
    """The inverse of :func:`kernel_to_first`."""
    return (*range(2, ndim), 1, 0)


def permuted(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(shape[a] for a in axes)


def check_channels(
    data_name: str,
    data_shape: tuple[int, ...],
    kernel_shape: tuple[int, ...],
    *,
    data_format: str,
    kernel_format: str,
    groups: object,
    transpose: bool,
) -> None:
    """A ValueError naming both shapes and the formats assumed when the data's channels and the
    kernel's disagree (a kernel in the wrong layout, most often)."""
    rank = len(kernel_shape) - 2
    if rank < 1 or len(data_shape) not in (rank + 1, rank + 2):
        return  # the operation's own checks say what is wrong with the shapes
    batched = len(data_shape) == rank + 2
    data_cf = data_shape
    if data_format == CHANNELS_LAST:
        data_cf = permuted(data_shape, data_to_first(len(data_shape), batched))
    kernel_cf = kernel_shape
    if kernel_format == CHANNELS_LAST:
        kernel_cf = permuted(kernel_shape, kernel_to_first(len(kernel_shape)))
    channels = data_cf[1 if batched else 0]
    if transpose:
        expected, what = kernel_cf[0], "C_out"
    else:
        if not isinstance(groups, int) or isinstance(groups, bool) or groups <= 0:
            return
        expected, what = kernel_cf[1] * groups, f"C_in = (C_in // groups) * {groups}"
    if channels != expected:
        raise ValueError(
            f"{data_name} of shape {data_shape}, read as data_format={data_format!r} "
            f"{DATA_LAYOUTS[data_format]}, has {channels} channels, but w of shape "
            f"{kernel_shape}, read as kernel_format={kernel_format!r} "
            f"{KERNEL_LAYOUTS[kernel_format]}, needs {what} = {expected}; "
            "check the formats (Flax, Keras and TensorFlow hold data and kernels channels last)"
        )
