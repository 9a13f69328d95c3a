"""``pc.compare``: do two convolution layers, of any frameworks, compute the same function?

The person porting a model holds two layers, say a ``torch.nn.Conv2d`` and a ``flax.nnx.Conv``
with copied weights. :func:`compare` runs both on the same random input (each in its own data
layout), forward and backward through each framework's own autodiff, checks every result
against the float64 reference of the first layer's spec under the error bound of
:func:`polyconv.verify`, and names the fields in which the two specs differ, in each framework's
own terms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import reference
from ._bounds import (
    error_bound,
    to_numpy,
    transpose_error_bound,
    transpose_vjp_error_bounds,
    vjp_error_bounds,
)
from ._spec.dtypes import FLOAT_DTYPES
from ._spec.spec import normalize
from ._spec.transpose import normalize_transpose
from .adapters import _adapter, describe
from .adapters._description import ConvDescription, effective_padding
from .backends import get
from .layers import _ConvND
from .verify import RESULTS, Check, _check

__all__ = ["CompareReport", "Side", "compare", "load"]

_Results = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class Side:
    """One of the two layers: what it is, and its results' checks or the error it raised."""

    label: str
    checks: tuple[Check, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.passed for c in self.checks)


@dataclass(frozen=True)
class CompareReport:
    """The outcome of :func:`compare`; ``str()`` gives a table, ``ok`` says whether both layers
    computed the reference of ``a``'s spec within the error bound, forward and backward."""

    input_shape: tuple[int, ...]
    dtype: str
    seed: int
    sides: tuple[Side, Side]
    differences: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return all(side.ok for side in self.sides)

    def __str__(self) -> str:
        return _render(self)


def _label(module: object, description: ConvDescription) -> str:
    cls = type(module)
    name = (
        cls.__name__
        if isinstance(module, _ConvND)
        else f"{cls.__module__.split('.')[0]}.{cls.__qualname__}"
    )
    return f"{name} ({description.framework}, {description.data_format}, on {description.backend})"


def _run(module: object, description: ConvDescription, x: np.ndarray, g: np.ndarray) -> _Results:
    """``module``'s result and gradients for channels-first ``x`` and ``g``, channels-first."""
    if not isinstance(module, _ConvND):  # a torch, Flax or Keras module: its own autodiff
        results: _Results = _adapter(description.framework).run(module, x, g)
        return results
    from ._core.api import correlate_vjp
    from ._core.transpose import correlate_transpose_vjp

    vjp = correlate_transpose_vjp if description.transpose else correlate_vjp
    layer, backend = module, module.backend
    # The forward in the layer's own layout; the gradients channels-first, from its parameters.
    last = description.data_format == "channels_last"
    y = to_numpy(
        layer(
            backend.convert(
                np.ascontiguousarray(np.moveaxis(x, 1, -1) if last else x), x.dtype.name, None
            )
        )
    )
    if last:
        y = np.moveaxis(y, -1, 1)
    grads = vjp(
        backend.convert(x, x.dtype.name, None),
        layer.params.weight,
        layer.params.bias,
        backend.convert(g, g.dtype.name, None),
        backend=backend.name,
        **layer.options,
    )
    return (
        y,
        to_numpy(grads[0]),
        to_numpy(grads[1]),
        None if grads[2] is None else to_numpy(grads[2]),
    )


def _pairs_text(pairs: tuple[tuple[int, int], ...]) -> str:
    if len(set(pairs)) == 1:
        return f"{pairs[0]} (lo, hi) on every axis"
    return f"{', '.join(map(str, pairs))} (lo, hi) per axis"


def _padding_text(description: ConvDescription, x_shape: tuple[int, ...]) -> str:
    pairs = description.padding_at(x_shape)
    text = f"{description.framework} padding={description.native_padding}"
    if isinstance(description.padding, str) and set(description.stride) != {1}:
        text += f" at stride {_compact(description.stride)}"
    text += f" pads {_pairs_text(pairs)}"
    if description.padding == "same" and any(lo != hi for lo, hi in pairs):
        text += f" of the input size {_compact(x_shape[2:])} (the odd pad goes at the end)"
    if description.padding_mode != "zeros":
        text += f" in mode {description.padding_mode!r}"
    if description.transpose:
        text += f" of the forward, output_padding {_compact(description.output_padding or (0,))}"
    return text


