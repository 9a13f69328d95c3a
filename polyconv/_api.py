"""The public operations: normalise, pick a backend, convert, compute."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._dispatch import (
    Input,
    as_input,
    call_facts,
    call_route,
    call_signature,
    convert_inputs,
    facts_reader,
    select_backend,
)
from ._methods import method_for
from ._spec import CorrSpec, IntOrTuple, PaddingArg, normalize
from .backends import Array, Backend

# A call whose arrays have the types, dtypes, shapes and devices of an earlier call's, with the
# same arguments and backend choice, gets that call's backend and spec, when that call needed no
# conversion: a small problem then costs little more than the native call. (A backend owns
# arrays by type, and its ``convert`` returns an array of its own dtype unchanged.)
_REPEATS: dict[tuple[object, ...], tuple[Backend, CorrSpec]] = {}
_REPEATS_MAX = 512


@dataclass(slots=True)
class _Route:
    """What ``correlate``, the most called, keeps for one route (arguments and array types):
    the backend's prepared function per dtypes, shapes and devices (its key read by
    ``facts``), or, on a backend whose framework keeps its own cache of compiled calls by
    argument signature (JAX), the whole call, compiled."""

    facts: Callable[[Any, Any, Any], tuple[object, ...] | None]
    dispatch: Callable[[Any, Any, Any], Array] | None = None
    correlators: dict[tuple[object, ...], Callable[[Any, Any, Any], Array]] = field(
        default_factory=dict
    )


_ROUTES: dict[tuple[object, ...], _Route] = {}


def _lookup(cache: dict[tuple[object, ...], Any], key: tuple[object, ...] | None) -> Any:
    try:
        return None if key is None else cache.get(key)
    except TypeError:  # an unhashable shape or device of some array type: no shortcut
        return None


def _remember(
    cache: dict[tuple[object, ...], Any], key: tuple[object, ...] | None, value: Any
) -> None:
    if key is None:
        return
    if len(cache) >= _REPEATS_MAX:
        cache.clear()
    with contextlib.suppress(TypeError):  # see _lookup
        cache[key] = value


def _prepare(
    arrays: dict[str, object], settings: tuple[object, ...], key: tuple[object, ...] | None
) -> tuple[Backend, dict[str, Array], CorrSpec]:
    """Inspect, validate and convert; the arrays come back batched and of one dtype. ``key`` is
    the call's :func:`call_signature`."""
    repeat = _lookup(_REPEATS, key)
    if repeat is not None:
        chosen, spec = repeat
        return chosen, _batched(dict(arrays), spec), spec
    chosen, result, spec = _inspect_and_convert(arrays, settings)
    if all(result[name] is obj for name, obj in arrays.items()):
        _remember(_REPEATS, key, (chosen, spec))
    return chosen, _batched(result, spec), spec


def _batched(arrays: dict[str, Array], spec: CorrSpec) -> dict[str, Array]:
    if not spec.batched:
        for name in ("x", "grad_y"):
            if arrays.get(name) is not None:
                arrays[name] = arrays[name][None, ...]  # Array API: index every axis
    return arrays


def _inspect_and_convert(
    arrays: dict[str, object], settings: tuple[Any, ...]
) -> tuple[Backend, dict[str, Array], CorrSpec]:
    backend, stride, padding, dilation, groups, padding_mode, method = settings
    # Only bias is optional; a None x, w or grad_y is refused by as_input with its name.
    inputs = [as_input(n, obj) for n, obj in arrays.items() if obj is not None or n != "bias"]
    by_name = {i.name: i for i in inputs}
    chosen = select_backend(backend, inputs)  # before the spec: "auto" uses its cost model
    devices = (chosen.device(i.array) for i in inputs if i.owner is chosen)
    method = method_for(method, chosen, next((d for d in devices if d is not None), None))
    spec = normalize(
        by_name["x"].shape,
        by_name["w"].shape,
        by_name["bias"].shape if "bias" in by_name else None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        method=method,
        backend=chosen.name,
    )
    if "grad_y" in by_name and by_name["grad_y"].shape != spec.user_out_shape:
        raise ValueError(
            f"grad_y must have the output's shape {spec.user_out_shape}, "
            f"got {by_name['grad_y'].shape}"
        )
    converted, _ = convert_inputs(chosen, inputs)
    result: dict[str, Array] = dict.fromkeys(arrays)
    result.update(zip(by_name, converted, strict=True))
    return chosen, result, spec


