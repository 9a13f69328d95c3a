"""Convolution layers: a kernel and a bias held as arrays of one backend, saved and moved freely.

A layer is the correlation of :func:`polyconv.correlate` with its parameters attached. It is
deliberately small: no autograd, no module tree. :func:`polyconv.fit` trains it with the
backend's forward and VJP, and the parameters move between backends (``layer.to("jax")``) or
through ``.npz`` files (``save`` / ``load``) without changing a single bit.

Initial weights are drawn with ``numpy.random.default_rng(seed)`` in float64 and then rounded to
the layer's dtype, so one seed gives identical parameters on every backend:

- one input and one output channel (the lesson's layer): uniform on ``[0, 1)``, like the classic
  from-scratch ``Conv2D`` (``torch.rand(kernel_size)``);
- otherwise: uniform on ``(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with
  ``fan_in = in_channels // groups * prod(kernel_size)``, the bound of PyTorch's default init.

The bias always starts at zero.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np

from ._core.api import _lift, correlate
from ._core.select import as_input, select_backend
from ._files import write_atomically
from ._spec.dtypes import DTYPES, result_dtype
from ._spec.layouts import (
    CHANNELS_FIRST,
    CHANNELS_LAST,
    check_format,
    kernel_to_first,
    kernel_to_last,
)
from ._spec.options import (
    IntOrTuple,
    PaddingArg,
    check_method,
    check_options,
    per_axis,
    positive_int,
)
from ._spec.spec import normalize
from .backends import Array, Backend
from .backends import get as get_backend

__all__ = ["Conv1D", "Conv2D", "Conv3D", "Params"]

# Bumped when the file layout changes; files of other versions are refused, not misread.
FILE_FORMAT_VERSION = 1

LayerT = TypeVar("LayerT", bound="_ConvND")


class Params(NamedTuple):
    """A layer's trainable arrays (a JAX pytree too); ``bias`` is ``None`` for a layer without."""

    weight: Array
    bias: Array | None


def to_backend(name: str, obj: object, backend: Backend, dtype: str, like: Array | None) -> Array:
    """``obj`` (any array or nested list) as ``backend``'s array of ``dtype``, on ``like``'s device."""
    given = as_input(name, obj)
    result_dtype({name: (given.dtype, given.weak)})  # refuses complex and non-numeric input
    array = given.array
    if given.owner is not None and given.owner is not backend:
        array = given.owner.to_numpy(array)
    converted = backend.convert(array, dtype, like)
    if backend.dtype_name(converted) != dtype:
        # e.g. JAX without jax_enable_x64 keeps float64 as float32: that would silently lose bits.
        raise ValueError(
            f"{name} cannot be held as {dtype} on backend {backend.name!r} "
            f"(it became {backend.dtype_name(converted)}); "
            + (
                "enable it with jax.config.update('jax_enable_x64', True)"
                if backend.name == "jax"
                else "use another dtype"
            )
        )
    return converted


def _jsonable(value: object) -> object:
    """Tuples as lists, recursively: the form a value takes after a JSON round trip."""
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


