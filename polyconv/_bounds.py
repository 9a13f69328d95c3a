"""Error bounds for a correlation computed in floating point, and the comparison against them.

For each output element, ``|y - ref| <= c * (eps(dtype) * K * sum(|terms|) + K * eta(dtype))``,
where ``K`` is the number of terms summed and ``sum(|terms|)`` is the same correlation evaluated on
absolute values: the classical worst-case bound for a sum of ``K`` rounded products in any order
(Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1), so it holds under cancellation,
with the absolute term that gradual underflow adds (Higham 2.1: a product or result rounded into
the subnormal range errs by up to ``eta``, the smallest subnormal, not relatively). The FFT
method errs globally rather than per element; its bound adds :func:`fft_error`, in the precision
its transforms ran in (``fft_dtype``: float64, or float32 on JAX with 64-bit mode off), to every
element. Used by :mod:`polyconv.testing` (which re-exports everything here) and by
:func:`polyconv.verify`; kept free of Hypothesis so that ``verify`` runs where only NumPy is
installed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import reference
from ._spec.dtypes import finfo, numpy_dtype
from ._spec.spec import normalize
from .backends import backend_of

__all__ = [
    "DEFAULT_C",
    "assert_within",
    "dtype_name",
    "eps",
    "error_bound",
    "eta",
    "fft_error",
    "round_to",
    "to_numpy",
    "vjp_error_bounds",
]

DEFAULT_C = 2.0
"""The factor ``c`` of every bound. ``gamma_K ~ K * u`` (unit roundoff ``u = eps / 2``) bounds
any summation order of ``K`` rounded products, so the bound ``c * eps * K = 2c * gamma_K``; with
``c = 2`` it is four ``gamma_K``: one for the backend, one for the float64 reference's own
rounding (which matters when the tested dtype is float64), and margin for the final rounding of a
wider accumulator and the ``1 / (1 - K u)`` factor (about 1.05 for float16 at ``K = 100``).
Comparing two approximations of the truth (two backends, autodiff against ``correlate_vjp``)
needs ``2 * DEFAULT_C``: each is within the bound of the exact sum."""


def eps(dtype: str) -> float:
    """Machine epsilon of a float dtype (``2**-10`` for float16, ``2**-7`` for bfloat16,
    ``2**-23``, ``2**-52``)."""
    return float(finfo(dtype).eps)  # type: ignore[attr-defined]


def eta(dtype: str) -> float:
    """The smallest positive subnormal of a float dtype (``2**-24`` for float16): the absolute
    error of a result rounded into the subnormal range."""
    return float(finfo(dtype).smallest_subnormal)  # type: ignore[attr-defined]


def round_to(a: object, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype`` and returned as float64, exactly: the inputs the reference must
    see when the tested computation runs in ``dtype``."""
    return to_numpy(a).astype(numpy_dtype(dtype)).astype(np.float64)


def to_numpy(a: object) -> np.ndarray:
    """Any backend's array (or a list, or a NumPy array) as a NumPy array, detached and on host."""
    owner = backend_of(a)
    return owner.to_numpy(a) if owner is not None else np.asarray(a)


def dtype_name(a: object) -> str:
    """The NumPy name of any backend array's dtype, without converting it."""
    owner = backend_of(a)
    return owner.dtype_name(a) if owner is not None else np.asarray(a).dtype.name


def _rounded_abs(a: object, dtype: str) -> np.ndarray:
    return np.abs(round_to(a, dtype))


