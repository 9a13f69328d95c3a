"""Error bounds for a correlation computed in floating point, and the comparison against them.

For each output element, ``|y - ref| <= c * eps(dtype) * K * sum(|terms|)``, where ``K`` is the
number of terms summed and ``sum(|terms|)`` is the same correlation evaluated on absolute values:
the classical worst-case bound for a sum of ``K`` rounded products in any order (Higham,
*Accuracy and Stability of Numerical Algorithms*, 3.1), so it holds under cancellation. The FFT
method errs globally rather than per element; its bound adds :func:`fft_error` to every
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
from ._spec.spec import normalize
from .backends import backend_of

__all__ = [
    "DEFAULT_C",
    "assert_within",
    "dtype_name",
    "eps",
    "error_bound",
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
    """Machine epsilon of a float dtype (``2**-10`` for float16, ``2**-23``, ``2**-52``)."""
    return float(np.finfo(np.dtype(dtype)).eps)


def round_to(a: object, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype`` and returned as float64, exactly: the inputs the reference must
    see when the tested computation runs in ``dtype``."""
    return to_numpy(a).astype(dtype).astype(np.float64)


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
    x: object, w: object, grad_y: object, spec_kwargs: Mapping[str, Any] | None = None
) -> float:
    """The global term the FFT method adds to every element's bound (of the result and of every
    gradient), for transforms computed in float64.

    A transform of ``L`` samples errs by about ``eps * log2(L)`` times its input's 2-norm
    (Higham, 24.1), so a circular correlation by FFT errs by about ``eps * log2(L)`` times
    ``||x||_2 * max|rfft(w)| <= sqrt(L) * max|x| * sum|w|`` per channel pair. The term
    over-counts on purpose: ``L`` doubles every axis of the padded length plus the kernel
    extent, the magnitude covers the three products a VJP takes (``x`` with ``w``, ``grad_y``
    with ``w``, ``x`` with ``grad_y``) summed over the batch, and a factor 8 covers the forward
    transforms, the spectral product and the inverse. It stays far below one misplaced term of
    float16 or float32 data, so it cannot hide a wrong index; it only admits that an output
    which reads nothing but zeros comes out as ``1e-17``.
    """
    kwargs = _spec_keywords(spec_kwargs)
    abs_x, abs_w = np.abs(to_numpy(x)), np.abs(to_numpy(w))
    spec = normalize(abs_x.shape, abs_w.shape, **kwargs)
    extents = spec.extents
    length = math.prod(2 * (p + e) for p, e in zip(spec.padded_shape, extents, strict=True))
    x_max, w_sum = float(abs_x.max(initial=0.0)), float(abs_w.sum())
    magnitude = x_max * w_sum
    if grad_y is not None:
        abs_g = np.abs(to_numpy(grad_y))
        g_max, g_sum = float(abs_g.max(initial=0.0)), float(abs_g.sum())
        magnitude = max(magnitude, g_max * w_sum, x_max * g_sum)
    scale = math.log2(length) * math.sqrt(length) * spec.x_shape[0]
    return 8 * eps("float64") * scale * magnitude


def error_bound(
    x: object,
    w: object,
    bias: object,
    dtype: str,
    spec_kwargs: Mapping[str, Any] | None = None,
    *,
    c: float = DEFAULT_C,
    method: str = "direct",
) -> np.ndarray:
    """Per-element bound on ``|correlate(x, w, bias) - exact|`` for a computation in ``dtype``:
    ``c * eps(dtype) * K * correlate(|x|, |w|, |bias|)``, plus :func:`fft_error` when the
    ``method`` that computed it is ``"fft"``.

    ``K = terms_per_output (+ 1 with a bias)``: the number of terms each output sums. The inputs
    are first rounded to ``dtype``, as the computation sees them. Arrays of any backend work.
    """
    kwargs = _spec_keywords(spec_kwargs)
    abs_x, abs_w = _rounded_abs(x, dtype), _rounded_abs(w, dtype)
    abs_b = None if bias is None else _rounded_abs(bias, dtype)
    spec = normalize(abs_x.shape, abs_w.shape, None if abs_b is None else abs_b.shape, **kwargs)
    terms = spec.terms_per_output + spec.has_bias
    magnitude = reference.correlate(abs_x, abs_w, abs_b, **kwargs)
    bound = c * eps(dtype) * terms * magnitude
    return bound + fft_error(abs_x, abs_w, None, kwargs) if method == "fft" else bound


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-element bounds on the errors of ``(grad_x, grad_w, grad_bias)`` computed in ``dtype``.

    Each gradient element is a sum too: ``grad_x`` over every (output, kernel tap) that reads the
    input element (through the padding as well), ``grad_w`` over batch and output positions,
    ``grad_bias`` over batch and positions. Its bound is ``c * eps * K * sum(|terms|)``, with the
    magnitudes from the reference VJP of ``(|x|, |w|, |bias|, |grad_y|)`` and the per-element
    term counts ``K`` from the reference VJP of all-ones arrays; with ``method="fft"``, plus
    :func:`fft_error`.
    """
    kwargs = _spec_keywords(spec_kwargs)
    abs_x, abs_w, abs_g = (_rounded_abs(a, dtype) for a in (x, w, grad_y))
    abs_b = None if bias is None else _rounded_abs(bias, dtype)
    ones_b = None if abs_b is None else np.ones_like(abs_b)
    mag_x, mag_w, mag_b = reference.correlate_vjp(abs_x, abs_w, abs_b, abs_g, **kwargs)
    count_x, count_w, count_b = reference.correlate_vjp(
        np.ones_like(abs_x), np.ones_like(abs_w), ones_b, np.ones_like(abs_g), **kwargs
    )
    scale = c * eps(dtype)
    extra = fft_error(abs_x, abs_w, abs_g, kwargs) if method == "fft" else 0.0
    bound_b = None if mag_b is None or count_b is None else scale * count_b * mag_b + extra
    return scale * count_x * mag_x + extra, scale * count_w * mag_w + extra, bound_b


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
) -> np.ndarray:
    """Per-element bound on ``|correlate_transpose(y, w, bias) - exact|`` computed in ``dtype``:
    ``c * eps * K * correlate_transpose(|y|, |w|, |bias|)``, ``K`` per element the number of
    terms it sums (the transpose of all ones: through the padding's folds too), plus
    :func:`fft_error` with ``method="fft"``."""
    kwargs, _ = _transpose_keywords(spec_kwargs)
    abs_y, abs_w = _rounded_abs(y, dtype), _rounded_abs(w, dtype)
    abs_b = None if bias is None else _rounded_abs(bias, dtype)
    ones_b = None if abs_b is None else np.ones_like(abs_b)
    magnitude = reference.correlate_transpose(abs_y, abs_w, abs_b, **kwargs)
    count = reference.correlate_transpose(
        np.ones_like(abs_y), np.ones_like(abs_w), ones_b, **kwargs
    )
    bound = c * eps(dtype) * count * magnitude
    if method != "fft":
        return bound
    return bound + fft_error(np.zeros_like(magnitude), abs_w, abs_y, _transpose_keywords(kwargs)[1])


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
    scale = c * eps(dtype)
    extra = 0.0
    if method == "fft":
        extra = fft_error(abs_g, abs_w, abs_y, forward)
    bound_b = None if mag[2] is None or count[2] is None else scale * count[2] * mag[2] + extra
    return scale * count[0] * mag[0] + extra, scale * count[1] * mag[1] + extra, bound_b
