"""Which backend runs a call, and the conversion of its inputs to that backend's arrays."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import operator
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from . import backends as _registry
from ._dtypes import result_dtype
from ._spec import PLAIN_SCALARS, is_plain
from .backends import Array, Backend

ENV_VAR = "POLYCONV_BACKEND"

_selected: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "polyconv_backend", default=None
)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Run polyconv calls inside the ``with`` block on backend ``name`` (unless a call names one)."""
    backend = _registry.get(name)
    token = _selected.set(name)
    try:
        yield backend
    finally:
        _selected.reset(token)


@dataclass(frozen=True)
class Input:
    """One argument as received: its array (owned by ``owner``, or NumPy), dtype and typing."""

    name: str
    array: Array
    owner: Backend | None  # None for NumPy arrays, lists and scalars
    dtype: str
    weak: bool  # a Python list or scalar: takes the dtype of the arrays it meets

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def as_input(name: str, obj: object) -> Input:
    """Inspect one argument without converting framework arrays."""
    owner = _registry.backend_of(obj)
    if owner is not None:
        refusal = owner.refusal(obj)
        if refusal is not None:
            raise TypeError(f"{name} is {refusal}")
        return Input(name, obj, owner, owner.dtype_name(obj), weak=False)
    if isinstance(obj, (np.ndarray, np.generic)):
        array = np.asarray(obj)
        return Input(name, array, None, array.dtype.name, weak=False)
    try:
        array = np.asarray(obj)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array or a nested list of numbers: {error}") from None
    if array.dtype == object or array.dtype.kind in "USV":
        raise TypeError(
            f"{name} must be an array or a nested list of numbers, got {type(obj).__name__} "
            f"(converted to dtype {array.dtype})"
        )
    return Input(name, array, None, array.dtype.name, weak=True)


def select_backend(requested: str | None, inputs: list[Input]) -> Backend:
    """``backend=``, else ``use_backend``, else the inputs' framework, else $POLYCONV_BACKEND/numpy."""
    owners = {i.owner.name: i.owner for i in inputs if i.owner is not None}
    if requested is None:
        requested = _selected.get()
    if requested is not None:
        return _registry.get(requested)
    if len(owners) > 1:
        described = ", ".join(f"{i.name} is a {i.owner.name} array" for i in inputs if i.owner)
        raise TypeError(
            f"inputs come from more than one framework ({described}); "
            "pass backend=NAME to choose which one runs (the others are converted)"
        )
    if owners:
        return next(iter(owners.values()))
    default = os.environ.get(ENV_VAR) or "numpy"
    try:
        return _registry.get(default)
    except ValueError as error:  # say where the bad name came from
        raise ValueError(f"{error} (from the {ENV_VAR} environment variable)") from None


def convert_inputs(backend: Backend, inputs: list[Input]) -> tuple[list[Array], str]:
    """Every input as ``backend``'s array of the common dtype, on the first native input's device."""
    dtype = result_dtype({i.name: (i.dtype, i.weak) for i in inputs})
    native = [i for i in inputs if i.owner is backend]
    like = native[0].array if native else None
    # Arrays with no device yet (JAX tracers) are placed by the enclosing transformation.
    placed = [(i, device) for i in native if (device := backend.device(i.array)) is not None]
    for other, device in placed[1:]:
        if device != placed[0][1]:
            raise ValueError(
                f"{other.name} is on device {device} but {placed[0][0].name} is on "
                f"{placed[0][1]}; put all inputs on one device"
            )
    arrays = []
    for i in inputs:
        array = i.array
        if i.owner is not None and i.owner is not backend:
            array = i.owner.to_numpy(array)
        arrays.append(backend.convert(array, dtype, like))
    return arrays, dtype


def _facts_of(cls: type) -> tuple[Callable[[object], tuple[object, ...]], bool]:
    """How an array of type ``cls`` gives its dtype, shape and placement (in one call), and
    whether the type is NumPy's."""
    # A JAX array derives its ``device`` from its ``sharding`` (slowly, in Python), and the
    # sharding says as much; other frameworks' arrays have a ``device``.
    placement = "sharding" if hasattr(cls, "sharding") else "device"
    # A torch tensor's layout (strided or sparse) decides whether it can be computed on.
    layout = ("layout",) if hasattr(cls, "layout") else ()
    return operator.attrgetter("dtype", "shape", placement, *layout), issubclass(
        cls, (np.ndarray, np.generic)
    )


def call_route(
    settings: tuple[object, ...], x: object, w: object, bias: object, grad_y: object = None
) -> tuple[object, ...] | None:
    """What decides a call's backend apart from the arrays' dtypes, shapes and devices: the
    registry's state, the selected backend, the call's ``settings`` (its other arguments) and the
    arrays' types. None for settings that are not plain (a bool or float equals an int as a key,
    but not as an argument: validation must see it). Built on every call, so written for speed
    (the arrays one by one: a loop over them measured slower)."""
    for setting in settings:
        if type(setting) not in PLAIN_SCALARS and not is_plain(setting):  # inlined: speed
            return None
    state, selected = _registry.state(), _selected.get()
    return (state, selected, settings, type(x), type(w), type(bias), type(grad_y))


def call_facts(arrays: tuple[object, ...]) -> tuple[object, ...] | None:
    """The dtype, shape and device of each array that, with the call's :func:`call_route`,
    decide which backend runs a call and how its inputs convert; None for inputs that are not
    arrays with a dtype, shape and device (lists, scalars, JAX tracers)."""
    return facts_reader(tuple(map(type, arrays)))(*arrays)


@functools.lru_cache(maxsize=512)
def facts_reader(types: tuple[type, ...]) -> Callable[..., tuple[object, ...] | None]:
    """:func:`call_facts` for arguments of these ``types``, as a function of the arguments:
    a route keeps one, so that a repeated call reads its arrays' facts without finding out,
    per array, how. Called on every call, so written for speed and with few allocations
    (each one brings the garbage collector's next pass closer)."""
    present = [(i, *_facts_of(cls)) for i, cls in enumerate(types) if cls is not type(None)]
    reads = [(i, read) for i, read, _ in present]
    # No framework's array to pick the backend: the environment variable does.
    only_numpy = all(is_numpy for *_, is_numpy in present)
    if not only_numpy and [i for i, _ in reads] == [0, 1]:  # x and w alone (the most called)
        (_, read_x), (_, read_w) = reads

        def read_two(x: object, w: object, *_: object) -> tuple[object, ...] | None:
            try:
                return read_x(x) + read_w(w)
            except AttributeError:
                return None

        return read_two

    def read_each(*arrays: object) -> tuple[object, ...] | None:
        facts: tuple[object, ...] = ()
        try:
            for i, read in reads:
                facts += read(arrays[i])
        except AttributeError:
            return None
        return (*facts, os.environ.get(ENV_VAR)) if only_numpy else facts

    return read_each


def call_signature(
    arrays: tuple[object, ...], settings: tuple[object, ...]
) -> tuple[object, ...] | None:
    """Everything that decides which backend runs a call on ``arrays`` with ``settings``, and
    how its inputs convert: its route and facts; None where either is."""
    route = call_route(settings, *arrays)
    facts = None if route is None else call_facts(arrays)
    return None if facts is None else (route, facts)
