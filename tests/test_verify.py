"""``pc.verify`` and ``polyconv verify``: a backend that disagrees with the reference is caught."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

import numpy as np
import pytest

import polyconv
from polyconv.backends.numpy_backend import NumpyBackend
from polyconv.cli import main
from polyconv.verify import VerifyReport, random_search, verify

Register = Callable[[str, object], None]
ISSUE_EXAMPLE = {"stride": 2, "padding": "same"}


class OffByOneTap(NumpyBackend):
    """Wrong exactly when a padding mode other than zeros is used: it reads one element too far."""

    name = "off_by_one"

    def owns(self, obj: object) -> bool:
        return False

    def correlate(self, x, w, bias, spec, *, method="direct"):  # type: ignore[no-untyped-def]
        y = super().correlate(x, w, bias, spec, method=method)
        return y + 1.0 if spec.padding_mode == "reflect" else y


class Raises(NumpyBackend):
    name = "raises"

    def owns(self, obj: object) -> bool:
        return False

    def correlate_vjp(self, x, w, bias, grad_y, spec, *, method="direct"):  # type: ignore[no-untyped-def]
        raise MemoryError("out of device memory")


def _numpy_report(**kwargs: object) -> VerifyReport:
    return verify((2, 3, 12, 12), (4, 3, 3, 3), backends=["numpy"], timing=False, **kwargs)  # type: ignore[arg-type]


def test_numpy_agrees_with_the_reference_forward_and_backward() -> None:
    report = _numpy_report(**ISSUE_EXAMPLE)
    assert report.ok, str(report)
    assert [check.result for check in report.results[0].checks] == [
        "y",
        "grad_x",
        "grad_w",
        "grad_bias",
    ]


def test_every_installed_backend_agrees_with_the_reference() -> None:
    report = verify((2, 4, 9, 8), (6, 2, 3, 2), groups=2, padding="same", timing=False)
    assert report.ok, str(report)
    assert {r.backend for r in report.results} == set(polyconv.backends())


def test_report_shows_each_backend_result_error_bound_and_time() -> None:
    report = verify((1, 2, 8), (3, 2, 3), backends=["numpy"], padding=1)
    text = str(report)
    for column in (
        "backend",
        "dtype",
        "device",
        "max abs err",
        "max rel err",
        "bound",
        "time/call",
    ):
        assert column in text
    assert report.results[0].forward_seconds is not None and report.results[0].forward_seconds > 0
    assert text.splitlines()[-1] == "ok: 1 backend(s) agree with the reference"


def test_wrong_backend_fails_the_report(plugin_entry_points: Register) -> None:
    plugin_entry_points("off_by_one", OffByOneTap)
    report = verify(
        (1, 2, 6, 6),
        (2, 2, 3, 3),
        backends=["numpy", "off_by_one"],
        padding=1,
        padding_mode="reflect",
    )
    assert not report.ok
    assert report.failed == ["off_by_one"]
    assert "FAIL: off_by_one disagree(s)" in str(report)


def test_backend_that_raises_fails_the_report_with_its_error(plugin_entry_points: Register) -> None:
    plugin_entry_points("raises", Raises)
    report = verify((1, 1, 5), (1, 1, 2), backends=["raises"], timing=False)
    assert not report.ok
    assert "raises: raised MemoryError: out of device memory" in str(report)


def test_arrays_are_checked_in_their_own_dtype() -> None:
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 5, 7)), rng.standard_normal((3, 5, 2))
    report = verify(x, w, None, backends=["numpy"], timing=False, dilation=3)
    assert report.dtype == "float64" and report.ok, str(report)


def test_float16_is_checked_against_the_float16_bound() -> None:
    report = _numpy_report(dtype="float16", padding="full", padding_mode="symmetric")
    assert report.ok, str(report)
    assert report.results[0].checks[0].bound > 1e-4  # eps(float16) ~ 1e-3, far above float32's


def test_unknown_backend_is_a_value_error_naming_the_choices() -> None:
    with pytest.raises(ValueError, match="available backends"):
        verify((1, 1, 5), (1, 1, 2), backends=["nonesuch"])


def test_cli_exits_zero_and_prints_the_table_when_backends_agree(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = "verify --input 2,3,12,12 --kernel 4,3,3,3 --stride 2 --padding same --backends numpy"
    assert main(argv.split()) == 0
    out = capsys.readouterr().out
    assert "stride=2, padding='same'" in out and "numpy" in out


def test_cli_exits_one_when_a_backend_disagrees(
    plugin_entry_points: Register, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin_entry_points("off_by_one", OffByOneTap)
    argv = "verify --input 1,1,6 --kernel 1,1,3 --padding 2 --padding-mode reflect --no-timing"
    assert main([*argv.split(), "--backends", "numpy,off_by_one"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        "verify --kernel 4,3,3,3",
        "verify --input 1,3,8,8 --kernel 4,3,3,3 --backends nonesuch",
        "verify --input 1,3,8,8 --kernel 4,2,3,3",
    ],
)
def test_cli_usage_errors_exit_two(argv: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv.split()) == 2
    assert capsys.readouterr().err.startswith("polyconv verify: ")


def test_report_command_reruns_the_same_problem(capsys: pytest.CaptureFixture[str]) -> None:
    report = _numpy_report(
        stride=(1, 2), padding=((0, 2), (1, 1)), dilation=2, padding_mode="circular", bias=False
    )
    assert main(shlex.split(report.command())[1:]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(report).splitlines()[0]


def test_random_search_reports_the_worst_case_with_a_command() -> None:
    outcome = random_search(5, backends=["numpy"], seed=3)
    assert outcome.report.ok
    assert outcome.report.worst_ratio <= 1.0
    assert "reproduce: polyconv verify --input" in outcome.summary()


def test_random_search_shrinks_a_disagreement_to_its_simplest_case(
    plugin_entry_points: Register,
) -> None:
    plugin_entry_points("off_by_one", OffByOneTap)
    outcome = random_search(40, backends=["off_by_one"])
    problem = outcome.problem
    assert not outcome.report.ok and outcome.reproduced
    assert problem.spec_kwargs["padding_mode"] == "reflect"
    assert problem.w.ndim == 3 and problem.w.shape[0] == 1  # 1-D, one output channel
    assert "reproduce: polyconv verify" in outcome.summary()


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_each_backend_is_held_to_the_bound_of_the_method_it_ran(method: str) -> None:
    report = verify(
        (1, 1, 40, 40), (1, 1, 9, 9), dtype="float64", backends=["numpy"], method=method,
        timing=False,
    )  # fmt: skip
    assert report.ok, str(report)
    assert [r.method for r in report.results] == [method]
    assert re.search(rf"^numpy\s+float64\s+cpu\s+{method}\s+y\s", str(report), re.MULTILINE)
    assert report.method == method
    assert ("--method" in report.command()) == (method != "auto")
