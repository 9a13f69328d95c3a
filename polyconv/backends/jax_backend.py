"""JAX backend: ``jax.lax.conv_general_dilated`` under ``jax.jit``, on any device.

The correlation and its VJP are each one jitted function with the :class:`~polyconv.CorrSpec`
(frozen, hashable) and the precision as static arguments, so JAX compiles once per spec, dtype
and precision and caches the executable; nothing inside leaves the device. Called on tracers
(inside the user's ``jax.jit``, ``jax.grad`` or ``jax.vmap``) the same function is traced into
the user's computation. ``correlate_vjp`` is ``jax.vjp`` of the correlation.
The jitted function of one spec and method is kept (``_correlator``), so that a repeated call
costs polyconv's call-cache lookup plus JAX's own dispatch of the compiled function.

Padding: zeros goes to the convolution's ``padding=`` as ``(lo, hi)`` pairs; the other modes
gather with the index maps of :func:`polyconv.backends.pad_indices` (``jnp.take`` per axis, the
indices baked into the computation as constants), which handles any width and every mode.

float16 and bfloat16 accumulate in float32 (``preferred_element_type``) and round once, like
the other backends. float64 needs JAX's 64-bit mode; with it off, a float64 problem raises ``TypeError``
rather than silently computing in float32.

``method="fft"``: one whole-image ``jnp.fft.rfftn`` per input channel and per kernel, at the next
fast length covering the outputs' window (:mod:`polyconv._plan.whole`), inside the same
jitted function; the input is padded by the same gather as for the direct method (zeros by the
transform's zero buffer), the kernel is dilated with zeros, channels are contracted per group on
the spectra, and the stride-1 result is cropped and strided (the steps shared with torch:
:mod:`polyconv.backends._xp`, bound by ``_JaxOps``). It computes in float64 when 64-bit mode is on, whatever the input dtype, as
the NumPy and PyTorch backends do: the FFT's rounding error is global (about
``eps * log2(length)`` times the largest magnitudes, on every output), so in float32 an output
much smaller than the largest would err far beyond the per-element bound of
:mod:`polyconv._bounds`. With 64-bit mode off it computes in float32 (float16 input too) and
carries that global error. An FFT spreads one NaN or inf to every output, so a non-finite result
is recomputed by the direct method under ``jax.lax.cond`` (only the branch taken runs; under
``vmap`` both do); ``correlate_vjp`` does the same for non-finite gradients. Gradients of an FFT
result taken with ``jax.grad`` spread a non-finite output gradient everywhere. Traced for
``jax.linear_transpose``, which cannot branch on values it does not have, the calls leave these
checks (and the one below) out: the transposed correlation is exact for finite values.

A NaN or inf tap of ``w`` makes NaN every output whose window reads zero padding (the spec's
``w[k] * P(x)[...]``): XLA's convolution skips the padding it adds, so those outputs are found
by a second, one-channel convolution of the padding's footprint, only when ``w`` is not finite.

Precision: float32 is computed with ``precision=jax.lax.Precision.HIGHEST`` by default, so that
float32 means float32 on GPU and TPU too (their default rounds products to TF32 or bfloat16). To
ask for a faster precision::

    from polyconv.backends import jax_backend
    jax_backend.set_precision("default")      # process-wide
    with jax_backend.precision("default"):    # or for the calls in one block (read at trace time)
        ...

``"default"`` passes ``precision=None``, so JAX's own default applies, including
``jax.default_matmul_precision``; ``"high"`` is ``jax.lax.Precision.HIGH``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .._spec.padding import pad_indices
from .._spec.spec import CorrSpec
from .._spec.transpose import TransposeSpec
from . import _xp
from ._cost import choose_method
from ._interface import Backend, Method
from ._jax_sharding import (
    explicit_gradient_specs,
    explicit_layout,
    gradient_shardings,
    input_layout,
    laid_out_like,
    on_explicit_mesh,
    placement,
    result_spec,
    runs,
    whole_along,
)
from ._precision import PrecisionSetting

# jax.Array, spelled Any: type-checking against JAX's own annotations would make mypy analyse
# all of JAX on every run.
JaxArray = Any

PRECISIONS = ("highest", "high", "default")
_precision = PrecisionSetting("jax", PRECISIONS, default="highest")


def set_precision(precision: str) -> None:
    """Process-wide float32 precision: ``"highest"`` (true float32, the default), ``"high"`` or
    ``"default"`` (JAX's default precision, fastest on GPU and TPU)."""
    _precision.set(precision)


def precision(precision: str) -> contextlib.AbstractContextManager[None]:
    """``with precision("default"):`` sets the float32 precision for the calls in the block."""
    return _precision.scoped(precision)


def get_precision() -> str:
    """The float32 precision polyconv calls use here and now."""
    return _precision.get()


@functools.cache
def _jax() -> Any:
    import jax

    return jax


_DIMENSION_NUMBERS = {
    1: ("NCH", "OIH", "NCH"),
    2: ("NCHW", "OIHW", "NCHW"),
    3: ("NCDHW", "OIDHW", "NCDHW"),
}


def _lax_precision(name: str) -> Any:
    return None if name == "default" else _jax().lax.Precision[name.upper()]


def _pad(x: JaxArray, spec: CorrSpec) -> tuple[JaxArray, list[Any]]:
    """``x`` padded as far as needed, and the ``(lo, hi)`` pairs left for the convolution."""
    if spec.padding_mode == "zeros":
        return x, list(spec.padding)
    return _xp.gather_padding(_ops(None), x, spec), [(0, 0)] * spec.rank


def _conv(
    x: JaxArray, w: JaxArray, spec: CorrSpec, padding: Any, precision: str, groups: int
) -> JaxArray:
    jnp = _jax().numpy
    return _jax().lax.conv_general_dilated(
        x,
        w,
        window_strides=spec.stride,
        padding=padding,
        rhs_dilation=spec.dilation,
        dimension_numbers=_DIMENSION_NUMBERS[spec.rank],
        feature_group_count=groups,
        precision=_lax_precision(precision),
        preferred_element_type=jnp.float32 if x.dtype in (jnp.float16, jnp.bfloat16) else None,
    )


def _conv_group_by_group(
    x: JaxArray, w: JaxArray, spec: CorrSpec, padding: Any, precision: str
) -> JaxArray:
    """The grouped convolution as one convolution per group, concatenated."""
    g = spec.groups
    cg, og = x.shape[1] // g, w.shape[0] // g
    parts = [
        _conv(x[:, i * cg : (i + 1) * cg], w[i * og : (i + 1) * og], spec, padding, precision, 1)
        for i in range(g)
    ]
    return _jax().numpy.concatenate(parts, axis=1)


# Set while polyconv traces a call for ``jax.linear_transpose``: no branch may depend on the
# data there (a transposed function has no values to branch on), so the non-finite checks,
# which only move NaN and inf to where the spec puts them, are left out.
_transposing: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "polyconv_jax_transposing", default=False
)


