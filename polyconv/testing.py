"""Hypothesis strategies and error-bound assertions for testing correlation backends.

Public and documented, for polyconv's own tests, ``polyconv verify`` and anyone checking a
backend (a plug-in, a port of a model) against the specification. It imports Hypothesis, so
``import polyconv`` never imports it; import ``polyconv.testing`` explicitly.

Strategies
    :func:`problems` draws a consistent, always valid :class:`Problem`: batch, channels, groups,
    spatial rank 1-3, sizes, kernel, per-axis (non-square) stride and dilation, every padding form
    and mode, bias or not, and the values of ``x``, ``w`` and ``bias``. :func:`output_gradients`
    draws a ``grad_y`` of the problem's output shape.

Error bounds
    Floating-point sums are compared with a bound derived from the problem, not a fixed rtol:
    for each output element, ``|y - ref| <= c * eps(dtype) * K * sum(|terms|)``, where ``K`` is
    the number of terms summed and ``sum(|terms|)`` is the same correlation evaluated on absolute
    values. This is the classical worst-case bound for a sum of ``K`` rounded products in any
    order (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1: ``gamma_K`` with unit
    roundoff ``u = eps / 2``), so it holds under cancellation, where an rtol does not; and a
    wrong index or a missing term shows up as an error of the size of a whole term, far above
    the bound in float32 and float64. :func:`error_bound` and :func:`vjp_error_bounds` compute
    it; :func:`assert_close` and :func:`assert_vjp_close` apply it against the float64
    reference; :func:`assert_within` is the comparison with any bound. The bounds themselves
    live in the Hypothesis-free :mod:`polyconv._bounds` (``polyconv verify`` uses them where
    Hypothesis is not installed) and are re-exported here; :data:`DEFAULT_C` documents ``c``.

Settings
    :func:`load_profile` registers the Hypothesis profiles ``"ci"`` and ``"long"`` and loads
    the one named by ``$HYPOTHESIS_PROFILE`` (default ``"ci"``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

from . import reference
from ._bounds import (
    DEFAULT_C,
    assert_within,
    dtype_name,
    eps,
    error_bound,
    eta,
    fft_error,
    round_to,
    to_numpy,
    transpose_error_bound,
    transpose_vjp_error_bounds,
    vjp_error_bounds,
)
from ._core.api import correlate, correlate_vjp, output_shape
from ._spec.dtypes import DTYPES, FLOAT_DTYPES, numpy_dtype
from ._spec.options import PADDING_MODES
from ._spec.spec import CorrSpec, normalize
from .backends import registered

__all__ = [
    "DEFAULT_C",
    "PADDING_FORMS",
    "VALUE_STYLES",
    "Problem",
    "TransposeProblem",
    "assert_close",
    "assert_vjp_close",
    "assert_within",
    "dtype_name",
    "eps",
    "error_bound",
    "eta",
    "fft_error",
    "load_profile",
    "output_gradients",
    "problems",
    "round_to",
    "to_numpy",
    "transpose_error_bound",
    "transpose_problems",
    "transpose_vjp_error_bounds",
    "unavailable_reason",
    "unsupported_dtype_reason",
    "values",
    "vjp_error_bounds",
]

PADDING_FORMS: tuple[str, ...] = ("valid", "same", "full", "int", "ints", "pairs")
"""How :func:`problems` writes ``padding``: the three strings, one int for every axis, a tuple
of one int per axis, or a tuple of ``(lo, hi)`` pairs."""

VALUE_STYLES: tuple[str, ...] = ("uniform", "log-uniform", "grid", "two-scales")
"""Value distributions of :func:`values`: uniform in [-1, 1]; sign times ``2**U(-6, 0)`` (a wide
dynamic range); multiples of 1/4 in [-1, 1] (exact in every dtype, many zeros and exact
cancellations); log-uniform with the second half of the last axis scaled by ``2**40``
(about 1e12; ``2**4`` in float16, whose sums would overflow), so that one image holds values
differing by twelve orders of magnitude."""

# The "two-scales" style's factor per dtype: what its range holds with room for the sums.
_SECOND_SCALE = {"float16": 2.0**4}

_SMALLEST_MAGNITUDE = 2.0**-6  # products stay >= 2**-12, normal even in float16 (2**-14)
_DEFAULT_MAX_SIZE = {1: 12, 2: 6, 3: 4}  # per spatial axis, by rank: keeps every example fast


# --- problems --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Problem:
    """One valid correlation problem: float64 arrays holding values exact in ``dtype``.

    ``spec_kwargs`` holds the keywords of :func:`polyconv.correlate` (``stride``, ``padding``,
    ``dilation``, ``groups``, ``padding_mode``) in the form the user would write them.
    ``x`` may be unbatched ``(C_in, *spatial)``. ``grad_y`` is present when drawn with
    ``problems(with_grad_y=True)``.
    """

    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray | None
    spec_kwargs: Mapping[str, Any]
    dtype: str
    grad_y: np.ndarray | None = field(default=None)

    @property
    def spec(self) -> CorrSpec:
        """The normalised specification of this problem."""
        bias_shape = None if self.bias is None else self.bias.shape
        return normalize(self.x.shape, self.w.shape, bias_shape, **self.spec_kwargs)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The shape ``correlate`` returns (unbatched when ``x`` is)."""
        return self.spec.user_out_shape

    def arrays(self, dtype: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(x, w, bias)`` as NumPy arrays of ``dtype`` (default: the problem's dtype)."""
        dtype = dtype or self.dtype
        return (
            self.x.astype(numpy_dtype(dtype)),
            self.w.astype(numpy_dtype(dtype)),
            None if self.bias is None else self.bias.astype(numpy_dtype(dtype)),
        )

    def with_dtype(self, dtype: str) -> Problem:
        """The same problem in another dtype, its values rounded to it."""

        def rounded(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else round_to(a, dtype)

        return replace(
            self,
            x=round_to(self.x, dtype),
            w=round_to(self.w, dtype),
            bias=rounded(self.bias),
            grad_y=rounded(self.grad_y),
            dtype=dtype,
        )

    def reference(self) -> np.ndarray:
        """The float64 reference result."""
        return reference.correlate(self.x, self.w, self.bias, **self.spec_kwargs)

    def reference_vjp(
        self, grad_y: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The float64 reference gradients for ``grad_y`` (default: the drawn ``grad_y``)."""
        grad_y = self.grad_y if grad_y is None else grad_y
        if grad_y is None:
            raise ValueError("grad_y must be given: this problem was drawn without one")
        return reference.correlate_vjp(self.x, self.w, self.bias, grad_y, **self.spec_kwargs)

    def __repr__(self) -> str:
        # Shortest round-tripping digits, so a failing example can be pasted back exactly.
        with np.printoptions(floatmode="unique", threshold=4096):
            fields = {
                "x": self.x,
                "w": self.w,
                "bias": self.bias,
                "spec_kwargs": dict(self.spec_kwargs),
                "dtype": self.dtype,
            }
            if self.grad_y is not None:
                fields["grad_y"] = self.grad_y
            body = ",\n    ".join(f"{k}={_array_repr(v)}" for k, v in fields.items())
        return f"Problem(\n    {body},\n)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints falsifying examples with its IPython-style pretty printer.
        printer.text(repr(self))


def _array_repr(value: object) -> str:
    return np.array_repr(value) if isinstance(value, np.ndarray) else repr(value)


def _make_values(shape: tuple[int, ...], dtype: str, style: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if style == "grid":
        a = rng.integers(-4, 5, size=shape) / 4.0
    else:
        if style == "uniform":
            a = rng.uniform(-1.0, 1.0, size=shape)
        else:  # log-uniform, and two-scales
            a = rng.choice([-1.0, 1.0], size=shape) * 2.0 ** rng.uniform(-6.0, 0.0, size=shape)
        a[np.abs(a) < _SMALLEST_MAGNITUDE] = 0.0  # no tiny values: no subnormal products
        if style == "two-scales" and shape:
            a[..., shape[-1] // 2 :] *= _SECOND_SCALE.get(dtype, 2.0**40)
    return round_to(a, dtype)


_VALUE_DRAW = st.tuples(st.sampled_from(VALUE_STYLES), st.integers(0, 2**32 - 1))


def _draw_values(draw: st.DrawFn, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    style, seed = draw(_VALUE_DRAW)
    return _make_values(shape, dtype, style, seed)


def values(shape: Sequence[int], dtype: str = "float64") -> st.SearchStrategy[np.ndarray]:
    """Float64 arrays of ``shape`` whose values are exact in ``dtype``: finite, zero or of magnitude
    in ``[2**-6, 1]`` (up to ``2**40`` times that in the "two-scales" style), so products are
    never subnormal and no sum overflows.

    Values come from a drawn seed and one of :data:`VALUE_STYLES` (element-wise Hypothesis
    draws are far too slow for arrays of hundreds of elements); Hypothesis shrinks the shapes.
    """
    fixed_shape = tuple(int(n) for n in shape)
    np.dtype(dtype)  # an unknown dtype fails here, not inside a test
    return _VALUE_DRAW.map(lambda drawn: _make_values(fixed_shape, dtype, *drawn))


def output_gradients(problem: Problem) -> st.SearchStrategy[np.ndarray]:
    """A ``grad_y`` for ``problem``: its output shape, values exact in its dtype."""
    return values(problem.out_shape, problem.dtype)


def _axis_argument(draw: st.DrawFn, per_axis: list[int]) -> int | tuple[int, ...]:
    """An int when every axis agrees and a coin says so, else the tuple: both forms get tested."""
    if len(set(per_axis)) == 1 and draw(st.booleans()):
        return per_axis[0]
    return tuple(per_axis)


@st.composite
def _problems(
    draw: st.DrawFn,
    ranks: tuple[int, ...],
    dtypes: tuple[str, ...],
    padding_modes: tuple[str, ...],
    padding_forms: tuple[str, ...],
    max_batch: int,
    max_groups: int,
    max_channels_per_group: int,
    max_kernel: int,
    max_stride: int,
    max_dilation: int,
    max_padding: int,
    max_size: int | None,
    bias: bool | None,
    batched: bool | None,
    with_grad_y: bool,
) -> Problem:
    rank = draw(st.sampled_from(ranks), label="rank")
    size_cap = max_size if max_size is not None else _DEFAULT_MAX_SIZE[rank]
    groups = draw(st.integers(1, max_groups), label="groups")
    c_in = groups * draw(st.integers(1, max_channels_per_group))
    c_out = groups * draw(st.integers(1, max_channels_per_group))
    is_batched = draw(st.booleans()) if batched is None else batched
    batch = draw(st.integers(1, max_batch)) if is_batched else 1
    padding_mode = draw(st.sampled_from(padding_modes), label="padding_mode")
    form = draw(st.sampled_from(padding_forms), label="padding form")

    sizes = [draw(st.integers(1, size_cap)) for _ in range(rank)]
    strides = [draw(st.integers(1, max_stride)) for _ in range(rank)]
    pad_value = st.integers(0, max_padding)
    padding: object
    if form in ("valid", "same", "full"):
        padding = form
        # "same" and "full" pad by the kernel's extent, so any kernel fits; "valid" pads nothing.
        pads: list[tuple[int, int] | None] = [(0, 0) if form == "valid" else None] * rank
    elif form == "int":
        same_pad = draw(pad_value)
        padding, pads = same_pad, [(same_pad, same_pad)] * rank
    elif form == "ints":
        per_axis = [draw(pad_value) for _ in range(rank)]
        padding, pads = tuple(per_axis), [(p, p) for p in per_axis]
    else:
        pads = [(draw(pad_value), draw(pad_value)) for _ in range(rank)]
        padding = tuple(pads)

    kernel, dilations = [], []
    for n, pad in zip(sizes, pads, strict=True):
        room = None if pad is None else n + pad[0] + pad[1]  # the padded length the kernel must fit
        k = draw(st.integers(1, max_kernel if room is None else min(max_kernel, room)))
        d_max = max_dilation if room is None or k == 1 else min(max_dilation, (room - 1) // (k - 1))
        kernel.append(k)
        dilations.append(draw(st.integers(1, d_max)))

    dtype = draw(st.sampled_from(dtypes), label="dtype")
    x_shape = ((batch,) if is_batched else ()) + (c_in, *sizes)
    w_shape = (c_out, c_in // groups, *kernel)
    has_bias = draw(st.booleans()) if bias is None else bias
    spec_kwargs = {
        "stride": _axis_argument(draw, strides),
        "padding": padding,
        "dilation": _axis_argument(draw, dilations),
        "groups": groups,
        "padding_mode": padding_mode,
    }
    problem = Problem(
        x=_draw_values(draw, x_shape, dtype),
        w=_draw_values(draw, w_shape, dtype),
        bias=_draw_values(draw, (c_out,), dtype) if has_bias else None,
        spec_kwargs=spec_kwargs,
        dtype=dtype,
    )
    problem.spec  # noqa: B018 -- validates: a strategy that drew an invalid problem is a bug
    if with_grad_y:
        problem = replace(problem, grad_y=_draw_values(draw, problem.out_shape, dtype))
    return problem


def problems(
    *,
    ranks: Sequence[int] = (1, 2, 3),
    dtypes: Sequence[str] = FLOAT_DTYPES,
    padding_modes: Sequence[str] = PADDING_MODES,
    padding_forms: Sequence[str] = PADDING_FORMS,
    max_batch: int = 2,
    max_groups: int = 2,
    max_channels_per_group: int = 2,
    max_kernel: int = 3,
    max_stride: int = 3,
    max_dilation: int = 3,
    max_padding: int = 3,
    max_size: int | None = None,
    bias: bool | None = None,
    batched: bool | None = None,
    with_grad_y: bool = False,
) -> st.SearchStrategy[Problem]:
    """Valid correlation problems (the dilated kernel always fits the padded input).

    Every axis draws its own size, kernel, stride and dilation, so strides and dilations are
    non-square; ``padding`` takes every form in ``padding_forms`` and ``padding_mode`` every mode
    in ``padding_modes``. ``max_size`` caps each spatial size (default 12, 6 and 4 for ranks 1, 2
    and 3, so that examples stay fast). ``bias`` and ``batched``: ``None`` draws both ways, a bool
    forces one. ``with_grad_y`` also draws a ``grad_y`` of the output's shape.
    """
    ranks, dtypes = tuple(ranks), tuple(dtypes)
    padding_modes, padding_forms = tuple(padding_modes), tuple(padding_forms)
    if not ranks or not set(ranks) <= {1, 2, 3}:
        raise ValueError(f"ranks must be a non-empty subset of (1, 2, 3), got {ranks}")
    if not dtypes or not set(dtypes) <= set(DTYPES):
        raise ValueError(f"dtypes must be a non-empty subset of {DTYPES}, got {dtypes}")
    if not padding_modes or not set(padding_modes) <= set(PADDING_MODES):
        raise ValueError(f"padding_modes must be a non-empty subset of {PADDING_MODES}")
    if not padding_forms or not set(padding_forms) <= set(PADDING_FORMS):
        raise ValueError(f"padding_forms must be a non-empty subset of {PADDING_FORMS}")
    limits = {
        "max_batch": max_batch,
        "max_groups": max_groups,
        "max_channels_per_group": max_channels_per_group,
        "max_kernel": max_kernel,
        "max_stride": max_stride,
        "max_dilation": max_dilation,
        "max_size": 1 if max_size is None else max_size,
    }
    for name, limit in limits.items():
        if limit < 1:
            raise ValueError(f"{name} must be at least 1, got {limit}")
    if max_padding < 0:
        raise ValueError(f"max_padding must be non-negative, got {max_padding}")
    return _problems(
        ranks,
        dtypes,
        padding_modes,
        padding_forms,
        max_batch,
        max_groups,
        max_channels_per_group,
        max_kernel,
        max_stride,
        max_dilation,
        max_padding,
        max_size,
        bias,
        batched,
        with_grad_y,
    )


@dataclass(frozen=True)
class TransposeProblem:
    """One valid transposed problem: ``kwargs`` holds the keywords of
    :func:`polyconv.correlate_transpose`."""

    y: np.ndarray
    w: np.ndarray
    bias: np.ndarray | None
    kwargs: dict[str, Any]  # the keywords of correlate_transpose
    dtype: str

    @property
    def forward_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.kwargs.items() if k != "output_padding"}

    @property
    def out_shape(self) -> tuple[int, ...]:
        return output_shape(self.y.shape, self.w.shape, transpose=True, **self.kwargs)


@st.composite
def transpose_problems(draw: st.DrawFn, dtype: str = "float64", **limits: Any) -> TransposeProblem:
    """Valid transposed problems: the geometry of a forward problem of :func:`problems`
    (``limits`` are its keywords), ``y`` of its output shape and ``output_padding`` drawn in
    its allowed range."""
    limits = {"max_size": 5 if draw(st.booleans()) else 3, **limits}
    forward = draw(problems(dtypes=[dtype], with_grad_y=True, **limits))
    spec = forward.spec
    kwargs = dict(forward.spec_kwargs)
    limit = [
        s if spec.padding_mode != "zeros" else max(s, d)
        for s, d in zip(spec.stride, spec.dilation, strict=True)
    ]
    kwargs["output_padding"] = tuple(draw(st.integers(0, n - 1)) for n in limit)
    bias = None
    if forward.bias is not None:
        bias = draw(values((spec.x_shape[1],), dtype))
    assert forward.grad_y is not None
    problem = TransposeProblem(forward.grad_y, forward.w, bias, kwargs, dtype)
    try:
        problem.out_shape  # noqa: B018 -- below one sample (as torch's size formula counts)
    except ValueError:
        assume(False)
    return problem


# --- error bounds ----------------------------------------------------------------------------


def assert_close(
    actual: object,
    expected: object,
    x: object,
    w: object,
    bias: object = None,
    *,
    dtype: str,
    spec_kwargs: Mapping[str, Any] | None = None,
    c: float = DEFAULT_C,
    check_dtype: bool = True,
    what: str = "y",
    method: str = "direct",
    fft_dtype: str = "float64",
) -> None:
    """Assert a forward result equals ``expected`` (normally the float64 reference on the inputs
    rounded to ``dtype``) within :func:`error_bound` of the ``method`` that computed it (and the
    ``fft_dtype`` its transforms ran in); with ``check_dtype``, also that ``actual`` has dtype
    ``dtype``."""
    if check_dtype and dtype_name(actual) != dtype:
        raise AssertionError(f"{what}: dtype {dtype_name(actual)}, expected {dtype}")
    bound = error_bound(x, w, bias, dtype, spec_kwargs, c=c, method=method, fft_dtype=fft_dtype)
    assert_within(actual, expected, bound, what=what)


def assert_vjp_close(
    actual: Sequence[object],
    expected: Sequence[object],
    x: object,
    w: object,
    bias: object,
    grad_y: object,
    *,
    dtype: str,
    spec_kwargs: Mapping[str, Any] | None = None,
    c: float = DEFAULT_C,
    check_dtype: bool = True,
    method: str = "direct",
    fft_dtype: str = "float64",
) -> None:
    """Assert ``(grad_x, grad_w, grad_bias)`` equal ``expected`` within :func:`vjp_error_bounds`;
    ``grad_bias`` must be ``None`` exactly when ``expected``'s is."""
    bounds = vjp_error_bounds(
        x, w, bias, grad_y, dtype, spec_kwargs, c=c, method=method, fft_dtype=fft_dtype
    )
    for name, got, want, bound in zip(
        ("grad_x", "grad_w", "grad_bias"), actual, expected, bounds, strict=True
    ):
        if want is None or got is None:
            if (want is None) != (got is None):
                raise AssertionError(f"{name}: got {type(got).__name__}, expected {want!r}")
            continue
        if check_dtype and dtype_name(got) != dtype:
            raise AssertionError(f"{name}: dtype {dtype_name(got)}, expected {dtype}")
        assert_within(got, want, bound, what=name)


# --- backends and settings -------------------------------------------------------------------


def unavailable_reason(name: str) -> str | None:
    """Why the registered backend ``name`` cannot run here (its module is missing, or its
    framework is not installed), or ``None`` when it can. Imports no framework."""
    target = registered().get(name)
    if target is None:
        return f"no backend named {name!r} is registered (registered: {sorted(registered())})"
    module_name, _, class_name = target.partition(":")
    try:
        module_missing = importlib.util.find_spec(module_name) is None
    except ModuleNotFoundError:  # a parent package is missing
        module_missing = True
    if module_missing:
        return f"backend {name!r}: its module {module_name} does not exist"
    framework = getattr(importlib.import_module(module_name), class_name).framework
    if importlib.util.find_spec(framework) is None:
        return f"backend {name!r}: its framework {framework!r} is not installed"
    return None


def unsupported_dtype_reason(name: str, dtype: str) -> str | None:
    """Why backend ``name`` cannot compute in ``dtype``, from a small forward and VJP probe (the
    error it raised), or ``None`` when it can. Cached: the probe runs once per pair and JAX
    64-bit mode (float64 on JAX depends on it)."""
    jax = sys.modules.get("jax")
    return _unsupported_dtype_reason(name, dtype, jax is not None and jax.config.jax_enable_x64)


@functools.cache
def _unsupported_dtype_reason(name: str, dtype: str, jax_x64: bool) -> str | None:
    rng = np.random.default_rng(0)
    x, w, b = (
        rng.uniform(-1, 1, shape).astype(numpy_dtype(dtype))
        for shape in ((1, 2, 5, 5), (2, 1, 3, 3), (2,))
    )
    kwargs: dict[str, Any] = {"padding": "same", "groups": 2}
    try:
        y = correlate(x, w, b, backend=name, **kwargs)
        grad_y = np.ones(to_numpy(y).shape, dtype=dtype)
        correlate_vjp(x, w, b, grad_y, backend=name, **kwargs)
        if dtype_name(y) != dtype:
            return f"backend {name!r} returned {dtype_name(y)} for {dtype} input"
    except Exception as error:  # any failure means "unsupported"; the reason says which
        return f"backend {name!r} cannot compute in {dtype}: {type(error).__name__}: {error}"
    return None


def load_profile(name: str | None = None) -> str:
    """Register the Hypothesis profiles and load ``name`` (default ``$HYPOTHESIS_PROFILE`` or
    ``"ci"``); returns the loaded name.

    ``"ci"``: 30 examples per test, derandomized (the same examples on every run, so CI is
    reproducible), no deadline (JIT compilation makes first calls slow), failing examples
    printed with a reproduction blob. ``"long"``: 1000 random examples per test, for a local
    search before a release.
    """
    settings.register_profile(
        "ci",
        max_examples=30,
        deadline=None,
        derandomize=True,
        print_blob=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(
        "long",
        max_examples=1000,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    chosen = name or os.environ.get("HYPOTHESIS_PROFILE") or "ci"
    settings.load_profile(chosen)
    return chosen
