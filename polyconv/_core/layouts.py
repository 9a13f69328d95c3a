"""Calls in the caller's layouts: arrays read channels first on the way in (by the owning
backend's ``permute``, a view where the framework has one: PyTorch's ``channels_last`` memory
format is exactly such a view), results and gradients put back in the caller's layouts. On a
backend that compiles (JAX), the permutations and the call run as one compiled computation, in
which XLA folds the permutations into the convolution's dimension numbers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._spec import layouts
from .._spec.layouts import (
    CHANNELS_LAST,
    data_to_first,
    data_to_last,
    kernel_to_first,
    kernel_to_last,
)
from .._spec.spec import is_plain
from ..backends import Array, backend_of
from .select import as_input


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
    if rank < 1:  # the operation's own check names what is wrong
        return fn(**arrays, **options)
    batched = len(first_data) == rank + 2
    data_back = data_to_last(len(first_data), batched) if data_format == CHANNELS_LAST else None
    kernel_back = kernel_to_last(rank + 2) if kernel_format == CHANNELS_LAST else None
    back = {"data": data_back, "kernel": kernel_back, None: None}
    names = tuple(arrays)

    def run(*given: object) -> Any:
        converted = dict(zip(names, given, strict=True))
        if data_back is not None:
            for name in data:
                ndim = len(as_input(name, converted[name]).shape)
                if ndim == len(first_data):
                    axes = data_to_first(ndim, batched)
                    converted[name] = _permute(name, converted[name], axes)
        if kernel_back is not None:
            axes = kernel_to_first(rank + 2)
            converted[kernel] = _permute(kernel, converted[kernel], axes)
        outcome = fn(**converted, **options)
        if len(results) == 1:
            axes_back = back[results[0]]
            return outcome if axes_back is None else _permute_result(outcome, axes_back)
        return tuple(
            a if back[kind] is None or a is None else _permute_result(a, back[kind])  # type: ignore[arg-type]
            for a, kind in zip(outcome, results, strict=True)
        )

    return _compiled(run, arrays, (fn, data_format, kernel_format, options))(*arrays.values())


# The permuting calls compiled per operation, layouts and options, for backends that compile
# (JAX: inside one jitted computation, XLA folds the permutations into the convolution's
# dimension numbers, so that no transposed copy is made).
_COMPILED: dict[tuple[object, ...], Callable[..., Any]] = {}
_COMPILED_MAX = 256


def _compiled(
    run: Callable[..., Any], arrays: Mapping[str, object], settings: tuple[Any, ...]
) -> Callable[..., Any]:
    """``run`` compiled by the backend that owns every array (when one does and the settings
    can key a cache), else ``run`` itself."""
    owners = {backend_of(a) for a in arrays.values() if a is not None}
    owner = owners.pop() if len(owners) == 1 else None
    fn, data_format, kernel_format, options = settings
    frozen = tuple(sorted((k, _freeze(v)) for k, v in options.items()))
    if owner is None or not all(is_plain(v) for _, v in frozen):
        return run
    key = (owner.name, fn, data_format, kernel_format, frozen, tuple(arrays))
    compiled = _COMPILED.get(key)
    if compiled is None:
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        compiled = _COMPILED[key] = owner.compile(run)
    return compiled


def _freeze(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value