def _traced_for_transpose(a: object) -> bool:
    """Whether ``a`` is an argument of a function traced by ``jax.linear_transpose``: a
    partial-evaluation tracer with no known value (under any other transformations' tracers)."""
    partial_eval = _jax().interpreters.partial_eval
    while isinstance(a, _jax().core.Tracer):
        if isinstance(a, partial_eval.JaxprTracer) and not a.pval.is_known():
            return True
        a = getattr(a, "val", getattr(a, "primal", None))  # a vmap's, or a jvp's, tracer
    return False


def _with_nonfinite_taps_on_padding(
    y: JaxArray, w: JaxArray, spec: CorrSpec, precision: str
) -> JaxArray:
    """``y`` with NaN wherever a non-finite tap of ``w`` meets zero padding: the spec's
    ``w[k] * P(x)[...]`` is NaN there, but XLA's convolution skips padding it adds itself (and
    may fold explicit zeros into it). Counts, per output, the (padding sample, non-finite tap)
    pairs its window reads, with a one-channel image of the padding; only where some tap is not
    finite."""
    jax = _jax()
    jnp = jax.numpy
    if spec.padding_mode != "zeros" or not any(lo or hi for lo, hi in spec.padding):
        return y

    def hits() -> JaxArray:
        inside = jnp.zeros((1, 1, *spec.x_shape[2:]), jnp.float32)
        region = jnp.pad(inside, [(0, 0), (0, 0), *spec.padding], constant_values=1)
        taps = (~jnp.isfinite(w)).any(axis=1, keepdims=True).astype(jnp.float32)
        return _conv(region, taps, spec, [(0, 0)] * spec.rank, precision, 1) > 0

    # Only the mask (one image's worth, shared by the batch) goes through the branch, not y:
    # y keeps the layout its convolution chose (channels last stays native, see _core.layouts).
    none = lambda: jnp.zeros((1, *spec.out_shape[1:]), bool)  # noqa: E731
    poisoned = jax.lax.cond(jnp.isfinite(w).all(), none, hits)
    return jnp.where(poisoned, jnp.asarray(jnp.nan, y.dtype), y)


