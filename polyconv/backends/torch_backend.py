"""PyTorch backend: ``torch.nn.functional.conv1d/2d/3d``, differentiable end to end.

Results keep the input's device and dtype, and autograd flows through every step (padding,
casts, convolution, bias), so ``loss.backward()`` on a result reaches the user's tensors.
``correlate_vjp`` runs ``torch.autograd.grad`` on detached copies, leaving user graphs alone.

Padding: zeros goes to the convolution's ``padding=`` when it is the same on both sides of
every axis, else through ``F.pad``; the other modes gather with the index maps of
:func:`polyconv._padding.pad_indices` (``index_select`` per axis), which handles any width,
every mode including ``symmetric``, and is differentiable on any device.

float16 on CPU computes in float32 and rounds once: PyTorch's CPU half convolution is about a
hundred times slower than float32 and no more accurate.

Precision: on CUDA, float32 means IEEE float32 inside polyconv calls, forward and backward:
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
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._padding import pad_indices
from .._spec import CorrSpec
from ._interface import Backend
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


@functools.cache
def _torch() -> Any:
    import torch

    return torch


_CONV_NAMES = {1: "conv1d", 2: "conv2d", 3: "conv3d"}


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


def _needs_ieee_float32(device_type: str) -> bool:
    """TF32 exists only on CUDA, and only the "highest" precision switches it off."""
    return device_type == "cuda" and _precision.get() == "highest"


def _hold_ieee_float32_in_backward(y: Tensor) -> None:
    """Switch TF32 off around the backward of the node that made ``y``, which autograd runs
    later (and on another thread), outside the forward call's ``with`` block."""
    node = y.grad_fn
    if node is None:
        return
    node.register_prehook(lambda grad_outputs: _ieee_float32.enter())
    node.register_hook(lambda grad_inputs, grad_outputs: _ieee_float32.exit())


@functools.lru_cache(maxsize=512)
def _padding_index(size: int, lo: int, hi: int, mode: str, device: Any) -> Tensor:
    return _torch().as_tensor(np.array(pad_indices(size, lo, hi, mode)), device=device)


def _pad(x: Tensor, spec: CorrSpec) -> tuple[Tensor, tuple[int, ...] | int]:
    """``x`` padded as far as needed, and the ``padding=`` left for the convolution."""
    if spec.padding_mode == "zeros":
        if all(lo == hi for lo, hi in spec.padding):
            return x, tuple(lo for lo, _ in spec.padding)
        # F.pad lists (lo, hi) from the last axis backwards.
        widths = [width for pair in reversed(spec.padding) for width in pair]
        return _torch().nn.functional.pad(x, widths), 0
    for axis, (size, (lo, hi)) in enumerate(zip(spec.x_shape[2:], spec.padding, strict=True)):
        if lo or hi:
            index = _padding_index(size, lo, hi, spec.padding_mode, x.device)
            x = _torch().index_select(x, 2 + axis, index)
    return x, 0


def _correlate(x: Tensor, w: Tensor, bias: Tensor | None, spec: CorrSpec) -> Tensor:
    torch = _torch()
    out_dtype = x.dtype
    if out_dtype == torch.float16 and x.device.type == "cpu":
        x, w = x.float(), w.float()
        bias = None if bias is None else bias.float()
    x, padding = _pad(x, spec)
    conv = getattr(torch.nn.functional, _CONV_NAMES[spec.rank])
    strict = _needs_ieee_float32(x.device.type)
    with _ieee_float32.held() if strict else contextlib.nullcontext():
        y = conv(
            x,
            w,
            bias,
            stride=spec.stride,
            padding=padding,
            dilation=spec.dilation,
            groups=spec.groups,
        )
    if strict:
        _hold_ieee_float32_in_backward(y)
    return y.to(out_dtype)


def _vjp(
    x: Tensor,
    w: Tensor,
    bias: Tensor | None,
    grad_y: Tensor,
    spec: CorrSpec,
) -> tuple[Tensor, Tensor, Tensor | None]:
    torch = _torch()
    with torch.inference_mode(False), torch.enable_grad():
        # Fresh leaves, so the user's graph is neither extended nor consumed; inference-mode
        # tensors cannot enter autograd at all, so those are copied.
        leaves = [
            (t.clone() if t.is_inference() else t.detach()).requires_grad_()
            for t in (x, w, bias)
            if t is not None
        ]
        y = _correlate(leaves[0], leaves[1], leaves[2] if bias is not None else None, spec)
        grads = torch.autograd.grad(y, leaves, grad_outputs=grad_y)
    return grads[0], grads[1], grads[2] if bias is not None else None


class TorchBackend(Backend):
    name = "torch"
    framework = "torch"

    def owns(self, obj: object) -> bool:
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(obj, torch.Tensor)

    def dtype_name(self, a: Tensor) -> str:
        return str(a.dtype).removeprefix("torch.")

    def convert(self, a: Any, dtype: str, like: Tensor | None) -> Tensor:
        torch = _torch()
        target = getattr(torch, dtype)
        if isinstance(a, torch.Tensor):
            return a.to(target)  # differentiable; a no-op when the dtype already matches
        # NumPy converts the dtype; torch needs a writable array with non-negative strides.
        array = np.require(a, dtype=dtype, requirements=["C", "W"])
        device = like.device if isinstance(like, torch.Tensor) else None
        return torch.as_tensor(array, device=device)

    def to_numpy(self, a: Tensor) -> np.ndarray:
        return a.detach().cpu().numpy()

    def device(self, a: Tensor) -> str:
        return str(a.device)

    def synchronize(self, a: Tensor) -> None:
        if a.device.type == "cuda":
            _torch().cuda.synchronize(a.device)

    def flip(self, a: Tensor, axes: tuple[int, ...]) -> Tensor:
        return _torch().flip(a, dims=axes)

    def correlate(self, x: Tensor, w: Tensor, bias: Tensor | None, spec: CorrSpec) -> Tensor:
        return _correlate(x, w, bias, spec)

    def correlate_vjp(
        self,
        x: Tensor,
        w: Tensor,
        bias: Tensor | None,
        grad_y: Tensor,
        spec: CorrSpec,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        return _vjp(x, w, bias, grad_y, spec)
