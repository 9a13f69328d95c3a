"""SciPy as an outside oracle: every backend agrees with ``scipy.signal`` on single-channel cases.

How SciPy's arguments map to polyconv's (per spatial axis, kernel size ``k``):

================================  ==========================================================
SciPy                             polyconv
================================  ==========================================================
``mode="valid"``                  ``padding="valid"``: ``(0, 0)``
``mode="full"``                   ``padding="full"``: ``(k - 1, k - 1)``
``correlate2d(mode="same")``      ``((k - 1) // 2, k // 2)``: the odd extra pad at the end,
                                  which is polyconv's ``"same"`` at stride 1
``correlate(mode="same")``        ``(k // 2, (k - 1) // 2)``: the extra pad at the *start*
                                  (as ``numpy.correlate``); differs from ``"same"`` for even k
``boundary="fill"`` (fillvalue 0) ``padding_mode="zeros"``
``boundary="wrap"``               ``padding_mode="circular"``
``boundary="symm"``               ``padding_mode="symmetric"``
================================  ==========================================================

The pairs are passed explicitly, so these tests pin SciPy's centering rather than assume it;
:func:`test_scipy_correlate2d_same_is_polyconvs_same_at_stride_1` checks the one equivalence the
table claims. Kernels up to 6 wide on inputs as small as 1 make the wrap/symm pads wider than the
input, where SciPy and ``np.pad`` (hence polyconv) still agree.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import polyconv as pc
from polyconv.backends import Backend
from polyconv.testing import assert_close, values

signal = pytest.importorskip("scipy.signal")

BOUNDARY_TO_PADDING_MODE = {"fill": "zeros", "wrap": "circular", "symm": "symmetric"}

# Compared in float64 (with SciPy / with the float64 reference): JAX in its 64-bit mode.
pytestmark = pytest.mark.jax_x64


def correlate2d_padding(mode: str, kernel: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The ``(lo, hi)`` pairs ``scipy.signal.correlate2d`` pads with in ``mode``."""
    if mode == "valid":
        return tuple((0, 0) for _ in kernel)
    if mode == "full":
        return tuple((k - 1, k - 1) for k in kernel)
    return tuple(((k - 1) // 2, k // 2) for k in kernel)


def correlate_nd_padding(mode: str, kernel: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The ``(lo, hi)`` pairs ``scipy.signal.correlate`` pads with: as correlate2d but for
    ``"same"``, which centers the other way for even kernels."""
    if mode == "same":
        return tuple((k // 2, (k - 1) // 2) for k in kernel)
    return correlate2d_padding(mode, kernel)


@st.composite
def single_channel_problems(
    draw: st.DrawFn, rank: int, modes: tuple[str, ...] = ("valid", "same", "full")
) -> tuple[str, np.ndarray, np.ndarray]:
    """A SciPy mode, an input and a kernel; for ``"valid"`` the kernel fits in the input."""
    mode = draw(st.sampled_from(modes))
    size = st.integers(1, 7)
    spatial = tuple(draw(size) for _ in range(rank))
    kernel = tuple(draw(st.integers(1, min(n, 6) if mode == "valid" else 6)) for n in spatial)
    return mode, draw(values(spatial)), draw(values(kernel))


def assert_matches_scipy(
    backend: Backend, x: np.ndarray, k: np.ndarray, expected: np.ndarray, **spec_kwargs: object
) -> None:
    """polyconv on one channel (unbatched ``(1, *spatial)``) equals SciPy's float64 result."""
    x1, w1 = x[None], k[None, None]
    y = pc.correlate(x1, w1, backend=backend.name, **spec_kwargs)  # type: ignore[arg-type]
    assert_close(y, expected[None], x1, w1, dtype="float64", spec_kwargs=spec_kwargs)


@given(problem=single_channel_problems(rank=2), boundary=st.sampled_from(["fill", "wrap", "symm"]))
def test_agrees_with_scipy_correlate2d(backend: Backend, problem, boundary: str) -> None:
    mode, x, k = problem
    expected = signal.correlate2d(x, k, mode=mode, boundary=boundary)
    assert_matches_scipy(
        backend,
        x,
        k,
        expected,
        padding=correlate2d_padding(mode, k.shape),
        padding_mode=BOUNDARY_TO_PADDING_MODE[boundary],
    )


@given(rank=st.integers(1, 3), data=st.data())
def test_agrees_with_scipy_correlate_in_every_rank(backend: Backend, rank: int, data) -> None:
    mode, x, k = data.draw(single_channel_problems(rank))
    expected = signal.correlate(x, k, mode=mode, method="direct")
    assert_matches_scipy(backend, x, k, expected, padding=correlate_nd_padding(mode, k.shape))


@given(problem=single_channel_problems(rank=2, modes=("valid",)))
def test_corr2d_is_scipy_valid_correlation(backend: Backend, problem) -> None:
    _, x, k = problem
    y = backend.to_numpy(pc.corr2d(x, k, backend=backend.name))
    expected = signal.correlate2d(x, k, mode="valid")
    assert_close(y[None, None], expected[None, None], x[None, None], k[None, None], dtype="float64")


@pytest.mark.parametrize("kernel", [(1, 1), (2, 3), (4, 4), (5, 2)])
def test_scipy_correlate2d_same_is_polyconvs_same_at_stride_1(kernel: tuple[int, int]) -> None:
    spec = pc.normalize((1, 1, 6, 7), (1, 1, *kernel), padding="same")
    assert spec.padding == correlate2d_padding("same", kernel)
