"""The conformance kit, run as a backend author runs it: in its own pytest process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyconv.conformance import BACKEND_VARIABLE, MAX_EXAMPLES_VARIABLE

REPOSITORY = Path(__file__).resolve().parents[1]
PLUGIN = REPOSITORY / "tests" / "plugins" / "polyconv_array_api"


def _run_kit(backend: str | None, max_examples: int = 10) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (BACKEND_VARIABLE, "POLYCONV_BACKEND")}
    env[MAX_EXAMPLES_VARIABLE] = str(max_examples)
    if backend is not None:
        env[BACKEND_VARIABLE] = backend
    command = [sys.executable, "-m", "pytest", "--pyargs", "polyconv.conformance", "-q"]
    return subprocess.run(
        [*command, "-p", "no:cacheprovider"],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_array_api_plugin_passes_the_conformance_kit() -> None:
    if importlib.util.find_spec("polyconv_array_api") is None:
        pytest.skip(
            f"the array_api plug-in is not installed: pip install -e {PLUGIN.relative_to(REPOSITORY)}"
        )
    pytest.importorskip("array_api_strict")
    done = _run_kit("array_api")
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary


def test_kit_without_a_backend_name_is_a_usage_error() -> None:
    done = _run_kit(None, max_examples=1)
    assert done.returncode != 0
    assert f"set {BACKEND_VARIABLE}" in done.stdout + done.stderr
