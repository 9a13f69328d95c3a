"""``polyconv explain``: every printed snippet runs and computes what polyconv computes."""

from __future__ import annotations

import re

import numpy as np
import pytest

import polyconv
from polyconv.cli import main
from polyconv.explain import explain, native_calls
from polyconv.testing import assert_close

# (x shape, w shape, bias, keywords): every padding route of every framework's snippet.
PROBLEMS = {
    "stride2-same-3x3": ((2, 3, 12, 12), (4, 3, 3, 3), False, {"stride": 2, "padding": "same"}),
    "same-even-kernel": ((1, 2, 7, 6), (3, 2, 4, 2), True, {"padding": "same"}),
    "symmetric-full-single-channel": (
        (3, 1, 5, 6),
        (1, 1, 3, 3),
        True,
        {"padding": "full", "padding_mode": "symmetric"},
    ),
    "reflect-wider-than-input-1d": (
        (1, 2, 3),
        (2, 2, 2),
        False,
        {"padding": ((4, 1),), "padding_mode": "reflect"},
    ),
    "circular-3d-groups-dilation": (
        (1, 4, 4, 5, 3),
        (2, 2, 2, 2, 1),
        True,
        {"padding": 1, "dilation": (2, 1, 1), "groups": 2, "padding_mode": "circular"},
    ),
    "circular-wider-than-input": (
        (2, 1, 2, 3),
        (1, 1, 2, 2),
        False,
        {"padding": ((3, 0), (0, 1)), "padding_mode": "circular"},
    ),
    "replicate-unbatched-pairs": (
        (2, 5, 6),
        (3, 2, 2, 3),
        True,
        {"padding": ((1, 2), (0, 1)), "stride": (1, 2), "padding_mode": "replicate"},
    ),
    "zeros-symmetric-pads-groups": (
        (2, 4, 6, 6),
        (4, 2, 3, 3),
        False,
        {"padding": (1, 2), "dilation": 2, "groups": 2},
    ),
    "scipy-same-wrap": (
        (1, 1, 6, 5),
        (1, 1, 3, 2),
        False,
        {"padding": "same", "padding_mode": "circular"},
    ),
    "scipy-reflect-needs-np-pad": (
        (2, 1, 5, 5),
        (1, 1, 3, 3),
        True,
        {"padding": 1, "padding_mode": "reflect"},
    ),
    "scipy-unbatched-valid": ((1, 5, 4), (1, 1, 2, 2), False, {}),
}

_HEADER = re.compile(r"^(\w+) \(x, w(, b)? are [\w ]+\):$")


def printed_snippets(text: str) -> dict[str, str]:
    """The code blocks of ``explain``'s text, by framework, exactly as printed."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            current = blocks.setdefault(header.group(1), [])
        elif line.startswith("    ") and current is not None:
            current.append(line[4:])
        else:
            current = None
    return {name: "\n".join(lines) for name, lines in blocks.items()}


def _arrays(x_shape, w_shape, bias):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, x_shape).astype(np.float32)
    w = rng.uniform(-1, 1, w_shape).astype(np.float32)
    b = rng.uniform(-1, 1, (w_shape[0],)).astype(np.float32) if bias else None
    return x, w, b


def _as_framework(framework: str, a: np.ndarray | None) -> object:
    if a is None:
        return None
    if framework == "torch":
        import torch

        return torch.from_numpy(a)
    if framework == "jax":
        import jax.numpy as jnp

        return jnp.asarray(a)
    return a


def _to_numpy(y: object) -> np.ndarray:
    if hasattr(y, "detach"):
        return y.detach().numpy()  # type: ignore[attr-defined]
    return np.asarray(y)


# torch pads a copy of the input itself for "same" with an even kernel, and says so.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
@pytest.mark.parametrize("framework", ["torch", "jax", "numpy", "scipy"])
@pytest.mark.parametrize("name", PROBLEMS)
def test_printed_snippet_computes_what_polyconv_computes(name: str, framework: str) -> None:
    x_shape, w_shape, bias, kwargs = PROBLEMS[name]
    snippet = printed_snippets(explain(x_shape, w_shape, bias=bias, **kwargs)).get(framework)
    if snippet is None:
        assert native_calls(x_shape, w_shape, bias=bias, **kwargs)[framework].note
        pytest.skip(f"{framework} has no equivalent here (explain says why)")
    pytest.importorskip({"numpy": "numpy", "scipy": "scipy.signal"}.get(framework, framework))
    x, w, b = _arrays(x_shape, w_shape, bias)
    namespace = {"x": _as_framework(framework, x), "w": _as_framework(framework, w)}
    if bias:
        namespace["b"] = _as_framework(framework, b)
    exec(snippet, namespace)
    expected = polyconv.reference.correlate(x, w, b, **kwargs)
    assert_close(
        _to_numpy(namespace["y"]),
        expected,
        x,
        w,
        b,
        dtype="float32",
        spec_kwargs=kwargs,
        check_dtype=False,  # numpy's einsum of float32 with a float64 bias widens; values count
        what=f"{framework} snippet y",
    )


def test_stride_2_same_3x3_pads_the_end_only() -> None:
    text = explain((8, 3, 32, 32), (16, 3, 3, 3), stride=2, padding="same")
    snippets = printed_snippets(text)
    assert "x_padded = F.pad(x, (0, 1, 0, 1))" in snippets["torch"]
    assert "F.conv2d(x_padded, w, stride=2)" in snippets["torch"]
    assert "padding=((0, 1), (0, 1))" in snippets["jax"]
    assert "precision=lax.Precision.HIGHEST" in snippets["jax"]


def test_scipy_is_offered_only_for_one_2d_channel_with_stride_1() -> None:
    multichannel = native_calls((1, 3, 8, 8), (1, 3, 3, 3))["scipy"]
    strided = native_calls((1, 1, 8, 8), (1, 1, 3, 3), stride=2)["scipy"]
    single = native_calls((1, 1, 8, 8), (1, 1, 3, 3), padding="same", padding_mode="symmetric")
    assert not multichannel.code and "3 input" in multichannel.note
    assert not strided.code and "stride" in strided.note
    assert 'boundary="symm"' in single["scipy"].code


def test_cli_prints_explain(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "explain",
            "--input",
            "8,3,32,32",
            "--kernel",
            "16,3,3,3",
            "--stride",
            "2",
            "--padding",
            "same",
        ]
    )
    assert status == 0
    assert capsys.readouterr().out.strip() == explain(
        (8, 3, 32, 32), (16, 3, 3, 3), bias=True, stride=2, padding="same"
    )  # --bias is on unless --no-bias, as in polyconv verify


def test_cli_reports_an_invalid_problem_as_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["explain", "--input", "1,3,8,8", "--kernel", "4,2,3,3"])
    assert status == 2
    assert "w.shape[1]" in capsys.readouterr().err