def _direct_traced(
    x: JaxArray, w: JaxArray, bias: JaxArray | None, spec: CorrSpec, precision: str
) -> JaxArray:
    jax = _jax()
    out_dtype = x.dtype
    x, padding = _pad(x, spec)
    y = _conv(x, w, spec, padding, precision, spec.groups)
    if _transposing.get():
        pass  # no branch on the data (see _transposing)
    elif spec.groups > 1:
        # XLA may run a grouped convolution as one convolution with a block-diagonal kernel,
        # whose zeros spread a NaN or inf input to the other groups' outputs. A non-finite
        # result is recomputed group by group, where it reaches exactly the outputs that read
        # it; only the branch taken runs.
        y = jax.lax.cond(
            jax.numpy.isfinite(y).all(),
            lambda: y,
            lambda: _conv_group_by_group(x, w, spec, padding, precision),
        )
    if not _transposing.get():
        y = _with_nonfinite_taps_on_padding(y, w, spec, precision)
    if bias is not None:
        y = y + bias.astype(y.dtype).reshape((-1,) + (1,) * spec.rank)
    return y.astype(out_dtype)


def _fft_dtype() -> Any:
    """float64 when JAX's 64-bit mode is on (read at trace time), else float32."""
    jnp = _jax().numpy
    return _jax().dtypes.canonicalize_dtype(jnp.float64)


def _fft_unchecked(
    x: JaxArray, w: JaxArray, bias: JaxArray | None, spec: CorrSpec, precision: str
) -> JaxArray:
    """The correlation by whole-image FFTs (see the module docstring), non-finite values spread
    over the whole result."""
    return _xp.fft_unchecked(_ops(precision), x, w, bias, spec)


def _fft_traced(
    x: JaxArray, w: JaxArray, bias: JaxArray | None, spec: CorrSpec, precision: str
) -> JaxArray:
    """The correlation by FFT, recomputed by the direct method when the result is not finite:
    an FFT spreads a NaN or inf input to every output, the direct method puts it exactly where
    the spec says. Only the branch taken runs."""
    y = _fft_unchecked(x, w, bias, spec, precision)
    return _xp.finite_or(_ops(precision), y, lambda: _direct_traced(x, w, bias, spec, precision))


def _correlate_traced(
    x: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    spec: CorrSpec,
    precision: str,
    method: Method,
) -> JaxArray:
    compute = _fft_traced if method == "fft" else _direct_traced
    call = functools.partial(compute, spec=spec, precision=precision)
    return _result_where_it_lies(call, spec.out_shape, len(spec.x_shape), spec.rank, x, w, bias)


def _result_where_it_lies(
    call: Callable[..., JaxArray],
    out_shape: tuple[int, ...],
    ndim: int,
    rank: int,
    first: JaxArray,
    *others: JaxArray | None,
) -> JaxArray:
    """``call(first, *others)``; when ``first`` (``x``, or the transposed problem's ``y``, of
    ``ndim`` axes batched) lies on a mesh with explicit axes, computed there with its result
    laid out like it (see _jax_sharding.on_explicit_mesh)."""
    layout = explicit_layout(first)
    if layout is None:
        return call(first, *others)
    target = result_spec(layout, out_shape[ndim - first.ndim :], rank)  # may be unbatched
    return on_explicit_mesh(call, layout, target, rank, first, *others)


