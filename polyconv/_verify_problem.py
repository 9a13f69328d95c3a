"""What :func:`polyconv.verify` checks for one kind of problem: the forward correlation or its
transpose, with data and kernels in either layout. The reference, the bounds and the shapes are
channels first; the backends are called in the caller's layouts and their results read back
channels first."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import reference
from ._bounds import (
    error_bound,
    transpose_error_bound,
    transpose_vjp_error_bounds,
    vjp_error_bounds,
)
from ._core.api import correlate, correlate_vjp
from ._core.transpose import correlate_transpose, correlate_transpose_vjp
from ._spec.layouts import (
    CHANNELS_FIRST,
    CHANNELS_LAST,
    check_channels,
    check_format,
    data_to_first,
    data_to_last,
    kernel_to_first,
    kernel_to_last,
)
from .backends import Array, Backend

Bounds = tuple[np.ndarray | None, ...]


@dataclass(frozen=True)
class ProblemKind:
    """The operation verified and the layouts its arrays are given and returned in."""

    transpose: bool = False
    data_format: str = CHANNELS_FIRST
    kernel_format: str = CHANNELS_FIRST

    @property
    def results(self) -> tuple[str, str, str, str]:
        """The names of the output and of the gradients of the three inputs."""
        if self.transpose:
            return ("out", "grad_y", "grad_w", "grad_bias")
        return ("y", "grad_x", "grad_w", "grad_bias")

    @property
    def input_name(self) -> str:
        return "y" if self.transpose else "x"

    # --- layouts ---------------------------------------------------------------------------

    def data_first(self, a: np.ndarray, rank: int) -> np.ndarray:
        """A data array given in ``data_format``, channels first."""
        if self.data_format == CHANNELS_FIRST:
            return a
        return a.transpose(data_to_first(a.ndim, a.ndim == rank + 2))

    def data_in_format(self, a: np.ndarray, rank: int) -> np.ndarray:
        if self.data_format == CHANNELS_FIRST:
            return a
        return np.ascontiguousarray(a.transpose(data_to_last(a.ndim, a.ndim == rank + 2)))

    def kernel_first(self, w: np.ndarray) -> np.ndarray:
        if self.kernel_format == CHANNELS_FIRST:
            return w
        return w.transpose(kernel_to_first(w.ndim))

    def kernel_in_format(self, w: np.ndarray) -> np.ndarray:
        if self.kernel_format == CHANNELS_FIRST:
            return w
        return np.ascontiguousarray(w.transpose(kernel_to_last(w.ndim)))

    def shape_in_format(self, shape: tuple[int, ...], rank: int, kernel: bool = False) -> tuple:
        dummy = np.empty(shape, dtype=np.int8)
        return (self.kernel_in_format(dummy) if kernel else self.data_in_format(dummy, rank)).shape

    def check_shapes(self, x_shape: tuple[int, ...], w_shape: tuple[int, ...], groups: object):
        check_channels(
            self.input_name,
            x_shape,
            w_shape,
            data_format=self.data_format,
            kernel_format=self.kernel_format,
            groups=groups,
            transpose=self.transpose,
        )

    def read_back(self, backend: Backend, results: tuple[Array, ...], rank: int) -> tuple:
        """The backend's results (in the caller's layouts) channels first."""
        out: list[Array] = []
        for kind, a in zip(("data", "data", "kernel", None), results, strict=True):
            if a is None or kind is None:
                out.append(a)
            elif kind == "data" and self.data_format == CHANNELS_LAST:
                out.append(backend.permute(a, data_to_first(a.ndim, a.ndim == rank + 2)))
            elif kind == "kernel" and self.kernel_format == CHANNELS_LAST:
                out.append(backend.permute(a, kernel_to_first(a.ndim)))
            else:
                out.append(a)
        return tuple(out)

    # --- the operation -------------------------------------------------------------------------

    def calls(
        self, kwargs: Mapping[str, Any]
    ) -> tuple[Callable[..., Array], Callable[..., tuple[Array, Array, Array | None]]]:
        """The forward call ``f(x, w, b, backend=...)`` and the VJP call ``f(x, w, b, g, ...)``,
        in the caller's layouts, with the problem's keywords bound."""
        layout = {"data_format": self.data_format, "kernel_format": self.kernel_format}
        options: dict[str, Any] = {**kwargs, **layout}
        forward: Callable[..., Any] = correlate_transpose if self.transpose else correlate
        vjp: Callable[..., Any] = correlate_transpose_vjp if self.transpose else correlate_vjp
        return (
            lambda *arrays, **more: forward(*arrays, **options, **more),
            lambda *arrays, **more: vjp(*arrays, **options, **more),
        )

    def expected(
        self, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: np.ndarray, kwargs: Any
    ) -> tuple[np.ndarray | None, ...]:
        if self.transpose:
            return (
                reference.correlate_transpose(x, w, b, **kwargs),
                *reference.correlate_transpose_vjp(x, w, b, g, **kwargs),
            )
        return (
            reference.correlate(x, w, b, **kwargs),
            *reference.correlate_vjp(x, w, b, g, **kwargs),
        )

    def bounds(
        self,
        x: np.ndarray,
        w: np.ndarray,
        b: np.ndarray | None,
        g: np.ndarray,
        dtype: str,
        kwargs: Mapping[str, Any],
        method: str = "direct",
        fft_dtype: str = "float64",
    ) -> Bounds:
        """The bounds of the result and the gradients computed by ``method`` (the FFT's
        transforms in ``fft_dtype``)."""
        if self.transpose:
            return (
                transpose_error_bound(x, w, b, dtype, kwargs, method=method, fft_dtype=fft_dtype),
                *transpose_vjp_error_bounds(
                    x, w, b, g, dtype, kwargs, method=method, fft_dtype=fft_dtype
                ),
            )
        return (
            error_bound(x, w, b, dtype, kwargs, method=method, fft_dtype=fft_dtype),
            *vjp_error_bounds(x, w, b, g, dtype, kwargs, method=method, fft_dtype=fft_dtype),
        )


CORRELATE = ProblemKind()
"""The forward correlation, channels first (what verify checks by default)."""


def problem_kind(transpose: object, data_format: object, kernel_format: object) -> ProblemKind:
    if transpose is not True and transpose is not False:
        raise TypeError(f"transpose must be True or False, got {transpose!r}")
    return ProblemKind(
        transpose,
        check_format(data_format, "data_format"),
        check_format(kernel_format, "kernel_format"),
    )
