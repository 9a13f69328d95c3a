"""The call cache: what a repeated call of a public operation needs, kept by what decides it.

Every public operation (``correlate``, ``convolve``, ``correlate_vjp``, and those to come) runs
through :func:`call`. A call's key holds everything that decides how it runs: the operation,
the backend selected by ``use_backend``, its settings (every argument but the arrays), and its
arrays' types, dtypes, shapes and devices (with NumPy arrays alone, also ``$POLYCONV_BACKEND``).
A call whose arrays needed no conversion keeps, under that key, the backend's computation bound
to its spec and method; a repeated call then costs the key, one dictionary lookup and the
computation. The cache is bounded (the oldest entry goes first), cleared by
:func:`clear_caches`, and cleared whenever the backend registry changes.
"""

from __future__ import annotations

import contextlib
import operator
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backends as _registry
from .._spec.spec import PLAIN_SCALARS, CorrSpec, clear_spec_cache, is_plain
from .._spec.transpose import TransposeSpec, clear_transpose_spec_cache
from ..backends import Array, Backend, Method
from .select import ENV_VAR, as_input, convert_inputs, resolve_method, select_backend, selected

#: A computation of batched backend arrays (the operation's arrays, in order).
Run = Callable[..., Any]


def _drop_batch_axis(a: Array) -> Array:
    return a[0, ...]  # Array API: index every axis


@dataclass(frozen=True)
class Operation:
    """One public operation, as the call cache runs it.

    ``arrays`` names its array arguments in order (``optional`` those that may be None);
    ``spec`` reduces their shapes and the call's options to a :class:`CorrSpec` (raising a
    ``ValueError`` that names a bad argument); ``check`` validates what the spec does not
    (``grad_y``'s shape); ``bind`` gives the backend's computation of batched arrays for one
    spec and method; ``batched`` names the arrays that gain a batch axis when the problem is
    unbatched, and ``unbatch`` removes it from the result.
    """

    name: str
    arrays: tuple[str, ...]
    optional: frozenset[str]
    spec: Callable[[dict[str, tuple[int, ...]], tuple[Any, ...], str], CorrSpec | TransposeSpec]
    bind: Callable[[Backend, Any, Method], Run]
    batched: frozenset[str] = frozenset({"x"})
    unbatch: Callable[[Any], Any] = _drop_batch_axis
    check: Callable[[Any, dict[str, tuple[int, ...]]], None] | None = None


