"""The interface every backend implements: a few array conversions, the choice of method and
two computations.

A backend module must not import its framework at import time: polyconv imports backend modules
to ask which framework they serve (``framework``), and only touches the framework once the user
has imported it or asked for the backend by name.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from .._spec.spec import CorrSpec
from .._spec.transpose import TransposeSpec
from . import _transpose_default

Array = Any
#: How a backend computes a spec: the defining sum or by FFT.
Method = Literal["direct", "fft"]


class Backend(abc.ABC):
    """Computes the spec on one framework's arrays; all validation happens before it is called."""

    #: The name users select the backend by (``backend="torch"``).
    name: str
    #: Top-level module of the framework; the backend is considered for array detection only
    #: when this module is already in ``sys.modules``.
    framework: str
    #: Whether the backend's arrays are lazy (Dask): a minibatch is then indexed out of them,
    #: lazily, instead of being gathered on the host.
    lazy: bool = False

    @abc.abstractmethod
    def owns(self, obj: object) -> bool:
        """Whether ``obj`` is an array of this backend's framework."""

    def refusal(self, a: Array) -> str | None:
        """Why an owned array cannot enter a computation, as the end of a sentence ("x is
        ..."): a kind of array of the framework that holds no plain numbers (a sparse tensor,
        a PRNG key); None (the default) when it can."""
        return None

    @abc.abstractmethod
    def dtype_name(self, a: Array) -> str:
        """The NumPy name of an owned array's dtype (``"float32"``, ``"int64"``, ``"bool"``, ...)."""

    @abc.abstractmethod
    def convert(self, a: Array, dtype: str, like: Array | None) -> Array:
        """``a`` (an owned array or a NumPy array) as an owned array of ``dtype``, placed on the
        device of ``like`` when ``like`` is an owned array."""

    @abc.abstractmethod
    def to_numpy(self, a: Array) -> np.ndarray:
        """An owned array as a NumPy array (copied to the host if needed; gradients detached)."""

    def device(self, a: Array) -> str | None:
        """Where an owned array lives, as a string (``"cpu"``, ``"cuda:0"``); ``None`` when it
        has no device yet (a JAX tracer), which exempts it from the same-device check."""
        return "cpu"

    def device_name(self, a: Array) -> str:
        """Where an owned array is, for people to read: :meth:`device`, or the device that
        holds it when it has none of its own (an uncommitted JAX array)."""
        return self.device(a) or "?"

    def fft_dtype(self, dtype: str) -> str:
        """The dtype the FFT method transforms in, here and now, for a problem in ``dtype``: its
        error bound's global term (:func:`polyconv.testing.fft_error`) is of this precision.
        Default: float64, whatever ``dtype``."""
        return "float64"

    def auto_may_use_fft(self, device: str | None) -> bool:
        """Whether ``method="auto"`` may choose the FFT for arrays on ``device`` (None: where
        this backend puts arrays it converts): only where polyconv's cost model for this backend
        was fitted, and where the FFT transforms in float64, so that choosing it for speed
        costs no accuracy. Default: False, so a backend without a fitted model computes
        directly."""
        return False

    def precision_summary(self) -> str:
        """The precision this backend computes in, here and now, in words (the settings that
        decide it): what :func:`polyconv.verify` prints in its header."""
        return "FFT transforms in float64"

    @abc.abstractmethod
    def flip(self, a: Array, axes: tuple[int, ...]) -> Array:
        """Reverse ``a`` along ``axes``."""

    def choose_method(self, spec: CorrSpec) -> Method:
        """How this backend computes ``spec`` when the user asks for ``method="auto"``:
        ``"direct"`` (the defining sum) or ``"fft"``. The default is ``"direct"``, so that a
        backend never inherits another backend's cost model; the built-ins override it with
        their own (:mod:`polyconv.backends._cost`). Called once per cached call."""
        return "direct"

    @abc.abstractmethod
    def correlate(
        self, x: Array, w: Array, bias: Array | None, spec: CorrSpec, *, method: Method = "direct"
    ) -> Array:
        """The correlation of batched ``x`` with ``w`` (same dtype, same device) per ``spec``,
        by ``method`` (``"direct"`` or ``"fft"``; a backend without an FFT may compute both
        directly)."""

    @abc.abstractmethod
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
        """Gradients of ``sum(correlate(x, w, bias) * grad_y)`` with respect to x, w and bias."""

    def correlate_transpose(
        self,
        y: Array,
        w: Array,
        bias: Array | None,
        spec: TransposeSpec,
        *,
        method: Method = "direct",
    ) -> Array:
        """The transposed correlation of batched ``y`` (``spec.y_shape``) with the forward's
        kernel ``w``, plus ``bias`` (``C_in`` entries): the adjoint in ``x`` of the correlation
        ``spec.forward``. The default is the forward's ``correlate_vjp`` input gradient, at a
        zero input (:mod:`polyconv.backends._transpose_default`); built-in backends override it
        to skip the kernel gradient's work."""
        return _transpose_default.correlate_transpose(self, y, w, bias, spec, method)

    def correlate_transpose_vjp(
        self,
        y: Array,
        w: Array,
        bias: Array | None,
        grad_out: Array,
        spec: TransposeSpec,
        *,
        method: Method = "direct",
    ) -> tuple[Array, Array, Array | None]:
        """Gradients of ``sum(correlate_transpose(y, w, bias) * grad_out)`` with respect to
        ``y``, ``w`` and ``bias``. The default computes them as the forward's correlations: the
        transpose of the transpose is the forward (``grad_y``), and ``grad_w`` is the forward's
        kernel gradient with the roles of input and output gradient read the other way."""
        return _transpose_default.correlate_transpose_vjp(self, y, w, bias, grad_out, spec, method)

    def correlate_transpose_with_vjp(
        self,
        y: Array,
        w: Array,
        bias: Array | None,
        spec: TransposeSpec,
        *,
        method: Method = "direct",
    ) -> tuple[Array, Callable[[Array], tuple[Array | None, Array, Array | None]]]:
        """The transpose, and the function of ``grad_out`` that gives its VJP (as
        :meth:`correlate_with_vjp` for the forward; used by :func:`polyconv.fit`)."""

        def vjp(grad_out: Array) -> tuple[Array | None, Array, Array | None]:
            return self.correlate_transpose_vjp(y, w, bias, grad_out, spec, method=method)

        return self.correlate_transpose(y, w, bias, spec, method=method), vjp

    def permute(self, a: Array, axes: tuple[int, ...]) -> Array:
        """``a`` with its axes reordered (``result.shape[i] == a.shape[axes[i]]``): how a
        channels-last array is read channels-first. The default uses the Array API's
        ``permute_dims`` where the array has a namespace, else ``a.transpose(axes)``."""
        namespace = getattr(a, "__array_namespace__", None)
        if namespace is not None:
            return namespace().permute_dims(a, axes)
        return a.transpose(axes)

    def correlate_with_vjp(
        self,
        x: Array,
        w: Array,
        bias: Array | None,
        spec: CorrSpec,
        *,
        with_grad_x: bool = True,
        method: Method = "direct",
    ) -> tuple[Array, Callable[[Array], tuple[Array | None, Array, Array | None]]]:
        """The correlation, and the function of ``grad_y`` that gives its VJP (what a training
        step needs; ``with_grad_x=False``: without ``grad_x``, which is then None). The default
        computes the VJP afresh; a backend with autodiff overrides it to reuse the forward
        pass's work and to skip the input gradient's."""

        def vjp(grad_y: Array) -> tuple[Array | None, Array, Array | None]:
            grad_x, grad_w, grad_bias = self.correlate_vjp(x, w, bias, grad_y, spec, method=method)
            return (grad_x if with_grad_x else None), grad_w, grad_bias

        return self.correlate(x, w, bias, spec, method=method), vjp

    def synchronize(self, a: Array) -> None:  # noqa: B027 (a hook whose default is no-op)
        """Wait until ``a`` is computed. Frameworks that run asynchronously (JAX, PyTorch on
        CUDA) override this, so that a timing measures the work rather than its dispatch; the
        default suits eager, synchronous frameworks."""

    def compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, a pure function of this backend's arrays (and pytrees of them), prepared for
        many calls with same-shaped arguments. The default runs it as written; JAX jit-compiles
        it, so that a whole training step runs as one XLA computation."""
        return fn

    def __repr__(self) -> str:
        return f"<polyconv backend {self.name!r}>"
