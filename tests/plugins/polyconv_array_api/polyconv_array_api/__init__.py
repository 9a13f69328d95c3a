"""A polyconv backend for any Array API namespace (https://data-apis.org/array-api/).

It computes the specification with standard functions only (``take``, ``concat``, strided
slicing, ``matmul``, ``tensordot``, ``stack``) and never mutates an array, so it runs on every
conforming library: ``array_api_strict`` (which it serves as registered), CuPy, Dask, or
JAX's ``jax.numpy``. Serving another library takes a two-line subclass and an entry point::

    class CupyBackend(ArrayApiBackend):
        name = "cupy"
        framework = "cupy"  # the module that is the namespace and whose arrays it owns

The method is the direct one (a loop over kernel taps, each a batched matmul over channels), and
the gradients are its transposes written by hand, as in polyconv's NumPy backend; the padding
and its transpose come from :func:`polyconv.backends.pad_indices`.
"""

from __future__ import annotations

import functools
import importlib
import math
from types import ModuleType
from typing import Any

import numpy as np

from polyconv.backends import Backend, CorrSpec, Method, pad_indices

__all__ = ["ArrayApiBackend"]

_DTYPE_NAMES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)

Array = Any


def _window(spec: CorrSpec, offset: tuple[int, ...]) -> tuple[slice, ...]:
    """The strided slice of the padded input that kernel tap ``offset`` multiplies."""
    return tuple(
        slice(k * d, k * d + s * (n - 1) + 1, s)
        for k, d, s, n in zip(offset, spec.dilation, spec.stride, spec.out_shape[2:], strict=True)
    )


def _along_axis(xp: ModuleType, a: Array, matrix: np.ndarray, axis: int) -> Array:
    """``a`` with axis ``axis`` (length m) replaced by ``a @ matrix`` along it (``matrix`` is
    m x n): a linear map of one axis, written with ``tensordot``, which works everywhere."""
    operator = xp.asarray(matrix, dtype=a.dtype, device=a.device)
    mapped = xp.tensordot(a, operator, axes=([axis], [0]))  # the new axis comes last
    order = list(range(mapped.ndim - 1))
    order.insert(axis, mapped.ndim - 1)
    return xp.permute_dims(mapped, tuple(order))


