"""``polyconv explain``: the native call each framework needs for one correlation problem.

A person porting a model must write the same correlation in another framework's terms, and the
traps are in the details: ``"same"`` with a stride pads asymmetrically, which ``F.conv2d`` cannot
express; torch's reflect and circular padding have size limits and it has no symmetric mode;
``lax.conv_general_dilated`` needs dimension numbers and an explicit precision. :func:`explain`
prints, for one problem, a snippet per framework that is runnable as printed, given ``x``, ``w``
(and ``b``) as that framework's arrays, and leaves the result in ``y``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from ._explain_transpose import dimension_numbers, in_channels_last, jax_transpose, torch_transpose
from ._spec.layouts import (
    CHANNELS_FIRST,
    CHANNELS_LAST,
    check_channels,
    check_format,
    data_to_first,
    data_to_last,
    kernel_to_first,
    permuted,
)
from ._spec.padding import NUMPY_PAD_MODE
from ._spec.spec import CorrSpec, IntOrTuple, PaddingArg, normalize
from ._spec.transpose import TransposeSpec, normalize_transpose

__all__ = ["NativeCall", "explain", "native_calls"]

# What each framework's ``x``, ``w`` and ``b`` are in its snippet.
ARRAY_TYPES = {
    "torch": "torch tensors",
    "jax": "jax arrays",
    "numpy": "numpy arrays",
    "scipy": "numpy arrays",
    "torch_module": "torch tensors",
    "flax_module": "jax arrays",
    "keras_module": "arrays of the Keras backend",
}
_SPATIAL_LETTERS = {1: "L", 2: "HW", 3: "DHW"}
# torch.nn.functional.pad's names for polyconv's modes; it has no symmetric mode.
_TORCH_PAD_MODE = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}
# scipy.signal.correlate2d's boundary names; it has no reflect or replicate boundary.
_SCIPY_BOUNDARY = {"zeros": "fill", "circular": "wrap", "symmetric": "symm"}


@dataclass(frozen=True)
class NativeCall:
    """One framework's equivalent of a polyconv call.

    ``code`` is runnable given ``x``, ``w`` (and ``b``) as that framework's arrays and leaves the
    result in ``y``; it is empty when the framework has no equivalent, and ``note`` says why.
    """

    framework: str
    code: str
    note: str = ""


def _int_or_tuple(values: Sequence[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else str(tuple(values))


def _all_padding(spec: CorrSpec) -> str:
    return str(((0, 0), (0, 0), *spec.padding) if spec.batched else ((0, 0), *spec.padding))


def _torch_pad_reason(spec: CorrSpec) -> str | None:
    """Why F.pad cannot pad this spec, or None when it can."""
    mode = spec.padding_mode
    sizes = spec.x_shape[2:]
    if mode == "symmetric":
        return (
            "F.pad has no 'symmetric' mode (numpy's: the edge element is repeated, "
            "which 'reflect' skips)"
        )
    if mode == "reflect":
        too_wide = [
            (n, p) for n, pair in zip(sizes, spec.padding, strict=True) for p in pair if p >= n
        ]
        if too_wide:
            n, p = too_wide[0]
            return f"F.pad's 'reflect' needs each pad < the input's size (here {p} >= {n})"
    if mode == "circular":
        too_wide = [
            (n, p) for n, pair in zip(sizes, spec.padding, strict=True) for p in pair if p > n
        ]
        if too_wide:
            n, p = too_wide[0]
            return f"F.pad's 'circular' wraps at most once: each pad <= the input's size (here {p} > {n})"
    return None


def _torch(spec: CorrSpec, padding: object) -> NativeCall:
    rank = spec.rank
    lines = ["import torch.nn.functional as F"]
    source = "x"
    conv_padding = ""
    padded = any(lo or hi for lo, hi in spec.padding)
    # F.pad lists (lo, hi) from the last axis backwards.
    flat = tuple(p for pair in reversed(spec.padding) for p in pair)
    order = {1: "(left, right)", 2: "(left, right, top, bottom)", 3: "(last axis first)"}[rank]
    if padded and spec.padding_mode == "zeros":
        if padding == "same" and set(spec.stride) == {1}:
            conv_padding = ', padding="same"'
        elif all(lo == hi for lo, hi in spec.padding):
            conv_padding = f", padding={_int_or_tuple([lo for lo, _ in spec.padding])}"
        else:
            lines.append(
                f"# F.conv{rank}d pads both ends of an axis equally; this spec pads "
                f"{', '.join(map(str, spec.padding))} (lo, hi) per axis, so pad first:"
            )
            lines.append(f"x_padded = F.pad(x, {flat})  # {order}")
            source = "x_padded"
    elif padded:
        reason = _torch_pad_reason(spec)
        if reason is None:
            mode = _TORCH_PAD_MODE[spec.padding_mode]
            lines.append(f'x_padded = F.pad(x, {flat}, mode="{mode}")  # {order}')
        else:
            lines[0:0] = ["import numpy as np", "import torch"]
            lines.append(f"# {reason}:")
            lines.append("# gather along each axis with the index np.pad gives instead")
            numpy_mode = NUMPY_PAD_MODE[spec.padding_mode]
            current = "x"
            for axis, (n, (lo, hi)) in enumerate(zip(spec.x_shape[2:], spec.padding, strict=True)):
                if lo or hi:
                    lines.append(
                        f"index = torch.from_numpy(np.pad(np.arange({n}), ({lo}, {hi}), "
                        f'mode="{numpy_mode}")).to(x.device)'
                    )
                    lines.append(f"x_padded = {current}.index_select({axis - rank}, index)")
                    current = "x_padded"
        source = "x_padded"
    args = [source, "w"] + (["b"] if spec.has_bias else [])
    keywords = ""
    if set(spec.stride) != {1}:
        keywords += f", stride={_int_or_tuple(spec.stride)}"
    keywords += conv_padding
    if set(spec.dilation) != {1}:
        keywords += f", dilation={_int_or_tuple(spec.dilation)}"
    if spec.groups != 1:
        keywords += f", groups={spec.groups}"
    lines.append(f"y = F.conv{rank}d({', '.join(args)}{keywords})")
    note = "" if spec.batched else "F.conv*d takes the unbatched (C_in, *spatial) x as it is."
    return NativeCall("torch", "\n".join(lines), note)


def _jax(
    spec: CorrSpec,
    padding: object,
    data_format: str = CHANNELS_FIRST,
    kernel_format: str = CHANNELS_FIRST,
) -> NativeCall:
    rank = spec.rank
    last = data_format == CHANNELS_LAST
    lines = ["from jax import lax"]
    source = "x"
    if not spec.batched:
        lines.append("x_batched = x[None]  # lax convolutions need the batch axis")
        source = "x_batched"
    conv_padding = str(spec.padding)
    if spec.padding_mode != "zeros" and any(lo or hi for lo, hi in spec.padding):
        lines.insert(0, "import jax.numpy as jnp")
        pads = str(((0, 0), *spec.padding, (0, 0)) if last else ((0, 0), (0, 0), *spec.padding))
        mode = NUMPY_PAD_MODE[spec.padding_mode]
        lines.append("# lax pads with zeros only: pad with jnp.pad (numpy's mode names) first")
        lines.append(f'x_padded = jnp.pad({source}, {pads}, mode="{mode}")')
        source = "x_padded"
        conv_padding = str(((0, 0),) * rank)
    padding_comment = ""
    if padding == "same" and spec.padding_mode == "zeros":
        padding_comment = '  # what padding="SAME" gives too'
    lines += [
        "y = lax.conv_general_dilated(",
        f"    {source},",
        "    w,",
        f"    window_strides={tuple(spec.stride)},",
        f"    padding={conv_padding},{padding_comment}",
        f"    rhs_dilation={tuple(spec.dilation)},",
        f"    dimension_numbers={dimension_numbers(rank, data_format, kernel_format)},",
        f"    feature_group_count={spec.groups},",
        "    # HIGHEST: full-precision products on GPU and TPU, where the default may use",
        "    # TF32 or bfloat16 passes",
        "    precision=lax.Precision.HIGHEST,",
        ")",
    ]
    if spec.has_bias:
        shape = f"{', 1' * rank}, -1" if last else f", -1{', 1' * rank}"
        lines.append(f"y = y + b.reshape(1{shape})")
    if not spec.batched:
        lines.append("y = y[0]")
    return NativeCall("jax", "\n".join(lines))


def _numpy(spec: CorrSpec) -> NativeCall:
    rank = spec.rank
    n, c_in = spec.x_shape[:2]
    c_out, groups = spec.w_shape[0], spec.groups
    out_spatial = spec.out_shape[2:]
    extents = spec.extents
    lines = ["import numpy as np", "from numpy.lib.stride_tricks import sliding_window_view"]
    source = "x"
    if not spec.batched:
        lines.append("x_batched = x[None]")
        source = "x_batched"
    if any(lo or hi for lo, hi in spec.padding):
        mode = NUMPY_PAD_MODE[spec.padding_mode]
        lines.append(
            f'x_padded = np.pad({source}, {((0, 0), (0, 0), *spec.padding)}, mode="{mode}")'
        )
        source = "x_padded"
    spatial_axes = tuple(range(2, 2 + rank))
    lines.append(f"# every window of the (dilated) kernel's extent {extents}; a view, no copy yet")
    lines.append(f"windows = sliding_window_view({source}, {extents}, axis={spatial_axes})")
    if set(spec.stride) != {1} or set(spec.dilation) != {1}:
        steps = ", ".join(f"::{s}" for s in spec.stride)
        taps = ", ".join(f"::{d}" for d in spec.dilation)
        lines.append(
            f"windows = windows[:, :, {steps}, {taps}]  # stride over positions, dilation over taps"
        )
    out_letters, tap_letters = "xyz"[:rank], "ijk"[:rank]
    if groups == 1:
        lines.append(
            f'y = np.einsum("nc{out_letters}{tap_letters},oc{tap_letters}->no{out_letters}", '
            "windows, w, optimize=True)"
        )
    else:
        per_group_in, per_group_out = c_in // groups, c_out // groups
        lines.append(f"# split the channels into {groups} groups")
        lines.append(
            f"windows = windows.reshape({n}, {groups}, {per_group_in}, *windows.shape[2:])"
        )
        lines.append(
            f"w_grouped = w.reshape({groups}, {per_group_out}, {per_group_in}, *w.shape[2:])"
        )
        lines.append(
            f'y = np.einsum("ngc{out_letters}{tap_letters},goc{tap_letters}->ngo{out_letters}", '
            "windows, w_grouped, optimize=True)"
        )
        lines.append(f"y = y.reshape({n}, {c_out}, {', '.join(map(str, out_spatial))})")
    if spec.has_bias:
        lines.append(f"y = y + b.reshape(1, -1{', 1' * rank})")
    if not spec.batched:
        lines.append("y = y[0]")
    return NativeCall("numpy", "\n".join(lines))


def _scipy(spec: CorrSpec, padding: object) -> NativeCall:
    misfits = []
    if spec.rank != 2:
        misfits.append(f"{spec.rank} spatial {'axis' if spec.rank == 1 else 'axes'}")
    if spec.x_shape[1] != 1 or spec.w_shape[0] != 1:
        misfits.append(f"{spec.x_shape[1]} input and {spec.w_shape[0]} output channels")
    if set(spec.stride) != {1}:
        misfits.append(f"stride {spec.stride}")
    if set(spec.dilation) != {1}:
        misfits.append(f"dilation {spec.dilation}")
    if misfits:
        return NativeCall(
            "scipy",
            "",
            "scipy.signal.correlate2d does not apply: it correlates one 2-D channel with stride 1 "
            f"and no dilation, and this problem has {', '.join(misfits)}.",
        )
    same = normalize(spec.x_shape, spec.w_shape, padding="same").padding
    full = normalize(spec.x_shape, spec.w_shape, padding="full").padding
    mode = {((0, 0), (0, 0)): "valid", same: "same", full: "full"}.get(spec.padding)
    boundary = _SCIPY_BOUNDARY.get(spec.padding_mode)
    lines = ["from scipy.signal import correlate2d"]
    source = "x"
    if mode is None or (boundary is None and mode != "valid"):
        if boundary is None:
            lines.append(
                f"# correlate2d has no {spec.padding_mode!r} boundary: pad with np.pad first"
            )
        else:
            lines.append("# correlate2d pads only for mode 'same' or 'full': pad with np.pad first")
        lines.insert(0, "import numpy as np")
        numpy_mode = NUMPY_PAD_MODE[spec.padding_mode]
        lines.append(f'x_padded = np.pad(x, {_all_padding(spec)}, mode="{numpy_mode}")')
        source, mode, boundary = "x_padded", "valid", None
    options = f'mode="{mode}"' + (
        f', boundary="{boundary}"' if boundary not in (None, "fill") else ""
    )
    if not spec.batched:
        lines.append(f"y = correlate2d({source}[0], w[0, 0], {options})[None]")
    elif spec.x_shape[0] == 1:
        lines.append(f"y = correlate2d({source}[0, 0], w[0, 0], {options})[None, None]")
    else:
        if "import numpy as np" not in lines:
            lines.insert(0, "import numpy as np")
        lines.append("# one image at a time")
        lines.append(
            f"y = np.stack([correlate2d(image[0], w[0, 0], {options}) for image in {source}])[:, None]"
        )
    if spec.has_bias:
        lines.append("y = y + b[0]")
    return NativeCall("scipy", "\n".join(lines))


def native_calls(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    *,
    bias: bool = False,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> dict[str, NativeCall]:
    """The equivalent native call per framework (``torch``, ``jax``, ``numpy``, ``scipy``), and
    the equivalent layer (``torch_module``, ``flax_module``, ``keras_module``): the module
    :func:`polyconv.adapters.to_module` writes, with the weight transposes between layouts."""
    from .adapters._code import MODULE_CALLS

    spec = normalize(
        x_shape,
        w_shape,
        (w_shape[0],) if bias else None,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
    return {
        "torch": _torch(spec, padding),
        "jax": _jax(spec, padding),
        "numpy": _numpy(spec),
        "scipy": _scipy(spec, padding),
        **{
            name: NativeCall(name, *module_call(spec, padding))
            for name, module_call in MODULE_CALLS.items()
        },
    }


def _channels_first_shapes(
    x_shape: Sequence[int], w_shape: Sequence[int], data_format: str, kernel_format: str
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    rank = len(w_shape) - 2
    if data_format == CHANNELS_LAST and rank >= 1:
        x_shape = permuted(x_shape, data_to_first(len(x_shape), len(x_shape) == rank + 2))
    if kernel_format == CHANNELS_LAST and rank >= 1:
        w_shape = permuted(w_shape, kernel_to_first(len(w_shape)))
    return x_shape, w_shape


def _layout_calls(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    bias: bool,
    kwargs: dict[str, object],
    data_format: str,
    kernel_format: str,
) -> dict[str, NativeCall]:
    """The forward's native calls for arrays in these layouts (shapes channels first)."""
    calls = native_calls(x_shape, w_shape, bias=bias, **kwargs)  # type: ignore[arg-type]
    spec = normalize(x_shape, w_shape, (w_shape[0],) if bias else None, **kwargs)  # type: ignore[arg-type]
    data, kernel = data_format == CHANNELS_LAST, kernel_format == CHANNELS_LAST
    result = {}
    for name, call in calls.items():
        if name == "jax":
            jax_call = _jax(spec, kwargs["padding"], data_format, kernel_format)
            call = NativeCall("jax", jax_call.code, "The layouts go to dimension_numbers.")
        elif call.code:
            wrapped = in_channels_last(call.code, name, spec.rank, spec.batched, data, kernel)
            note = (
                "permute gives views in torch.channels_last memory format, which the native "
                "convolution takes as they are."
                if name == "torch"
                else "The arrays are transposed to channels first and back."
            )
            call = NativeCall(name, wrapped, " ".join(filter(None, (call.note, note))))
        result[name] = call
    return result


