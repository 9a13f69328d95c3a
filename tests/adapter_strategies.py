"""Strategies and assertions shared by the adapter tests (torch and Flax in
tests/test_adapters.py, Keras in tests/keras_checks.py, run in its own interpreters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

import polyconv as pc
from polyconv.adapters import describe
from polyconv.adapters._description import effective_padding
from polyconv.testing import DEFAULT_C, assert_within, error_bound, to_numpy

# Each example builds native modules and runs the float64 reference: a few draw enough.
FEW = settings(max_examples=5, deadline=None)


@dataclass(frozen=True)
class Geometry:
    """A convolution's sizes, every one valid for the input shape drawn with it."""

    rank: int
    in_channels: int
    out_channels: int
    groups: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    x_shape: tuple[int, ...]  # channels-first
    bias: bool

    @property
    def extents(self) -> tuple[int, ...]:
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation, strict=True))


@st.composite
def geometries(draw: st.DrawFn, *, max_rank: int = 2) -> Geometry:
    rank = draw(st.integers(1, max_rank))
    groups = draw(st.sampled_from([1, 2]))
    kernel = tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)))
    stride = tuple(draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank)))
    dilation = tuple(draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank)))
    extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    # At least the extent plus 3: every pad drawn below (at most 2) is then narrower than the
    # input, as torch's reflect padding needs.
    spatial = tuple(draw(st.integers(e + 3, e + 5)) for e in extents)
    in_channels = groups * draw(st.integers(1, 2))
    out_channels = groups * draw(st.integers(1, 2))
    return Geometry(
        rank,
        in_channels,
        out_channels,
        groups,
        kernel,
        stride,
        dilation,
        (2, in_channels, *spatial),
        draw(st.booleans()),
    )


def pads(draw: st.DrawFn, rank: int) -> Any:
    return draw(
        st.one_of(
            st.integers(0, 2),
            st.tuples(*[st.integers(0, 2)] * rank),
            st.tuples(*[st.tuples(st.integers(0, 2), st.integers(0, 2))] * rank),
        )
    )


@st.composite
def layers(draw: st.DrawFn, backend: str, *, transpose: bool = False) -> tuple[Any, Geometry]:
    """A polyconv layer (a transposed one with ``transpose=True``) of any padding form and
    mode, with random weights."""
    g = draw(geometries())
    padding = draw(st.one_of(st.sampled_from(["valid", "same", "full"]), st.just(None)))
    if padding is None:
        padding = pads(draw, g.rank)
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular", "symmetric"]))
    options: dict[str, Any] = {}
    if transpose:  # output_padding < max(stride, dilation), < stride in another mode
        options["output_padding"] = tuple(
            draw(st.integers(0, (max(s, d) if mode == "zeros" else s) - 1))
            for s, d in zip(g.stride, g.dilation, strict=True)
        )
        cls = {1: pc.ConvTranspose1D, 2: pc.ConvTranspose2D, 3: pc.ConvTranspose3D}[g.rank]
    else:
        cls = {1: pc.Conv1D, 2: pc.Conv2D, 3: pc.Conv3D}[g.rank]
    layer = cls(
        g.kernel_size,
        in_channels=g.in_channels,
        out_channels=g.out_channels,
        stride=g.stride,
        padding=padding,
        dilation=g.dilation,
        groups=g.groups,
        padding_mode=mode,
        bias=g.bias,
        backend=backend,
        seed=draw(st.integers(0, 100)),
        **options,
    )
    if g.bias:
        layer.bias = np.linspace(-1.0, 1.0, g.out_channels)
    return layer, g


def random_input(g: Geometry, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, g.x_shape).astype(np.float32)


def assert_same_function(native_y: object, layer_y: object, layer: Any, x: np.ndarray) -> None:
    """Both results within twice the error bound of the exact correlation (two roundings)."""
    d = describe(layer)
    bias = None if d.bias is None else d.bias
    bound = error_bound(x, d.weight, bias, "float32", d.correlate_kwargs(), c=2 * DEFAULT_C)
    last = d.data_format == "channels_last"
    as_first = [
        np.moveaxis(to_numpy(y), -1, 1) if last else to_numpy(y) for y in (native_y, layer_y)
    ]
    assert_within(as_first[1], as_first[0], bound, what="from_module(m)(x) against m(x)")


def assert_same_spec_and_weights(first: Any, second: Any, x_shape: tuple[int, ...]) -> None:
    a, b = describe(first), describe(second)
    assert a.transpose == b.transpose
    assert effective_padding(a, x_shape) == effective_padding(b, x_shape)
    for field in ("stride", "dilation", "groups", "padding_mode", "kernel_size"):
        assert getattr(a, field) == getattr(b, field), field
    if a.padding_mode != "zeros":  # the pairs themselves: the mode reads what they cover
        assert a.padding_at(x_shape) == b.padding_at(x_shape)
    np.testing.assert_array_equal(a.weight, b.weight)
    if a.bias is None:
        assert b.bias is None
    else:
        np.testing.assert_array_equal(a.bias, b.bias)