def _gradients_where_they_lie(
    call: Callable[..., tuple[JaxArray, JaxArray, JaxArray | None]],
    first: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    grad: JaxArray,
) -> tuple[JaxArray, JaxArray, JaxArray | None] | None:
    """``call(first, w, bias, grad)`` on ``first``'s mesh with explicit axes, each gradient laid
    out like its array; None when ``first`` lies on no such mesh."""
    layout = explicit_layout(first)
    if layout is None:
        return None
    specs = explicit_gradient_specs(layout, w, bias)
    return on_explicit_mesh(call, layout, specs, None, first, w, bias, grad)


def _vjp_traced(
    x: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    grad_y: JaxArray,
    spec: CorrSpec,
    precision: str,
    method: Method,
) -> tuple[JaxArray, JaxArray, JaxArray | None]:
    # A non-finite x, w or grad_y spreads through the FFTs to every element of some gradient
    # (see _fft_traced); then the direct method's gradients are the spec's.
    computes = (_direct_traced, _fft_unchecked)
    return _gradients(_vjp_traced, computes, x, w, bias, grad_y, spec, precision, method)


def _gradients(
    traced: Callable[..., tuple[JaxArray, JaxArray, JaxArray | None]],
    computes: tuple[Callable[..., JaxArray], Callable[..., JaxArray]],
    first: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    grad: JaxArray,
    spec: Any,
    precision: str,
    method: Method,
) -> tuple[JaxArray, JaxArray, JaxArray | None]:
    """The gradients of ``computes`` (the direct method and the unchecked FFT of the forward or
    the transposed correlation) at ``(first, w, bias)`` for ``grad``, by JAX's autodiff: by the
    FFT when ``method`` asks and its gradients are finite, else by the direct method; on
    ``first``'s explicit mesh, ``traced`` (the caller) computed there (see
    :func:`_gradients_where_they_lie`)."""
    call = functools.partial(traced, spec=spec, precision=precision, method=method)
    placed = _gradients_where_they_lie(call, first, w, bias, grad)
    if placed is not None:
        return placed
    jax = _jax()
    direct, fft_unchecked = computes

    def vjp(compute: Callable[..., JaxArray]) -> tuple[JaxArray, JaxArray, JaxArray | None]:
        forward = functools.partial(compute, spec=spec, precision=precision)
        _, pullback = jax.vjp(forward, first, w, bias)
        return pullback(grad)

    if method != "fft":
        return vjp(direct)
    return _xp.finite_or(_ops(precision), vjp(fft_unchecked), lambda: vjp(direct))


def _keeping_layout(call: Callable[..., JaxArray], layout: Any, *arrays: JaxArray) -> JaxArray:
    return laid_out_like(call(*arrays), layout, rank=arrays[1].ndim - 2)


def _jit_per_precision(
    traced: Callable[[str], Callable[..., JaxArray]],
) -> Callable[..., JaxArray]:
    """A function of arrays that runs ``jax.jit(traced(precision))`` for the precision setting
    of each call (read per call): static keyword arguments would be hashed and compared on every
    call, and a precision read only while tracing would stay baked into the compiled function.
    The result is laid out like ``x`` when ``x`` is spread over devices (see _jax_sharding)."""
    compiled: dict[tuple[str, Any], Callable[..., JaxArray]] = {}
    transposed: dict[str, Callable[..., JaxArray]] = {}  # traced for jax.linear_transpose

    def run(*arrays: JaxArray) -> JaxArray:
        precision = _precision.get()
        if any(_traced_for_transpose(a) for a in arrays):
            fn = transposed.get(precision)
            if fn is None:
                fn = transposed[precision] = _jax().jit(_transposable(traced(precision)))
            return fn(*arrays)
        key = (precision, input_layout(arrays[0]))
        fn = compiled.get(key)
        if fn is None:
            precision, layout = key
            call = traced(precision)
            if layout is not None:
                call = functools.partial(_keeping_layout, call, layout)
            fn = compiled[key] = _jax().jit(call)
        return fn(*arrays)

    return run


