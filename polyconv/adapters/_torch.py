"""PyTorch's ``torch.nn.Conv1d/2d/3d``: read into a :class:`ConvDescription`, written from one, run.

torch is imported only by these functions, when a torch module is passed or asked for.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._spec.transpose import normalize_transpose
from ._description import ConvDescription, explicit_pairs, pad_by_gather, padding_for

FRAMEWORK = "torch"
# torch's padding modes; it has no "symmetric".
_NATIVE_MODES = ("zeros", "reflect", "replicate", "circular")


def _conv_classes(transpose: bool = False) -> dict[int, Any]:
    import torch

    if transpose:
        return {
            1: torch.nn.ConvTranspose1d,
            2: torch.nn.ConvTranspose2d,
            3: torch.nn.ConvTranspose3d,
        }
    return {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy()


@functools.cache
def padded_conv_class() -> type:
    """``PaddedConv``, a ``torch.nn.Module`` (made on first use, so torch loads only then)."""
    import torch

    class PaddedConv(torch.nn.Module):
        """A ``torch.nn.ConvNd`` that pads its input first, written by polyconv where the native
        layer cannot express the padding (torch's ``padding="same"`` refuses a stride above 1,
        its ``padding=`` pads both ends of an axis equally, and it has no "symmetric" mode).

        ``padding`` (polyconv's forms: "same", "full", ``(lo, hi)`` pairs) is resolved on each
        input's size, then the input is padded (``padding_mode``, with ``np.pad``'s meaning for
        any width) and ``conv`` (with ``padding=0``) is applied.
        """

        polyconv_padded = True

        def __init__(self, conv: Any, padding: object, padding_mode: str) -> None:
            super().__init__()
            self.conv = conv
            self.padding = padding
            self.padding_mode = padding_mode

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            conv: Any = self.conv
            rank = len(conv.kernel_size)
            axes = range(x.ndim - rank, x.ndim)
            pairs = padding_for(
                x.shape[-rank:], conv.kernel_size, conv.stride, conv.dilation, self.padding
            )
            if self.padding_mode == "zeros":
                x = torch.nn.functional.pad(x, [p for pair in reversed(pairs) for p in pair])
            else:
                x = pad_by_gather(x, pairs, axes, self.padding_mode, _take)
            return conv(x)

        def extra_repr(self) -> str:
            return (
                f"pads first (torch.nn.Conv{rank_of(self.conv)}d cannot): "
                f"padding={self.padding!r}, padding_mode={self.padding_mode!r}"
            )

    return PaddedConv


@functools.cache
def cropped_conv_transpose_class() -> type:
    """``CroppedConvTranspose``, a ``torch.nn.Module`` (made on first use)."""
    import torch

    class CroppedConvTranspose(torch.nn.Module):
        """A ``torch.nn.ConvTransposeNd`` without padding whose output is cropped (or extended
        with zeros) afterwards, written by polyconv where the native layer cannot express the
        padding (it takes one int per axis, both ends alike, and no "same").

        ``padding`` and ``output_padding`` are polyconv's (those of
        :func:`polyconv.correlate_transpose`): on each input the forward's ``(lo, hi)`` pairs
        are resolved, ``conv``'s weight is applied with ``padding=0``, the result is cut to
        ``[lo, lo + size)`` per axis (``size`` the transpose's output size, extended with zeros
        where the native result is shorter), and ``conv``'s bias is added.
        """

        polyconv_padded = True

        def __init__(self, conv: Any, padding: object, output_padding: tuple[int, ...]) -> None:
            super().__init__()
            self.conv = conv
            self.padding = padding
            self.output_padding = output_padding
            self.padding_mode = "zeros"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            conv: Any = self.conv
            rank = len(conv.kernel_size)
            spec = normalize_transpose(
                tuple(x.shape),
                tuple(conv.weight.shape),
                stride=conv.stride,
                padding=self.padding,  # type: ignore[arg-type]
                output_padding=self.output_padding,
                dilation=conv.dilation,
                groups=conv.groups,
            )
            transposed = getattr(torch.nn.functional, f"conv_transpose{rank}d")
            full = transposed(x, conv.weight, None, conv.stride, 0, 0, conv.groups, conv.dilation)
            # Output n of the transpose is position lo + n of the padded forward input: keep
            # [lo, lo + size) per axis (F.pad with a negative width crops, a positive one
            # extends with zeros).
            sizes = spec.out_shape[2:]
            firsts = [lo for lo, _ in spec.forward.padding]
            widths = [
                width
                for lo, size, have in reversed(
                    list(zip(firsts, sizes, full.shape[2:], strict=True))
                )
                for width in (-lo, lo + size - have)
            ]
            y = torch.nn.functional.pad(full, widths)
            if conv.bias is not None:
                y = y + conv.bias.reshape(-1, *([1] * rank))
            return y

        def extra_repr(self) -> str:
            return (
                f"crops after (torch.nn.ConvTranspose{rank_of(self.conv)}d cannot pad so): "
                f"padding={self.padding!r}, output_padding={self.output_padding!r}"
            )

    return CroppedConvTranspose


def _take(x: Any, index: np.ndarray, axis: int) -> Any:
    import torch

    return x.index_select(axis, torch.tensor(index, device=x.device))


def rank_of(conv: Any) -> int:
    return len(conv.kernel_size)


def owns(module: object) -> bool:
    """Whether ``module`` is a torch convolution this adapter reads."""
    import torch

    conv = getattr(module, "conv", None) if getattr(module, "polyconv_padded", False) else module
    classes = (*_conv_classes().values(), *_conv_classes(transpose=True).values())
    return isinstance(conv, classes) and not isinstance(conv, torch.nn.modules.lazy.LazyModuleMixin)


def describe(module: Any) -> ConvDescription:
    """The description of a ``torch.nn.ConvNd`` (or of polyconv's ``PaddedConv``)."""
    padded = getattr(module, "polyconv_padded", False)
    conv = module.conv if padded else module
    rank = rank_of(conv)
    transpose = isinstance(conv, tuple(_conv_classes(transpose=True).values()))
    if padded:
        padding, mode = module.padding, module.padding_mode
        native = f"{padding!r} by polyconv's {type(module).__name__}"
    else:
        mode = conv.padding_mode
        if isinstance(conv.padding, str):
            padding, native = conv.padding, repr(conv.padding)
        else:
            padding = tuple((int(p), int(p)) for p in conv.padding)
            native = str(tuple(conv.padding))
    return ConvDescription(
        framework=FRAMEWORK,
        backend="torch",
        rank=rank,
        in_channels=conv.in_channels,
        out_channels=conv.out_channels,
        kernel_size=tuple(conv.kernel_size),
        stride=tuple(conv.stride),
        padding=padding,
        dilation=tuple(conv.dilation),
        groups=conv.groups,
        padding_mode=mode,
        data_format="channels_first",
        weight=_numpy(conv.weight),
        bias=None if conv.bias is None else _numpy(conv.bias),
        native_padding=native,
        transpose=transpose,
        output_padding=(
            (tuple(module.output_padding) if padded else tuple(conv.output_padding))
            if transpose
            else None
        ),
    )


def _native_padding(description: ConvDescription) -> str | tuple[int, ...] | None:
    """What ``torch.nn.ConvNd(padding=...)`` takes for this description, or ``None``."""
    if description.transpose:
        # ConvTransposeNd pads ints only (both ends alike), in zeros only.
        pairs = explicit_pairs(description)
        if (
            description.padding_mode != "zeros"
            or pairs is None
            or any(lo != hi for lo, hi in pairs)
        ):
            return None
        return tuple(lo for lo, _ in pairs)
    if description.padding_mode not in _NATIVE_MODES:
        return None
    if description.padding in ("valid", "same") and set(description.stride) == {1}:
        return description.padding
    pairs = explicit_pairs(description)
    if pairs is None or any(lo != hi for lo, hi in pairs):
        return None
    return tuple(lo for lo, _ in pairs)


def build(description: ConvDescription) -> Any:
    """A torch module computing ``description``: ``torch.nn.ConvNd`` where it can express the
    padding, else polyconv's ``PaddedConv`` around one."""
    import torch

    native = _native_padding(description)
    options: dict[str, Any] = {}
    if description.transpose:
        if description.padding_mode != "zeros":
            raise ValueError(
                f"torch.nn.ConvTranspose{description.rank}d pads with zeros only; this layer's "
                f"padding_mode={description.padding_mode!r} has no torch module (polyconv "
                "computes it: pc.correlate_transpose)"
            )
        options["output_padding"] = description.output_padding if native is not None else 0
    conv = _conv_classes(description.transpose)[description.rank](
        description.in_channels,
        description.out_channels,
        description.kernel_size,
        stride=description.stride,
        padding=0 if native is None else native,
        dilation=description.dilation,
        groups=description.groups,
        bias=description.bias is not None,
        padding_mode="zeros" if native is None else description.padding_mode,
        dtype=getattr(torch, description.dtype),
        **options,
    )
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(description.weight))
        if description.bias is not None:
            conv.bias.copy_(torch.from_numpy(description.bias))
    if native is not None:
        return conv
    if description.transpose:
        assert description.output_padding is not None
        return cropped_conv_transpose_class()(conv, description.padding, description.output_padding)
    return padded_conv_class()(conv, description.padding, description.padding_mode)


def run(
    module: Any, x: np.ndarray, grad_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``y`` and the gradients of ``<y, grad_y>`` for ``x``, the weight and the bias, through
    torch's autograd; channels-first arrays, the weight's in polyconv's layout."""
    import torch

    conv = module.conv if getattr(module, "polyconv_padded", False) else module
    x_t = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
    y = module(x_t)
    params = [x_t, conv.weight] + ([] if conv.bias is None else [conv.bias])
    grads = torch.autograd.grad(y, params, torch.from_numpy(np.ascontiguousarray(grad_y)))
    grad_bias = None if conv.bias is None else _numpy(grads[2])
    return _numpy(y), _numpy(grads[0]), _numpy(grads[1]), grad_bias