def correlate(
    x: object,
    w: object,
    bias: object = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "auto",
    backend: str | None = None,
) -> Array:
    """Cross-correlation ``y[n, o, i] = bias[o] + sum_{c, k} w[o, c, k] * x_pad[n, c', i*s + k*d]``.

    ``x`` is ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``; ``w`` is
    ``(C_out, C_in // groups, *kernel)`` with 1 to 3 spatial axes; ``bias`` is ``(C_out,)``.
    ``method`` is ``"direct"`` (the defining sum), ``"fft"`` (overlap-save FFT: faster for large
    kernels on large inputs, its rounding error bounded by norms rather than per element) or
    ``"auto"``, the faster of the two by the backend's cost model (``docs/benchmarks.md``).
    See ``docs/spec.md`` for padding forms and modes, dtypes and backend selection.
    """
    settings = (backend, stride, padding, dilation, groups, padding_mode, method)
    route = call_route(settings, x, w, bias)
    known = _ROUTES.get(route)  # type: ignore[arg-type]  # (None is never a key)
    if known is not None:
        if known.dispatch is not None:
            try:
                return known.dispatch(x, w, bias)
            except Exception:
                pass  # the validated call says what is wrong, outside the framework's traceback
        else:
            run = _lookup(known.correlators, known.facts(x, w, bias))
            if run is not None:
                return run(x, w, bias)
    return _correlate(x, w, bias, settings, route)


def _correlate(
    x: object,
    w: object,
    bias: object,
    settings: tuple[object, ...],
    route: tuple[object, ...] | None = None,
) -> Array:
    """The validated call, which keeps what repeated calls need (with no ``route``: nothing)."""
    facts = None if route is None else call_facts((x, w, bias))
    key = None if facts is None else (route, facts)
    chosen, a, spec = _prepare({"x": x, "w": w, "bias": bias}, settings, key)
    run = chosen.correlator(spec, a["x"])
    if _lookup(_REPEATS, key) is not None:  # a call that needs no conversion
        known = _ROUTES.get(route)  # type: ignore[arg-type]  # (route is not None here)
        if known is None:
            known = _Route(facts_reader((type(x), type(w), type(bias))))
            _remember(_ROUTES, route, known)
        if known.dispatch is None:  # (else it raised on a call this one validates)
            dispatch = chosen.dispatcher(functools.partial(_correlate, settings=settings))
            if dispatch is not None:
                known.dispatch = dispatch
                return dispatch(x, w, bias)
            _remember(known.correlators, facts, run if spec.batched else _unbatched(run))
    y = run(a["x"], a["w"], a["bias"])
    return y if spec.batched else y[0, ...]


def _unbatched(run: Callable[[Any, Any, Any], Array]) -> Callable[[Any, Any, Any], Array]:
    return lambda x, w, bias: run(x[None, ...], w, bias)[0, ...]


def convolve(
    x: object,
    w: object,
    bias: object = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "auto",
    backend: str | None = None,
) -> Array:
    """True convolution: :func:`correlate` with the kernel flipped along its spatial axes."""
    settings = (backend, stride, padding, dilation, groups, padding_mode, method)
    arrays = {"x": x, "w": w, "bias": bias}
    chosen, a, spec = _prepare(arrays, settings, call_signature(tuple(arrays.values()), settings))
    flipped = chosen.flip(a["w"], tuple(range(2, 2 + spec.rank)))
    y = chosen.correlate(a["x"], flipped, a["bias"], spec)
    return y if spec.batched else y[0, ...]


def correlate_vjp(
    x: object,
    w: object,
    bias: object,
    grad_y: object,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "auto",
    backend: str | None = None,
) -> tuple[Array, Array, Array | None]:
    """Gradients of ``sum(correlate(x, w, bias) * grad_y)`` with respect to ``x``, ``w``, ``bias``.

    ``grad_bias`` is ``None`` when ``bias`` is ``None``.
    """
    settings = (backend, stride, padding, dilation, groups, padding_mode, method)
    arrays = {"x": x, "w": w, "bias": bias, "grad_y": grad_y}
    chosen, a, spec = _prepare(arrays, settings, call_signature(tuple(arrays.values()), settings))
    grad_x, grad_w, grad_bias = chosen.correlate_vjp(a["x"], a["w"], a["bias"], a["grad_y"], spec)
    return (grad_x if spec.batched else grad_x[0, ...]), grad_w, grad_bias


def corr2d(X: object, K: object, *, backend: str | None = None) -> Array:
    """The lesson's 2-D, single-channel correlation: ``X (H, W)``, ``K (kh, kw)`` give
    ``(H - kh + 1, W - kw + 1)``."""
    inputs = {"X": as_input("X", X), "K": as_input("K", K)}
    for name, i in inputs.items():
        if len(i.shape) != 2:
            raise ValueError(f"{name} must be 2-D, got shape {i.shape}")
    x_shape, k_shape = inputs["X"].shape, inputs["K"].shape
    if any(k > n for k, n in zip(k_shape, x_shape, strict=True)):
        raise ValueError(f"K of shape {k_shape} must fit inside X of shape {x_shape} (no padding)")
    y = correlate(_lift(inputs["X"]), _lift(inputs["K"]), backend=backend)
    return y[0, 0, ...]


def _lift(i: Input) -> object:
    """A 2-D argument as (1, 1, H, W), keeping lists weakly typed."""
    return [[i.array.tolist()]] if i.weak else i.array[None, None, ...]


def output_shape(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    *,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> tuple[int, ...]:
    """The shape :func:`correlate` returns for these shapes, computed without arrays."""
    spec = normalize(
        x_shape,
        w_shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
    return spec.user_out_shape