@functools.lru_cache(maxsize=256)
def _fold_matrix(size: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """The (padded, size) 0/1 matrix that adds each padded position's gradient to its source:
    the transpose of the padding gather."""
    index = pad_indices(size, lo, hi, mode)
    return (index[:, None] == np.arange(size)[None, :]).astype(np.float64)


@functools.lru_cache(maxsize=256)
def _placement_matrix(count: int, start: int, step: int, length: int) -> np.ndarray:
    """The (count, length) 0/1 matrix placing ``count`` values at ``start, start + step, ...``."""
    matrix = np.zeros((count, length))
    matrix[np.arange(count), start + step * np.arange(count)] = 1.0
    return matrix


def _pad(xp: ModuleType, x: Array, spec: CorrSpec) -> Array:
    for axis, (size, (lo, hi)) in enumerate(zip(spec.x_shape[2:], spec.padding, strict=True)):
        if not (lo or hi):
            continue
        if spec.padding_mode == "zeros":
            parts = []
            for width in (lo, hi):
                shape = list(x.shape)
                shape[2 + axis] = width
                parts.append(xp.zeros(tuple(shape), dtype=x.dtype, device=x.device))
            x = xp.concat([parts[0], x, parts[1]], axis=2 + axis)
        else:
            index = xp.asarray(pad_indices(size, lo, hi, spec.padding_mode), device=x.device)
            x = xp.take(x, index, axis=2 + axis)
    return x


def _unpad_grad(xp: ModuleType, grad: Array, spec: CorrSpec) -> Array:
    for axis, (size, (lo, hi)) in enumerate(zip(spec.x_shape[2:], spec.padding, strict=True)):
        if lo or hi:
            grad = _along_axis(xp, grad, _fold_matrix(size, lo, hi, spec.padding_mode), 2 + axis)
    return grad


def _grouped(xp: ModuleType, x: Array, w: Array, spec: CorrSpec) -> tuple[Array, Array]:
    """x as (N, G, C_in/G, ...), w as (G, C_out/G, C_in/G, ...)."""
    g = spec.groups
    xg = xp.reshape(x, (x.shape[0], g, x.shape[1] // g, *x.shape[2:]))
    wg = xp.reshape(w, (g, w.shape[0] // g, *w.shape[1:]))
    return xg, wg


def correlate(xp: ModuleType, x: Array, w: Array, bias: Array | None, spec: CorrSpec) -> Array:
    xg, wg = _grouped(xp, _pad(xp, x, spec), w, spec)
    n, g, c_group = xg.shape[:3]
    positions = math.prod(spec.out_shape[2:])
    y = xp.zeros((n, g, wg.shape[1], positions), dtype=x.dtype, device=x.device)
    for offset in np.ndindex(*spec.kernel_shape):
        window = xg[(..., *_window(spec, offset))]
        y = y + xp.matmul(wg[(..., *offset)], xp.reshape(window, (n, g, c_group, positions)))
    y = xp.reshape(y, spec.out_shape)
    if bias is not None:
        y = y + xp.reshape(bias, (-1, *([1] * spec.rank)))
    return y


def correlate_vjp(
    xp: ModuleType, x: Array, w: Array, bias: Array | None, grad_y: Array, spec: CorrSpec
) -> tuple[Array, Array, Array | None]:
    xg, wg = _grouped(xp, _pad(xp, x, spec), w, spec)
    n, g, c_group = xg.shape[:3]
    out_spatial = spec.out_shape[2:]
    positions = math.prod(out_spatial)
    grad_flat = xp.reshape(grad_y, (n, g, wg.shape[1], positions))
    tap_grads = []
    grad_padded = xp.zeros(xg.shape, dtype=x.dtype, device=x.device)
    for offset in np.ndindex(*spec.kernel_shape):
        patch = xp.reshape(xg[(..., *_window(spec, offset))], (n, g, c_group, positions))
        # d/dw: sum over batch and positions of grad_y times the input window.
        tap_grads.append(xp.sum(xp.matmul(grad_flat, xp.matrix_transpose(patch)), axis=0))
        # d/dx: w^T @ grad_y, placed back onto the positions this tap read.
        spread = xp.matmul(xp.matrix_transpose(wg[(..., *offset)]), grad_flat)
        spread = xp.reshape(spread, (n, g, c_group, *out_spatial))
        for axis, (k, d, s, length) in enumerate(
            zip(offset, spec.dilation, spec.stride, spec.padded_shape, strict=True)
        ):
            placement = _placement_matrix(out_spatial[axis], k * d, s, length)
            spread = _along_axis(xp, spread, placement, 3 + axis)
        grad_padded = grad_padded + spread
    grad_w = xp.reshape(xp.stack(tap_grads, axis=-1), spec.w_shape)
    grad_x = _unpad_grad(xp, xp.reshape(grad_padded, spec.x_shape[:2] + spec.padded_shape), spec)
    grad_bias = None
    if bias is not None:
        grad_bias = xp.sum(grad_y, axis=(0, *range(2, grad_y.ndim)))
    return grad_x, grad_w, grad_bias


class ArrayApiBackend(Backend):
    """Runs polyconv on the Array API namespace ``framework`` (here ``array_api_strict``)."""

    name = "array_api"
    framework = "array_api_strict"

    @property
    def xp(self) -> ModuleType:
        """The namespace: the framework's top-level module (imported on first use)."""
        return importlib.import_module(self.framework)

    def owns(self, obj: object) -> bool:
        return type(obj).__module__.partition(".")[0] == self.framework and hasattr(
            obj, "__array_namespace__"
        )

    def dtype_name(self, a: Array) -> str:
        for name in _DTYPE_NAMES:
            if getattr(self.xp, name, None) == a.dtype:
                return name
        raise TypeError(
            f"the {self.framework} dtype {a.dtype} has no NumPy equivalent polyconv uses"
        )

    def convert(self, a: Array, dtype: str, like: Array | None) -> Array:
        xp = self.xp
        device = None if like is None else like.device
        if self.owns(a):
            a = xp.astype(a, getattr(xp, dtype))
            return a if device is None else xp.asarray(a, device=device)
        return xp.asarray(np.asarray(a, dtype=dtype), device=device)

    def to_numpy(self, a: Array) -> np.ndarray:
        try:
            return np.from_dlpack(a)
        except (TypeError, BufferError, RuntimeError):  # not on the host: let the array convert
            return np.asarray(a)

    def device(self, a: Array) -> str:
        return str(a.device).removeprefix(f"{self.framework}.")

    def flip(self, a: Array, axes: tuple[int, ...]) -> Array:
        return self.xp.flip(a, axis=axes)

    # It has no FFT: it keeps the interface's choose_method ("direct") and computes any method
    # directly.
    def correlate(
        self, x: Array, w: Array, bias: Array | None, spec: CorrSpec, *, method: Method = "direct"
    ) -> Array:
        return correlate(self.xp, x, w, bias, spec)

    def correlate_vjp(
        self,
        x: Array,
        w: Array,
        bias: Array | None,
        grad_y: Array,
        spec: CorrSpec,
        *,
        method: Method = "direct",
    ) -> tuple[Array, Array, Array | None]:
        return correlate_vjp(self.xp, x, w, bias, grad_y, spec)
