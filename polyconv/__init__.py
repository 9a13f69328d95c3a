"""polyconv: one specification of cross-correlation over NumPy, JAX and PyTorch backends.

The operations, the spec and the backends are imported here; the tools (layers, training,
``verify``, ``explain``, ``as_matrix``) are imported on first use, so that ``import polyconv``
stays light (see ``docs/architecture.md``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from . import reference
from ._core.api import convolve, corr2d, correlate, correlate_vjp, output_shape
from ._core.callcache import clear_caches
from ._core.select import use_backend
from ._spec.spec import CorrSpec, normalize
from .backends import available as backends

if TYPE_CHECKING:
    from ._matrix import as_matrix
    from .explain import explain
    from .layers import Conv1D, Conv2D, Conv3D
    from .training import DivergenceError, fit
    from .verify import VerifyReport, verify

__version__ = "0.1.0"

# Public names of the tools, by the module that defines them: imported on first use.
_TOOLS = {
    "as_matrix": "._matrix",
    "explain": ".explain",
    "Conv1D": ".layers",
    "Conv2D": ".layers",
    "Conv3D": ".layers",
    "DivergenceError": ".training",
    "fit": ".training",
    "VerifyReport": ".verify",
    "verify": ".verify",
}


def __getattr__(name: str) -> Any:
    module = _TOOLS.get(name)
    if module is None:
        raise AttributeError(f"module 'polyconv' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TOOLS))


class _Package(types.ModuleType):
    """``polyconv`` itself. Importing a submodule binds it on its package, so once
    ``polyconv.verify`` (the module) is imported, ``pc.verify`` would be the module rather than
    the function; the functions named like their modules (``verify``, ``explain``) keep the name.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _TOOLS.get(name) == f".{name}":
            return  # the module stays in sys.modules; the name is the function's
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = [
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "CorrSpec",
    "DivergenceError",
    "VerifyReport",
    "as_matrix",
    "backends",
    "clear_caches",
    "convolve",
    "corr2d",
    "correlate",
    "correlate_vjp",
    "explain",
    "fit",
    "normalize",
    "output_shape",
    "reference",
    "use_backend",
    "verify",
]
