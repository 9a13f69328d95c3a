"""Third-party backends: registered through entry points, and never able to break polyconv."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import polyconv
from polyconv.backends import ENTRY_POINT_GROUP, Backend, BackendWarning
from polyconv.backends.numpy_backend import NumpyBackend

registry = sys.modules["polyconv.backends"]  # polyconv.backends (the attribute) is available()
Register = Callable[[str, object], None]


class FakeBackend(NumpyBackend):
    """A plug-in that computes with NumPy but owns no arrays: selected only by name."""

    name = "fake"

    def owns(self, obj: object) -> bool:
        return False


class NotABackend:
    framework = "numpy"


class FailsToStart(NumpyBackend):
    name = "fails_to_start"

    def __init__(self) -> None:
        raise OSError("no device found")


class FailsToInspect(NumpyBackend):
    name = "fails_to_inspect"
    framework = "numpy"

    def owns(self, obj: object) -> bool:
        raise AttributeError("owns is broken")


def test_registered_plugin_is_available_and_computes(plugin_entry_points: Register) -> None:
    plugin_entry_points("fake", FakeBackend)
    assert "fake" in polyconv.backends()
    x, w = np.arange(12.0).reshape(1, 1, 12), np.ones((1, 1, 3))
    y = polyconv.correlate(x, w, backend="fake")
    np.testing.assert_allclose(y, polyconv.reference.correlate(x, w))


@pytest.mark.parametrize(
    "value",
    ["no_such_module_anywhere:Backend", "polyconv_test_plugins:Missing", NotABackend],
)
def test_plugin_that_fails_to_load_is_a_warning_naming_it(
    plugin_entry_points: Register, value: object
) -> None:
    plugin_entry_points("broken", value)
    target = value if isinstance(value, str) else f"polyconv_test_plugins:{value.__name__}"
    with pytest.warns(
        BackendWarning, match=re.escape(f"polyconv backend 'broken' ({target}) failed to load")
    ):
        names = polyconv.backends()
    assert "broken" not in names and "numpy" in names


def test_plugin_cannot_take_a_registered_name(plugin_entry_points: Register) -> None:
    plugin_entry_points("numpy", FakeBackend)
    with pytest.warns(BackendWarning, match=r"'numpy' .* is ignored"):
        target = registry.registered()["numpy"]
    assert target == "polyconv.backends.numpy_backend:NumpyBackend"


def test_plugin_that_fails_to_start_is_an_error_naming_it(plugin_entry_points: Register) -> None:
    plugin_entry_points("fails_to_start", FailsToStart)
    x, w = np.ones((1, 1, 4)), np.ones((1, 1, 2))
    with (
        pytest.raises(RuntimeError, match=r"'fails_to_start' .* failed to start: OSError"),
        pytest.warns(BackendWarning, match="failed to start: OSError.*; it is skipped"),
    ):
        polyconv.correlate(x, w, backend="fails_to_start")


def test_plugin_failing_on_arrays_does_not_break_dispatch(plugin_entry_points: Register) -> None:
    plugin_entry_points("fails_to_inspect", FailsToInspect)
    x, w = [[1.0, 2.0, 3.0]], np.ones((1, 1, 2))
    with pytest.warns(BackendWarning, match="'fails_to_inspect' .* failed to inspect a list"):
        y = polyconv.correlate(x, w)
    np.testing.assert_allclose(y, [[3.0, 5.0]])


def test_import_polyconv_survives_a_broken_installed_plugin(tmp_path: Path) -> None:
    """A real installed distribution (a .dist-info on sys.path) whose backend cannot import."""
    dist_info = tmp_path / "broken_polyconv_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-polyconv-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nbroken = broken_polyconv_plugin:Backend\n"
    )
    (tmp_path / "broken_polyconv_plugin.py").write_text("raise ImportError('needs libfoo')\n")
    script = textwrap.dedent(
        """
        import numpy as np
        import polyconv
        print(polyconv.backends())
        print(polyconv.correlate(np.ones((1, 1, 3)), np.ones((1, 1, 2))).tolist())
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", script],
        capture_output=True,
        text=True,
        env={**_clean_environ(), "PYTHONPATH": str(tmp_path)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "[[[2.0, 2.0]]]" in done.stdout
    assert "'broken'" not in done.stdout.splitlines()[0]
    assert (
        "polyconv backend 'broken' (broken_polyconv_plugin:Backend) failed to load" in done.stderr
    )
    assert "needs libfoo" in done.stderr


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "POLYCONV_BACKEND")}


def test_backend_authors_find_their_tools_in_polyconv_backends() -> None:
    assert registry.Backend is Backend
    assert registry.CorrSpec is polyconv.CorrSpec
    assert list(registry.pad_indices(3, 2, 0, "symmetric")) == [1, 0, 0, 1, 2]