class CallCache:
    """A bounded map from call keys to bound computations, cleared when the registry changes."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._runs: dict[tuple[object, ...], Run] = {}
        self._writing = threading.Lock()
        self._registry_state = _registry.state()

    def get(self, key: tuple[object, ...]) -> Run | None:
        state = _registry.state()
        if state != self._registry_state:  # a backend (un)registered or found broken
            self._registry_state = state
            self.clear()
            return None
        try:
            return self._runs.get(key)
        except TypeError:  # an unhashable shape or device of some array type: never kept
            return None

    def put(self, key: tuple[object, ...], run: Run) -> None:
        # A lock for writers (first calls only): evicting iterates over the entries, which
        # another thread's insertion would break; readers need none (a dict lookup is atomic).
        with self._writing:
            if len(self._runs) >= self.maxsize:
                self._runs.pop(next(iter(self._runs)), None)  # the oldest entry
            with contextlib.suppress(TypeError):  # see get
                self._runs[key] = run

    def clear(self) -> None:
        with self._writing:
            self._runs.clear()

    def __len__(self) -> int:
        return len(self._runs)


CALLS = CallCache(maxsize=1024)


def clear_caches() -> None:
    """Forget every cached call and normalised spec (memory is released; later calls are
    validated afresh)."""
    CALLS.clear()
    clear_spec_cache()
    clear_transpose_spec_cache()
    _READERS.clear()


def call(operation: Operation, arrays: tuple[object, ...], settings: tuple[object, ...]) -> Any:
    """Run ``operation`` on ``arrays`` with ``settings`` = ``(backend, method, *options)``."""
    key = call_key(operation.name, arrays, settings)
    run = None if key is None else CALLS.get(key)
    if run is not None:
        return run(*arrays)
    return _first_call(operation, arrays, settings, key)


def _first_call(
    operation: Operation,
    arrays: tuple[object, ...],
    settings: tuple[Any, ...],
    key: tuple[object, ...] | None,
) -> Any:
    """Inspect, validate, choose the backend and method, convert, bind and run; keep the bound
    computation under ``key`` when no input needed converting."""
    backend_name, method, *options = settings
    named = dict(zip(operation.arrays, arrays, strict=True))
    inputs = [
        as_input(name, obj)
        for name, obj in named.items()
        if obj is not None or name not in operation.optional
    ]
    chosen = select_backend(backend_name, inputs)
    shapes = {i.name: i.shape for i in inputs}
    spec = operation.spec(shapes, tuple(options), method)
    if operation.check is not None:
        operation.check(spec, shapes)
    devices = (chosen.device(i.array) for i in inputs if i.owner is chosen)
    device = next((d for d in devices if d is not None), None)
    run = bind(operation, chosen, spec, resolve_method(chosen, spec, method, device))
    converted, _ = convert_inputs(chosen, inputs)
    native = dict.fromkeys(operation.arrays)
    native.update(zip(shapes, converted, strict=True))
    if key is not None and all(native[name] is named[name] for name in named):
        CALLS.put(key, run)
    return run(*native.values())


def bind(
    operation: Operation, backend: Backend, spec: CorrSpec | TransposeSpec, method: Method
) -> Run:
    """``operation``'s computation on ``backend`` for ``spec`` and ``method``, as a function of
    the arrays as the user passed them (unbatched ones included)."""
    run = operation.bind(backend, spec, method)
    if spec.batched:
        return run
    lifted = [name in operation.batched for name in operation.arrays]
    unbatch = operation.unbatch

    def unbatched(*arrays: Array) -> Any:
        batched = [
            a[None, ...] if lift and a is not None else a
            for a, lift in zip(arrays, lifted, strict=True)
        ]
        return unbatch(run(*batched))

    return unbatched


# --- the key ------------------------------------------------------------------------------


def call_key(
    operation: str, arrays: tuple[object, ...], settings: tuple[object, ...]
) -> tuple[object, ...] | None:
    """Everything that decides how a call runs (see the module docstring); None where some
    setting is not plain (a bool or float equals an int as a key, but not as an argument:
    validation must see it) or some input is not an array with a dtype, shape and device
    (lists, scalars, JAX tracers). Built on every call, so written for speed."""
    for setting in settings:
        if type(setting) not in PLAIN_SCALARS and not is_plain(setting):  # inlined: speed
            return None
    types = tuple(map(type, arrays))
    read = _READERS.get(types)
    if read is None:
        if len(_READERS) >= _READERS_MAX:
            _READERS.clear()
        read = _READERS[types] = _facts_reader(types)
    facts = read(*arrays)
    if facts is None:
        return None
    return (operation, selected(), settings, types, facts)


# A reader of the arrays' facts per tuple of argument types: few distinct tuples occur.
_READERS: dict[tuple[type, ...], Callable[..., tuple[object, ...] | None]] = {}
_READERS_MAX = 256


def _facts_of(cls: type) -> tuple[Callable[[object], tuple[object, ...]], bool]:
    """How an array of type ``cls`` gives its dtype, shape and placement (in one call), and
    whether the type is NumPy's."""
    # A JAX array derives its ``device`` from its ``sharding`` (slowly, in Python), and the
    # sharding says as much, but not whether the array is committed to it (an uncommitted one
    # follows its co-inputs); other frameworks' arrays have a ``device``.
    placement = ("sharding", "committed") if hasattr(cls, "sharding") else ("device",)
    # A torch tensor's layout (strided or sparse) decides whether it can be computed on.
    layout = ("layout",) if hasattr(cls, "layout") else ()
    return operator.attrgetter("dtype", "shape", *placement, *layout), issubclass(
        cls, (np.ndarray, np.generic)
    )


def _facts_reader(types: Sequence[type]) -> Callable[..., tuple[object, ...] | None]:
    """The function of the arguments that reads their dtypes, shapes and placements, for
    arguments of these ``types`` (None arguments skipped); None when one has none of these."""
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