def _transpose_calls(
    y_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    bias: bool,
    kwargs: dict[str, object],
    data_format: str,
    kernel_format: str,
) -> dict[str, NativeCall]:
    spec = normalize_transpose(y_shape, w_shape, **kwargs)  # type: ignore[arg-type]
    torch_code, torch_note = torch_transpose(spec, bias)
    if CHANNELS_LAST in (data_format, kernel_format):
        torch_code = in_channels_last(
            torch_code,
            "torch",
            spec.rank,
            spec.batched,
            data_format == CHANNELS_LAST,
            kernel_format == CHANNELS_LAST,
            names=("y", "out"),
        )
    jax_code, jax_note = jax_transpose(spec, bias, data_format, kernel_format)
    return {
        "torch": NativeCall("torch", torch_code, torch_note),
        "jax": NativeCall("jax", jax_code, jax_note),
        "numpy": NativeCall(
            "numpy",
            "",
            "NumPy has no transposed convolution; polyconv.reference.correlate_transpose is its "
            "adjoint sum written in NumPy.",
        ),
        "scipy": NativeCall("scipy", "", "scipy.signal has no transposed correlation."),
        **_transpose_module_calls(spec, bias, data_format, kernel_format),
    }


def _transpose_module_calls(
    spec: TransposeSpec, bias: bool, data_format: str, kernel_format: str
) -> dict[str, NativeCall]:
    """``nnx.ConvTranspose`` and ``keras.layers.ConvNDTranspose`` for a channels-first problem
    (the torch module is in the torch snippet)."""
    if CHANNELS_LAST in (data_format, kernel_format):
        return {}
    from .adapters._code_transpose import flax_transpose_module, keras_transpose_module

    return {
        "flax_module": NativeCall("flax_module", *flax_transpose_module(spec, bias)),
        "keras_module": NativeCall("keras_module", *keras_transpose_module(spec, bias)),
    }