def _compact(values: Sequence[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else str(tuple(values))


def _differences(a: ConvDescription, b: ConvDescription, x_shape: tuple[int, ...]) -> list[str]:
    """The fields in which ``a`` and ``b`` define different functions, in their own terms."""
    found = []
    names = (a.framework, b.framework)
    if a.transpose != b.transpose or a.rank != b.rank:
        found.append(f"kind: {names[0]} {a.kind}; {names[1]} {b.kind}")
        return found
    for field in ("in_channels", "out_channels", "kernel_size", "stride", "dilation", "groups"):
        ours, theirs = getattr(a, field), getattr(b, field)
        if ours != theirs:
            found.append(f"{field}: {names[0]} {ours}; {names[1]} {theirs}")
    try:
        same_padding = effective_padding(a, x_shape) == effective_padding(b, x_shape)
    except ValueError:  # b cannot take this input at all: the checks say how
        same_padding = True
    pads_read = any(p for pair in a.padding_at(x_shape) for p in pair)
    if not same_padding or (a.padding_mode != b.padding_mode and pads_read):
        found.append(f"padding: {_padding_text(a, x_shape)}; {_padding_text(b, x_shape)}")
    if (a.bias is None) != (b.bias is None):
        found.append(
            f"bias: {names[0]} {'has one' if a.bias is not None else 'has none'}; "
            f"{names[1]} {'has one' if b.bias is not None else 'has none'}"
        )
    for field in ("weight", "bias"):
        ours, theirs = getattr(a, field), getattr(b, field)
        if ours is None or theirs is None:
            continue
        if ours.shape != theirs.shape:
            found.append(
                f"{field}: shape {ours.shape} in {names[0]}, {theirs.shape} in {names[1]} "
                "(both in polyconv's layout (C_out, C_in // groups, *k))"
            )
        elif not np.array_equal(ours.astype(np.float64), theirs.astype(np.float64)):
            worst = float(np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64))))
            hint = ""
            if field == "weight" and _is_permutation(ours, theirs):
                hint = (
                    "; the same values in another order: a kernel copied without its transpose"
                    " (or, for a transposed convolution, its flip)?"
                )
            found.append(f"{field}: values differ by up to {worst:.3g}{hint}")
    return found


def _is_permutation(ours: np.ndarray, theirs: np.ndarray) -> bool:
    return bool(np.array_equal(np.sort(ours, axis=None), np.sort(theirs, axis=None)))


_Reference = tuple[tuple[np.ndarray | None, ...], tuple[np.ndarray | None, ...]]


def _forward_reference(
    layer: ConvDescription, x: np.ndarray, g: np.ndarray | None, dtype: str
) -> _Reference:
    """The float64 result and gradients of a forward layer, and their error bounds (only the
    result when ``g`` is ``None``)."""
    w, b = layer.weight.astype(np.float64), _float64(layer.bias)
    kwargs = layer.correlate_kwargs()
    y = reference.correlate(x, w, b, **kwargs)
    if g is None:
        return (y,), ()
    expected = (y, *reference.correlate_vjp(x, w, b, g, **kwargs))
    bounds = (error_bound(x, w, b, dtype, kwargs), *vjp_error_bounds(x, w, b, g, dtype, kwargs))
    return expected, bounds


def _transpose_reference(
    layer: ConvDescription, y: np.ndarray, g: np.ndarray | None, dtype: str
) -> _Reference:
    """The same for a transposed layer (``y`` its input)."""
    w, b = layer.weight.astype(np.float64), _float64(layer.bias)
    kwargs = layer.correlate_kwargs()
    out = reference.correlate_transpose(y, w, b, **kwargs)
    if g is None:
        return (out,), ()
    expected = (out, *reference.correlate_transpose_vjp(y, w, b, g, **kwargs))
    bounds = (
        transpose_error_bound(y, w, b, dtype, kwargs),
        *transpose_vjp_error_bounds(y, w, b, g, dtype, kwargs),
    )
    return expected, bounds


def _output_shape(layer: ConvDescription, x_shape: tuple[int, ...]) -> tuple[int, ...]:
    kwargs = layer.correlate_kwargs()
    if layer.transpose:
        return normalize_transpose(x_shape, layer.weight.shape, **kwargs).out_shape
    return normalize(x_shape, layer.weight.shape, **kwargs).out_shape


def _output_mismatch(
    layer: ConvDescription, x_shape: tuple[int, ...], expected: tuple[int, ...]
) -> str | None:
    """Why this layer's output cannot be compared with ``expected`` (its shape), or None."""
    try:
        got = _output_shape(layer, x_shape)
    except ValueError as error:
        return f"cannot take the input {x_shape}: {error}"
    if got != expected:
        return f"its output has shape {got} where a's has {expected}: the specs differ (below)"
    return None


def _float64(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else array.astype(np.float64)


def _values(rng: np.random.Generator, shape: Sequence[int], dtype: str) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, tuple(shape)).astype(dtype)


