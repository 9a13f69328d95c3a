"""``polyconv explain`` for the transposed correlation and for channels-last layouts.

The transpose: ``F.conv_transpose*d`` (and the module ``torch.nn.ConvTranspose*d``) where the
forward's padding is zeros and the same at both ends of every axis; ``jax.lax.conv_transpose``
with ``transpose_kernel=True`` and the padding of the stride-dilated input that makes it equal
(without groups, which it does not take: then ``jax.lax.conv_general_dilated`` with
``lhs_dilation``). Where a framework cannot express the problem (a padding mode other than
zeros: no framework folds reflected or wrapped samples back), the printed code computes the
gradient of the padded input with the native call and folds the padding back with the index
``np.pad`` gives, and a note says so. Channels last: JAX takes the layout in
``dimension_numbers``; torch reads the arrays through ``permute`` (a ``torch.channels_last``
view, which its convolutions take natively); NumPy and SciPy transpose.
"""

from __future__ import annotations

from ._spec.layouts import CHANNELS_LAST, data_to_first, data_to_last, kernel_to_first
from ._spec.padding import NUMPY_PAD_MODE
from ._spec.transpose import TransposeSpec

_LETTERS = {1: "L", 2: "HW", 3: "DHW"}


def _int_or_tuple(values: tuple[int, ...] | list[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else str(tuple(values))


def dimension_numbers(rank: int, data_format: str, kernel_format: str) -> str:
    letters = _LETTERS[rank]
    data = f"N{letters}C" if data_format == CHANNELS_LAST else f"NC{letters}"
    kernel = f"{letters}IO" if kernel_format == CHANNELS_LAST else f"OI{letters}"
    return f'("{data}", "{kernel}", "{data}")'


def _extra_samples(spec: TransposeSpec) -> list[int]:
    """Per axis: the padded input's length less the length the stride-dilated ``y`` spans with
    the kernel, ``(i - 1) * s + extent``: the forward's samples read by no output, plus
    output_padding (torch's ``output_padding`` when it is small enough)."""
    forward = spec.forward
    return [
        size - ((i - 1) * s + e)
        for size, i, s, e in zip(
            forward.padded_shape, spec.y_shape[2:], forward.stride, forward.extents, strict=True
        )
    ]


def _fold_lines(spec: TransposeSpec, framework: str, source: str) -> list[str]:
    """Code that folds the padded gradient ``source`` back onto the samples the padding copied."""
    forward = spec.forward
    rank = spec.rank
    mode = NUMPY_PAD_MODE[forward.padding_mode]
    lines = [
        f"# fold the {forward.padding_mode!r} padding back onto the samples it copied "
        "(the padding's transpose)"
    ]
    for axis, (n, (lo, hi)) in enumerate(zip(forward.x_shape[2:], forward.padding, strict=True)):
        if not (lo or hi):
            continue
        lines.append(f'index = np.pad(np.arange({n}), ({lo}, {hi}), mode="{mode}")')
        dim = axis - rank
        if framework == "torch":
            lines.append(f"shape = list({source}.shape)")
            lines.append(f"shape[{dim}] = {n}")
            lines.append(
                f"{source} = {source}.new_zeros(shape).index_add("
                f"{dim}, torch.from_numpy(index).to({source}.device), {source})"
            )
        else:
            lines.append(f"moved = jnp.moveaxis({source}, {dim}, 0)")
            lines.append(
                f"{source} = jnp.moveaxis(jnp.zeros(({n}, *moved.shape[1:]), moved.dtype)"
                f".at[index].add(moved), 0, {dim})"
            )
    return lines


def torch_transpose(spec: TransposeSpec, has_bias: bool) -> tuple[str, str]:
    """The torch snippet (``y, w[, b]`` to ``out``) and its note."""
    forward = spec.forward
    rank = spec.rank
    name = f"conv_transpose{rank}d"
    extra = _extra_samples(spec)
    limits = [max(s, d) for s, d in zip(forward.stride, forward.dilation, strict=True)]
    keywords = []
    if set(forward.stride) != {1}:
        keywords.append(f"stride={_int_or_tuple(forward.stride)}")
    lines = ["import torch", "import torch.nn.functional as F"]
    native = forward.padding_mode == "zeros" and all(lo == hi for lo, hi in forward.padding)
    pads = [lo for lo, _ in forward.padding] if native else [0] * rank
    if any(pads):
        keywords.append(f"padding={_int_or_tuple(pads)}")
    in_call = [e if 0 <= e < lim else 0 for e, lim in zip(extra, limits, strict=True)]
    if any(in_call):
        keywords.append(f"output_padding={_int_or_tuple(in_call)}")
    if forward.groups != 1:
        keywords.append(f"groups={forward.groups}")
    if set(forward.dilation) != {1}:
        keywords.append(f"dilation={_int_or_tuple(forward.dilation)}")
    bias = ", b" if has_bias and native else ""
    call = f"F.{name}(y, w{bias}{''.join(', ' + k for k in keywords)})"
    after = [e - c for e, c in zip(extra, in_call, strict=True)]
    note = ""
    if native:
        lines.append(f"out = {call}")
        c_out, cg = forward.w_shape[:2]
        kernel = _int_or_tuple(list(forward.kernel_shape))
        module_keywords = "".join(", " + k for k in keywords)
        lines += [
            "# the same as a module: torch.nn.ConvTranspose takes the forward's kernel as is",
            f"module = torch.nn.ConvTranspose{rank}d({c_out}, {cg * forward.groups}, {kernel}"
            f"{module_keywords}, bias={has_bias}).to(w.dtype)",
            "with torch.no_grad():",
            "    module.weight.copy_(w)",
        ]
        if has_bias:
            lines.append("    module.bias.copy_(b)")
        lines.append("assert torch.allclose(module(y), out)")
        if any(after):
            note = "output_padding beyond torch's limit: zeros appended with F.pad."
    else:
        lines[0:0] = ["import numpy as np"]
        why = (
            f"padding_mode={forward.padding_mode!r}"
            if forward.padding_mode != "zeros"
            else f"padding {', '.join(map(str, forward.padding))} (lo, hi) per axis"
        )
        note = (
            f"F.{name} cannot express this problem ({why}: it pads both ends of an axis "
            "equally, with zeros only); the code computes the gradient of the padded input "
            f"with F.{name} and "
            + (
                "crops the padding."
                if forward.padding_mode == "zeros"
                else "folds the padding back."
            )
        )
        lines.append(f"out = {call}  # the gradient of the padded input")
    if any(after):
        flat = [v for a in reversed(after) for v in (0, a)]
        lines.append(f"out = F.pad(out, {flat})  # samples no output reads")
    if not native:
        if forward.padding_mode == "zeros":
            window = ", ".join(
                f"{lo}:{lo + n}"
                for (lo, _), n in zip(forward.padding, forward.x_shape[2:], strict=True)
            )
            lines.append(f"out = out[..., {window}]  # crop the zero padding")
        else:
            lines += _fold_lines(spec, "torch", "out")
        if has_bias:
            lines.append(f"out = out + b.reshape(-1{', 1' * rank})")
    return "\n".join(lines), note


def jax_transpose(
    spec: TransposeSpec, has_bias: bool, data_format: str, kernel_format: str
) -> tuple[str, str]:
    """The JAX snippet (``y, w[, b]`` to ``out``) and its note."""
    forward = spec.forward
    rank = spec.rank
    zeros = forward.padding_mode == "zeros"
    pads = []
    for i, s, e, (lo, hi), size in zip(
        spec.y_shape[2:],
        forward.stride,
        forward.extents,
        forward.padding,
        forward.padded_shape,
        strict=True,
    ):
        start = e - 1 - (lo if zeros else 0)
        length = (size - lo - hi) if zeros else size
        pads.append((start, length + e - 1 - ((i - 1) * s + 1) - start))
    numbers = dimension_numbers(rank, data_format, kernel_format)
    lines = ["from jax import lax"]
    source = "y"
    if not spec.batched:
        lines.append("y_batched = y[None]  # lax convolutions need the batch axis")
        source = "y_batched"
    note = ""
    if forward.groups == 1:
        lines += [
            "out = lax.conv_transpose(",
            f"    {source},",
            "    w,",
            f"    strides={tuple(forward.stride)},",
            f"    padding={pads},  # of the stride-dilated y: kernel extent - 1 - the forward's",
            f"    rhs_dilation={tuple(forward.dilation)},",
            f"    dimension_numbers={numbers},",
            "    transpose_kernel=True,  # flip the taps, swap the kernel's channel axes",
            "    precision=lax.Precision.HIGHEST,",
            ")",
        ]
    else:
        lines.insert(0, "import jax.numpy as jnp")
        note = (
            "jax.lax.conv_transpose takes no feature_group_count: the code calls "
            "lax.conv_general_dilated with lhs_dilation (how JAX differentiates a convolution) "
            "and the kernel flipped, its channel axes swapped per group."
        )
        g = forward.groups
        c_out, cg = forward.w_shape[:2]
        k = forward.kernel_shape
        first = (
            "w"
            if kernel_format != CHANNELS_LAST
            else f"jnp.transpose(w, {kernel_to_first(rank + 2)})"
        )
        lines += [
            f"w_t = {first}.reshape({g}, {c_out // g}, {cg}, *{k}).swapaxes(1, 2)",
            f"w_t = jnp.flip(w_t.reshape({g * cg}, {c_out // g}, *{k}), {tuple(range(2, 2 + rank))})",
            "out = lax.conv_general_dilated(",
            f"    {source},",
            "    w_t,",
            f"    window_strides={(1,) * rank},",
            f"    padding={pads},",
            f"    lhs_dilation={tuple(forward.stride)},",
            f"    rhs_dilation={tuple(forward.dilation)},",
            f"    dimension_numbers={dimension_numbers(rank, data_format, 'channels_first')},",
            f"    feature_group_count={g},",
            "    precision=lax.Precision.HIGHEST,",
            ")",
        ]
    if not zeros:
        if "import jax.numpy as jnp" not in lines:
            lines.insert(0, "import jax.numpy as jnp")
        lines.insert(0, "import numpy as np")
        if data_format == CHANNELS_LAST:
            lines.append(f"out = jnp.transpose(out, {data_to_first(rank + 2, True)})")
        lines += _fold_lines(spec, "jax", "out")
        if data_format == CHANNELS_LAST:
            lines.append(f"out = jnp.transpose(out, {data_to_last(rank + 2, True)})")
        note = (note + " " if note else "") + (
            f"No framework folds {forward.padding_mode!r} padding back: the convolution gives "
            "the gradient of the padded input, and the code adds each padded sample onto the "
            "sample it copied."
        )
    if has_bias:
        shape = f"{', 1' * rank}, -1" if data_format == CHANNELS_LAST else f", -1{', 1' * rank}"
        lines.append(f"out = out + b.reshape(1{shape})")
    if not spec.batched:
        lines.append("out = out[0]")
    return "\n".join(lines), note


def in_channels_last(
    code: str,
    framework: str,
    rank: int,
    batched: bool,
    data: bool,
    kernel: bool,
    names: tuple[str, str] = ("x", "y"),
) -> str:
    """A channels-first snippet (``x, w`` to ``y``) wrapped to take and give channels-last
    arrays: torch permutes (views in ``torch.channels_last`` memory format), NumPy transposes."""
    ndim = rank + 2 if batched else rank + 1
    permute = "permute" if framework == "torch" else "transpose"
    given, result = names
    code_lines = code.splitlines()
    imports = [line for line in code_lines if line.startswith(("import ", "from "))]
    lines = list(imports)
    if data:
        lines.append(f"{given} = {given}.{permute}{data_to_first(ndim, batched)}  # channels first")
    if kernel:
        lines.append(f"w = w.{permute}{kernel_to_first(rank + 2)}  # (C_out, C_in // groups, *k)")
    lines += [line for line in code_lines if line not in imports]
    if data:
        lines.append(
            f"{result} = {result}.{permute}{data_to_last(ndim, batched)}  # back to channels last"
        )
    return "\n".join(lines)