# Problems whose printed module calls must compute what polyconv computes: native padding,
# padding that depends on the input size, a mode the native layers lack, wide reflect padding,
# unbatched input, groups with dilation.
EXPLAIN_PROBLEMS: dict[str, tuple[tuple[int, ...], tuple[int, ...], bool, dict[str, Any]]] = {
    "same-stride-2": ((2, 3, 8, 8), (4, 3, 3, 3), True, {"stride": 2, "padding": "same"}),
    "int-reflect": ((1, 2, 6), (2, 2, 3), True, {"padding": 1, "padding_mode": "reflect"}),
    "symmetric-unbatched": (
        (3, 5, 6),
        (2, 3, 2, 2),
        False,
        {"padding": ((0, 1), (2, 1)), "padding_mode": "symmetric"},
    ),
    "wide-reflect": ((1, 1, 4), (1, 1, 3), False, {"padding": 5, "padding_mode": "reflect"}),
    "groups-dilation-full": (
        (2, 4, 7),
        (6, 2, 2),
        True,
        {"padding": "full", "dilation": 2, "groups": 2},
    ),
}


def assert_module_call_computes_what_polyconv_computes(
    name: str, framework: str, convert: Any
) -> None:
    """Run ``explain``'s ``{framework}_module`` block of the problem ``name`` on arrays made by
    ``convert`` and compare its ``y`` with :func:`polyconv.correlate`'s."""
    from polyconv.explain import native_calls

    x_shape, w_shape, bias, kwargs = EXPLAIN_PROBLEMS[name]
    call = native_calls(x_shape, w_shape, bias=bias, **kwargs)[f"{framework}_module"]
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, x_shape).astype(np.float32)
    w = rng.uniform(-1, 1, w_shape).astype(np.float32)
    b = rng.uniform(-1, 1, w_shape[:1]).astype(np.float32) if bias else None
    namespace: dict[str, Any] = {
        "x": convert(x),
        "w": convert(w),
        "b": None if b is None else convert(b),
    }
    exec(call.code, namespace)
    expected = pc.correlate(
        x.astype(np.float64),
        w.astype(np.float64),
        None if b is None else b.astype(np.float64),
        **kwargs,
    )
    bound = error_bound(x, w, b, "float32", kwargs, c=2 * DEFAULT_C)
    assert_within(to_numpy(namespace["y"]), expected, bound, what=f"{framework}_module of {name}")


# Transposed problems for the module calls (``y`` shape, forward kernel shape, bias, keywords):
# Keras crops after its unpadded transpose in the first, third and fourth (the fourth extends
# with zeros), and pads natively in the second; Flax pads natively in all.
EXPLAIN_TRANSPOSED: dict[str, tuple[tuple[int, ...], tuple[int, ...], bool, dict[str, Any]]] = {
    "torch-k3-s2-p1-op1": (
        (2, 4, 5, 5),
        (4, 3, 3, 3),
        True,
        {"stride": 2, "padding": 1, "output_padding": 1},
    ),
    "same-stride-2-unbatched": (
        (3, 5),
        (3, 2, 3),
        True,
        {"stride": 2, "padding": "same", "output_padding": 1},
    ),
    "dilation-2": ((1, 2, 4), (2, 3, 2), False, {"padding": 2, "dilation": 2}),
    "output-padding-beyond": (
        (2, 3, 4),
        (3, 2, 2),
        True,
        {"stride": 3, "padding": ((1, 0),), "output_padding": 2},
    ),
}


def assert_transposed_module_call_computes_what_polyconv_computes(
    name: str, framework: str, convert: Any
) -> str:
    """Run ``explain``'s ``{framework}_module`` block of the transposed problem ``name`` on
    arrays made by ``convert``, compare its ``out`` with :func:`polyconv.correlate_transpose`'s,
    and return the snippet."""
    from test_explain_transpose import printed_snippets

    from polyconv.explain import explain
    from polyconv.testing import transpose_error_bound

    y_shape, w_shape, bias, kwargs = EXPLAIN_TRANSPOSED[name]
    code = printed_snippets(explain(y_shape, w_shape, bias=bias, transpose=True, **kwargs))[
        f"{framework}_module"
    ]
    rng = np.random.default_rng(0)
    y = rng.uniform(-1, 1, y_shape).astype(np.float32)
    w = rng.uniform(-1, 1, w_shape).astype(np.float32)
    b = rng.uniform(-1, 1, (w_shape[1],)).astype(np.float32) if bias else None
    namespace: dict[str, Any] = {"y": convert(y), "w": convert(w)}
    if b is not None:
        namespace["b"] = convert(b)
    exec(code, namespace)
    batched = len(y_shape) == len(w_shape)
    y_batched, out = (
        (y, to_numpy(namespace["out"])) if batched else (y[None], namespace["out"][None])
    )
    as64 = [None if a is None else a.astype(np.float64) for a in (y_batched, w, b)]
    expected = pc.correlate_transpose(*as64, **kwargs)
    bound = transpose_error_bound(y_batched, w, b, "float32", kwargs, c=2 * DEFAULT_C)
    assert_within(to_numpy(out), expected, bound, what=f"{framework}_module of {name}")
    return code
