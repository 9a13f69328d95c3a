"""Shared test setup: Hypothesis profiles, JAX float64, and the backend fixtures.

- Hypothesis profile: ``$HYPOTHESIS_PROFILE`` picks ``ci`` (the default: 30 derandomized
  examples per test, no deadline) or ``long`` (1000 random examples); see
  :func:`polyconv.testing.load_profile`.
- JAX runs at its defaults, 64-bit mode off, as users run it (JAX then computes in float32, and
  polyconv refuses float64 input rather than downcast it; its FFT transforms in float32). Float64
  on JAX is tested with 64-bit mode on, switched on locally (``jax.enable_x64``) and only there:
  around a test whose ``dtype`` parameter is float64 (setup included, so that the dtype probe
  sees it), around a test marked ``jax_x64``, and around each float64 computation of the helpers
  below (:func:`float64_enabled`). So a float32 problem on JAX runs with 64-bit mode off, and the
  same properties hold at both settings.
- ``backend`` runs a test once per registered backend (the built-ins and any plug-in); one whose
  module or framework is missing is skipped, with the reason. torch and JAX run a second time
  on CUDA (``torch-cuda``, ``jax-cuda``: their arrays made on the first CUDA device), skipped
  with the reason where no CUDA device is found. ``backend_pair`` runs it once per
  pair of registered backends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import math
from collections.abc import Callable, Generator, Iterator

import numpy as np
import pytest
from hypothesis import strategies as st

import polyconv as pc
from polyconv import reference, testing
from polyconv.backends import Array, Backend, get, registered

BACKEND_NAMES = sorted(registered())


def pytest_configure(config: pytest.Config) -> None:
    testing.load_profile()
    config.addinivalue_line(
        "markers", "jax_x64: run the test with JAX's 64-bit mode on (the suite runs with it off)"
    )


@contextlib.contextmanager
def jax_x64() -> Iterator[None]:
    """JAX's 64-bit mode on inside the block (when JAX is installed)."""
    if importlib.util.find_spec("jax") is None:
        yield
        return
    import jax

    with jax.enable_x64(True):
        yield


@contextlib.contextmanager
def float64_enabled(backend: Backend | str, dtype: str) -> Iterator[None]:
    """JAX's 64-bit mode on for a float64 computation on the JAX backend; nothing otherwise."""
    name = backend if isinstance(backend, str) else backend.name
    with jax_x64() if name == "jax" and dtype == "float64" else contextlib.nullcontext():
        yield


def _wants_x64(item: pytest.Item) -> bool:
    params = getattr(item, "callspec", None)
    float64_param = params is not None and "float64" in (
        params.params.get("dtype"),
        params.params.get("backends_in_dtype"),
    )
    return float64_param or item.get_closest_marker("jax_x64") is not None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    with jax_x64() if _wants_x64(item) else contextlib.nullcontext():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    with jax_x64() if _wants_x64(item) else contextlib.nullcontext():
        return (yield)


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


# Every backend on the CPU, and those that run on CUDA on it too (skipped where none is found).
CUDA_BACKENDS = ("torch", "jax")
BACKEND_DEVICES = [(name, "cpu") for name in BACKEND_NAMES] + [
    (name, "cuda") for name in BACKEND_NAMES if name in CUDA_BACKENDS
]


def _cuda_anchor(name: str) -> Array | None:
    """A one-element array of backend ``name`` on its first CUDA device, or None without one."""
    if name == "torch":
        import torch

        return torch.zeros(1, device="cuda") if torch.cuda.is_available() else None
    import jax

    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        return None
    return jax.device_put(np.zeros(1, np.float32), gpus[0]) if gpus else None


def on_cuda(backend: Backend) -> Backend:
    """``backend`` whose ``convert`` puts new arrays on the first CUDA device (the tests make
    their arrays with it); skips the test where no CUDA device is found."""
    anchor = _cuda_anchor(backend.name)
    if anchor is None:
        pytest.skip(f"no CUDA device found for {backend.name}")

    class OnCuda(type(backend)):  # type: ignore[misc,valid-type]
        def convert(self, a: Array, dtype: str, like: Array | None) -> Array:
            return super().convert(a, dtype, anchor if like is None else like)

    return OnCuda()


# Session scope: Hypothesis refuses function-scoped fixtures (they are not reset per example).
@pytest.fixture(
    scope="session",
    params=BACKEND_DEVICES,
    ids=lambda p: p[0] if p[1] == "cpu" else "-".join(p),
)
def backend(request: pytest.FixtureRequest) -> Backend:
    name, device = request.param
    found = require_backend(name)
    return found if device == "cpu" else on_cuda(found)


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
        for cached in (registry.registered, registry._backend_class, registry._get):
            cached.cache_clear()
        registry._broken.clear()
        registry._load_errors.clear()

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    rebuild()
    yield register
    monkeypatch.undo()
    rebuild()


