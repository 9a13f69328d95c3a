"""The NumPy backend's direct method: the defining sum, evaluated block by block.

Three schemes, all working on blocks of output rows (of the first spatial axis), each block an
independent piece of work for the thread pool:

- **Taps** (one input and one output channel, kernels of at most 9 taps): for every tap, its
  window of the block's inputs, a strided view, times its weight, added to the block: two
  elementwise passes per tap and output, no copy and no wasted multiply-add.
- **Toeplitz tiles** (other problems with one input channel per group: single-channel images
  with larger kernels, depthwise layers).
  Along the last axis, ``t`` consecutive outputs read ``L = (t - 1) * stride + extent`` inputs,
  and their correlation with one kernel row is a product with a banded ``(L, t)`` matrix ``T``.
  A block copies the tile windows of the input rows it reads once; each kernel row (along the
  first axis) is then one product of a slice of those rows with its ``T`` (stacked over the
  offsets of any other leading axes), and the products are summed. ``T`` wastes
  ``L / kernel`` of the multiply-adds, which BLAS more than repays against one whole-image
  pass per kernel tap.
- **im2col** (several input channels per group: CNN layers). The block's windows are copied
  into a ``(C_in/G * prod(kernel), positions)`` matrix and multiplied by the kernel matrix,
  one BLAS ``gemm`` that writes straight into the output.

Gradients are the transposes of the same products: ``grad_w`` is a product of ``grad_y`` with
the same windows, and ``grad_x`` is the correlation of the stride-dilated, fully padded
``grad_y`` with the flipped kernel, or, with stride (except on tiles), ``w^T @ grad_y`` added
back onto the windows, read from the input's stride phases (:class:`_Phases`) so that every
window is a contiguous run. The exact path (non-finite values) scatters onto im2col's windows.
"""

from __future__ import annotations

import numpy as np

from ..._spec.spec import CorrSpec
from .im2col import _im2col_correlate, _im2col_vjp
from .phases import _phases_vjp
from .taps import _taps_correlate
from .taps import numpy_uses_taps as uses_taps
from .tiles import _tiles_correlate, _tiles_grad_w
from .tiles import numpy_uses_tiles as uses_tiles


def correlate(
    xg: np.ndarray, wg: np.ndarray, spec: CorrSpec, *, exact: bool = False, padded: bool = True
) -> np.ndarray:
    """``y`` ``(N, O, *out)`` from padded, contiguous ``xg`` ``(N, G, Cg, *P)`` and ``wg``
    ``(G, Og, Cg, *K)``, both in the compute dtype. ``exact`` forces im2col, whose every
    product is a term of the defining sum (non-finite values reach exactly the outputs that
    read them). With ``padded`` false (im2col only, zero padding), ``xg`` is the unpadded
    input ``(N, G, Cg, *spatial)``."""
    y = np.empty(spec.out_shape, dtype=xg.dtype)
    if uses_taps(spec):
        _taps_correlate(xg, wg, y, spec)
    elif uses_tiles(spec) and not exact:
        _tiles_correlate(xg, wg, y, spec)
    else:
        _im2col_correlate(xg, wg, y, spec, padded)
    return y


def is_exact(spec: CorrSpec) -> bool:
    """Whether :func:`correlate` computes this problem from the defining sum's terms alone (taps
    and im2col), so that a non-finite input reaches exactly the outputs that read it."""
    return uses_taps(spec) or not uses_tiles(spec)


def pads_per_block(spec: CorrSpec) -> bool:
    """Whether :func:`correlate` takes this problem's input unpadded (``padded=False``): im2col
    with zero padding pads each block's rows in cache, so no padded copy of the input is made."""
    return (
        spec.padding_mode == "zeros"
        and any(lo or hi for lo, hi in spec.padding)
        and not uses_tiles(spec)
    )


def _input_gradient(wg: np.ndarray, grad_y: np.ndarray, spec: CorrSpec) -> np.ndarray:
    """``grad_xp`` ``(N, C_in, *P)``, the gradient of the padded input, as a correlation:
    ``grad_y`` spread to stride 1 (zeros between samples), padded by the kernel extent less one,
    correlated with the flipped kernel with its channel axes swapped
    (``grad_xp[p] = sum_k grad_y_up[p - k * d] * w[k]``). Without stride, im2col pads each
    block's rows itself, so ``grad_y`` is not copied at all."""
    g, og = wg.shape[:2]
    n = grad_y.shape[0]
    extents = spec.extents
    flipped = np.flip(wg, axis=tuple(range(3, wg.ndim)))
    w_t = np.ascontiguousarray(flipped.transpose(0, 2, 1, *range(3, wg.ndim)))  # (G, Cg, Og, *K)
    t_spec = spec.transposed()
    if all(s == 1 for s in spec.stride) and pads_per_block(t_spec):
        gy = grad_y.reshape(n, g, og, *grad_y.shape[2:])
        return correlate(gy, w_t, t_spec, padded=False)
    # The spread grad_y, padded: the transposed problem's padded input.
    length = t_spec.padded_shape
    spread = np.zeros((n, g, og, *length), dtype=grad_y.dtype)
    placed = tuple(
        slice(e - 1, e - 1 + full, s)
        for e, full, s in zip(extents, spec.unstrided_out, spec.stride, strict=True)
    )
    spread.reshape(n, g * og, *length)[(slice(None), slice(None), *placed)] = grad_y
    return correlate(spread, w_t, t_spec)


def correlate_vjp(
    xg: np.ndarray, wg: np.ndarray, grad_y: np.ndarray, spec: CorrSpec, *, exact: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(grad_xp, grad_w)`` for :func:`correlate`: ``grad_xp`` ``(N, C_in, *P)`` is the
    gradient of the padded input; ``grad_y`` is ``(N, O, *out)`` contiguous. ``exact`` forces
    im2col with ``grad_x`` scattered from ``w^T @ grad_y``, whose every product is a term of
    the defining sum (a correlation with the zero-padded ``grad_y`` also multiplies the kernel
    by the padding's zeros, which makes an infinite weight a NaN). With stride (tiles aside),
    the windows' gradients are added back into the input's stride phases
    (:func:`_phases_vjp`), since the correlation would spend most of its products on the
    spread's zeros. Otherwise ``grad_x`` is that correlation (:func:`_input_gradient`), which
    runs on the pool like any forward. Both are faster than the scatter (docs/benchmarks.md,
    "Design measurements", vjp-input-gradient)."""
    if exact:
        grad_xp = np.zeros_like(xg)
        grad_w = _im2col_vjp(xg, wg, grad_y, spec, grad_xp)
        return grad_xp.reshape(spec.x_shape[:2] + spec.padded_shape), grad_w
    if uses_tiles(spec):
        grad_w = _tiles_grad_w(xg, grad_y, spec)
    elif any(s > 1 for s in spec.stride):
        grad_xp, grad_w = _phases_vjp(xg, wg, grad_y, spec)
        return grad_xp.reshape(spec.x_shape[:2] + spec.padded_shape), grad_w
    else:
        grad_w = _im2col_vjp(xg, wg, grad_y, spec, None)
    return _input_gradient(wg, grad_y, spec), grad_w
