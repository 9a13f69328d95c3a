"""Shared test setup: Hypothesis profiles, JAX float64, and the backend fixtures.

- Hypothesis profile: ``$HYPOTHESIS_PROFILE`` picks ``ci`` (the default: 30 derandomized
  examples per test, no deadline) or ``long`` (1000 random examples); see
  :func:`polyconv.testing.load_profile`.
- JAX: when JAX is installed, ``jax_enable_x64`` is switched on for the whole session, before any
  test runs, so that the JAX backend can be compared in float64 like the others (JAX computes in
  float32 otherwise, and polyconv refuses float64 input rather than downcast it). A test that
  needs x64 off must switch it off and back itself.
- ``backend`` runs a test once per registered backend (the built-ins and any plug-in); one whose
  module or framework is missing is skipped, with the reason. ``backend_pair`` runs it once per
  pair of registered backends.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable, Iterator

import pytest

from polyconv import testing
from polyconv.backends import Backend, get, registered

BACKEND_NAMES = sorted(registered())


def pytest_configure(config: pytest.Config) -> None:
    testing.load_profile()
    if importlib.util.find_spec("jax") is not None:
        import jax

        jax.config.update("jax_enable_x64", True)


def require_backend(name: str) -> Backend:
    """The backend ``name``, or skip the test with the reason it cannot run here."""
    reason = testing.unavailable_reason(name)
    if reason is not None:
        pytest.skip(reason)
    return get(name)


def require_dtype(name: str, dtype: str) -> None:
    """Skip the test when backend ``name`` cannot compute in ``dtype`` (probed once)."""
    reason = testing.unsupported_dtype_reason(name, dtype)
    if reason is not None:
        pytest.skip(reason)


# Session scope: Hypothesis refuses function-scoped fixtures (they are not reset per example).
@pytest.fixture(scope="session", params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest) -> Backend:
    return require_backend(request.param)


@pytest.fixture(
    scope="session",
    params=list(itertools.combinations(BACKEND_NAMES, 2)),
    ids=lambda pair: "-".join(pair),
)
def backend_pair(
    request: pytest.FixtureRequest,
) -> tuple[Backend, Backend]:
    first, second = request.param
    return require_backend(first), require_backend(second)


@pytest.fixture
def plugin_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, object], None]]:
    """``register(name, target)`` as if an installed package declared the entry point
    ``name = target`` in the group ``polyconv.backends``; ``target`` is a ``"module:attr"``
    string or a class (made importable for the test). The registry is rebuilt before and after."""
    import importlib.metadata
    import sys
    import types

    from polyconv.backends import ENTRY_POINT_GROUP

    registry = sys.modules["polyconv.backends"]
    module = types.ModuleType("polyconv_test_plugins")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    entries: list[importlib.metadata.EntryPoint] = []

    def register(name: str, target: object) -> None:
        if isinstance(target, type):
            setattr(module, target.__name__, target)
            target = f"{module.__name__}:{target.__name__}"
        entries.append(importlib.metadata.EntryPoint(name, str(target), ENTRY_POINT_GROUP))

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return list(entries) if group == ENTRY_POINT_GROUP else []

    def rebuild() -> None:
        for cached in (registry.registered, registry._backend_class, registry.get):
            cached.cache_clear()
        registry._broken.clear()

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    rebuild()
    yield register
    monkeypatch.undo()
    rebuild()