def compare(
    a: object,
    b: object,
    input_shape: Sequence[int],
    *,
    seed: int = 0,
    dtype: str = "float32",
) -> CompareReport:
    """Run layers ``a`` and ``b`` on the same random input, forward and backward, and report
    whether both compute the function of ``a``'s spec, and where the two specs differ.

    ``a`` and ``b`` are polyconv layers or anything :func:`polyconv.from_module` reads (torch,
    Flax, Keras convolutions). ``input_shape`` is channels-first, ``(N, C_in, *spatial)``; each
    layer gets the input in its own layout. The input and the output gradient are drawn
    uniformly in [-1, 1) from ``seed`` in ``dtype``. Each layer's output and its gradients for
    the input, the weight (compared in polyconv's layout) and the bias, computed by its own
    framework's autodiff, are checked against the float64 reference of ``a``'s spec and weights
    under :func:`polyconv.verify`'s error bound. ``report.differences`` names each field that
    differs between the two specs, in each framework's terms (padding resolved at this input).
    """
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype!r}")
    shape = tuple(int(n) for n in input_shape)
    descriptions = (describe(a), describe(b))
    first = descriptions[0]
    if len(shape) != first.rank + 2 or shape[1] != first.in_channels:
        raise ValueError(
            f"input_shape must be channels-first (N, C_in, *spatial) with C_in = "
            f"{first.in_channels} and {first.rank} spatial axes for a, got {shape}"
        )
    rng = np.random.default_rng(seed)
    x = _values(rng, shape, dtype)
    reference_of = _transpose_reference if first.transpose else _forward_reference
    result = reference_of(first, x.astype(np.float64), None, dtype)[0][0]
    assert result is not None
    out_shape = result.shape
    g = _values(rng, out_shape, dtype)
    expected, bounds = reference_of(first, x.astype(np.float64), g.astype(np.float64), dtype)
    numpy_backend = get("numpy")
    sides = []
    for module, description in zip((a, b), descriptions, strict=True):
        label = _label(module, description)
        mismatch = _output_mismatch(description, shape, g.shape)
        if mismatch is not None:  # its backward cannot take a's output gradient
            sides.append(Side(label, error=mismatch))
            continue
        try:
            results = _run(module, description, x, g)
        except Exception as error:  # a layer that raises fails; the report says how
            sides.append(Side(label, error=f"raised {type(error).__name__}: {error}"))
            continue
        checks = []
        for name, actual, want, bound in zip(RESULTS, results, expected, bounds, strict=True):
            if want is None or bound is None:
                if actual is not None:
                    checks.append(
                        Check(
                            name,
                            math.nan,
                            math.nan,
                            math.nan,
                            math.inf,
                            False,
                            f"{name} exists, but a has no bias",
                        )
                    )
                continue
            if actual is None:
                checks.append(
                    Check(
                        name,
                        math.nan,
                        math.nan,
                        math.nan,
                        math.inf,
                        False,
                        f"{name} is missing: this layer has no bias",
                    )
                )
                continue
            checks.append(_check(name, numpy_backend, np.asarray(actual), want, bound, dtype))
        sides.append(Side(label, tuple(checks)))
    return CompareReport(
        shape, dtype, seed, (sides[0], sides[1]), tuple(_differences(*descriptions, shape))
    )


def _render(report: CompareReport) -> str:
    lines = [
        f"polyconv compare: input {report.input_shape} (channels-first) in {report.dtype}, "
        f"seed {report.seed}; reference: float64 of a's spec and weights",
    ]
    rows = [("layer", "result", "max abs err", "max rel err", "err/bound", "status")]
    for which, side in zip("ab", report.sides, strict=True):
        lines.append(f"{which}: {side.label}")
        if side.error is not None:
            rows.append((which, "-", "", "", "", "FAIL"))
            continue
        for check in side.checks:
            rows.append(
                (
                    which,
                    check.result,
                    f"{check.max_abs_error:.2e}",
                    f"{check.max_rel_error:.2e}",
                    f"{check.worst_ratio:.3g}",
                    "ok" if check.passed else "FAIL",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines.append("")
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.append("")
    for which, side in zip("ab", report.sides, strict=True):
        if side.error is not None:
            lines.append(f"{which}: {side.error}")
        lines += [f"{which} {c.result}: {c.detail}" for c in side.checks if not c.passed]
    if report.differences:
        lines.append("the specs differ:")
        lines += [f"  {difference}" for difference in report.differences]
    lines.append("ok: both compute the same function" if report.ok else "FAIL: they differ")
    return "\n".join(lines)


def load(source: str) -> object:
    """A layer from a file written by ``layer.save`` (``.npz``), or the object an import path
    ``package.module:name`` names (a layer or module, or a function of no arguments that
    returns one)."""
    import importlib
    import inspect
    import os

    from . import layers, transposed_layers

    if os.path.exists(source):
        config, _ = _ConvND._read(source)
        name = config.get("layer")
        cls = getattr(layers, str(name), None) or getattr(transposed_layers, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, _ConvND)):
            raise ValueError(f"{source}: layer {name!r} is not a polyconv layer class")
        return cls.from_file(source)
    module_name, _, attribute = source.partition(":")
    if not attribute:
        raise ValueError(
            f"{source!r} is neither a file nor an import path of the form package.module:name"
        )
    found = getattr(importlib.import_module(module_name), attribute)
    # A plain function builds the layer; a layer (itself callable) is returned as it is.
    return found() if inspect.isfunction(found) else found
