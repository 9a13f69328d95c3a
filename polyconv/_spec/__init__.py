"""The spec layer: argument normalisation, shapes, dtypes and padding arithmetic.

Geometry only: nothing here resolves how a problem is computed (the method), which backend
computes it, or imports anything above this layer.
"""

from .dtypes import FLOAT_DTYPES, result_dtype
from .options import (
    METHODS,
    PADDING_MODES,
    PADDING_STRINGS,
    IntOrTuple,
    PaddingArg,
    PaddingMode,
)
from .padding import NUMPY_PAD_MODE, pad_indices
from .spec import PLAIN_SCALARS, CorrSpec, is_plain, normalize, same_padding

__all__ = [
    "FLOAT_DTYPES",
    "METHODS",
    "NUMPY_PAD_MODE",
    "PADDING_MODES",
    "PADDING_STRINGS",
    "PLAIN_SCALARS",
    "CorrSpec",
    "IntOrTuple",
    "PaddingArg",
    "PaddingMode",
    "is_plain",
    "normalize",
    "pad_indices",
    "result_dtype",
    "same_padding",
]
