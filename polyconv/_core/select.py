"""Which backend runs a call, and the conversion of its inputs to that backend's arrays."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .. import backends as _registry
from .._spec.dtypes import result_dtype
from .._spec.spec import CorrSpec
from .._spec.transpose import TransposeSpec
from ..backends import Array, Backend, Method

ENV_VAR = "POLYCONV_BACKEND"

_selected: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "polyconv_backend", default=None
)


#: The backend named by the innermost ``use_backend`` block, if any (the bound method: called
#: on every call).
selected = _selected.get


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[Backend]:
    """Run polyconv calls inside the ``with`` block on backend ``name`` (unless a call names one)."""
    backend = _registry.get(name)
    token = _selected.set(name)
    try:
        yield backend
    finally:
        _selected.reset(token)


@dataclass(frozen=True)
class Input:
    """One argument as received: its array (owned by ``owner``, or NumPy), dtype and typing."""

    name: str
    array: Array
    owner: Backend | None  # None for NumPy arrays, lists and scalars
    dtype: str
    weak: bool  # a Python list or scalar: takes the dtype of the arrays it meets

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def as_input(name: str, obj: object) -> Input:
    """Inspect one argument without converting framework arrays."""
    owner = _registry.backend_of(obj)
    if owner is not None:
        refusal = owner.refusal(obj)
        if refusal is not None:
            raise TypeError(f"{name} is {refusal}")
        return Input(name, obj, owner, owner.dtype_name(obj), weak=False)
    if isinstance(obj, (np.ndarray, np.generic)):
        array = np.asarray(obj)
        return Input(name, array, None, array.dtype.name, weak=False)
    try:
        array = np.asarray(obj)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array or a nested list of numbers: {error}") from None
    if array.dtype == object or array.dtype.kind in "USV":
        raise TypeError(
            f"{name} must be an array or a nested list of numbers, got {type(obj).__name__} "
            f"(converted to dtype {array.dtype})"
        )
    return Input(name, array, None, array.dtype.name, weak=True)


def select_backend(requested: str | None, inputs: list[Input]) -> Backend:
    """``backend=``, else ``use_backend``, else the inputs' framework, else $POLYCONV_BACKEND/numpy."""
    owners = {i.owner.name: i.owner for i in inputs if i.owner is not None}
    if requested is None:
        requested = _selected.get()
    if requested is not None:
        return _registry.get(requested)
    if len(owners) > 1:
        described = ", ".join(f"{i.name} is a {i.owner.name} array" for i in inputs if i.owner)
        raise TypeError(
            f"inputs come from more than one framework ({described}); "
            "pass backend=NAME to choose which one runs (the others are converted)"
        )
    if owners:
        return next(iter(owners.values()))
    default = os.environ.get(ENV_VAR) or "numpy"
    try:
        return _registry.get(default)
    except ValueError as error:  # say where the bad name came from
        raise ValueError(f"{error} (from the {ENV_VAR} environment variable)") from None


def convert_inputs(backend: Backend, inputs: list[Input]) -> tuple[list[Array], str]:
    """Every input as ``backend``'s array of the common dtype, on the first native input's device."""
    dtype = result_dtype({i.name: (i.dtype, i.weak) for i in inputs})
    native = [i for i in inputs if i.owner is backend]
    like = native[0].array if native else None
    # Arrays with no device yet (JAX tracers) are placed by the enclosing transformation.
    placed = [(i, device) for i in native if (device := backend.device(i.array)) is not None]
    for other, device in placed[1:]:
        if device != placed[0][1]:
            raise ValueError(
                f"{other.name} is on device {device} but {placed[0][0].name} is on "
                f"{placed[0][1]}; put all inputs on one device"
            )
    arrays = []
    for i in inputs:
        array = i.array
        if i.owner is not None and i.owner is not backend:
            array = i.owner.to_numpy(array)
        arrays.append(backend.convert(array, dtype, like))
    return arrays, dtype


def resolve_method(
    backend: Backend, spec: CorrSpec | TransposeSpec, method: str, device: str | None = None
) -> Method:
    """``method`` as ``backend`` computes ``spec`` on ``device`` (None: where it puts arrays it
    converts): ``"auto"`` is the backend's own choice, and ``"direct"`` where the backend says
    the FFT must not be chosen for speed there (:meth:`Backend.auto_may_use_fft`: no fitted
    cost model, or transforms below float64), so that "auto" never lowers accuracy silently.
    Read on a call's first run: a call repeated after JAX's 64-bit mode changed keeps its
    choice until :func:`polyconv.clear_caches`."""
    if method == "auto":
        if not backend.auto_may_use_fft(device):
            return "direct"
        # A transposed problem costs what its forward's input gradient does.
        return backend.choose_method(spec.forward if isinstance(spec, TransposeSpec) else spec)
    return "fft" if method == "fft" else "direct"
