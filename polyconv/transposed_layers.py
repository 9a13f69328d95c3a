"""Transposed convolution layers: :func:`polyconv.correlate_transpose` with its parameters
attached, held, trained, moved and saved exactly as :mod:`polyconv.layers`' ``Conv*D``.

The constructor mirrors ``torch.nn.ConvTranspose1d/2d/3d``: ``in_channels`` are the channels the
layer takes (the forward's ``C_out``), ``out_channels`` those it gives (the forward's ``C_in``),
and the weight has the forward's layout ``(in_channels, out_channels // groups, *kernel_size)``,
the array ``torch.nn.functional.conv_transpose*d`` takes; the bias has ``out_channels``
entries. Initial weights are uniform on ``(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
``fan_in = out_channels // groups * prod(kernel_size)`` (PyTorch's bound for these layers).
"""

from __future__ import annotations

from typing import Any

from ._core.transpose import correlate_transpose
from ._spec.layouts import CHANNELS_FIRST
from ._spec.options import IntOrTuple, PaddingArg, check_padding_mode, per_axis
from ._spec.transpose import check_output_padding, normalize_transpose
from .backends import Array
from .layers import _ConvND

__all__ = ["ConvTranspose1D", "ConvTranspose2D", "ConvTranspose3D"]


class _ConvTransposeND(_ConvND):
    """The transposed layer of every rank."""

    def __init__(
        self,
        kernel_size: IntOrTuple,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        stride: IntOrTuple = 1,
        padding: PaddingArg = "valid",
        output_padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        padding_mode: str = "zeros",
        bias: bool = True,
        backend: str | None = None,
        seed: int = 0,
        dtype: str = "float32",
        method: str = "auto",
        data_format: str = CHANNELS_FIRST,
        kernel_format: str = CHANNELS_FIRST,
    ) -> None:
        self.output_padding = check_output_padding(
            output_padding,
            per_axis(stride, self.rank, "stride"),
            per_axis(dilation, self.rank, "dilation"),
            check_padding_mode(padding_mode),
        )
        super().__init__(
            kernel_size,
            in_channels=in_channels,
            out_channels=out_channels,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            padding_mode=padding_mode,
            bias=bias,
            backend=backend,
            seed=seed,
            dtype=dtype,
            method=method,
            data_format=data_format,
            kernel_format=kernel_format,
        )

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """``(in_channels, out_channels // groups, *kernel_size)``: the forward's layout, as
        :func:`polyconv.correlate_transpose` (and ``F.conv_transpose*d``) wants."""
        return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments this layer passes to :func:`polyconv.correlate_transpose`."""
        options = super().options
        options["output_padding"] = self.output_padding
        return options

    @staticmethod
    def _operation(*args: Any, **kwargs: Any) -> Array:
        return correlate_transpose(*args, **kwargs)

    def spec(self, x_shape: Any, *, with_bias: bool = False) -> Any:
        return normalize_transpose(
            x_shape, self.weight_shape, self.bias_shape if with_bias else None, **self.options
        )

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "output_padding": list(self.output_padding)}

    @classmethod
    def _constructor_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {**super()._constructor_config(config), "output_padding": config["output_padding"]}


class ConvTranspose1D(_ConvTransposeND):
    """1-D transposed correlation layer: input ``(N, C_in, W)``, ``(C_in, W)`` or plain ``(W,)``."""

    rank = 1


class ConvTranspose2D(_ConvTransposeND):
    """2-D transposed correlation layer: input ``(N, C_in, H, W)``, ``(C_in, H, W)`` or plain
    ``(H, W)``."""

    rank = 2


class ConvTranspose3D(_ConvTransposeND):
    """3-D transposed correlation layer: input ``(N, C_in, D, H, W)``, ``(C_in, D, H, W)`` or
    plain ``(D, H, W)``."""

    rank = 3
