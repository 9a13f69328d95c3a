"""The dtype rule, the same on every backend.

- float16, float32 and float64 inputs are kept; mixed floats promote to the widest.
- Integer and bool inputs take the floating dtype of the other inputs, or float32 when no input
  is floating (the lesson's behaviour: ``corr2d`` of int tensors gives float32).
- Python lists and scalars are *weakly typed*, like Python scalars in NumPy 2, JAX and PyTorch:
  they never widen an array's dtype; a list of floats alone computes in float32.
- complex, bfloat16 and non-numeric dtypes are refused with a ``TypeError``.
"""

from __future__ import annotations

from collections.abc import Mapping

FLOAT_DTYPES: tuple[str, ...] = ("float16", "float32", "float64")
DEFAULT_FLOAT = "float32"


def _is_integral(dtype: str) -> bool:
    return dtype == "bool" or dtype.startswith(("int", "uint"))


def _check_supported(name: str, dtype: str) -> None:
    if dtype.startswith("complex"):
        raise TypeError(
            f"{name} has dtype {dtype}: complex input is not supported, because frameworks "
            "disagree on whether cross-correlation conjugates the kernel (numpy.correlate does, "
            "torch and jax.lax do not); correlate the real and imaginary parts separately"
        )
    if dtype not in FLOAT_DTYPES and not _is_integral(dtype):
        raise TypeError(
            f"{name} has dtype {dtype}; expected one of {', '.join(FLOAT_DTYPES)}, "
            "an integer or bool dtype (computed as float32)"
        )


def result_dtype(inputs: Mapping[str, tuple[str, bool]]) -> str:
    """The dtype a call computes in, from ``{argument name: (dtype name, weakly typed)}``."""
    for name, (dtype, _) in inputs.items():
        _check_supported(name, dtype)
    strong_floats = [dtype for dtype, weak in inputs.values() if dtype in FLOAT_DTYPES and not weak]
    if not strong_floats:
        return DEFAULT_FLOAT
    return max(strong_floats, key=FLOAT_DTYPES.index)
