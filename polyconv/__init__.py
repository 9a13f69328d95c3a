"""polyconv: one specification of cross-correlation over NumPy, JAX and PyTorch backends."""

from . import reference
from ._api import convolve, corr2d, correlate, correlate_vjp, output_shape
from ._dispatch import use_backend
from ._matrix import as_matrix
from ._spec import CorrSpec, normalize
from ._transpose_api import convolve_transpose, correlate_transpose, correlate_transpose_vjp
from ._transpose_spec import TransposeSpec, normalize_transpose
from .adapters import from_module
from .backends import available as backends
from .compare import CompareReport, compare
from .explain import explain
from .layers import Conv1D, Conv2D, Conv3D
from .training import DivergenceError, fit
from .transposed_layers import ConvTranspose1D, ConvTranspose2D, ConvTranspose3D
from .verify import VerifyReport, verify

__version__ = "0.1.0"

__all__ = [
    "CompareReport",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "ConvTranspose1D",
    "ConvTranspose2D",
    "ConvTranspose3D",
    "CorrSpec",
    "DivergenceError",
    "TransposeSpec",
    "VerifyReport",
    "as_matrix",
    "backends",
    "compare",
    "convolve",
    "convolve_transpose",
    "corr2d",
    "correlate",
    "correlate_transpose",
    "correlate_transpose_vjp",
    "correlate_vjp",
    "explain",
    "fit",
    "from_module",
    "normalize",
    "normalize_transpose",
    "output_shape",
    "reference",
    "use_backend",
    "verify",
]
