"""Backend registry: built-in and third-party backends, found by name or by array type.

Backends register under the entry-point group ``polyconv.backends`` (the three built-ins too, in
polyconv's own ``pyproject.toml``); each entry point names a :class:`Backend` subclass. Entry
points are read once, on first use, and a backend is loaded only when needed. A backend that
fails to load is reported with a warning and left out; it never breaks ``import polyconv``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import sys
import warnings

from ._interface import Array, Backend

__all__ = ["Array", "Backend", "available", "backend_of", "get", "registered"]

ENTRY_POINT_GROUP = "polyconv.backends"

# The built-ins, also declared as entry points in pyproject.toml; listed here too so that a
# checkout used without installation (PYTHONPATH=.) still has them.
_BUILTINS = {
    "numpy": "polyconv.backends.numpy_backend:NumpyBackend",
    "jax": "polyconv.backends.jax_backend:JaxBackend",
    "torch": "polyconv.backends.torch_backend:TorchBackend",
}


@functools.cache
def registered() -> dict[str, str]:
    """Every registered backend name, with the ``module:Class`` it loads from."""
    found = dict(_BUILTINS)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def _load_class(name: str) -> type[Backend] | None:
    target = registered()[name]
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(f"{target} is not a polyconv.backends.Backend subclass")
    except Exception as error:  # a broken plug-in must not break polyconv
        warnings.warn(
            f"polyconv backend {name!r} ({target}) failed to load and is skipped: {error!r}",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return cls


@functools.cache
def _backend_class(name: str) -> type[Backend] | None:
    return _load_class(name)


def _framework_installed(name: str) -> bool:
    cls = _backend_class(name)
    if cls is None:
        return False
    return cls.framework in sys.modules or importlib.util.find_spec(cls.framework) is not None


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
                f" (registered, but its framework is not installed)"
                if isinstance(name, str) and name in registered()
                else ""
            )
        )
    cls = _backend_class(name)
    assert cls is not None  # _framework_installed checked it loads
    return cls()


def backend_of(obj: object) -> Backend | None:
    """The backend whose framework ``obj`` is an array of, considering only frameworks the user
    has already imported (so this never imports one). NumPy arrays and lists give ``None``."""
    for name in registered():
        if name == "numpy":
            continue
        cls = _backend_class(name)
        if cls is not None and cls.framework in sys.modules:
            backend = get(name)
            if backend.owns(obj):
                return backend
    return None
