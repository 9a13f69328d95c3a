"""polyconv: one specification of cross-correlation over NumPy, JAX and PyTorch backends."""

from . import reference
from ._api import convolve, corr2d, correlate, correlate_vjp, output_shape
from ._dispatch import use_backend
from ._spec import CorrSpec, normalize
from .backends import available as backends

__version__ = "0.1.0"

__all__ = [
    "CorrSpec",
    "backends",
    "convolve",
    "corr2d",
    "correlate",
    "correlate_vjp",
    "normalize",
    "output_shape",
    "reference",
    "use_backend",
]