def _transposable(fn: Callable[..., JaxArray]) -> Callable[..., JaxArray]:
    """``fn`` traced without branches on the data (see ``_transposing``)."""

    def traced(*arrays: JaxArray) -> JaxArray:
        token = _transposing.set(True)
        try:
            return fn(*arrays)
        finally:
            _transposing.reset(token)

    return traced


@functools.lru_cache(maxsize=512)
def _correlator(
    spec: CorrSpec, method: Method
) -> Callable[[JaxArray, JaxArray, JaxArray | None], JaxArray]:
    """``correlate`` for one spec and method: jitted functions of the arrays alone, so that a
    call costs what a call of the user's own jitted function does."""
    return _jit_per_precision(
        lambda precision: functools.partial(
            _correlate_traced, spec=spec, precision=precision, method=method
        )
    )


@functools.lru_cache(maxsize=64)
def _jitted_gradients(
    traced: Callable[..., Any], layouts: tuple[Any, Any, Any] | None = None
) -> Any:
    """A VJP (``_vjp_traced`` or ``_transpose_vjp_traced``) jitted, its gradients given
    ``layouts`` when they are known (see _jax_sharding.gradient_shardings)."""
    options = {} if layouts is None else {"out_shardings": layouts}
    return _jax().jit(traced, static_argnames=("spec", "precision", "method"), **options)


def _is_tracer(a: object) -> bool:
    return isinstance(a, _jax().core.Tracer)


def _check_dtype_enabled(dtype: str) -> None:
    """float64 with x64 off would silently become float32 in JAX; refuse it instead."""
    jax = _jax()
    if np.dtype(jax.dtypes.canonicalize_dtype(np.dtype(dtype))) != np.dtype(dtype):
        raise TypeError(
            f"this call computes in {dtype}, but JAX's 64-bit mode is off, so JAX would "
            f"silently compute in float32; enable it with "
            f'jax.config.update("jax_enable_x64", True) at startup (or set the environment '
            f"variable JAX_ENABLE_X64=1), or pass float32 arrays"
        )


# --- the transposed correlation ------------------------------------------------------------
# Jitted per spec and differentiable by JAX's autodiff. The direct method is one
# ``lax.conv_general_dilated`` with ``lhs_dilation=stride`` (how JAX computes a convolution's
# input gradient and ``lax.conv_transpose``): ``y`` dilated by the stride, padded by the kernel
# extent less one (less the forward's zero padding, which a negative pad crops), correlated with
# the flipped kernel, its channel axes swapped per group. Padding modes other than zeros give the
# padded input's gradient, folded back onto the samples the padding copied (``.at[].add`` of the
# ``pad_indices`` map). ``method="fft"`` is the same adjoint as a correlation of ``y`` spread to
# stride 1, by the whole-image FFT, recomputed directly when not finite (``lax.cond``).


def _transpose_direct(
    y: JaxArray, w: JaxArray, bias: JaxArray | None, spec: TransposeSpec, precision: str
):
    jax = _jax()
    jnp = jax.numpy
    forward = spec.forward
    zeros = forward.padding_mode == "zeros"
    pads = []
    for i, s, e, (lo, hi), size in zip(
        spec.y_shape[2:],
        forward.stride,
        forward.extents,
        forward.padding,
        forward.padded_shape,
        strict=True,
    ):
        start = e - 1 - (lo if zeros else 0)
        length = (size - lo - hi) if zeros else size
        pads.append((start, length + e - 1 - ((i - 1) * s + 1) - start))
    out_dtype = y.dtype
    out = jax.lax.conv_general_dilated(
        y,
        _xp.transposed_kernel(_ops(precision), w, spec),
        window_strides=(1,) * spec.rank,
        padding=pads,
        lhs_dilation=forward.stride,
        rhs_dilation=forward.dilation,
        dimension_numbers=_DIMENSION_NUMBERS[spec.rank],
        feature_group_count=forward.groups,
        precision=_lax_precision(precision),
        preferred_element_type=jnp.float32 if y.dtype == jnp.float16 else None,
    )
    if not zeros:
        out = _xp.fold_padding(_ops(precision), out, forward)
    if bias is not None:
        out = out + bias.astype(out.dtype).reshape((-1,) + (1,) * spec.rank)
    return out.astype(out_dtype)


