"""Correlation as a dense matrix: the fully-connected layer it is a special case of.

Correlation is linear in ``x``, so for fixed ``w`` and geometry there is one matrix ``M`` with
``correlate(x, w).ravel() == M @ x.ravel()``. Its column ``j`` is the response to the ``j``-th unit
input, which is how it is built here: the float64 reference correlates the identity basis, all
basis vectors at once as one batch. Each row holds the kernel laid out over one window of the
input (translation invariance: every row is a shifted copy; locality: zeros outside the window).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import reference
from ._core.select import as_input
from ._spec.dtypes import result_dtype
from ._spec.options import IntOrTuple, PaddingArg, as_int
from ._spec.spec import normalize


def as_matrix(
    w: object,
    input_shape: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """The dense ``M`` with ``M @ x.ravel() == correlate(x, w, **spec).ravel()`` for ``x`` of
    shape ``input_shape`` (batched ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``).

    ``M`` has shape ``(prod(output shape), prod(input_shape))``; a batched ``input_shape`` gives
    the block-diagonal ``kron(eye(N), M_one_sample)``. The bias is not part of ``M`` (the layer
    computes ``M @ x + b``). ``w`` may be an array of any backend; ``M`` is always a NumPy array,
    computed exactly in float64 and returned in the dtype :func:`correlate` would give for
    ``x`` of ``w``'s dtype (float32 for integer ``w``).
    """
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape must be a tuple of ints, got {input_shape!r}")
    input_shape = tuple(as_int(n, "input_shape") for n in input_shape)
    given = as_input("w", w)
    dtype = result_dtype({"w": (given.dtype, given.weak)})
    kernel = given.owner.to_numpy(given.array) if given.owner is not None else given.array
    spec = normalize(
        input_shape,
        given.shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
    sample_shape = spec.x_shape[1:]
    columns = math.prod(sample_shape)
    basis = np.eye(columns).reshape(columns, *sample_shape)
    responses = reference.correlate(
        basis,
        kernel,
        stride=spec.stride,
        padding=spec.padding,
        dilation=spec.dilation,
        groups=spec.groups,
        padding_mode=spec.padding_mode,
    )
    matrix = responses.reshape(columns, -1).T
    if spec.batched:
        matrix = np.kron(np.eye(spec.x_shape[0]), matrix)
    return matrix.astype(dtype)
