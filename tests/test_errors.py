"""Bad input is refused with a message naming the argument and what was expected; the input rules
(dtypes, unbatched input, backend selection) that decide what a good call returns."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import polyconv as pc
from polyconv.backends import get as get_backend
from polyconv.testing import unsupported_dtype_reason

X = np.ones((1, 2, 5, 5))  # (N, C_in, H, W)
W = np.ones((3, 2, 2, 2))  # (C_out, C_in, kh, kw)


def refused(kind: type[Exception], pattern: str, call) -> None:
    with pytest.raises(kind, match=pattern):
        call()


# (id, call, exception, message pattern): the pattern names the argument and the expectation.
SHAPE_ERRORS = [
    (
        "x-rank-too-low",
        lambda: pc.correlate(np.ones((5, 5)), W),
        ValueError,
        r"x must have shape \(N, C_in, \*spatial\) or \(C_in, \*spatial\) with 2 spatial axes",
    ),
    (
        "x-rank-too-high",
        lambda: pc.correlate(np.ones((1, 1, 2, 5, 5)), W),
        ValueError,
        r"x must have shape .* with 2 spatial axes .* got shape \(1, 1, 2, 5, 5\)",
    ),
    (
        "w-rank-too-low",
        lambda: pc.correlate(X, np.ones((3, 2))),
        ValueError,
        r"w must have shape \(C_out, C_in // groups, \*kernel\) with 1, 2 or 3 spatial axes",
    ),
    (
        "spatial-rank-4",
        lambda: pc.correlate(np.ones((1, 1, 2, 2, 2, 2)), np.ones((1, 1, 1, 1, 1, 1))),
        ValueError,
        r"w must have shape .* with 1, 2 or 3 spatial axes, got shape .* \(6 dimensions\)",
    ),
    (
        "channel-mismatch",
        lambda: pc.correlate(X, np.ones((3, 3, 2, 2))),
        ValueError,
        r"w\.shape\[1\] must be C_in // groups = 2 // 1 = 2",
    ),
    (
        "groups-not-dividing",
        lambda: pc.correlate(X, np.ones((3, 1, 2, 2)), groups=2),
        ValueError,
        r"groups=2 must divide both C_in=2 .* and C_out=3",
    ),
    (
        "groups-channel-mismatch",
        lambda: pc.correlate(np.ones((1, 4, 5, 5)), np.ones((4, 4, 2, 2)), groups=2),
        ValueError,
        r"w\.shape\[1\] must be C_in // groups = 4 // 2 = 2",
    ),
    (
        "bias-wrong-length",
        lambda: pc.correlate(X, W, np.ones(2)),
        ValueError,
        r"bias must have shape \(C_out,\) = \(3,\), got \(2,\)",
    ),
    (
        "bias-wrong-rank",
        lambda: pc.correlate(X, W, np.ones((3, 1))),
        ValueError,
        r"bias must have shape \(C_out,\) = \(3,\), got \(3, 1\)",
    ),
    (
        "kernel-larger-than-input",
        lambda: pc.correlate(X, np.ones((3, 2, 6, 2))),
        ValueError,
        r"w's kernel, dilated to extent 6 along spatial axis 0 .* larger than x padded .* \(5 \+ 0 \+ 0 = 5\)",
    ),
    (
        "dilated-kernel-larger-than-padded-input",
        lambda: pc.correlate(X, W, padding=1, dilation=(1, 7)),
        ValueError,
        r"w's kernel, dilated to extent 8 along spatial axis 1 \(kernel 2, dilation 7\).* \(5 \+ 1 \+ 1 = 7\)",
    ),
    (
        "empty-batch",
        lambda: pc.correlate(np.ones((0, 2, 5, 5)), W),
        ValueError,
        r"x must not be empty, got shape \(0, 2, 5, 5\)",
    ),
    (
        "empty-spatial",
        lambda: pc.correlate(np.ones((2, 0, 5)), W),
        ValueError,
        r"x must not be empty, got shape \(2, 0, 5\)",
    ),
    (
        "empty-kernel",
        lambda: pc.correlate(X, np.ones((0, 2, 2, 2))),
        ValueError,
        r"w must not be empty, got shape \(0, 2, 2, 2\)",
    ),
    (
        "output-shape-negative-size",
        lambda: pc.output_shape((1, 2, -5, 5), (3, 2, 2, 2)),
        ValueError,
        r"x's shape must not contain negative sizes",
    ),
    (
        "output-shape-float-size",
        lambda: pc.output_shape((1, 2, 5.5, 5), (3, 2, 2, 2)),  # type: ignore[arg-type]
        TypeError,
        r"x's shape must be a tuple of ints",
    ),
]


@pytest.mark.parametrize(
    ("call", "kind", "pattern"), [c[1:] for c in SHAPE_ERRORS], ids=[c[0] for c in SHAPE_ERRORS]
)
def test_inconsistent_shapes_are_refused_naming_the_argument(call, kind, pattern) -> None:
    refused(kind, pattern, call)


ARGUMENT_ERRORS = [
    ("groups-zero", {"groups": 0}, ValueError, r"groups must be a positive int, got 0"),
    ("groups-negative", {"groups": -2}, ValueError, r"groups must be a positive int, got -2"),
    ("groups-float", {"groups": 1.0}, TypeError, r"groups must be an int, got float 1\.0"),
    ("groups-bool", {"groups": True}, TypeError, r"groups must be an int, got bool True"),
    ("groups-str", {"groups": "1"}, TypeError, r"groups must be an int, got str '1'"),
    ("stride-zero", {"stride": 0}, ValueError, r"stride must be positive, got 0"),
    (
        "stride-negative-on-one-axis",
        {"stride": (1, -1)},
        ValueError,
        r"stride must be positive, got \(1, -1\)",
    ),
    ("stride-float", {"stride": 1.5}, TypeError, r"stride must be an int, got float"),
    ("stride-bool", {"stride": True}, TypeError, r"stride must be an int, got bool"),
    (
        "stride-wrong-length",
        {"stride": (1, 1, 1)},
        ValueError,
        r"stride must be an int or a tuple of 2 ints \(one per spatial axis\), got 3 values",
    ),
    ("dilation-zero", {"dilation": 0}, ValueError, r"dilation must be positive, got 0"),
    ("dilation-negative", {"dilation": -1}, ValueError, r"dilation must be positive, got -1"),
    (
        "dilation-wrong-length",
        {"dilation": (1,)},
        ValueError,
        r"dilation must be an int or a tuple of 2 ints \(one per spatial axis\), got 1 values",
    ),
    ("padding-negative", {"padding": -1}, ValueError, r"padding must be non-negative, got -1"),
    (
        "padding-negative-pair",
        {"padding": ((0, -1), (0, 0))},
        ValueError,
        r"padding must be non-negative",
    ),
    (
        "padding-wrong-length",
        {"padding": (1, 1, 1)},
        ValueError,
        r"padding must be 'valid', 'same', 'full', an int, a tuple of 2 ints or a tuple of 2 \(lo, hi\) pairs; got 3 values",
    ),
    (
        "padding-pair-of-three",
        {"padding": ((1, 1, 1), (0, 0))},
        ValueError,
        r"padding pairs must be \(lo, hi\)",
    ),
    (
        "padding-float",
        {"padding": 1.5},
        TypeError,
        r"padding must be 'valid', 'same', 'full', an int",
    ),
    (
        "padding-none",
        {"padding": None},
        TypeError,
        r"padding must be 'valid', 'same', 'full', an int",
    ),
    (
        "padding-unknown-string",
        {"padding": "causal"},
        ValueError,
        r"padding must be one of \('valid', 'same', 'full'\), an int or a tuple; got 'causal'$",
    ),
    (
        "padding-upper-case",
        {"padding": "SAME"},
        ValueError,
        r"got 'SAME' \(did you mean 'same'\?\)",
    ),
    (
        "padding-mode-unknown",
        {"padding_mode": "foo"},
        ValueError,
        r"padding_mode must be one of \('zeros', 'reflect', 'replicate', 'circular', 'symmetric'\), got 'foo'$",
    ),
    (
        "padding-mode-none",
        {"padding_mode": None},
        ValueError,
        r"padding_mode must be one of .* got None",
    ),
    (
        "padding-mode-upper-case",
        {"padding_mode": "Zeros"},
        ValueError,
        r"got 'Zeros' \(did you mean 'zeros'\?\)",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "kind", "pattern"),
    [c[1:] for c in ARGUMENT_ERRORS],
    ids=[c[0] for c in ARGUMENT_ERRORS],
)
def test_bad_keyword_arguments_are_refused_naming_the_argument(kwargs, kind, pattern) -> None:
    refused(kind, pattern, lambda: pc.correlate(X, W, **kwargs))


@pytest.mark.parametrize(
    ("alias", "ours"),
    [
        ("wrap", "circular"),
        ("symm", "symmetric"),
        ("edge", "replicate"),
        ("constant", "zeros"),
        ("fill", "zeros"),
        ("nearest", "replicate"),
        ("mirror", "reflect"),
    ],
)
def test_padding_mode_aliases_of_other_libraries_are_refused_with_polyconvs_name(
    alias, ours
) -> None:
    refused(
        ValueError,
        rf"padding_mode must be one of .* \(polyconv calls '{alias}' '{ours}'\)",
        lambda: pc.correlate(X, W, padding_mode=alias),
    )


def test_every_operation_validates_its_keywords() -> None:
    gy = np.ones((1, 3, 4, 4))
    for call in (
        lambda: pc.convolve(X, W, stride=0),
        lambda: pc.correlate_vjp(X, W, None, gy, stride=0),
        lambda: pc.output_shape(X.shape, W.shape, stride=0),
    ):
        refused(ValueError, r"stride must be positive", call)


ARRAY_ERRORS = [
    (
        "complex-x",
        lambda: pc.correlate(X.astype(np.complex128), W),
        TypeError,
        r"x has dtype complex128: complex input is not supported, because frameworks disagree on whether .* conjugates",
    ),
    (
        "complex-w",
        lambda: pc.correlate(X, W.astype(np.complex64)),
        TypeError,
        r"w has dtype complex64: complex input is not supported",
    ),
    (
        "complex-bias",
        lambda: pc.correlate(X, W, np.ones(3, dtype=complex)),
        TypeError,
        r"bias has dtype complex128: complex",
    ),
    (
        "complex-list",
        lambda: pc.correlate([[[1j, 2.0]]], [[[1.0]]]),
        TypeError,
        r"x has dtype complex128: complex",
    ),
    (
        "object-array",
        lambda: pc.correlate(np.array([[[1, "a"]]], dtype=object), [[[1]]]),
        TypeError,
        r"x has dtype object; expected one of float16, bfloat16, float32, float64, an integer or bool dtype",
    ),
    (
        "string-array",
        lambda: pc.correlate(X, np.full((3, 2, 2, 2), "a")),
        TypeError,
        r"w has dtype str32; expected one of float16, bfloat16, float32, float64",
    ),
    (
        "string",
        lambda: pc.correlate("abc", [[[1]]]),
        TypeError,
        r"x must be an array or a nested list of numbers, got str",
    ),
    (
        "ragged-list",
        lambda: pc.correlate([[[1, 2], [3]]], [[[1]]]),
        TypeError,
        r"x must be an array or a nested list of numbers",
    ),
    (
        "none-x",
        lambda: pc.correlate(None, W),
        TypeError,
        r"x must be an array or a nested list of numbers, got NoneType",
    ),
    (
        "none-w",
        lambda: pc.correlate(X, None),
        TypeError,
        r"w must be an array or a nested list of numbers, got NoneType",
    ),
    (
        "datetime",
        lambda: pc.correlate(np.ones((1, 1, 3)).astype("datetime64[s]"), [[[1]]]),
        TypeError,
        r"x has dtype datetime64\[s\]; expected one of float16, bfloat16, float32, float64",
    ),
    (
        "grad-y-wrong-shape",
        lambda: pc.correlate_vjp(X, W, None, np.ones((1, 3, 3, 3))),
        ValueError,
        r"grad_y must have the output's shape \(1, 3, 4, 4\), got \(1, 3, 3, 3\)",
    ),
    (
        "grad-y-batched-for-unbatched-x",
        lambda: pc.correlate_vjp(X[0], W, None, np.ones((1, 3, 4, 4))),
        ValueError,
        r"grad_y must have the output's shape \(3, 4, 4\), got \(1, 3, 4, 4\)",
    ),
    (
        "grad-y-none",
        lambda: pc.correlate_vjp(X, W, None, None),
        TypeError,
        r"grad_y must be an array",
    ),
    (
        "corr2d-3d-input",
        lambda: pc.corr2d(np.ones((2, 3, 3)), np.ones((2, 2))),
        ValueError,
        r"X must be 2-D, got shape \(2, 3, 3\)",
    ),
    (
        "corr2d-1d-kernel",
        lambda: pc.corr2d(np.ones((3, 3)), [1.0, 2.0]),
        ValueError,
        r"K must be 2-D, got shape \(2,\)",
    ),
    (
        "corr2d-kernel-too-large",
        lambda: pc.corr2d([[1, 2]], [[1, 2, 3]]),
        ValueError,
        r"K of shape \(1, 3\) must fit inside X of shape \(1, 2\)",
    ),
]


@pytest.mark.parametrize(
    ("call", "kind", "pattern"), [c[1:] for c in ARRAY_ERRORS], ids=[c[0] for c in ARRAY_ERRORS]
)
def test_unusable_arrays_are_refused_naming_the_argument(call, kind, pattern) -> None:
    refused(kind, pattern, call)


# --- dtypes: one rule for every backend --------------------------------------------------------


@pytest.mark.parametrize("integral", ["bool", "int8", "uint8", "int32", "int64"])
def test_integer_and_bool_inputs_compute_in_float32(integral: str) -> None:
    y = pc.correlate(X.astype(integral), W.astype(integral), np.ones(3, dtype=integral))
    assert y.dtype == np.float32


@pytest.mark.parametrize("floating", ["float16", "float32", "float64"])
def test_float_dtypes_are_kept(floating: str) -> None:
    assert pc.correlate(X.astype(floating), W.astype(floating)).dtype == floating
    grads = pc.correlate_vjp(
        X.astype(floating),
        W.astype(floating),
        np.ones(3, floating),
        np.ones((1, 3, 4, 4), floating),
    )
    assert [getattr(g, "dtype", None) for g in grads] == [np.dtype(floating)] * 3


@pytest.mark.parametrize(
    ("x_dtype", "w_dtype", "bias_dtype", "expected"),
    [
        ("float16", "float32", None, "float32"),
        ("float32", "float64", None, "float64"),
        ("float64", "float16", None, "float64"),
        ("float32", "float32", "float64", "float64"),
        ("int64", "float16", None, "float16"),
        ("bool", "float64", None, "float64"),
    ],
)
def test_mixed_dtypes_promote_to_the_widest_float(x_dtype, w_dtype, bias_dtype, expected) -> None:
    bias = None if bias_dtype is None else np.ones(3, dtype=bias_dtype)
    assert pc.correlate(X.astype(x_dtype), W.astype(w_dtype), bias).dtype == expected


@pytest.mark.parametrize(
    ("x_dtype", "w_dtype", "expected"),
    [
        ("int64", "int64", "float32"),
        ("bool", "int32", "float32"),
        ("float32", "float64", "float64"),
        ("int32", "float64", "float64"),
        ("float16", "float16", "float16"),
    ],
)
@pytest.mark.jax_x64  # JAX holds int64 and float64 arrays only in its 64-bit mode
def test_dtype_rule_is_the_same_on_every_backend(backend, x_dtype, w_dtype, expected) -> None:
    reason = unsupported_dtype_reason(backend.name, expected)
    if reason is not None:
        pytest.skip(reason)
    x, w = backend.convert(X, x_dtype, None), backend.convert(W, w_dtype, None)
    assert backend.dtype_name(pc.correlate(x, w, backend=backend.name)) == expected
    assert backend.dtype_name(pc.correlate(X.tolist(), w, backend=backend.name)) == (
        "float32" if w_dtype.startswith(("int", "bool")) else w_dtype
    )


def test_lists_are_weakly_typed() -> None:
    x_list = X.tolist()  # Python floats: would be float64 as an array
    assert pc.correlate(x_list, W.astype(np.float16)).dtype == np.float16
    assert pc.correlate(X.astype(np.float32), W.tolist(), [0.5, 0.5, 0.5]).dtype == np.float32
    assert pc.correlate(x_list, W.tolist()).dtype == np.float32


def test_the_lesson_example_gives_floats() -> None:
    y = pc.corr2d([[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[0, 1], [2, 3]])
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.array([[19.0, 25.0], [37.0, 43.0]]))


def test_unbatched_input_gives_unbatched_output() -> None:
    rng = np.random.default_rng(0)
    x, w, b = (
        rng.standard_normal((2, 5, 5)),
        rng.standard_normal((3, 2, 2, 2)),
        rng.standard_normal(3),
    )
    y = pc.correlate(x, w, b, padding="same")
    assert y.shape == pc.output_shape(x.shape, w.shape, padding="same") == (3, 5, 5)
    np.testing.assert_allclose(y, pc.correlate(x[None], w, b, padding="same")[0])
    grad_x, grad_w, _ = pc.correlate_vjp(x, w, b, np.ones((3, 5, 5)), padding="same")
    assert grad_x.shape == x.shape and grad_w.shape == w.shape


# --- backend selection: backend= > use_backend > array framework > $POLYCONV_BACKEND > numpy ----


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def no_env_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYCONV_BACKEND", raising=False)


def test_numpy_is_the_default_backend(no_env_backend: None) -> None:
    assert isinstance(pc.correlate(X.tolist(), W), np.ndarray)


def test_unknown_backend_name_lists_the_available_ones() -> None:
    available = re.escape(repr(pc.backends()))
    refused(
        ValueError,
        rf"backend must be one of the available backends {available}, got 'nope'",
        lambda: pc.correlate(X, W, backend="nope"),
    )
    with (
        pytest.raises(ValueError, match=rf"available backends {available}, got 'nope'"),
        pc.use_backend("nope"),
    ):
        pass


@pytest.mark.parametrize("name", [["numpy"], ("numpy",), 3], ids=["list", "tuple", "int"])
def test_a_backend_that_is_not_a_name_is_refused_naming_backend(name: object) -> None:
    for call in (
        lambda: pc.correlate(X, W, backend=name),
        lambda: pc.correlate_vjp(X, W, None, np.ones((1, 3, 4, 4)), backend=name),
        lambda: pc.Conv2D(2, backend=name),
    ):
        refused(TypeError, r"backend must be the name of a backend \(a str\), one of", call)
    with pytest.raises(TypeError, match="backend must be the name of a backend"):
        pc.use_backend(name).__enter__()


def test_a_first_call_while_the_interpreter_shuts_down_does_not_blame_numpy() -> None:
    # An atexit handler's first call: whatever it says, NumPy is installed.
    script = (
        "import atexit, numpy as np, polyconv as pc\n"
        "atexit.register(lambda: print(pc.correlate(np.ones((1, 1, 5)), np.ones((1, 1, 3)))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert "not installed" not in done.stderr
    assert "[[[3. 3. 3.]]]" in done.stdout or "failed to load" in done.stderr, done.stderr


def test_unknown_backend_in_the_environment_variable_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLYCONV_BACKEND", "nope")
    refused(
        ValueError,
        r"available backends .*got 'nope' \(from the POLYCONV_BACKEND environment variable\)",
        lambda: pc.correlate(X, W),
    )


def test_environment_variable_chooses_the_backend_for_numpy_inputs(monkeypatch, torch) -> None:
    monkeypatch.setenv("POLYCONV_BACKEND", "torch")
    assert isinstance(pc.correlate(X, W), torch.Tensor)


def test_array_framework_beats_the_environment_variable(monkeypatch, torch) -> None:
    monkeypatch.setenv("POLYCONV_BACKEND", "numpy")
    assert isinstance(pc.correlate(torch.ones(1, 2, 5, 5), W), torch.Tensor)


def test_use_backend_beats_the_array_framework(torch) -> None:
    with pc.use_backend("numpy"):
        y = pc.correlate(torch.ones(1, 2, 5, 5), torch.ones(3, 2, 2, 2))
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y, pc.correlate(X, W))


def test_innermost_use_backend_wins(no_env_backend, torch) -> None:
    with pc.use_backend("numpy"), pc.use_backend("torch"):
        assert isinstance(pc.correlate(X, W), torch.Tensor)
    with pc.use_backend("torch"), pc.use_backend("numpy"):
        assert isinstance(pc.correlate(X, W), np.ndarray)
    assert isinstance(pc.correlate(X, W), np.ndarray)  # the context is restored on exit


def test_backend_argument_beats_use_backend(torch) -> None:
    with pc.use_backend("torch"):
        assert isinstance(pc.correlate(X, W, backend="numpy"), np.ndarray)
    with pc.use_backend("numpy"):
        assert isinstance(pc.corr2d(X[0, 0], W[0, 0], backend="torch"), torch.Tensor)


def test_numpy_arrays_and_lists_join_a_frameworks_arrays(torch) -> None:
    y = pc.correlate(torch.ones(1, 2, 5, 5, dtype=torch.float64), W, [0.0, 1.0, 2.0])
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
    np.testing.assert_array_equal(y.numpy(), pc.correlate(X, W, [0.0, 1.0, 2.0]))


def test_arrays_of_two_frameworks_are_refused_unless_backend_names_one(torch) -> None:
    jnp = pytest.importorskip("jax.numpy")
    x, w = torch.ones(1, 2, 5, 5), jnp.ones((3, 2, 2, 2))
    refused(
        TypeError,
        r"inputs come from more than one framework \(x is a torch array, w is a jax array\); "
        r"pass backend=NAME",
        lambda: pc.correlate(x, w),
    )
    assert isinstance(pc.correlate(x, w, backend="torch"), torch.Tensor)
    assert get_backend("jax").owns(pc.correlate(x, w, backend="jax"))


# --- repeated calls: the caches of polyconv._spec and polyconv._api --------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"stride": True}, r"stride must be an int, got bool True"),
        ({"padding": (1.0, 0)}, r"padding must be an int, got float 1.0"),
        ({"groups": True}, r"groups must be an int, got bool"),
    ],
)
def test_an_argument_equal_to_an_earlier_valid_one_is_still_refused(kwargs, pattern) -> None:
    """``True == 1`` and ``1.0 == 1``: a cache keyed on an earlier call's arguments must not let
    them through."""
    valid = {"stride": 1, "padding": (1, 0), "groups": 1}
    pc.correlate(X, W, **valid)
    refused(TypeError, pattern, lambda: pc.correlate(X, W, **{**valid, **kwargs}))


@pytest.mark.jax_x64  # float64 arrays
@pytest.mark.parametrize("batched", [True, False])
def test_a_repeated_call_computes_what_the_first_call_did(backend, batched) -> None:
    """The second call takes the prepared path (no inspection, no conversion)."""
    x = backend.convert(np.arange(50.0).reshape(1, 2, 5, 5), "float64", None)
    w = backend.convert(np.linspace(-1, 1, 24).reshape(3, 2, 2, 2), "float64", None)
    bias = backend.convert(np.array([1.0, -2.0, 0.5]), "float64", None)
    if not batched:
        x = x[0, ...]
    first, again = (backend.to_numpy(pc.correlate(x, w, bias, padding=1)) for _ in range(2))
    np.testing.assert_array_equal(again, first)
    assert first.shape == ((1, 3, 6, 6) if batched else (3, 6, 6))


def test_a_repeated_call_checks_the_devices_afresh(torch) -> None:
    x, w = torch.ones(1, 2, 5, 5), torch.ones(3, 2, 2, 2)
    pc.correlate(x, w)
    refused(
        ValueError,
        r"w is on device meta but x is on cpu; put all inputs on one device",
        lambda: pc.correlate(x, w.to("meta")),
    )


def test_a_repeated_call_follows_a_changed_environment_variable(monkeypatch, torch) -> None:
    monkeypatch.delenv("POLYCONV_BACKEND", raising=False)
    assert isinstance(pc.correlate(X, W), np.ndarray)
    monkeypatch.setenv("POLYCONV_BACKEND", "torch")
    assert isinstance(pc.correlate(X, W), torch.Tensor)


# --- arrays of a framework that hold no plain numbers -----------------------------------------


def test_a_sparse_torch_tensor_is_refused_naming_the_argument(torch) -> None:
    dense_x, dense_w = torch.ones(1, 2, 5, 5), torch.ones(3, 2, 2, 2)
    pc.correlate(dense_x, dense_w)  # a dense call first: the repeated call's shortcut is known
    refused(
        TypeError,
        r"x is a torch.sparse_coo tensor; pass a dense one",
        lambda: pc.correlate(dense_x.to_sparse(), dense_w),
    )
    refused(
        TypeError,
        r"w is a torch.sparse_coo tensor",
        lambda: pc.correlate(dense_x, dense_w.to_sparse()),
    )


def test_a_jax_prng_key_array_is_refused_naming_the_argument() -> None:
    jax = pytest.importorskip("jax")
    keys = jax.random.split(jax.random.key(0), 5)[None, None]
    refused(
        TypeError,
        r"x is a JAX PRNG key array",
        lambda: pc.correlate(keys, jax.numpy.ones((1, 1, 3))),
    )
    refused(
        TypeError,
        r"w is a JAX PRNG key array",
        lambda: pc.correlate(jax.numpy.ones((1, 1, 5)), keys[..., :3]),
    )
