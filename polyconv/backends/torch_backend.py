"""PyTorch backend: ``torch.nn.functional.conv1d/2d/3d``, differentiable end to end.

Results keep the input's device and dtype, and autograd flows through every step (padding,
casts, convolution, bias), so ``loss.backward()`` on a result reaches the user's tensors.
``correlate_vjp`` runs ``torch.autograd.grad`` on detached copies, leaving user graphs alone.

Padding: zeros goes to the convolution's ``padding=`` when it is the same on both sides of
every axis, else through ``F.pad``; the other modes gather with the index maps of
:func:`polyconv.backends.pad_indices` (``index_select`` per axis), which handles any width,
every mode including ``symmetric``, and is differentiable on any device.

float16 and bfloat16 on CPU compute in float32 and round once: PyTorch's CPU half convolution
is about a hundred times slower than float32 and no more accurate, and its bfloat16 one need
not accumulate in float32.

``method="fft"``: one whole-image ``torch.fft.rfftn`` per input channel and per kernel, at the
next fast length covering the outputs' window (:mod:`polyconv._plan.whole`); the input is
cast, padded and zero-extended in one buffer (every large temporary costs its page faults), the
kernel is dilated with zeros and transformed without transforming its zero extension, channels
are contracted per group on the spectra, and the stride-1 result is cropped and strided (the steps
shared with JAX: :mod:`polyconv.backends._xp`, bound by ``_TorchOps``). It computes
in float64 whatever the input dtype, as the NumPy backend does: the FFT's rounding error is
global (about ``eps * log2(length)`` times the largest magnitudes, on every output), so in
float32 an output much smaller than the largest would err far beyond the per-element bound of
:mod:`polyconv._bounds`; in float64 that error is below float32's rounding of the result. The
result is rounded once to the input dtype. An FFT spreads one NaN or inf to every output, so a
non-finite result is recomputed by the direct method (checking costs one scalar sync per call);
``correlate_vjp`` likewise recomputes non-finite gradients directly. ``loss.backward()`` through
an FFT result uses autograd's FFT gradients, which spread a non-finite output gradient everywhere.
Under ``torch.func.vmap`` and ``torch.compile``, where a tensor cannot decide Python control flow
(or would break the graph), both methods run and the FFT's result is kept when it is finite
throughout (per example under vmap), else the direct one; under ``torch.compile`` the padding's index maps are built by torch arithmetic
(:func:`polyconv._spec.padding.pad_source_index`), which Dynamo traces into the graph.

Precision: on CUDA, float32 means IEEE float32 inside polyconv calls, forward and backward
(the FFT method computes in float64, where TF32 does not arise):
TF32 is switched off for cuDNN convolutions and cuBLAS matmuls while polyconv's convolution (and
its backward node) runs, and the previous flags are restored after. To let PyTorch's own TF32
flags decide instead (faster on Ampere and later)::

    from polyconv.backends import torch_backend
    torch_backend.set_precision("default")      # process-wide
    with torch_backend.precision("default"):    # or for one block
        ...

The flags are process-global in PyTorch, so another thread running CUDA float32 work at the
same moment sees them switched too.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .._spec._byte_cache import ByteBoundedCache
from .._spec.dtypes import numpy_dtype
from .._spec.padding import INDEX_CACHE_BYTES, pad_indices, pad_source_index
from .._spec.spec import CorrSpec
from .._spec.transpose import TransposeSpec
from . import _xp
from ._cost import choose_method
from ._interface import Backend, Method
from ._precision import PrecisionSetting

# torch.Tensor, spelled Any: type-checking against torch's own annotations would make mypy
# analyse all of torch on every run.
Tensor = Any

PRECISIONS = ("highest", "default")
_precision = PrecisionSetting("torch", PRECISIONS, default="highest")


def set_precision(precision: str) -> None:
    """Process-wide float32 precision on CUDA: ``"highest"`` (IEEE float32, the default) or
    ``"default"`` (PyTorch's own TF32 flags apply)."""
    _precision.set(precision)


def precision(precision: str) -> contextlib.AbstractContextManager[None]:
    """``with precision("default"):`` sets the float32 precision for the calls in the block."""
    return _precision.scoped(precision)


def get_precision() -> str:
    """The float32 precision polyconv calls use here and now."""
    return _precision.get()


def _torch() -> Any:
    # Not cached: an import of a loaded module is a dictionary lookup, and torch.compile warns
    # at every cached function it traces through.
    import torch

    return torch


_CONV_NAMES = {1: "conv1d", 2: "conv2d", 3: "conv3d"}


def _conv(rank: int) -> Any:
    """``torch.nn.functional.conv1d/2d/3d`` for ``rank`` spatial axes."""
    return getattr(_torch().nn.functional, _CONV_NAMES[rank])


def _compiling() -> bool:
    """Whether Dynamo (``torch.compile``) is tracing this call."""
    return bool(_torch().compiler.is_compiling())


class _Float32Flags:
    """Switches off every flag that lets CUDA round float32 products to TF32, and restores
    the saved values after; re-entrant (a stack of saved states)."""

    def __init__(self) -> None:
        self._saved: list[list[object]] = []

    @staticmethod
    def _flags() -> list[tuple[object, str, object]]:
        torch = _torch()
        cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
        if cudnn_conv is not None and hasattr(cudnn_conv, "fp32_precision"):
            # torch >= 2.9: the new API; reading the legacy allow_tf32 can raise once it is used.
            return [
                (cudnn_conv, "fp32_precision", "ieee"),
                (torch.backends.cuda.matmul, "fp32_precision", "ieee"),
            ]
        return [
            (torch.backends.cudnn, "allow_tf32", False),
            (torch.backends.cuda.matmul, "allow_tf32", False),
        ]

    def enter(self) -> None:
        flags = self._flags()
        self._saved.append([getattr(owner, attr) for owner, attr, _ in flags])
        for owner, attr, value in flags:
            setattr(owner, attr, value)

    def exit(self) -> None:
        for (owner, attr, _), value in zip(self._flags(), self._saved.pop(), strict=True):
            setattr(owner, attr, value)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.exit()


_ieee_float32 = _Float32Flags()


def _has_tf32(device_type: str) -> bool:
    """Whether PyTorch may round float32 products to TF32 on this device: only on CUDA."""
    return device_type == "cuda"


def _needs_ieee_float32(device_type: str) -> bool:
    """Only the "highest" precision switches TF32 off."""
    return _has_tf32(device_type) and _precision.get() == "highest"


def _hold_ieee_float32_in_backward(y: Tensor) -> None:
    """Switch TF32 off around the backward of the node that made ``y``, which autograd runs
    later (and on another thread), outside the forward call's ``with`` block."""
    node = y.grad_fn
    if node is None:
        return
    node.register_prehook(lambda grad_outputs: _ieee_float32.enter())
    node.register_hook(lambda grad_inputs, grad_outputs: _ieee_float32.exit())


# The index maps on their devices, kept while small (see polyconv._padding).
_kept_indices: ByteBoundedCache[Tensor] = ByteBoundedCache(INDEX_CACHE_BYTES)


def _padding_index(size: int, lo: int, hi: int, mode: str, device: Any) -> Tensor:
    def make() -> Tensor:
        return _torch().as_tensor(np.array(pad_indices(size, lo, hi, mode)), device=device)

    return _kept_indices.get((size, lo, hi, mode, device), make)


def _traced_padding_index(size: int, lo: int, hi: int, mode: str, device: Any) -> Tensor:
    """:func:`_padding_index` in torch operations, for ``torch.compile``: Dynamo cannot follow
    the NumPy code and the cache behind the eager one, and folds these into the graph."""
    torch = _torch()
    return pad_source_index(torch.arange(-lo, size + hi, device=device), size, mode, torch)


def _device_type(t: Tensor) -> str:
    """``t.device.type``, read without building the device object on the usual devices."""
    return "cpu" if t.is_cpu else "cuda" if t.is_cuda else str(t.device.type)


def _native_padding(spec: CorrSpec) -> tuple[int, ...] | int | None:
    """The ``padding=`` the native convolution can take itself (zeros, the same on both sides
    of every axis); None for padding it cannot."""
    if spec.padding_mode != "zeros":
        return None
    if not any(lo or hi for lo, hi in spec.padding):
        return 0
    if all(lo == hi for lo, hi in spec.padding):
        return tuple(lo for lo, _ in spec.padding)
    return None


def _pad(x: Tensor, spec: CorrSpec) -> tuple[Tensor, tuple[int, ...] | int]:
    """``x`` padded as far as needed, and the ``padding=`` left for the convolution."""
    native = _native_padding(spec)
    if native is not None:
        return x, native
    if spec.padding_mode == "zeros":
        # F.pad lists (lo, hi) from the last axis backwards.
        widths = [width for pair in reversed(spec.padding) for width in pair]
        return _torch().nn.functional.pad(x, widths), 0
    return _xp.gather_padding(_ops, x, spec), 0


def _correlate(x: Tensor, w: Tensor, bias: Tensor | None, spec: CorrSpec, method: Method) -> Tensor:
    if method == "fft":
        return _correlate_fft(x, w, bias, spec)
    return _correlate_direct(x, w, bias, spec)


def _conv_options(spec: CorrSpec, padding: tuple[int, ...] | int) -> tuple[Any, ...]:
    """``stride, padding, dilation, groups`` for the native convolution, positional (torch
    parses keywords noticeably slower) and without the trailing defaults (parsing those costs
    too): what shows on small calls."""
    ones = (1,) * spec.rank
    options = [spec.stride, padding, spec.dilation, spec.groups]
    defaults = [ones, 0, ones, 1]
    while options and options[-1] == defaults[len(options) - 1]:
        options.pop()
    return tuple(options)


@functools.lru_cache(maxsize=512)
def _bare_native(
    spec: CorrSpec, method: Method, dtype: Any, device: str
) -> Callable[[Tensor, Tensor, Any], Tensor] | None:
    """The direct method as one native call, where nothing else is needed around it: padding
    that the convolution takes itself, no float16 on the CPU (see the module docstring), and
    not where TF32 exists (CUDA), as the precision setting is read per call."""
    if method != "direct" or _has_tf32(device):
        return None
    if device == "cpu" and dtype in (_torch().float16, _torch().bfloat16):
        return None
    padding = _native_padding(spec)
    if padding is None:
        return None
    conv, options = _conv(spec.rank), _conv_options(spec, padding)
    if not options:  # the native function itself: no Python frame between
        return conv
    return lambda x, w, bias: conv(x, w, bias, *options)


def _correlate_direct(x: Tensor, w: Tensor, bias: Tensor | None, spec: CorrSpec) -> Tensor:
    torch = _torch()
    out_dtype = x.dtype
    half_on_cpu = out_dtype in (torch.float16, torch.bfloat16) and x.device.type == "cpu"
    if half_on_cpu:
        x, w = x.float(), w.float()
        bias = None if bias is None else bias.float()
    x, padding = _pad(x, spec)
    conv = _conv(spec.rank)
    args = (x, w, bias, *_conv_options(spec, padding))
    if not _needs_ieee_float32(x.device.type):
        y = conv(*args)
        return y.to(out_dtype) if half_on_cpu else y
    with _ieee_float32.held():
        y = conv(*args)
    _hold_ieee_float32_in_backward(y)
    return y


def _conjugate_spectra(kernel: Tensor, lengths: tuple[int, ...], axes: tuple[int, ...]) -> Tensor:
    """``conj(rfftn(kernel, s=lengths))``, computed as conjugates from the start (no conj copy)
    and one axis at a time, so that no transform runs over the padding: ``ihfft`` with
    ``norm="forward"`` is the conjugate ``rfft`` along the last axis; along the others, a
    kernel of ``extent`` taps needs only ``extent`` columns of the DFT matrix, one matrix
    product, cheaper than an FFT of the padded length for any kernel a correlation uses.
    """
    torch = _torch()
    spectra = torch.fft.ihfft(kernel, n=lengths[-1], dim=axes[-1], norm="forward")
    for length, axis in zip(lengths[:-1], axes[:-1], strict=True):
        extent = spectra.shape[axis]
        # exp(+2 pi i n j / length); n * j reduced exactly in integers keeps every angle exact.
        device = kernel.device
        turns = (
            torch.outer(torch.arange(length, device=device), torch.arange(extent, device=device))
            % length
        )
        angles = turns.to(torch.float64) * (2 * math.pi / length)
        dft = torch.polar(torch.ones_like(angles), angles)
        spectra = torch.matmul(dft, spectra.movedim(axis, -2)).movedim(-2, axis)
    return spectra


def _fft_unchecked(x: Tensor, w: Tensor, bias: Tensor | None, spec: CorrSpec) -> Tensor:
    """The correlation by whole-image FFTs in float64 (see the module docstring), non-finite
    values spread over the whole result."""
    return _xp.fft_unchecked(_ops, x, w, bias, spec)


def _correlate_fft(x: Tensor, w: Tensor, bias: Tensor | None, spec: CorrSpec) -> Tensor:
    """The correlation by FFT, recomputed by the direct method when the result is not finite
    (one scalar sync): an FFT spreads a NaN or inf input to every output, the direct method
    puts it exactly where the spec says."""
    y = _fft_unchecked(x, w, bias, spec)
    return _xp.finite_or(_ops, y, lambda: _correlate_direct(x, w, bias, spec))


def _transformed(t: Tensor) -> bool:
    """Whether ``t`` is wrapped by a ``torch.func`` transform (``vmap``, ``grad``, ``jvp``)."""
    return not _compiling() and bool(_torch()._C._functorch.is_functorch_wrapped_tensor(t))


def _vmapped() -> bool:
    """Whether this call runs inside ``torch.func.vmap`` (at any level of nested transforms)."""
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    vmap = _torch()._C._functorch.TransformType.Vmap
    return any(level.key() == vmap for level in retrieve_all_functorch_interpreters())


def _all_finite(t: Tensor) -> bool:
    """Whether every element is finite. A finite sum says so in one pass with no temporaries;
    only a non-finite one (a NaN or inf, or an overflow of the sum itself) needs the check
    element by element."""
    torch = _torch()
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _autograd(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with autograd recording (outside inference mode); the switches, which
    cost a few microseconds a step, only where needed."""
    torch = _torch()
    if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
        return fn(*args)
    with torch.inference_mode(False), torch.enable_grad():
        return fn(*args)


def _forward_with_vjp(
    x: Tensor,
    w: Tensor,
    bias: Tensor | None,
    spec: CorrSpec,
    forward: Callable[..., Tensor],
    with_grad_x: bool = True,
) -> tuple[Tensor, Callable[[Tensor], tuple[Tensor | None, Tensor, Tensor | None]]]:
    """``forward`` on fresh leaves, and the VJP through that graph by autograd. Fresh leaves:
    the user's graph is neither extended nor consumed; inference-mode tensors cannot enter
    autograd at all, so those are copied. Without ``with_grad_x``, autograd skips the input
    gradient's work and the VJP's ``grad_x`` is None."""

    def leaf(t: Tensor, differentiated: bool) -> Tensor:
        t = t.clone() if t.is_inference() else t.detach()
        return t.requires_grad_() if differentiated else t

    def record() -> tuple[Tensor, list[Tensor]]:
        leaves = [leaf(x, with_grad_x), leaf(w, True), None if bias is None else leaf(bias, True)]
        y = forward(*leaves, spec)
        return y, [t for t in leaves if t is not None and t.requires_grad]

    y, differentiated = _autograd(record)

    def vjp(grad_y: Tensor) -> tuple[Tensor | None, Tensor, Tensor | None]:
        grads = list(_autograd(_torch().autograd.grad, y, differentiated, grad_y))
        grad_x = grads.pop(0) if with_grad_x else None
        return grad_x, grads[0], grads[1] if bias is not None else None

    return y, vjp


def _vjp(
    x: Tensor,
    w: Tensor,
    bias: Tensor | None,
    grad_y: Tensor,
    spec: CorrSpec,
    method: Method,
) -> tuple[Tensor, Tensor, Tensor | None]:
    # The FFT's own check comes after the backward: a non-finite x, w or grad_y spreads
    # through the FFTs to every element of some gradient (see _correlate_fft).
    forward = _fft_unchecked if method == "fft" else _correlate_direct
    grads = _forward_with_vjp(x, w, bias, spec, forward)[1](grad_y)
    if method != "fft":
        return grads
    return _xp.finite_or(_ops, grads, lambda: _vjp(x, w, bias, grad_y, spec, "direct"))


# --- the transposed correlation ------------------------------------------------------------
# Differentiable end to end by autograd. The direct method is the native
# ``F.conv_transpose1d/2d/3d`` on the forward's padded geometry: with ``padding=`` the forward's
# zero padding where it is the same at both ends (else 0), it gives the gradient of the padded
# input, whose samples past the native output come from ``output_padding=`` (or, beyond what
# torch accepts there, ``F.pad``); the padding is then folded back onto the samples it copied (a
# crop for zeros, ``index_add`` of the ``pad_indices`` map for the other modes). ``method="fft"``
# is the same adjoint as a correlation (``y`` spread to stride 1, the kernel flipped with its
# channel axes swapped per group) by the whole-image FFT, recomputed directly when not finite.
# float16 on CPU computes in float32 and TF32 is held off on CUDA, as for the forward.


_TRANSPOSE_NAMES = {1: "conv_transpose1d", 2: "conv_transpose2d", 3: "conv_transpose3d"}


def _conv_transpose(rank: int) -> Any:
    return getattr(_torch().nn.functional, _TRANSPOSE_NAMES[rank])


def _native_transpose(y: Tensor, w: Tensor, spec: TransposeSpec) -> Tensor:
    """``conv_transpose`` to the padded input's gradient (less the native padding), unfolded."""
    forward = spec.forward
    native = _native_padding(forward)
    pads = tuple(lo for lo, _ in forward.padding) if native not in (None, 0) else (0,) * spec.rank
    # conv_transpose's own length, (i - 1) * s + extent - 2p, against the padded input's.
    base = [
        (i - 1) * s + e - 2 * p
        for i, s, e, p in zip(spec.y_shape[2:], forward.stride, forward.extents, pads, strict=True)
    ]
    wanted = [size - 2 * p for size, p in zip(forward.padded_shape, pads, strict=True)]
    missing = [t - b for t, b in zip(wanted, base, strict=True)]
    limits = [max(s, d) for s, d in zip(forward.stride, forward.dilation, strict=True)]
    in_call = tuple(m if m < lim else 0 for m, lim in zip(missing, limits, strict=True))
    out = _conv_transpose(spec.rank)(
        y, w, None, forward.stride, pads, in_call, forward.groups, forward.dilation
    )
    after = [m - c for m, c in zip(missing, in_call, strict=True)]
    if any(after):
        out = _torch().nn.functional.pad(out, [v for a in reversed(after) for v in (0, a)])
    if native not in (None, 0):  # the native padding already cropped the zeros
        return out
    return _xp.fold_padding(_ops, out, forward)


def _transpose_bias(out: Tensor, bias: Tensor | None, spec: TransposeSpec) -> Tensor:
    if bias is None:
        return out
    return out + bias.reshape(-1, *(1,) * spec.rank)


def _transpose_direct(y: Tensor, w: Tensor, bias: Tensor | None, spec: TransposeSpec) -> Tensor:
    torch = _torch()
    out_dtype = y.dtype
    half_on_cpu = out_dtype == torch.float16 and y.device.type == "cpu"
    if half_on_cpu:
        y, w = y.float(), w.float()
        bias = None if bias is None else bias.float()
    if not _needs_ieee_float32(y.device.type):
        out = _transpose_bias(_native_transpose(y, w, spec), bias, spec)
        return out.to(out_dtype) if half_on_cpu else out
    with _ieee_float32.held():
        out = _transpose_bias(_native_transpose(y, w, spec), bias, spec)
    _hold_ieee_float32_in_backward(out)
    return out


def _transpose_fft_unchecked(
    y: Tensor, w: Tensor, bias: Tensor | None, spec: TransposeSpec
) -> Tensor:
    return _xp.transpose_fft_unchecked(_ops, y, w, bias, spec, _fft_unchecked)


def _correlate_transpose(
    y: Tensor, w: Tensor, bias: Tensor | None, spec: TransposeSpec, method: Method
) -> Tensor:
    if method != "fft":
        return _transpose_direct(y, w, bias, spec)
    out = _transpose_fft_unchecked(y, w, bias, spec)
    return _xp.finite_or(_ops, out, lambda: _transpose_direct(y, w, bias, spec))


def _correlate_transpose_vjp(
    y: Tensor,
    w: Tensor,
    bias: Tensor | None,
    grad_out: Tensor,
    spec: TransposeSpec,
    method: Method,
) -> tuple[Tensor, Tensor, Tensor | None]:
    forward = _transpose_fft_unchecked if method == "fft" else _transpose_direct
    grads = _forward_with_vjp(y, w, bias, spec, forward)[1](grad_out)  # type: ignore[arg-type]
    if method != "fft":
        return grads
    return _xp.finite_or(
        _ops, grads, lambda: _correlate_transpose_vjp(y, w, bias, grad_out, spec, "direct")
    )


class _TorchOps(_xp.ArrayOps):
    """The shared code's operations in torch (see :mod:`polyconv.backends._xp`)."""

    def fft_dtype(self) -> Any:
        return _torch().float64  # whatever the input dtype: see the module docstring

    def astype(self, a: Tensor, dtype: Any) -> Tensor:
        return a.to(dtype)

    def padding_index(self, size: int, lo: int, hi: int, mode: str, like: Tensor) -> Tensor:
        index_of = _traced_padding_index if _compiling() else _padding_index
        return index_of(size, lo, hi, mode, like.device)

    def take(self, a: Tensor, index: Tensor, axis: int) -> Tensor:
        return _torch().index_select(a, axis, index)

    def add_at(self, a: Tensor, index: Tensor, axis: int, size: int) -> Tensor:
        shape = list(a.shape)
        shape[axis] = size
        return a.new_zeros(shape).index_add(axis, index, a)

    def set_in_zeros(
        self, shape: tuple[int, ...], dtype: Any, where: Any, values: Tensor
    ) -> Tensor:
        # One buffer filled in place: each large temporary costs its page faults.
        buffer = values.new_zeros(shape, dtype=dtype)
        if values.dtype != dtype and _transformed(values):
            # torch.func's jvp gives a copy into float64 the source's tangent dtype: cast first.
            values = values.to(dtype)
        buffer[where] = values
        return buffer

    def flip(self, a: Tensor, axes: tuple[int, ...]) -> Tensor:
        return _torch().flip(a, dims=axes)

    def rfftn(self, a: Tensor, lengths: tuple[int, ...], axes: tuple[int, ...]) -> Tensor:
        return _torch().fft.rfftn(a, s=lengths, dim=axes)

    def kernel_spectra(
        self, kernel: Tensor, lengths: tuple[int, ...], axes: tuple[int, ...]
    ) -> Tensor:
        return _conjugate_spectra(kernel, lengths, axes)

    def irfftn(
        self,
        spectra: Tensor,
        lengths: tuple[int, ...],
        axes: tuple[int, ...],
        keep: tuple[int, ...],
    ) -> Tensor:
        # One axis at a time, each cut to the outputs kept once transformed, so the next axes
        # transform fewer lines (docs/benchmarks.md, "Design measurements", torch-irfft).
        fft = _torch().fft
        for axis, length, full in zip(axes[:-1], lengths[:-1], keep[:-1], strict=True):
            spectra = fft.ifft(spectra, n=length, dim=axis).narrow(axis, 0, full)
        return fft.irfft(spectra, n=lengths[-1], dim=axes[-1])

    def multiply_consuming(self, a: Tensor, b: Tensor) -> Tensor:
        if b.shape[2] == 1 and not (a.requires_grad or b.requires_grad):
            return a.mul_(b)  # no graph to keep: one large temporary fewer
        return a * b

    def einsum(self, subscripts: str, a: Tensor, b: Tensor) -> Tensor:
        return _torch().einsum(subscripts, a, b)

    def all_finite(self, arrays: Any) -> Any:
        torch = _torch()
        if _compiling() or _vmapped():
            # A tensor cannot decide Python control flow under vmap, nor without breaking
            # torch.compile's graph: the predicate stays a tensor (see cond).
            return torch.stack([torch.isfinite(a).all() for a in arrays]).all()
        return all(_all_finite(a) for a in arrays)

    def cond(self, predicate: Any, then: Callable[[], Any], otherwise: Callable[[], Any]) -> Any:
        if isinstance(predicate, bool):
            return then() if predicate else otherwise()
        # Both run, and the finite result is kept (per example under vmap).
        kept, other = then(), otherwise()
        if not isinstance(kept, tuple):
            return _torch().where(predicate, kept, other)
        return tuple(
            k if k is None else _torch().where(predicate, k, o)
            for k, o in zip(kept, other, strict=True)
        )


_ops = _TorchOps()


class TorchBackend(Backend):
    name = "torch"
    framework = "torch"

    def owns(self, obj: object) -> bool:
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(obj, torch.Tensor)

    def refusal(self, a: Tensor) -> str | None:
        if a.layout != _torch().strided:
            return f"a {a.layout} tensor; pass a dense one (tensor.to_dense())"
        return None

    def dtype_name(self, a: Tensor) -> str:
        return str(a.dtype).removeprefix("torch.")

    def convert(self, a: Any, dtype: str, like: Tensor | None) -> Tensor:
        torch = _torch()
        target = getattr(torch, dtype)
        if isinstance(a, torch.Tensor):
            return a.to(target)  # differentiable; a no-op when the dtype already matches
        # NumPy converts the dtype; torch needs a writable array with non-negative strides.
        device = like.device if isinstance(like, torch.Tensor) else None
        if dtype == "bfloat16":  # torch reads no ml_dtypes array: rounded, then as float32
            rounded = np.asarray(a).astype(numpy_dtype(dtype)).astype(np.float32)
            return torch.as_tensor(rounded, device=device).to(target)
        array = np.require(a, dtype=dtype, requirements=["C", "W"])
        return torch.as_tensor(array, device=device)

    def to_numpy(self, a: Tensor) -> np.ndarray:
        if a.dtype == _torch().bfloat16:  # NumPy holds it as ml_dtypes' bfloat16
            return a.detach().cpu().float().numpy().astype(numpy_dtype("bfloat16"))
        return a.detach().cpu().numpy()

    def device(self, a: Tensor) -> str:
        return str(a.device)

    def auto_may_use_fft(self, device: str | None) -> bool:
        # The cost model was fitted on CPU; elsewhere (CUDA) "auto" computes directly.
        return (device or str(_torch().get_default_device())).startswith("cpu")

    def precision_summary(self) -> str:
        backends = _torch().backends
        return (
            f"precision {get_precision()!r}; "
            f"torch.backends.cuda.matmul.allow_tf32={backends.cuda.matmul.allow_tf32}, "
            f"torch.backends.cudnn.allow_tf32={backends.cudnn.allow_tf32} (TF32 is off inside "
            'polyconv\'s CUDA calls at "highest"); CPU float16 and bfloat16 accumulate in float32; '
            "FFT transforms in float64"
        )

    def synchronize(self, a: Tensor) -> None:
        if a.device.type == "cuda":
            _torch().cuda.synchronize(a.device)

    def flip(self, a: Tensor, axes: tuple[int, ...]) -> Tensor:
        return _torch().flip(a, dims=axes)

    def choose_method(self, spec: CorrSpec) -> Method:
        return choose_method(spec, "torch")

    def correlate(
        self,
        x: Tensor,
        w: Tensor,
        bias: Tensor | None,
        spec: CorrSpec,
        *,
        method: Method = "direct",
    ) -> Tensor:
        # A small call is mostly overhead: where the native convolution needs nothing around
        # it, it is called directly (its lookup cached per spec, dtype and device).
        native = _bare_native(spec, method, x.dtype, _device_type(x))
        if native is not None:
            return native(x, w, bias)
        return _correlate(x, w, bias, spec, method)

    def correlate_with_vjp(
        self,
        x: Tensor,
        w: Tensor,
        bias: Tensor | None,
        spec: CorrSpec,
        *,
        with_grad_x: bool = True,
        method: Method = "direct",
    ) -> tuple[Tensor, Callable[[Tensor], tuple[Tensor | None, Tensor, Tensor | None]]]:
        if method == "fft":  # its non-finite check needs the VJP computed afresh
            return super().correlate_with_vjp(
                x, w, bias, spec, with_grad_x=with_grad_x, method=method
            )
        # One forward pass per training step instead of two.
        y, vjp = _forward_with_vjp(x, w, bias, spec, _correlate_direct, with_grad_x)
        return y.detach(), vjp

    def correlate_vjp(
        self,
        x: Tensor,
        w: Tensor,
        bias: Tensor | None,
        grad_y: Tensor,
        spec: CorrSpec,
        *,
        method: Method = "direct",
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        return _vjp(x, w, bias, grad_y, spec, method)

    def correlate_transpose(
        self,
        y: Tensor,
        w: Tensor,
        bias: Tensor | None,
        spec: TransposeSpec,
        *,
        method: Method = "direct",
    ) -> Tensor:
        return _correlate_transpose(y, w, bias, spec, method)

    def correlate_transpose_vjp(
        self,
        y: Tensor,
        w: Tensor,
        bias: Tensor | None,
        grad_out: Tensor,
        spec: TransposeSpec,
        *,
        method: Method = "direct",
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        return _correlate_transpose_vjp(y, w, bias, grad_out, spec, method)

    def correlate_transpose_with_vjp(
        self,
        y: Tensor,
        w: Tensor,
        bias: Tensor | None,
        spec: TransposeSpec,
        *,
        method: Method = "direct",
    ) -> tuple[Tensor, Callable[[Tensor], tuple[Tensor | None, Tensor, Tensor | None]]]:
        if method == "fft":  # its non-finite check needs the VJP computed afresh
            return super().correlate_transpose_with_vjp(y, w, bias, spec, method=method)
        # One forward pass per training step instead of two.
        out, vjp = _forward_with_vjp(y, w, bias, spec, _transpose_direct)  # type: ignore[arg-type]
        return out.detach(), vjp

    def permute(self, a: Tensor, axes: tuple[int, ...]) -> Tensor:
        # A view: a channels-last tensor read channels first is in torch.channels_last memory
        # format, which the native convolutions take as it is.
        return a.permute(axes)
