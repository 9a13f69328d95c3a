"""The Keras adapter on Keras' JAX and torch backends: tests/keras_checks.py in a fresh
interpreter per backend, since ``$KERAS_BACKEND`` is read once, when keras is first imported
(this session must not import keras with a backend chosen for it)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("keras_backend", ["jax", "torch"])
def test_keras_adapter_properties_hold_on_each_keras_backend(keras_backend: str) -> None:
    for needed in ("keras", keras_backend):
        if importlib.util.find_spec(needed) is None:
            pytest.skip(f"{needed} is not installed")
    env = {**os.environ, "KERAS_BACKEND": keras_backend}
    root = str(TESTS.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-W", "error", str(TESTS / "keras_checks.py")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.count("ok ") == 9, completed.stdout
