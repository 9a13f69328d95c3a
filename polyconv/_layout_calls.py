"""Calls in the caller's layouts: arrays read channels first on the way in (by the owning
backend's ``permute``, a view where the framework has one: PyTorch's ``channels_last`` memory
format is exactly such a view), results and gradients put back in the caller's layouts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _layouts as layouts
from ._dispatch import as_input
from .backends import Array, backend_of


def _permute(name: str, obj: object, axes: tuple[int, ...]) -> object:
    given = as_input(name, obj)
    if given.owner is not None:
        return given.owner.permute(given.array, axes)
    if given.weak:  # a nested list stays a list: it keeps taking the other arrays' dtype
        return np.transpose(given.array, axes).tolist()
    return np.transpose(given.array, axes)


def _permute_result(a: Array, axes: tuple[int, ...]) -> Array:
    owner = backend_of(a)
    return np.transpose(a, axes) if owner is None else owner.permute(a, axes)


def call_in_layouts(
    fn: Callable[..., Any],
    arrays: Mapping[str, object],
    options: Mapping[str, object],
    *,
    data_format: object,
    kernel_format: object,
    data: Sequence[str],
    kernel: str,
    results: Sequence[str | None],
    transpose: bool = False,
) -> Any:
    """``fn(**arrays, **options)`` with the arrays named in ``data`` held in ``data_format`` and
    ``kernel`` in ``kernel_format``; ``results`` says the layout of each result (``"data"``,
    ``"kernel"`` or ``None``: as is; one entry: a single result)."""
    data_format = layouts.check_format(data_format, "data_format")
    kernel_format = layouts.check_format(kernel_format, "kernel_format")
    converted = dict(arrays)
    kernel_shape = as_input(kernel, arrays[kernel]).shape
    rank = len(kernel_shape) - 2
    first_data = as_input(data[0], arrays[data[0]]).shape
    layouts.check_channels(
        data[0],
        first_data,
        kernel_shape,
        data_format=data_format,
        kernel_format=kernel_format,
        groups=options.get("groups", 1),
        transpose=transpose,
    )
    batched = len(first_data) == rank + 2
    if rank < 1:  # the operation's own check names what is wrong
        return fn(**arrays, **options)
    data_back = kernel_back = None
    if data_format == layouts.CHANNELS_LAST:
        for name in data:
            ndim = len(as_input(name, arrays[name]).shape)
            if ndim == len(first_data):
                converted[name] = _permute(name, arrays[name], layouts.data_to_first(ndim, batched))
        data_back = layouts.data_to_last(len(first_data), batched)
    if kernel_format == layouts.CHANNELS_LAST:
        converted[kernel] = _permute(kernel, arrays[kernel], layouts.kernel_to_first(rank + 2))
        kernel_back = layouts.kernel_to_last(rank + 2)
    outcome = fn(**converted, **options)
    back = {"data": data_back, "kernel": kernel_back, None: None}
    if len(results) == 1:
        axes = back[results[0]]
        return outcome if axes is None else _permute_result(outcome, axes)
    return tuple(
        a if back[kind] is None or a is None else _permute_result(a, back[kind])  # type: ignore[arg-type]
        for a, kind in zip(outcome, results, strict=True)
    )