# --- running a drawn problem on a backend ---------------------------------------------------

FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
# Two computations that are each within the bound of the exact result differ by at most twice it.
PAIR_C = 2 * testing.DEFAULT_C


@pytest.fixture(scope="session", params=FLOAT_DTYPES)
def dtype(request: pytest.FixtureRequest, backend: Backend) -> str:
    """Each float dtype the backend supports (float16 is probed; skipped with the reason)."""
    require_dtype(backend.name, request.param)
    return str(request.param)


@pytest.fixture(scope="session")
def numpy_backend() -> Backend:
    return require_backend("numpy")


@pytest.fixture(scope="session")
def torch_backend() -> Backend:
    return require_backend("torch")


@pytest.fixture(scope="session")
def jax_backend() -> Backend:
    return require_backend("jax")


def native(backend: Backend, a: np.ndarray | None, dtype: str) -> Array | None:
    """``a`` as the backend's own array of ``dtype`` (None stays None)."""
    if a is None:
        return None
    with float64_enabled(backend, dtype):
        return backend.convert(a.astype(dtype), dtype, None)


def problem_arrays(problem: testing.Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    return problem.x, problem.w, problem.bias


def run_forward(backend: Backend, problem: testing.Problem, method: str = "auto") -> Array:
    arrays = [native(backend, a, problem.dtype) for a in problem_arrays(problem)]
    with float64_enabled(backend, problem.dtype):
        return pc.correlate(*arrays, method=method, backend=backend.name, **problem.spec_kwargs)


def run_vjp(
    backend: Backend, problem: testing.Problem, method: str = "auto"
) -> tuple[Array, Array, Array | None]:
    arrays = [native(backend, a, problem.dtype) for a in (*problem_arrays(problem), problem.grad_y)]
    with float64_enabled(backend, problem.dtype):
        return pc.correlate_vjp(*arrays, method=method, backend=backend.name, **problem.spec_kwargs)


# --- non-finite input: NaN and inf reach exactly what reads them -----------------------------

# NumPy warns about inf - inf and inf * 0 (also in worker threads, where np.errstate does not
# reach); those warnings are not what the non-finite properties are about.
ignore_float_warnings = pytest.mark.filterwarnings(
    "ignore:invalid value encountered:RuntimeWarning",
    "ignore:overflow encountered:RuntimeWarning",
)


def with_nonfinite(
    problem: testing.Problem, data: st.DataObject
) -> tuple[np.ndarray, np.ndarray, float]:
    """``x`` with one element made NaN or +-inf, and the indicator of that element."""
    index = data.draw(st.integers(0, problem.x.size - 1), label="index")
    value = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]), label="value")
    x = problem.x.copy()
    x.flat[index] = value
    indicator = np.zeros_like(problem.x)
    indicator.flat[index] = 1.0
    return x, indicator, value


def check_nonfinite_outputs(
    backend: Backend, problem: testing.Problem, data: st.DataObject, method: str
) -> None:
    """The outputs that read the non-finite input element are non-finite (NaN for NaN), and
    no other output is."""
    x, indicator, value = with_nonfinite(problem, data)
    reads = reference.correlate(indicator, np.ones_like(problem.w), **problem.spec_kwargs) > 0
    arrays = [native(backend, a, problem.dtype) for a in (x, problem.w, problem.bias)]
    with float64_enabled(backend, problem.dtype):
        y = pc.correlate(*arrays, method=method, backend=backend.name, **problem.spec_kwargs)
    y_np = testing.to_numpy(y)
    np.testing.assert_array_equal(~np.isfinite(y_np), reads)
    if math.isnan(value):
        np.testing.assert_array_equal(np.isnan(y_np), reads)


def check_nonfinite_gradients(
    backend: Backend, problem: testing.Problem, data: st.DataObject, method: str
) -> None:
    """A non-finite x poisons the kernel gradients whose taps read it, and nothing else: grad_x
    and grad_bias do not depend on x."""
    x, indicator, _ = with_nonfinite(problem, data)
    ones_grad_y = np.ones_like(problem.grad_y)
    _, reads, _ = reference.correlate_vjp(
        indicator, np.ones_like(problem.w), None, ones_grad_y, **problem.spec_kwargs
    )
    arrays = [
        native(backend, a, problem.dtype) for a in (x, problem.w, problem.bias, problem.grad_y)
    ]
    with float64_enabled(backend, problem.dtype):
        grad_x, grad_w, grad_bias = pc.correlate_vjp(
            *arrays, method=method, backend=backend.name, **problem.spec_kwargs
        )
    assert np.isfinite(testing.to_numpy(grad_x)).all()
    np.testing.assert_array_equal(~np.isfinite(testing.to_numpy(grad_w)), reads > 0)
    if grad_bias is not None:
        assert np.isfinite(testing.to_numpy(grad_bias)).all()