class _ConvND:
    """The layer of every rank; ``Conv1D``, ``Conv2D`` and ``Conv3D`` only fix ``rank``."""

    rank: ClassVar[int]

    def __init__(
        self,
        kernel_size: IntOrTuple,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        stride: IntOrTuple = 1,
        padding: PaddingArg = "valid",
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
        rank = self.rank
        self.kernel_size = per_axis(kernel_size, rank, "kernel_size")
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        # The same checks as normalize's, which cannot run yet: the input's shape is not known.
        options = check_options(rank, stride, padding, dilation, groups, padding_mode)
        self.stride, self.dilation = options.stride, options.dilation
        self.padding, self.padding_mode = options.padding, options.padding_mode
        self.groups = options.groups
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"groups={self.groups} must divide both in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}"
            )
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        check_method(method)
        self.dtype = dtype
        self.data_format = check_format(data_format, "data_format")
        self.kernel_format = check_format(kernel_format, "kernel_format")
        # How the layer computes, not what: not part of config (nor of a saved file).
        self.method = method
        self.backend = select_backend(backend, [])
        self.seed = seed

        weight, bias_value = self._initial_params(np.random.default_rng(seed), bias)
        self._params = Params(
            to_backend("weight", weight, self.backend, dtype, None),
            None
            if bias_value is None
            else to_backend("bias", bias_value, self.backend, dtype, None),
        )

    # --- parameters -------------------------------------------------------------------------

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """``(out_channels, in_channels // groups, *kernel_size)``, as :func:`correlate` wants:
        the layout the layer computes in (:attr:`params`), whatever its ``kernel_format``."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    @property
    def bias_shape(self) -> tuple[int, ...]:
        """``(out_channels,)``."""
        return (self.out_channels,)

    @property
    def kernel_shape_in_format(self) -> tuple[int, ...]:
        """The shape of :attr:`weight` as the layer's ``kernel_format`` holds it."""
        shape = self.weight_shape
        if self.kernel_format == CHANNELS_LAST:
            return tuple(shape[a] for a in kernel_to_last(len(shape)))
        return shape

    def _initial_params(
        self, rng: np.random.Generator, bias: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        if self.in_channels == 1 and self.out_channels == 1:
            weight = rng.random(self.weight_shape)
        else:
            bound = 1.0 / math.sqrt(math.prod(self.weight_shape[1:]))
            weight = rng.uniform(-bound, bound, self.weight_shape)
        return weight, (np.zeros(self.bias_shape) if bias else None)

    @property
    def params(self) -> Params:
        """``(weight, bias)`` as arrays of the layer's backend, the weight channels first
        (:attr:`weight_shape`) whatever the layer's ``kernel_format``: what it computes with."""
        return self._params

    @property
    def weight(self) -> Array:
        """The kernel: ``(out_channels, in_channels // groups, *kernel_size)``, or with
        ``kernel_format="channels_last"`` ``(*kernel_size, in_channels // groups, out_channels)``."""
        weight = self._params.weight
        if self.kernel_format == CHANNELS_LAST:
            return self.backend.permute(weight, kernel_to_last(weight.ndim))
        return weight

    @weight.setter
    def weight(self, value: object) -> None:
        self._set("weight", value, self.kernel_shape_in_format)

    @property
    def bias(self) -> Array | None:
        """The bias, ``(out_channels,)``, or ``None`` for a layer made with ``bias=False``."""
        return self._params.bias

    @bias.setter
    def bias(self, value: object) -> None:
        if self._params.bias is None:
            raise ValueError("this layer was made with bias=False; it has no bias to set")
        self._set("bias", value, self.bias_shape)

    def _set(self, name: str, value: object, shape: tuple[int, ...]) -> None:
        given_shape = as_input(name, value).shape
        if given_shape != shape:
            layout = f" (kernel_format={self.kernel_format!r})" if name == "weight" else ""
            raise ValueError(f"{name} must have shape {shape}{layout}, got {given_shape}")
        array = to_backend(name, value, self.backend, self.dtype, self._params.weight)
        if name == "weight" and self.kernel_format == CHANNELS_LAST:
            array = self.backend.permute(array, kernel_to_first(array.ndim))
        self._params = self._params._replace(**{name: array})

    def _replace_params(self, params: Params) -> None:
        """Install arrays already of this backend, dtype and shape (used by :func:`fit`)."""
        self._params = params

    # --- computing ----------------------------------------------------------------------------

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments this layer passes to :func:`polyconv.correlate`."""
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "padding_mode": self.padding_mode,
            "method": self.method,
        }

    def spec(self, x_shape: Sequence[int], *, with_bias: bool = False) -> Any:
        """The normalised problem of this layer on a channels-first input of ``x_shape``
        (a :class:`~polyconv.CorrSpec`; a :class:`~polyconv.TransposeSpec` for a transposed
        layer)."""
        return normalize(
            x_shape, self.weight_shape, self.bias_shape if with_bias else None, **self.options
        )

    def is_plain_input(self, x_shape: Sequence[int]) -> bool:
        """Whether ``x_shape`` is a channel-less ``(*spatial)`` input, as in the lesson's corr2d."""
        return len(x_shape) == self.rank and self.in_channels == self.out_channels == 1

    @staticmethod
    def _operation(*args: Any, **kwargs: Any) -> Array:
        """The operation the layer computes, with its parameters as ``w`` and ``bias``."""
        return correlate(*args, **kwargs)

    def __call__(self, x: object) -> Array:
        """``correlate(x, weight, bias)`` on the layer's backend.

        ``x`` is ``(N, C_in, *spatial)`` or ``(C_in, *spatial)`` (with
        ``data_format="channels_last"``: ``(N, *spatial, C_in)`` or ``(*spatial, C_in)``, and
        the result likewise); a layer with one input and one output channel also takes a plain
        ``(*spatial)`` input and returns a plain output, like ``corr2d(X, K) + b``. Inputs of
        other frameworks are converted to the layer's backend.
        """
        given = as_input("x", x)
        plain = self.is_plain_input(given.shape)
        y = self._operation(
            _lift(given) if plain else x,
            self._params.weight,
            self.bias,
            backend=self.backend.name,
            data_format=CHANNELS_FIRST if plain else self.data_format,
            **self.options,
        )
        return y[0, 0, ...] if plain else y

    # --- moving and saving --------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """Everything but the parameters that defines the layer, JSON-ready (stored by ``save``)."""
        return {
            "layer": type(self).__name__,
            "rank": self.rank,
            "kernel_size": list(self.kernel_size),
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "stride": list(self.stride),
            "padding": _jsonable(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "padding_mode": self.padding_mode,
            "bias": self._params.bias is not None,
            "dtype": self.dtype,
            "data_format": self.data_format,
            "kernel_format": self.kernel_format,
        }

    def _clone_on(self: LayerT, backend: Backend) -> LayerT:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.backend = backend
        weight = to_backend(
            "weight", self.backend.to_numpy(self._params.weight), backend, self.dtype, None
        )
        bias = None
        if self.bias is not None:
            bias = to_backend("bias", self.backend.to_numpy(self.bias), backend, self.dtype, weight)
        clone._params = Params(weight, bias)
        return clone

    def to(self: LayerT, backend: str) -> LayerT:
        """A copy of this layer on ``backend``, parameters bit for bit; ``self`` is unchanged."""
        return self._clone_on(get_backend(backend))

    def to_module(self, framework: str) -> Any:
        """A native layer of ``framework`` (``"torch"``, ``"flax"``, ``"keras"``) with these
        weights, computing the same function: see :func:`polyconv.adapters.to_module`."""
        from .adapters import to_module

        return to_module(self, framework)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the parameters and :attr:`config` to the ``.npz`` file ``path`` (exactly that
        name), atomically: a crash never leaves a half-written file in its place."""
        path = os.fspath(path)
        arrays: dict[str, Any] = {"weight": self.backend.to_numpy(self._params.weight)}
        if self.bias is not None:
            arrays["bias"] = self.backend.to_numpy(self.bias)
        config = json.dumps({"polyconv_format": FILE_FORMAT_VERSION, **self.config})
        write_atomically(path, lambda file: np.savez(file, config=np.array(config), **arrays))

    @staticmethod
    def _read(path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The config and arrays of a layer file; pickles and foreign files are refused."""
        try:
            data = np.load(path, allow_pickle=False)
            if isinstance(data, np.lib.npyio.NpzFile):
                with data:
                    arrays = {name: data[name] for name in data.files}
        except ValueError as error:
            if "allow_pickle=False" in str(error):  # NumPy's words for an object array
                raise ValueError(
                    f"{path} holds pickled objects; polyconv never loads pickles (they can run "
                    "code). Layer files written by layer.save() contain plain arrays only"
                ) from None
            raise ValueError(f"{path} is not a polyconv layer file (.npz): {error}") from None
        except (zipfile.BadZipFile, EOFError) as error:
            raise ValueError(f"{path} is not a polyconv layer file (.npz): {error}") from None
        if not isinstance(data, np.lib.npyio.NpzFile):  # a .npy file gives a plain array
            raise ValueError(f"{path} is not a polyconv layer file (.npz)")
        if "config" not in arrays:
            raise ValueError(f"{path} is not a polyconv layer file (no 'config' entry)")
        config_array = arrays.pop("config")
        if config_array.dtype.kind != "U" or config_array.ndim != 0:
            raise ValueError(f"{path}: config must be a JSON string, got {config_array.dtype}")
        try:
            config = json.loads(str(config_array))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: config is not valid JSON: {error}") from None
        if not isinstance(config, dict):
            raise ValueError(
                f"{path}: config must be a JSON object of the layer's fields, "
                f"got {type(config).__name__}"
            )
        # Files written before layouts existed hold channels-first layers.
        config.setdefault("data_format", CHANNELS_FIRST)
        config.setdefault("kernel_format", CHANNELS_FIRST)
        version = config.pop("polyconv_format", None)
        if version != FILE_FORMAT_VERSION:
            raise ValueError(
                f"{path}: file format version {version!r}, this polyconv reads version "
                f"{FILE_FORMAT_VERSION}"
            )
        return config, arrays

    def load(self: LayerT, path: str | os.PathLike[str]) -> LayerT:
        """Replace the parameters with those saved in ``path``; returns ``self``.

        The file's layer definition must match this layer's field by field (a mismatch is a
        ``ValueError`` naming the file and the field); pickled files are refused.
        """
        path = os.fspath(path)
        config, arrays = self._read(path)
        ours = self.config
        for field in [*ours, *(name for name in config if name not in ours)]:
            if config.get(field) != ours.get(field):
                raise ValueError(
                    f"{path}: {field} is {config.get(field)!r} in the file but "
                    f"{ours.get(field)!r} in this layer"
                )
        expected = {"weight": self.weight_shape}  # saved channels first, as computed
        if self.bias is not None:
            expected["bias"] = self.bias_shape
        if arrays.keys() != expected.keys():
            raise ValueError(
                f"{path}: expected arrays {sorted(expected)}, the file holds {sorted(arrays)}"
            )
        for name, shape in expected.items():
            if arrays[name].shape != shape or arrays[name].dtype.name != self.dtype:
                raise ValueError(
                    f"{path}: {name} has shape {arrays[name].shape} and dtype "
                    f"{arrays[name].dtype}, this layer needs shape {shape} and dtype {self.dtype}"
                )
        weight = to_backend(
            "weight", arrays["weight"], self.backend, self.dtype, self._params.weight
        )
        bias = None
        if "bias" in arrays:
            bias = to_backend("bias", arrays["bias"], self.backend, self.dtype, self._params.weight)
        self._params = Params(weight, bias)
        return self

    @classmethod
    def from_file(
        cls: type[LayerT], path: str | os.PathLike[str], *, backend: str | None = None
    ) -> LayerT:
        """A new layer built from the definition saved in ``path``, with its parameters."""
        path = os.fspath(path)
        config, _ = cls._read(path)
        if config.get("layer") != cls.__name__ or config.get("rank") != cls.rank:
            raise ValueError(
                f"{path}: layer is {config.get('layer')!r} in the file, not {cls.__name__!r}"
            )
        try:
            layer = cls(config["kernel_size"], backend=backend, **cls._constructor_config(config))
        except KeyError as error:
            raise ValueError(f"{path}: config lacks the field {error.args[0]!r}") from None
        except (TypeError, ValueError) as error:  # the message names the field
            raise ValueError(f"{path}: config field {error}") from None
        return layer.load(path)

    @classmethod
    def _constructor_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The constructor's keywords (but ``kernel_size``) from a saved :attr:`config`."""
        names = ["in_channels", "out_channels", "stride", "padding", "dilation", "groups"]
        names += ["padding_mode", "bias", "dtype", "data_format", "kernel_format"]
        return {name: config[name] for name in names}

    def __repr__(self) -> str:
        fields = {
            "kernel_size": self.kernel_size,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            **self.options,
            "bias": self.bias is not None,
            "dtype": self.dtype,
            "backend": self.backend.name,
        }
        for name in ("data_format", "kernel_format"):
            if getattr(self, name) != CHANNELS_FIRST:
                fields[name] = getattr(self, name)
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"


class Conv1D(_ConvND):
    """1-D correlation layer: input ``(N, C_in, W)``, ``(C_in, W)`` or plain ``(W,)``."""

    rank = 1


class Conv2D(_ConvND):
    """2-D correlation layer: input ``(N, C_in, H, W)``, ``(C_in, H, W)`` or plain ``(H, W)``."""

    rank = 2


class Conv3D(_ConvND):
    """3-D correlation layer: input ``(N, C_in, D, H, W)``, ``(C_in, D, H, W)`` or plain
    ``(D, H, W)``."""

    rank = 3