def explain(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    *,
    bias: bool = False,
    stride: IntOrTuple = 1,
    padding: PaddingArg = "valid",
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    transpose: bool = False,
    output_padding: IntOrTuple = 0,
    data_format: str = CHANNELS_FIRST,
    kernel_format: str = CHANNELS_FIRST,
) -> str:
    """The polyconv call for these shapes and keywords, and the native call each framework needs
    to compute the same values, as text: one block per framework, runnable as printed given
    ``x``, ``w`` (and ``b`` with ``bias=True``) as that framework's arrays; each leaves ``y``.

    ``transpose=True`` explains :func:`polyconv.correlate_transpose` (with ``output_padding``):
    ``x_shape`` is then the shape of its input ``y``, and each snippet takes ``y``, ``w`` (and
    ``b``) and leaves ``out``. ``data_format``/``kernel_format`` say the layouts of the shapes
    and of the arrays the snippets take and give.
    """
    data_format = check_format(data_format, "data_format")
    kernel_format = check_format(kernel_format, "kernel_format")
    if CHANNELS_LAST in (data_format, kernel_format):
        check_channels(
            "y" if transpose else "x",
            tuple(x_shape),
            tuple(w_shape),
            data_format=data_format,
            kernel_format=kernel_format,
            groups=groups,
            transpose=bool(transpose),
        )
    given_x, given_w = tuple(x_shape), tuple(w_shape)
    x_shape, w_shape = _channels_first_shapes(x_shape, w_shape, data_format, kernel_format)
    kwargs: dict[str, object] = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": padding_mode,
    }
    if transpose:
        return _explain_transpose(
            (given_x, given_w),
            (x_shape, w_shape),
            bias,
            {**kwargs, "output_padding": output_padding},
            data_format,
            kernel_format,
        )
    if output_padding != 0:
        raise ValueError("output_padding applies to the transposed operation only (transpose=True)")
    if CHANNELS_LAST in (data_format, kernel_format):
        calls = _layout_calls(x_shape, w_shape, bias, kwargs, data_format, kernel_format)
    else:
        calls = native_calls(x_shape, w_shape, bias=bias, **kwargs)  # type: ignore[arg-type]
    spec = normalize(x_shape, w_shape, (w_shape[0],) if bias else None, **kwargs)  # type: ignore[arg-type]
    defaults = {
        "stride": 1,
        "padding": "valid",
        "dilation": 1,
        "groups": 1,
        "padding_mode": "zeros",
    }
    kwargs.update(data_format=data_format, kernel_format=kernel_format)
    defaults.update(data_format=CHANNELS_FIRST, kernel_format=CHANNELS_FIRST)
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v != defaults[k])
    arguments = ", ".join(["x", "w"] + (["b"] if bias else []) + ([shown] if shown else []))
    shapes = f"x {given_x}, w {given_w}" + (f", b ({w_shape[0]},)" if bias else "")
    out_shape = spec.user_out_shape
    if data_format == CHANNELS_LAST:
        out_shape = permuted(out_shape, data_to_last(len(out_shape), spec.batched))
    text = [
        f"polyconv.correlate({arguments})",
        f"  {shapes} -> y {out_shape}",
        f"  padding (lo, hi) per spatial axis: {', '.join(map(str, spec.padding))}",
    ]
    return _render_calls(text, calls, bias, "x, w")