def _transpose_fft_unchecked(
    y: JaxArray, w: JaxArray, bias: JaxArray | None, spec: TransposeSpec, precision: str
) -> JaxArray:
    correlate = functools.partial(_fft_unchecked, precision=precision)
    return _xp.transpose_fft_unchecked(_ops(precision), y, w, bias, spec, correlate)


def _transpose_traced(
    y: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    spec: TransposeSpec,
    precision: str,
    method: Method,
) -> JaxArray:
    call = functools.partial(_transpose_computed, spec=spec, precision=precision, method=method)
    return _result_where_it_lies(call, spec.out_shape, len(spec.y_shape), spec.rank, y, w, bias)


def _transpose_computed(
    y: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    spec: TransposeSpec,
    precision: str,
    method: Method,
) -> JaxArray:
    if method != "fft":
        return _transpose_direct(y, w, bias, spec, precision)
    out = _transpose_fft_unchecked(y, w, bias, spec, precision)
    return _xp.finite_or(
        _ops(precision), out, lambda: _transpose_direct(y, w, bias, spec, precision)
    )


def _transpose_vjp_traced(
    y: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    grad_out: JaxArray,
    spec: TransposeSpec,
    precision: str,
    method: Method,
) -> tuple[JaxArray, JaxArray, JaxArray | None]:
    computes = (_transpose_direct, _transpose_fft_unchecked)
    return _gradients(
        _transpose_vjp_traced, computes, y, w, bias, grad_out, spec, precision, method
    )


def _transpose_keeping_layout(
    layout: Any,
    y: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    spec: TransposeSpec,
    precision: str,
    method: Method,
) -> JaxArray:
    out = _transpose_traced(y, w, bias, spec, precision, method)
    return laid_out_like(out, layout, spec.rank)


@functools.lru_cache(maxsize=64)
def _jitted_transpose(layout: Any = None) -> Any:
    """The transposed correlation, jitted; its result laid out like ``y`` when ``y``'s
    ``layout`` is known (see _jax_sharding)."""
    traced = (
        _transpose_traced
        if layout is None
        else functools.partial(_transpose_keeping_layout, layout)
    )
    return _jax().jit(traced, static_argnames=("spec", "precision", "method"))


def _correlate_transpose(
    y: JaxArray, w: JaxArray, bias: JaxArray | None, spec: TransposeSpec, method: Method
) -> JaxArray:
    transpose = _jitted_transpose(input_layout(y))
    return transpose(y, w, bias, spec=spec, precision=_precision.get(), method=method)


def _correlate_transpose_vjp(
    y: JaxArray,
    w: JaxArray,
    bias: JaxArray | None,
    grad_out: JaxArray,
    spec: TransposeSpec,
    method: Method,
) -> tuple[JaxArray, JaxArray, JaxArray | None]:
    precision = _precision.get()
    vjp = _jitted_gradients(_transpose_vjp_traced, gradient_shardings(y, w, bias))
    return vjp(y, w, bias, grad_out, spec=spec, precision=precision, method=method)