def _spec_keywords(spec_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keywords that define the problem: ``method`` says how it was computed, which the
    bound takes separately."""
    return {k: v for k, v in (spec_kwargs or {}).items() if k != "method"}


def fft_error(
    x: object,
    w: object,
    grad_y: object,
    spec_kwargs: Mapping[str, Any] | None = None,
    *,
    fft_dtype: str = "float64",
) -> float:
    """The global term the FFT method adds to every element's bound (of the result and of every
    gradient), for transforms computed in ``fft_dtype`` (what the backend's
    :meth:`~polyconv.backends.Backend.fft_dtype` says: float64, or float32 on JAX with 64-bit mode
    off, where this term is about 5e8 times larger and the FFT is no longer chosen by "auto").

    A transform of ``L`` samples errs by about ``eps * log2(L)`` times its input's 2-norm
    (Higham, 24.1), so a circular correlation of ``a`` with ``b`` by FFT errs, on every output,
    by about ``eps * log2(L) * ||a||_2 * ||b||_1`` (``||b||_1`` bounds ``b``'s spectrum). The
    term sums that over the channels each result element contracts and takes the largest over
    the three products a VJP takes: the padded input with the kernel (``y``), the output gradient
    with the kernel (``grad_x``, times the most padded copies of one input element that fold
    into it), the padded input with the output gradient summed over the batch (``grad_w``). It
    over-counts on purpose: ``L`` doubles every axis of the padded length plus the kernel extent,
    and a factor 8 covers the forward transforms, the spectral product and the inverse. In
    float64 it stays far below one misplaced term of float16 or float32 data, so it cannot hide a
    wrong index; it only admits that an output which reads nothing but zeros comes out as
    ``1e-17``. In float32 it admits what a float32 FFT does: outputs far smaller than the largest
    lose their relative accuracy.
    """
    return max(_fft_errors(x, w, grad_y, spec_kwargs, fft_dtype))


def _fft_errors(
    x: object,
    w: object,
    grad_y: object,
    spec_kwargs: Mapping[str, Any] | None,
    fft_dtype: str,
) -> tuple[float, float, float]:
    """:func:`fft_error`'s terms of ``y``, ``grad_x`` and ``grad_w`` (0 without ``grad_y``)."""
    kwargs = _spec_keywords(spec_kwargs)
    abs_x, abs_w = np.abs(to_numpy(x)), np.abs(to_numpy(w))
    spec = normalize(abs_x.shape, abs_w.shape, **kwargs)
    n, g = spec.x_shape[0], spec.groups
    og, cg = spec.w_shape[0] // g, spec.w_shape[1]
    padded = reference.pad(abs_x.reshape(spec.x_shape), spec)
    x_norms = np.sqrt(np.square(padded).reshape(n, g, cg, -1).sum(-1))  # ||P(x)[n, c]||_2
    w_sums = abs_w.reshape(g, og, cg, -1).sum(-1)  # ||w[o, c]||_1
    magnitudes = [float(np.einsum("ngc,goc->ngo", x_norms, w_sums).max(initial=0.0)), 0.0, 0.0]
    if grad_y is not None:
        abs_g = np.abs(to_numpy(grad_y)).reshape(n, g, og, -1)
        g_norms, g_sums = np.sqrt(np.square(abs_g).sum(-1)), abs_g.sum(-1)
        grad_x = np.einsum("ngo,goc->ngc", g_norms, w_sums).max(initial=0.0)
        magnitudes[1] = float(grad_x) * reference.fold_count(spec)
        magnitudes[2] = float(np.einsum("ngc,ngo->goc", x_norms, g_sums).max(initial=0.0))
    length = math.prod(2 * (p + e) for p, e in zip(spec.padded_shape, spec.extents, strict=True))
    scale = 8 * eps(fft_dtype) * math.log2(length)
    return scale * magnitudes[0], scale * magnitudes[1], scale * magnitudes[2]


def error_bound(
    x: object,
    w: object,
    bias: object,
    dtype: str,
    spec_kwargs: Mapping[str, Any] | None = None,
    *,
    c: float = DEFAULT_C,
    method: str = "direct",
    fft_dtype: str = "float64",
) -> np.ndarray:
    """Per-element bound on ``|correlate(x, w, bias) - exact|`` for a computation in ``dtype``:
    ``c * (eps(dtype) * K * correlate(|x|, |w|, |bias|) + K * eta(dtype))``, plus
    :func:`fft_error` of transforms in ``fft_dtype`` when the ``method`` that computed it is
    ``"fft"``.

    ``K = terms_per_output (+ 1 with a bias)``: the number of terms each output sums. The inputs
    are first rounded to ``dtype``, as the computation sees them. Arrays of any backend work.
    """
    kwargs = _spec_keywords(spec_kwargs)
    abs_x, abs_w = _rounded_abs(x, dtype), _rounded_abs(w, dtype)
    abs_b = None if bias is None else _rounded_abs(bias, dtype)
    spec = normalize(abs_x.shape, abs_w.shape, None if abs_b is None else abs_b.shape, **kwargs)
    terms = spec.terms_per_output + spec.has_bias
    magnitude = reference.correlate(abs_x, abs_w, abs_b, **kwargs)
    bound = c * (eps(dtype) * terms * magnitude + terms * eta(dtype))
    if method != "fft":
        return bound
    return bound + _fft_errors(abs_x, abs_w, None, kwargs, fft_dtype)[0]


def vjp_error_bounds(
    x: object,
    w: object,
    bias: object,
    grad_y: object,
    dtype: str,
    spec_kwargs: Mapping[str, Any] | None = None,
    *,
    c: float = DEFAULT_C,
    method: str = "direct",
    fft_dtype: str = "float64",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-element bounds on the errors of ``(grad_x, grad_w, grad_bias)`` computed in ``dtype``.

    Each gradient element is a sum too: ``grad_x`` over every (output, kernel tap) that reads the
    input element (through the padding as well), ``grad_w`` over batch and output positions,
    ``grad_bias`` over batch and positions. Its bound is ``c * (eps * K * sum(|terms|) + K *
    eta)``, with the magnitudes from the reference VJP of ``(|x|, |w|, |bias|, |grad_y|)`` and
    the per-element term counts ``K`` from the reference VJP of all-ones arrays; with
    ``method="fft"``, plus :func:`fft_error` of transforms in ``fft_dtype``.
    """
    kwargs = _spec_keywords(spec_kwargs)
    abs_x, abs_w, abs_g = (_rounded_abs(a, dtype) for a in (x, w, grad_y))
    abs_b = None if bias is None else _rounded_abs(bias, dtype)
    ones_b = None if abs_b is None else np.ones_like(abs_b)
    mag_x, mag_w, mag_b = reference.correlate_vjp(abs_x, abs_w, abs_b, abs_g, **kwargs)
    count_x, count_w, count_b = reference.correlate_vjp(
        np.ones_like(abs_x), np.ones_like(abs_w), ones_b, np.ones_like(abs_g), **kwargs
    )
    terms = (0.0, 0.0, 0.0)
    if method == "fft":  # grad_bias sums grad_y, which an FFT's result's gradient can carry
        terms = _fft_errors(abs_x, abs_w, abs_g, kwargs, fft_dtype)

    def bound(count: np.ndarray, magnitude: np.ndarray, extra: float) -> np.ndarray:
        return c * (eps(dtype) * count * magnitude + count * eta(dtype)) + extra

    bound_b = None if mag_b is None or count_b is None else bound(count_b, mag_b, max(terms))
    return bound(count_x, mag_x, terms[1]), bound(count_w, mag_w, terms[2]), bound_b


def assert_within(actual: object, expected: object, bound: object, *, what: str = "result") -> None:
    """Assert ``|actual - expected| <= bound`` element-wise, with equal shapes.

    ``actual`` may be any backend's array. Where ``expected`` is NaN or infinite, ``actual`` must
    be NaN or the same infinity. A failure reports how many elements fail, the worst one (index,
    both values, the error, its bound), and both shapes and dtypes.
    """
    actual_np = to_numpy(actual)
    expected_np = np.asarray(expected)
    shapes = f"actual shape {actual_np.shape}, expected shape {expected_np.shape}"
    dtypes = f"actual dtype {dtype_name(actual)}, expected dtype {expected_np.dtype.name}"
    if actual_np.shape != expected_np.shape:
        raise AssertionError(f"{what}: shapes differ: {shapes} ({dtypes})")
    a = actual_np.astype(np.float64)
    e = expected_np.astype(np.float64)
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), e.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(a - e)
        nonfinite = ~np.isfinite(e)
        matches_nonfinite = (np.isnan(e) & np.isnan(a)) | (a == e)
        bad = np.where(nonfinite, ~matches_nonfinite, ~(error <= b))
        if not bad.any():
            return
        # The worst element: the largest error relative to its bound (NaN errors rank first).
        ratio = np.where(bad, error / np.where(b > 0, b, np.finfo(np.float64).tiny), -1.0)
        ratio = np.where(bad & ~np.isfinite(ratio), np.inf, ratio)
    worst = np.unravel_index(int(np.argmax(ratio)), e.shape)
    raise AssertionError(
        f"{what}: {int(bad.sum())} of {e.size} elements exceed the error bound; worst at index "
        f"{tuple(int(i) for i in worst)}: actual {float(a[worst])!r}, expected {float(e[worst])!r}, "
        f"|difference| {error[worst]:.6g} > bound {b[worst]:.6g}; {shapes}; {dtypes}"
    )


def _transpose_keywords(
    spec_kwargs: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The transposed problem's keywords, and the forward's (without ``output_padding``)."""
    kwargs = _spec_keywords(spec_kwargs)
    return kwargs, {k: v for k, v in kwargs.items() if k != "output_padding"}


def transpose_error_bound(
    y: object,
    w: object,
    bias: object,
    dtype: str,
    spec_kwargs: Mapping[str, Any] | None = None,
    *,
    c: float = DEFAULT_C,
    method: str = "direct",
    fft_dtype: str = "float64",
) -> np.ndarray:
    """Per-element bound on ``|correlate_transpose(y, w, bias) - exact|`` computed in ``dtype``:
    ``c * (eps * K * correlate_transpose(|y|, |w|, |bias|) + K * eta)``, ``K`` per element the
    number of terms it sums (the transpose of all ones: through the padding's folds too), plus
    :func:`fft_error` of transforms in ``fft_dtype`` with ``method="fft"``."""
    kwargs, _ = _transpose_keywords(spec_kwargs)
    abs_y, abs_w = _rounded_abs(y, dtype), _rounded_abs(w, dtype)
    abs_b = None if bias is None else _rounded_abs(bias, dtype)
    ones_b = None if abs_b is None else np.ones_like(abs_b)
    magnitude = reference.correlate_transpose(abs_y, abs_w, abs_b, **kwargs)
    count = reference.correlate_transpose(
        np.ones_like(abs_y), np.ones_like(abs_w), ones_b, **kwargs
    )
    bound = c * (eps(dtype) * count * magnitude + count * eta(dtype))
    if method != "fft":
        return bound
    forward = _transpose_keywords(kwargs)[1]
    return bound + fft_error(np.zeros_like(magnitude), abs_w, abs_y, forward, fft_dtype=fft_dtype)


def transpose_vjp_error_bounds(
    y: object,
    w: object,
    bias: object,
    grad_out: object,
    dtype: str,
    spec_kwargs: Mapping[str, Any] | None = None,
    *,
    c: float = DEFAULT_C,
    method: str = "direct",
    fft_dtype: str = "float64",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-element bounds on the errors of the transpose's ``(grad_y, grad_w, grad_bias)``:
    ``grad_y`` is the forward correlation of ``grad_out``, ``grad_w`` the forward's kernel
    gradient (``grad_out`` as input, ``y`` as output gradient); bounds as for those."""
    kwargs, forward = _transpose_keywords(spec_kwargs)
    abs_y, abs_w, abs_g = (_rounded_abs(a, dtype) for a in (y, w, grad_out))
    abs_b = None if bias is None else _rounded_abs(bias, dtype)
    ones = [None if a is None else np.ones_like(a) for a in (abs_y, abs_w, abs_b, abs_g)]
    mag = reference.correlate_transpose_vjp(abs_y, abs_w, abs_b, abs_g, **kwargs)
    count = reference.correlate_transpose_vjp(*ones, **kwargs)
    extra = 0.0
    if method == "fft":
        extra = fft_error(abs_g, abs_w, abs_y, forward, fft_dtype=fft_dtype)

    def bound(count: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
        return c * (eps(dtype) * count * magnitude + count * eta(dtype)) + extra

    bound_b = None if mag[2] is None or count[2] is None else bound(count[2], mag[2])
    return bound(count[0], mag[0]), bound(count[1], mag[1]), bound_b
