"""The dtype rule, the same on every backend.

- float16, bfloat16, float32 and float64 inputs are kept; mixed floats promote to the widest,
  and float16 with bfloat16 (neither holds the other) to float32, as in PyTorch and JAX.
  bfloat16 computes natively on PyTorch and JAX, and on NumPy through ``ml_dtypes`` (the
  optional extra ``bfloat16``); every backend accumulates it in float32 and rounds once.
- Integer and bool inputs take the floating dtype of the other inputs, or float32 when no input
  is floating (the lesson's behaviour: ``corr2d`` of int tensors gives float32).
- Python lists and scalars are *weakly typed*, like Python scalars in NumPy 2, JAX and PyTorch:
  they never widen an array's dtype; a list of floats alone computes in float32.
- complex and non-numeric dtypes are refused with a ``TypeError``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

FLOAT_DTYPES: tuple[str, ...] = ("float16", "float32", "float64")
"""The IEEE float dtypes, which every backend computes in (float64 on JAX with 64-bit mode)."""
BFLOAT16 = "bfloat16"
DTYPES: tuple[str, ...] = ("float16", BFLOAT16, "float32", "float64")
"""Every float dtype polyconv computes in, narrowest first."""
DEFAULT_FLOAT = "float32"


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype of ``name``; ``"bfloat16"`` is ``ml_dtypes``' (imported here, which
    registers it with NumPy), else an ``ImportError`` saying how to install it."""
    if name == BFLOAT16:
        try:
            import ml_dtypes
        except ImportError:
            raise ImportError(
                "bfloat16 NumPy arrays need the ml_dtypes package: "
                'pip install "polyconv[bfloat16]" (or ml_dtypes)'
            ) from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def finfo(name: str) -> object:
    """``np.finfo`` of a float dtype (``ml_dtypes.finfo`` for bfloat16): ``eps``,
    ``smallest_subnormal``."""
    if name == BFLOAT16:
        import ml_dtypes

        return ml_dtypes.finfo(numpy_dtype(name))
    return np.finfo(np.dtype(name))


def _is_integral(dtype: str) -> bool:
    return dtype == "bool" or dtype.startswith(("int", "uint"))


def _check_supported(name: str, dtype: str) -> None:
    if dtype.startswith("complex"):
        raise TypeError(
            f"{name} has dtype {dtype}: complex input is not supported, because frameworks "
            "disagree on whether cross-correlation conjugates the kernel (numpy.correlate does, "
            "torch and jax.lax do not); correlate the real and imaginary parts separately"
        )
    if dtype not in DTYPES and not _is_integral(dtype):
        raise TypeError(
            f"{name} has dtype {dtype}; expected one of {', '.join(DTYPES)}, "
            "an integer or bool dtype (computed as float32)"
        )


def result_dtype(inputs: Mapping[str, tuple[str, bool]]) -> str:
    """The dtype a call computes in, from ``{argument name: (dtype name, weakly typed)}``."""
    for name, (dtype, _) in inputs.items():
        _check_supported(name, dtype)
    strong_floats = {dtype for dtype, weak in inputs.values() if dtype in DTYPES and not weak}
    if not strong_floats:
        return DEFAULT_FLOAT
    if {"float16", BFLOAT16} <= strong_floats:
        strong_floats.add("float32")
    return max(strong_floats, key=DTYPES.index)
