"""``pc.verify`` / ``polyconv verify`` with ``--transpose``, ``--output-padding``,
``--data-format`` and ``--kernel-format``: the float64 reference covers them."""

from __future__ import annotations

import shlex

import pytest

import polyconv as pc
from polyconv.cli import main

BACKENDS = [name for name in ("numpy", "torch", "jax") if name in pc.backends()]


def test_verify_checks_the_transpose_on_every_backend() -> None:
    report = pc.verify(
        (2, 4, 5, 5),
        (4, 3, 3, 3),
        stride=2,
        padding="same",
        output_padding=1,
        padding_mode="reflect",
        transpose=True,
        backends=BACKENDS,
        timing=False,
    )
    assert report.ok, str(report)
    assert report.output_shape == (2, 3, 10, 10)
    assert [c.result for c in report.results[0].checks] == ["out", "grad_y", "grad_w", "grad_bias"]


def test_verify_takes_channels_last_data_and_kernels() -> None:
    report = pc.verify(
        (2, 7, 7, 3),
        (3, 3, 3, 8),
        stride=2,
        padding="same",
        data_format="channels_last",
        kernel_format="channels_last",
        backends=BACKENDS,
        timing=False,
    )
    assert report.ok, str(report)
    assert report.output_shape == (2, 4, 4, 8)


def test_report_command_reproduces_the_transposed_channels_last_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = pc.verify(
        (1, 5, 4),
        (3, 2, 4),
        bias=False,
        stride=2,
        padding=1,
        output_padding=1,
        groups=2,
        transpose=True,
        data_format="channels_last",
        kernel_format="channels_last",
        backends=["numpy"],
        timing=False,
    )
    assert report.ok, str(report)
    command = report.command()
    for flag in ("--transpose", "--output-padding 1", "--data-format channels_last"):
        assert flag in command
    assert main([*shlex.split(command)[1:], "--no-timing"]) == 0
    assert "ok: 1 backend(s) agree" in capsys.readouterr().out


def test_verify_refuses_output_padding_without_transpose() -> None:
    with pytest.raises(ValueError, match="transpose=True"):
        pc.verify((1, 1, 5), (1, 1, 3), output_padding=1, timing=False)


def test_verify_names_both_shapes_when_the_kernel_layout_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"kernel_format='channels_first'"):
        pc.verify((2, 7, 7, 4), (3, 3, 4, 8), data_format="channels_last", timing=False)


def test_random_search_draws_transposed_channels_last_problems() -> None:
    pytest.importorskip("hypothesis")
    from polyconv.verify import random_search

    outcome = random_search(
        3, dtype="float64", backends=["numpy"], transpose=True, data_format="channels_last"
    )
    assert outcome.report.ok, outcome.summary()
    assert "--transpose" in outcome.report.command()
    assert "--data-format channels_last" in outcome.report.command()
