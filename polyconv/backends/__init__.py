"""Backend registry: built-in and third-party backends, found by name or by array type.

Backends register under the entry-point group ``polyconv.backends`` (the three built-ins too, in
polyconv's own ``pyproject.toml``); each entry point names a :class:`Backend` subclass. Entry
points are read once, on first use, and a backend is loaded only when needed. A backend that
fails to load is reported with a :class:`BackendWarning` and left out; it never breaks
``import polyconv``.

A backend author needs :class:`Backend` (the interface), :class:`CorrSpec` (the problem it is
given) and :func:`pad_indices` (every padding mode as a gather), all importable from here; see
``docs/backends.md``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import itertools
import sys
import warnings

from .._spec.padding import pad_indices
from .._spec.spec import CorrSpec
from ._interface import Array, Backend, Method

__all__ = [
    "Array",
    "Backend",
    "BackendWarning",
    "CorrSpec",
    "Method",
    "available",
    "backend_of",
    "get",
    "pad_indices",
    "registered",
]

ENTRY_POINT_GROUP = "polyconv.backends"

# The built-ins, also declared as entry points in pyproject.toml; listed here too so that a
# checkout used without installation (PYTHONPATH=.) still has them.
_BUILTINS = {
    "numpy": "polyconv.backends.numpy_backend:NumpyBackend",
    "jax": "polyconv.backends.jax_backend:JaxBackend",
    "torch": "polyconv.backends.torch_backend:TorchBackend",
}


# Counts the registry's rebuilds (tests rebuild it with other plug-ins): anything cached on the
# registry's decisions (polyconv._core.api's repeat-call cache) keys on it.
_builds = itertools.count()
build = next(_builds)


def state() -> int:
    """Changes whenever the registry is rebuilt or a backend is found broken (an int: it keys
    every repeated call, which should allocate little)."""
    registered()
    return build * 1024 + len(_broken)  # fewer than 1024 backends are ever registered


@functools.cache
def registered() -> dict[str, str]:
    """Every registered backend name, with the ``module:Class`` it loads from."""
    global build
    build = next(_builds)
    found = dict(_BUILTINS)
    try:
        entries = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as error:  # unreadable installed metadata must not break polyconv
        _warn(f"polyconv could not read the {ENTRY_POINT_GROUP!r} entry points: {error!r}")
        return found
    for entry in entries:
        taken = found.setdefault(entry.name, entry.value)
        if taken != entry.value:
            dist = getattr(getattr(entry, "dist", None), "name", "an installed package")
            _warn(
                f"polyconv backend {entry.name!r} = {entry.value} (from {dist}) is ignored: "
                f"that name is already registered to {taken}"
            )
    return found


class BackendWarning(UserWarning):
    """A registered backend cannot be used: it failed to load or to start, or its name is taken.
    Silence one with ``warnings.filterwarnings("ignore", category=BackendWarning)``."""


def _warn(message: str) -> None:
    warnings.warn(message, BackendWarning, stacklevel=4)


def _warn_broken(name: str, error: BaseException) -> None:
    _warn(
        f"polyconv backend {name!r} ({registered()[name]}) failed to load and is skipped: {error!r}"
    )


def _load_class(name: str) -> type[Backend] | None:
    target = registered()[name]
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(f"{target} is not a polyconv.backends.Backend subclass")
        if not isinstance(getattr(cls, "framework", None), str):
            raise TypeError(f"{target} does not say which framework it serves (framework = '...')")
    except Exception as error:  # a broken plug-in must not break polyconv
        _warn_broken(name, error)
        return None
    return cls


@functools.cache
def _backend_class(name: str) -> type[Backend] | None:
    return _load_class(name)


def _framework_installed(name: str) -> bool:
    cls = _backend_class(name)
    if cls is None:
        return False
    if cls.framework in sys.modules:
        return True
    try:
        return importlib.util.find_spec(cls.framework) is not None
    except (ImportError, ValueError):  # a dotted name whose parent is missing, or a bad name
        return False


def available() -> list[str]:
    """Names of the backends usable here (their framework is installed); imports no framework."""
    return [name for name in registered() if _framework_installed(name)]


@functools.cache
def get(name: str) -> Backend:
    """The backend called ``name``; importing its framework if needed."""
    if not isinstance(name, str) or name not in registered() or not _framework_installed(name):
        raise ValueError(
            f"backend must be one of the available backends {available()}, got {name!r}"
            + (
                " (registered, but its framework is not installed)"
                if isinstance(name, str) and name in registered()
                else ""
            )
        )
    cls = _backend_class(name)
    assert cls is not None  # _framework_installed checked it loads
    try:
        return cls()
    except Exception as error:
        raise RuntimeError(
            f"polyconv backend {name!r} ({registered()[name]}) failed to start: {error!r}"
        ) from error


# Backends whose array check failed once: skipped by backend_of from then on.
_broken: set[str] = set()


def backend_of(obj: object) -> Backend | None:
    """The backend whose framework ``obj`` is an array of, considering only frameworks the user
    has already imported (so this never imports one). NumPy arrays and lists give ``None``.

    A backend that fails to start or to inspect ``obj`` is reported with a warning, once, and
    skipped, so that a broken plug-in cannot break calls on other frameworks' arrays."""
    for name in registered():
        if name == "numpy" or name in _broken:
            continue
        cls = _backend_class(name)
        if cls is not None and cls.framework in sys.modules:
            try:
                backend = get(name)
            except RuntimeError as error:  # its message names the backend and the cause
                _broken.add(name)
                _warn(f"{error}; it is skipped")
                continue
            try:
                owned = backend.owns(obj)
            except Exception as error:
                _broken.add(name)
                _warn(
                    f"polyconv backend {name!r} ({registered()[name]}) failed to inspect a "
                    f"{type(obj).__name__} and is skipped: {error!r}"
                )
                continue
            if owned:
                return backend
    return None
