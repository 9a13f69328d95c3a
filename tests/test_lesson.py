"""`polyconv lesson`: the classic lesson on every installed backend, and its agreement table."""

from __future__ import annotations

import dataclasses
import io
import os
import re

import numpy as np
import pytest

from polyconv import cli, lesson
from polyconv.backends import available


def _lesson(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(["lesson", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_lesson_runs_every_installed_backend_and_they_agree(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = _lesson(capsys)
    assert status == 0
    names = available()
    assert f"on its own arrays: {', '.join(names)}." in out
    assert out.count("[ok]") == 3  # corr2d, edges, no edges on the transposed image
    assert "MISMATCH" not in out
    for step in (2, 4, 6, 8, 10):
        assert re.search(rf"^\s+{step}(\s+\d+\.\d{{4}}){{{len(names)}}}$", out, flags=re.MULTILINE)
    kernels = re.findall(r"^   (\w+)\s+\[\[([+-][\d.]+), ([+-][\d.]+)\]\]", out, flags=re.MULTILINE)
    assert [name for name, *_ in kernels] == names
    for _, first, second in kernels:
        assert abs(float(first) - 1) < 0.1 and abs(float(second) + 1) < 0.1
    if len(names) > 1:
        assert len(re.findall(r"\byes$", out, flags=re.MULTILINE)) == len(names) - 1


def test_lesson_on_one_backend_shows_the_d2l_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _lesson(capsys, "--backend", "numpy")
    assert status == 0
    assert re.search(r"^   19 25\n   37 43$", out, flags=re.MULTILINE)  # corr2d of the 3x3 example
    assert re.search(r"^    0  1  0  0  0 -1  0$", out, flags=re.MULTILINE)  # the two edges
    assert "4. Do the backends agree?" not in out


def test_unknown_backend_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _lesson(capsys, "--backend", "tensorflow")
    assert status == 2 and out == ""
    assert "--backend" in err and "tensorflow" in err


def test_plot_saves_a_png(capsys: pytest.CaptureFixture[str], tmp_path: os.PathLike[str]) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    path = os.path.join(tmp_path, "lesson.png")
    status, out, _ = _lesson(capsys, "--backend", "numpy", "--plot", path)
    assert status == 0 and f"saved to {path}" in out
    with open(path, "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_a_clear_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lesson, "matplotlib_missing", lambda: True)
    status, out, err = _lesson(capsys, "--plot", "x.png")
    assert status == 2 and out == ""
    assert "matplotlib" in err and "pip install" in err


def test_agreement_table_flags_a_backend_that_disagrees() -> None:
    run = lesson.run_backend("numpy", lr=3e-2, steps=4, seed=0)
    wrong = dataclasses.replace(run, history=run.history * (1 + 1e-3))
    out = io.StringIO()
    assert lesson.report({"numpy": run, "other": wrong}, lr=3e-2, steps=4, out=out) is False
    assert re.search(r"other\s+\S+\s+\S+\s+NO$", out.getvalue(), flags=re.MULTILINE)
    assert np.array_equal(wrong.kernel, run.kernel)