class _JaxOps(_xp.ArrayOps):
    """The shared code's operations in JAX (see :mod:`polyconv.backends._xp`), for one float32
    precision (that of the einsum contracting channels)."""

    def __init__(self, precision: str | None) -> None:
        self.precision = None if precision is None else _lax_precision(precision)

    def fft_dtype(self) -> Any:
        return _fft_dtype()

    def astype(self, a: JaxArray, dtype: Any) -> JaxArray:
        return a.astype(dtype)

    def padding_index(self, size: int, lo: int, hi: int, mode: str, like: JaxArray) -> Any:
        # Baked in as a constant, int32 whatever JAX's 64-bit mode: JAX keeps constants by the
        # array's identity, so one int64 map traced with the mode off and then on lowered with
        # mismatched types (MLIR "operand type mismatch") when the mode was toggled.
        return pad_indices(size, lo, hi, mode).astype(np.int32)

    def take(self, a: JaxArray, index: Any, axis: int) -> JaxArray:
        jax = _jax()
        pieces = runs(index)  # slices keep a sharded axis's layout, a gather does not
        if pieces is None:
            return jax.numpy.take(a, index, axis=axis, mode="clip")  # indices are in bounds
        sliced = [
            jax.lax.slice_in_dim(a, start, start + length, axis=axis)
            if step == 1
            else jax.numpy.flip(
                jax.lax.slice_in_dim(a, start - length + 1, start + 1, axis=axis), axis
            )
            for start, length, step in pieces
        ]
        return sliced[0] if len(sliced) == 1 else jax.numpy.concatenate(sliced, axis=axis)

    def add_at(self, a: JaxArray, index: Any, axis: int, size: int) -> JaxArray:
        shape = list(a.shape)
        shape[axis] = size
        where = (slice(None),) * axis + (index,)
        return _jax().numpy.zeros(shape, a.dtype).at[where].add(a)

    def set_in_zeros(
        self, shape: tuple[int, ...], dtype: Any, where: Any, values: JaxArray
    ) -> JaxArray:
        return _jax().numpy.zeros(shape, dtype).at[where].set(values.astype(dtype))

    def flip(self, a: JaxArray, axes: tuple[int, ...]) -> JaxArray:
        return _jax().numpy.flip(a, axes)

    def rfftn(self, a: JaxArray, lengths: tuple[int, ...], axes: tuple[int, ...]) -> JaxArray:
        spectra = _jax().numpy.fft.rfftn(whole_along(a, axes), s=lengths, axes=axes)
        return whole_along(spectra, axes)

    def kernel_spectra(
        self, kernel: JaxArray, lengths: tuple[int, ...], axes: tuple[int, ...]
    ) -> JaxArray:
        jnp = _jax().numpy
        spectra = jnp.fft.rfftn(whole_along(kernel, axes), s=lengths, axes=axes)
        return jnp.conj(whole_along(spectra, axes))

    def irfftn(
        self,
        spectra: JaxArray,
        lengths: tuple[int, ...],
        axes: tuple[int, ...],
        keep: tuple[int, ...],
    ) -> JaxArray:
        circular = _jax().numpy.fft.irfftn(whole_along(spectra, axes), s=lengths, axes=axes)
        return whole_along(circular, axes)

    def multiply_consuming(self, a: JaxArray, b: JaxArray) -> JaxArray:
        return a * b  # immutable; XLA reuses the buffer where it can

    def einsum(self, subscripts: str, a: JaxArray, b: JaxArray) -> JaxArray:
        return _jax().numpy.einsum(subscripts, a, b, precision=self.precision)

    def all_finite(self, arrays: Any) -> Any:
        if _transposing.get():
            return True  # no branch on the data (see _transposing)
        jnp = _jax().numpy
        return jnp.all(jnp.stack([jnp.isfinite(a).all() for a in arrays]))

    def cond(self, predicate: Any, then: Callable[[], Any], otherwise: Callable[[], Any]) -> Any:
        if isinstance(predicate, bool):
            return then() if predicate else otherwise()
        return _jax().lax.cond(predicate, then, otherwise)  # only the branch taken runs


@functools.cache
def _ops(precision: str | None) -> _JaxOps:
    return _JaxOps(precision)