def _render_calls(text: list[str], calls: dict[str, NativeCall], bias: bool, arrays: str) -> str:
    for name, call in calls.items():
        text.append("")
        if not call.code:
            text.append(textwrap.fill(f"{name}: {call.note}", width=100, subsequent_indent="  "))
            continue
        text.append(f"{name} ({arrays}{', b' if bias else ''} are {ARRAY_TYPES[name]}):")
        text += [f"    {line}" for line in call.code.splitlines()]
        if call.note:
            text.append(
                textwrap.fill(call.note, width=100, initial_indent="  ", subsequent_indent="  ")
            )
    return "\n".join(text)


def _explain_transpose(
    given: tuple[tuple[int, ...], tuple[int, ...]],
    shapes: tuple[tuple[int, ...], tuple[int, ...]],
    bias: bool,
    kwargs: dict[str, object],
    data_format: str,
    kernel_format: str,
) -> str:
    """:func:`explain` for the transpose: ``given`` the shapes as given, ``shapes`` channels
    first, ``kwargs`` those of :func:`polyconv.correlate_transpose`."""
    spec = normalize_transpose(*shapes, **kwargs)  # type: ignore[arg-type]
    calls = _transpose_calls(*shapes, bias, kwargs, data_format, kernel_format)
    defaults = {
        "stride": 1,
        "padding": "valid",
        "dilation": 1,
        "groups": 1,
        "padding_mode": "zeros",
        "output_padding": 0,
        "data_format": CHANNELS_FIRST,
        "kernel_format": CHANNELS_FIRST,
    }
    shown_kwargs = dict(kwargs, data_format=data_format, kernel_format=kernel_format)
    shown = ", ".join(f"{k}={v!r}" for k, v in shown_kwargs.items() if v != defaults[k])
    arguments = ", ".join(["y", "w"] + (["b"] if bias else []) + ([shown] if shown else []))
    out_shape = spec.user_out_shape
    if data_format == CHANNELS_LAST:
        out_shape = permuted(out_shape, data_to_last(len(out_shape), spec.batched))
    described = f"y {given[0]}, w {given[1]}" + (f", b ({spec.out_shape[1]},)" if bias else "")
    text = [
        f"polyconv.correlate_transpose({arguments})",
        f"  {described} -> out {out_shape}",
        "  the adjoint of the correlation whose padding (lo, hi) per spatial axis is "
        f"{', '.join(map(str, spec.forward.padding))}",
    ]
    return _render_calls(text, calls, bias, "y, w")
