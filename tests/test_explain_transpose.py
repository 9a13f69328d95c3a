"""``polyconv explain`` for transposed problems and channels-last layouts: every printed snippet
runs and computes what polyconv computes."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from adapter_strategies import (
    EXPLAIN_TRANSPOSED,
    assert_transposed_module_call_computes_what_polyconv_computes,
)
from test_explain import _as_framework, _to_numpy

import polyconv as pc
from polyconv.explain import explain
from polyconv.testing import assert_within, error_bound, transpose_error_bound

# (input shape, kernel shape, bias, keywords of explain)
TRANSPOSED = {
    "torch-module-int-padding": (
        (2, 4, 5, 5),
        (4, 3, 3, 3),
        True,
        {"stride": 2, "padding": 1, "output_padding": 1},
    ),
    "groups-dilation-1d": (
        (1, 4, 6),
        (4, 1, 3),
        False,
        {"stride": 3, "padding": 2, "dilation": 2, "groups": 2, "output_padding": 2},
    ),
    "same-stride-2-keras": (
        (2, 3, 4, 4),
        (3, 2, 3, 3),
        True,
        {"stride": 2, "padding": "same", "output_padding": 1},
    ),
    "reflect-folds": (
        (1, 2, 5),
        (2, 3, 3),
        False,
        {"stride": 2, "padding": 2, "padding_mode": "reflect"},
    ),
    "circular-pairs-unbatched": (
        (2, 4, 3),
        (2, 1, 2, 2),
        True,
        {"padding": ((1, 0), (0, 1)), "padding_mode": "circular"},
    ),
    "channels-last-flax": (
        (2, 5, 5, 4),
        (3, 3, 3, 4),
        True,
        {
            "stride": 2,
            "padding": "same",
            "data_format": "channels_last",
            "kernel_format": "channels_last",
        },
    ),
    "channels-last-groups-symmetric": (
        (1, 5, 4),
        (3, 2, 4),
        False,
        {
            "stride": 2,
            "padding": 1,
            "groups": 2,
            "padding_mode": "symmetric",
            "data_format": "channels_last",
            "kernel_format": "channels_last",
        },
    ),
}
FORWARD = {
    "channels-last-stride-2-same": (
        (2, 8, 8, 3),
        (3, 3, 3, 4),
        True,
        {
            "stride": 2,
            "padding": "same",
            "data_format": "channels_last",
            "kernel_format": "channels_last",
        },
    ),
    "channels-last-data-reflect-1d": (
        (2, 7, 2),
        (3, 2, 3),
        False,
        {"padding": 2, "padding_mode": "reflect", "data_format": "channels_last"},
    ),
    "channels-last-kernel-groups": (
        (1, 4, 5, 5),
        (2, 2, 2, 4),
        True,
        {"padding": ((0, 1), (1, 0)), "groups": 2, "kernel_format": "channels_last"},
    ),
}

_HEADER = re.compile(r"^(\w+) \((?:x|y), w(, b)? are [\w ]+\):$")

# Compared in float64 (with SciPy / with the float64 reference): JAX in its 64-bit mode.
pytestmark = pytest.mark.jax_x64


def printed_snippets(text: str) -> dict[str, str]:
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


def _arrays(x_shape: tuple[int, ...], w_shape: tuple[int, ...], bias_size: int | None) -> tuple:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, x_shape)
    w = rng.uniform(-1, 1, w_shape)
    b = None if bias_size is None else rng.uniform(-1, 1, (bias_size,))
    return x, w, b


def _run(snippet: str, framework: str, arrays: dict[str, Any], result: str) -> np.ndarray:
    if framework == "jax":
        pytest.importorskip("jax")
    namespace = {k: _as_framework(framework, v) for k, v in arrays.items() if v is not None}
    exec(snippet, namespace)
    return _to_numpy(namespace[result])


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("name", TRANSPOSED)
def test_printed_transpose_snippet_computes_what_polyconv_computes(
    name: str, framework: str
) -> None:
    pytest.importorskip(framework)
    y_shape, w_shape, bias, kwargs = TRANSPOSED[name]
    text = explain(y_shape, w_shape, bias=bias, transpose=True, **kwargs)
    snippet = printed_snippets(text)[framework]
    layout = {k: kwargs.get(k, "channels_first") for k in ("data_format", "kernel_format")}
    problem = {k: v for k, v in kwargs.items() if k not in layout}
    groups = kwargs.get("groups", 1)
    w_cf_in = w_shape[-2] if layout["kernel_format"] == "channels_last" else w_shape[1]
    y, w, b = _arrays(y_shape, w_shape, w_cf_in * groups if bias else None)
    out = _run(snippet, framework, {"y": y, "w": w, "b": b}, "out")
    expected = pc.correlate_transpose(y, w, b, **problem, **layout)
    y_first, w_first = _first(y, w, layout)
    bound = transpose_error_bound(y_first, w_first, b, "float64", problem, c=4)
    assert_within(_back(out, w, layout), _back(expected, w, layout), bound)
    if framework == "torch" and "module" in snippet:
        assert "torch.nn.ConvTranspose" in snippet


def _first(y: np.ndarray, w: np.ndarray, layout: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    rank = w.ndim - 2
    if layout["data_format"] == "channels_last":
        y = np.moveaxis(y, -1, 1 if y.ndim == rank + 2 else 0)
    if layout["kernel_format"] == "channels_last":
        w = w.transpose((rank + 1, rank, *range(rank)))
    return y, w


def _back(out: np.ndarray, w: np.ndarray, layout: dict[str, str]) -> np.ndarray:
    rank = w.ndim - 2
    if layout["data_format"] == "channels_last":
        return np.moveaxis(out, -1, 1 if out.ndim == rank + 2 else 0)
    return out


@pytest.mark.parametrize("framework", ["torch", "jax", "numpy"])
@pytest.mark.parametrize("name", FORWARD)
def test_printed_channels_last_snippet_computes_what_polyconv_computes(
    name: str, framework: str
) -> None:
    pytest.importorskip(framework)
    x_shape, w_shape, bias, kwargs = FORWARD[name]
    snippet = printed_snippets(explain(x_shape, w_shape, bias=bias, **kwargs))[framework]
    layout = {k: kwargs.get(k, "channels_first") for k in ("data_format", "kernel_format")}
    problem = {k: v for k, v in kwargs.items() if k not in layout}
    c_out = w_shape[-1] if layout["kernel_format"] == "channels_last" else w_shape[0]
    x, w, b = _arrays(x_shape, w_shape, c_out if bias else None)
    y = _run(snippet, framework, {"x": x, "w": w, "b": b}, "y")
    expected = pc.correlate(x, w, b, **problem, **layout)
    x_first, w_first = _first(x, w, layout)
    bound = error_bound(x_first, w_first, b, "float64", problem, c=4)
    assert_within(_back(y, w, layout), _back(expected, w, layout), bound)


def test_jax_channels_last_uses_dimension_numbers_and_torch_permutes() -> None:
    text = explain(
        (8, 32, 32, 3),
        (3, 3, 3, 16),
        stride=2,
        padding="same",
        data_format="channels_last",
        kernel_format="channels_last",
    )
    snippets = printed_snippets(text)
    assert 'dimension_numbers=("NHWC", "HWIO", "NHWC")' in snippets["jax"]
    assert "transpose" not in snippets["jax"]
    assert "x = x.permute(0, 3, 1, 2)" in snippets["torch"]


def test_transpose_explain_names_the_native_calls_and_what_cannot_be_expressed() -> None:
    text = explain(
        (1, 2, 5), (2, 3, 3), transpose=True, stride=2, padding=2, padding_mode="reflect"
    )
    assert "F.conv_transpose1d cannot express this problem" in text
    assert "transpose_kernel=True" in text
    assert "No framework folds 'reflect' padding back" in text
    plain = explain(
        (2, 4, 5, 5), (4, 3, 3, 3), transpose=True, stride=2, padding=1, output_padding=1
    )
    assert "F.conv_transpose2d(y, w, stride=2, padding=1, output_padding=1)" in plain
    assert "torch.nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1" in plain


@pytest.mark.parametrize("name", EXPLAIN_TRANSPOSED)
def test_printed_flax_transposed_module_computes_what_polyconv_computes(name: str) -> None:
    pytest.importorskip("flax")
    import jax.numpy as jnp

    code = assert_transposed_module_call_computes_what_polyconv_computes(name, "flax", jnp.asarray)
    assert "nnx.ConvTranspose(" in code and "jnp.transpose(w, " in code


def test_transposed_module_calls_refuse_groups_and_padding_modes_by_name() -> None:
    text = explain((1, 4, 6), (4, 1, 3), transpose=True, groups=2, padding_mode="reflect")
    assert "nnx.ConvTranspose has no groups" in text
    assert "keras.layers.Conv1DTranspose has no groups" in text