class JaxBackend(Backend):
    name = "jax"
    framework = "jax"

    def owns(self, obj: object) -> bool:
        jax = sys.modules.get("jax")
        # Tracers are jax.Array instances too, so calls inside jit/grad/vmap land here.
        return jax is not None and isinstance(obj, jax.Array)

    def refusal(self, a: JaxArray) -> str | None:
        jax = _jax()
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return (
                f"a JAX PRNG key array (dtype {a.dtype}), not numbers; draw numbers from it "
                "(jax.random.normal(key, shape)) or pass jax.random.key_data(key)"
            )
        return None

    def dtype_name(self, a: JaxArray) -> str:
        return np.dtype(a.dtype).name

    def convert(self, a: Any, dtype: str, like: JaxArray | None) -> JaxArray:
        jax = _jax()
        _check_dtype_enabled(dtype)
        if isinstance(a, jax.Array):
            return a if a.dtype == np.dtype(dtype) else a.astype(dtype)
        array = np.asarray(a, dtype=dtype)
        if isinstance(like, jax.Array) and not _is_tracer(like) and like.committed:
            devices = like.devices()
            if len(devices) == 1:  # a sharded `like` has no single device to follow
                return jax.device_put(array, next(iter(devices)))
        return jax.numpy.asarray(array)

    def to_numpy(self, a: JaxArray) -> np.ndarray:
        if _is_tracer(a):
            raise TypeError(
                "a traced JAX array (inside jax.jit, jax.grad or jax.vmap) cannot be converted "
                "to another framework; run this call on the jax backend"
            )
        return np.asarray(a)

    def device(self, a: JaxArray) -> str | None:
        if _is_tracer(a):
            return None  # placed by the enclosing transformation, not known while tracing
        if not a.committed:
            return None  # JAX moves an uncommitted array to its committed co-inputs' device
        return placement(a)  # arrays on the same devices are compatible, however laid out

    def device_name(self, a: JaxArray) -> str:
        if _is_tracer(a):
            return "?"
        devices = a.devices()  # an uncommitted array's too: where it is now
        return str(next(iter(devices))) if len(devices) == 1 else str(a.sharding)

    def fft_dtype(self, dtype: str) -> str:
        return np.dtype(_fft_dtype()).name

    def auto_may_use_fft(self, device: str | None) -> bool:
        # With 64-bit mode off the FFT transforms in float32, whose global error can exceed the
        # direct method's bound many times over; and the cost model was fitted on CPU.
        jax = _jax()
        on_cpu = jax.default_backend() == "cpu" if device is None else "cpu" in device.lower()
        return bool(jax.config.jax_enable_x64) and on_cpu

    def precision_summary(self) -> str:
        config = _jax().config
        return (
            f"precision {get_precision()!r}; 64-bit mode {'on' if config.jax_enable_x64 else 'off'}, "
            f"jax_default_matmul_precision={config.jax_default_matmul_precision}; float16 and "
            f"bfloat16 accumulate in float32; FFT transforms in {self.fft_dtype('float32')}"
        )

    def synchronize(self, a: JaxArray) -> None:
        _jax().block_until_ready(a)

    def flip(self, a: JaxArray, axes: tuple[int, ...]) -> JaxArray:
        return _jax().numpy.flip(a, axes)

    def choose_method(self, spec: CorrSpec) -> Method:
        return choose_method(spec, "jax")

    def correlate(
        self,
        x: JaxArray,
        w: JaxArray,
        bias: JaxArray | None,
        spec: CorrSpec,
        *,
        method: Method = "direct",
    ) -> JaxArray:
        return _correlator(spec, method)(x, w, bias)

    def correlate_vjp(
        self,
        x: JaxArray,
        w: JaxArray,
        bias: JaxArray | None,
        grad_y: JaxArray,
        spec: CorrSpec,
        *,
        method: Method = "direct",
    ) -> tuple[JaxArray, JaxArray, JaxArray | None]:
        vjp = _jitted_gradients(_vjp_traced, gradient_shardings(x, w, bias))
        return vjp(x, w, bias, grad_y, spec=spec, precision=_precision.get(), method=method)

    def compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return _jax().jit(fn)

    def correlate_transpose(
        self,
        y: JaxArray,
        w: JaxArray,
        bias: JaxArray | None,
        spec: TransposeSpec,
        *,
        method: Method = "direct",
    ) -> JaxArray:
        return _correlate_transpose(y, w, bias, spec, method)

    def correlate_transpose_vjp(
        self,
        y: JaxArray,
        w: JaxArray,
        bias: JaxArray | None,
        grad_out: JaxArray,
        spec: TransposeSpec,
        *,
        method: Method = "direct",
    ) -> tuple[JaxArray, JaxArray, JaxArray | None]:
        return _correlate_transpose_vjp(y, w, bias, grad_out, spec, method)
