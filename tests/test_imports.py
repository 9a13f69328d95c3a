"""Importing polyconv, and using it on NumPy arrays, imports no framework but NumPy.

Each check runs in a fresh interpreter (this test session has imported frameworks already), in
the style of einops' and array-api-compat's ``test_no_dependencies``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import polyconv as pc

# Heavy or optional modules a NumPy user must never pay for.
NOT_IMPORTED = ("torch", "jax", "jaxlib", "scipy", "hypothesis", "matplotlib")

# The built-in backends and the framework each needs.
BUILTIN_FRAMEWORKS = {"numpy": "numpy", "torch": "torch", "jax": "jax"}


def run_fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter; it prints one JSON object, returned here.

    The interpreter also reports which of :data:`NOT_IMPORTED` ended up in ``sys.modules``.
    """
    epilogue = (
        "\nimport json as _json, sys as _sys\n"
        f"result['imported'] = sorted(m for m in {NOT_IMPORTED!r} if m in _sys.modules)\n"
        "print(_json.dumps(result))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "POLYCONV_BACKEND"}
    completed = subprocess.run(
        [sys.executable, "-c", "result = {}\n" + code + epilogue],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_import_and_numpy_calls_import_no_other_framework() -> None:
    result = run_fresh(
        """
import numpy as np
import polyconv as pc

x = np.arange(2 * 3 * 6 * 6, dtype=np.float64).reshape(2, 3, 6, 6)
w = np.ones((4, 3, 3, 3))
b = np.zeros(4)
kwargs = dict(stride=2, padding="same", padding_mode="reflect")
y = pc.correlate(x, w, b, **kwargs)
pc.convolve(x, w, b, **kwargs)
grads = pc.correlate_vjp(x, w, b, np.ones_like(y), **kwargs)
lesson = pc.corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]])
result["shapes"] = [list(y.shape), [list(g.shape) for g in grads]]
result["output_shape"] = list(pc.output_shape(x.shape, w.shape, **kwargs))
result["lesson"] = lesson.tolist()
result["backends"] = pc.backends()
"""
    )
    assert result["imported"] == []
    # The calls really ran (a failed call would have ended the interpreter with an error).
    assert result["shapes"] == [[2, 4, 3, 3], [[2, 3, 6, 6], [4, 3, 3, 3], [4]]]
    assert result["output_shape"] == [2, 4, 3, 3]
    assert result["lesson"] == [[19.0, 25.0], [37.0, 43.0]]


def test_backends_lists_installed_frameworks_without_importing_them() -> None:
    result = run_fresh("import polyconv as pc\nresult['backends'] = pc.backends()\n")
    assert result["imported"] == []
    listed = result["backends"]
    assert isinstance(listed, list)
    for name, framework in BUILTIN_FRAMEWORKS.items():
        installed = importlib.util.find_spec(framework) is not None
        assert (name in listed) == installed, f"{name}: installed={installed}, listed {listed}"
    assert listed == pc.backends()  # the same answer with the frameworks imported


TOOL_MODULES = (
    "polyconv.cli",
    "polyconv.explain",
    "polyconv.layers",
    "polyconv.lesson",
    "polyconv.training",
    "polyconv.verify",
    "polyconv._matrix",
    "argparse",
)


def test_import_loads_no_tool_until_one_is_used() -> None:
    result = run_fresh(
        f"""
import sys
import polyconv as pc

result["after import"] = sorted(m for m in {TOOL_MODULES!r} if m in sys.modules)
layer = pc.Conv2D
result["after pc.Conv2D"] = sorted(m for m in {TOOL_MODULES!r} if m in sys.modules)
result["names"] = sorted(name for name in pc.__all__ if not hasattr(pc, name))
"""
    )
    assert result["after import"] == []
    assert "polyconv.layers" in result["after pc.Conv2D"]
    assert "argparse" not in result["after pc.Conv2D"]
    assert result["names"] == []  # every public name still resolves


def test_a_tool_module_imported_first_does_not_hide_its_function() -> None:
    result = run_fresh(
        """
from polyconv.explain import native_calls
from polyconv.verify import random_search
import polyconv as pc

result["types"] = [type(pc.explain).__name__, type(pc.verify).__name__]
"""
    )
    assert result["types"] == ["function", "function"]
