"""Dask backend: lazy, chunked correlation of ``dask.array.Array`` inputs, chunk by chunk.

A Dask ``x`` (and ``grad_y``) gives a lazy Dask result; nothing is computed until the user asks
(``.compute()``, ``dask.compute``, ``.to_zarr``, a distributed client). ``w`` and ``bias`` may
be NumPy or Dask arrays (a Dask one is made one chunk: a kernel is small).

Every output chunk is one task: it gathers the input elements its outputs read (its chunk of
the input and the halos of the kernel's extent from its neighbours, or from the far side of the
image for circular padding: the padding reads the global boundary, see
:mod:`polyconv.backends._dask_blocks`) and computes them with polyconv's NumPy backend, by the
spec's method. Output chunks follow the input's along the batch and spatial axes (scaled by the
stride); the channel axis is made one chunk. A task runs its NumPy work on one thread when the
scheduler runs tasks side by side (Dask's threads, a distributed worker's), and on polyconv's
threads when it runs alone on the caller's thread (the synchronous scheduler).

Gradients: each output chunk's task computes the NumPy VJP of its block; ``grad_x`` is chunked
like ``x``, each chunk the sum of the block gradients that land in it (halos included, and
padded positions folded back onto the elements they read); ``grad_w`` and ``grad_bias`` are
tree reductions (``sum`` over a stack of per-block partial sums), so that one
``dask.compute(grad_x, grad_w, grad_bias)`` runs the graph once. float16 gradients are
accumulated in float32 and rounded once.

The transposed correlation of a Dask ``y`` is the forward's input gradient, built as ``grad_x``
is: its output (the forward's input) is chunked like ``y`` with the boundaries scaled by the
stride (:func:`polyconv.backends._dask_blocks.chunks_scaled_up`), so that the forward's blocks
are ``y``'s chunks; one task per ``y`` chunk computes its block's NumPy transpose, and each
output chunk sums the blocks that land in it (for padding modes other than zeros, the padded
reads fold back across the image as in ``grad_x``). Its VJP is the interface's default
identities on the Dask forward and VJP, with ``grad_out`` chunked like the transpose's output.

Everything in the graph is a module-level function of NumPy arrays and small frozen plans, so
it pickles to ``dask.distributed`` worker processes.
"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._spec import CorrSpec, normalize
from .._spec.transpose import TransposeSpec
from . import _transpose_default
from ._dask_blocks import (
    AxisBlock,
    AxisFold,
    Selector,
    axis_blocks,
    axis_folds,
    chunks_scaled_up,
)
from ._interface import Backend, Method
from ._numpy.parallel import limited_threads, thread_count
from .numpy_backend import NumpyBackend

# dask.array.Array, spelled Any (the framework is imported lazily).
DaskArray = Any

_numpy = NumpyBackend()


@functools.cache
def _da() -> Any:
    import dask.array

    return dask.array


def _task_threads() -> int:
    """Threads for one task's NumPy work: Dask's threaded scheduler and distributed workers
    run one task per thread (Dask parallelises over chunks), the synchronous scheduler runs
    them one at a time on the caller's thread."""
    return thread_count() if threading.current_thread() is threading.main_thread() else 1


@dataclass(frozen=True)
class _BlockPlan:
    """One output chunk's task: how to gather its input from the chunks it is given, and the
    NumPy problem it then computes (valid correlation of the gathered block, with the zeros
    mode's pads at the image border as the block's own padding)."""

    crops: tuple[tuple[slice, ...], ...]  # per spatial axis, per chunk read
    select: tuple[Selector, ...]
    spec: CorrSpec
    method: Method
    reads_padding_only: bool  # zeros mode: the block reads no input element at all


def _nested(array_name: str, batch: int, chunks: Sequence[tuple[int, ...]]) -> Any:
    """Keys of the input chunks ``(batch, 0, *spatial)``, nested one list per spatial axis
    (``np.block``'s layout)."""

    def nest(prefix: tuple[int, ...], rest: Sequence[tuple[int, ...]]) -> Any:
        if not rest:
            return (array_name, batch, 0, *prefix)
        return [nest((*prefix, c), rest[1:]) for c in rest[0]]

    return nest((), chunks)


def _gather(parts: Any, plan: _BlockPlan, dtype: np.dtype) -> np.ndarray:
    """The input block a task reads: its chunks joined, then the elements it reads selected."""
    if plan.reads_padding_only:
        return np.zeros(plan.spec.x_shape, dtype)

    def cropped(part: Any, position: tuple[int, ...]) -> Any:
        if isinstance(part, list):
            return [cropped(p, (*position, i)) for i, p in enumerate(part)]
        crops = (plan.crops[axis][i] for axis, i in enumerate(position))
        return part[(slice(None), slice(None), *crops)]

    pieces = cropped(parts, ())
    if all(len(level) == 1 for level in _lists(pieces)):  # one chunk: a view, no copy
        x = pieces
        while isinstance(x, list):
            x = x[0]
    else:
        x = np.block(pieces)
    for axis, select in enumerate(plan.select):
        x = x[(slice(None),) * (2 + axis) + (select,)]
    return x


def _lists(nested: Any) -> list[list[Any]]:
    """Every list in a nested list."""
    if not isinstance(nested, list):
        return []
    return [nested, *(inner for item in nested for inner in _lists(item))]


def _correlate_block(
    parts: Any, w: np.ndarray, bias: np.ndarray | None, plan: _BlockPlan
) -> np.ndarray:
    x = _gather(parts, plan, w.dtype)
    with limited_threads(_task_threads()):
        return _numpy.correlate(x, w, bias, plan.spec, method=plan.method)


def _vjp_block(
    parts: Any, w: np.ndarray, bias: np.ndarray | None, grad_y: np.ndarray, plan: _BlockPlan
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x = _gather(parts, plan, w.dtype)
    with limited_threads(_task_threads()):
        return _numpy.correlate_vjp(x, w, bias, grad_y, plan.spec, method=plan.method)


def _grad_x_chunk(
    vjps: list[tuple[np.ndarray, ...]],
    folds: list[tuple[AxisFold, ...]],
    shape: tuple[int, ...],
    dtype: np.dtype,
) -> np.ndarray:
    """One chunk of ``grad_x``: the blocks' input gradients that land in it, summed."""
    out = np.zeros(shape, dtype)
    for (grad_block, *_), fold in zip(vjps, folds, strict=True):
        part = grad_block
        for axis, f in enumerate(fold):
            part = part[(slice(None),) * (2 + axis) + (f.take,)]
        puts = [f.put for f in fold]
        if all(isinstance(p, slice) for p in puts):
            out[(slice(None), slice(None), *puts)] += part
        else:  # a padded edge that reads an element more than once
            ranges = [np.arange(p.start, p.stop) if isinstance(p, slice) else p for p in puts]
            index: Any = (slice(None), slice(None), *np.ix_(*ranges))
            np.add.at(out, index, part)
    return out


def _partial(vjp: tuple[np.ndarray, ...], which: int) -> np.ndarray:
    return vjp[which][None]


def _single_chunk(a: Any, dtype: np.dtype) -> DaskArray:
    """A kernel or bias (NumPy or Dask) as a one-chunk Dask array of ``dtype``."""
    da = _da()
    if isinstance(a, da.Array):
        return a.astype(dtype).rechunk(-1)
    return da.from_array(np.asarray(a, dtype=dtype), chunks=-1)


def _as_dask(a: Any, dtype: np.dtype) -> DaskArray:
    da = _da()
    a = a if isinstance(a, da.Array) else da.asarray(np.asarray(a))
    return a.astype(dtype)


@dataclass(frozen=True)
class _Layout:
    """The chunked problem: the chunks of ``x`` (its channels in one chunk), the blocks along
    each spatial axis, and the output's chunks."""

    x_chunks: tuple[tuple[int, ...], ...]
    axes: list[list[AxisBlock]]
    out_chunks: tuple[tuple[int, ...], ...]

    def tasks(self) -> Any:
        """``(batch chunk, block index per axis)`` of every output chunk."""
        return itertools.product(
            range(len(self.x_chunks[0])), itertools.product(*(range(len(a)) for a in self.axes))
        )


def _layout(x_chunks: tuple[tuple[int, ...], ...], spec: CorrSpec) -> _Layout:
    axes = [
        axis_blocks(
            x_chunks[2 + a],
            spec.padding[a],
            spec.padding_mode,
            spec.extents[a],
            spec.stride[a],
            spec.out_shape[2 + a],
        )
        for a in range(spec.rank)
    ]
    out_chunks = (
        x_chunks[0],
        (spec.out_shape[1],),
        *(tuple(b.out[1] - b.out[0] for b in blocks) for blocks in axes),
    )
    return _Layout(x_chunks, axes, out_chunks)


def _plan(
    layout: _Layout, batch: int, index: tuple[int, ...], spec: CorrSpec, method: Method
) -> _BlockPlan:
    blocks = [layout.axes[a][i] for a, i in enumerate(index)]
    empty = any(not b.chunks for b in blocks)
    local = [b.sources.size + b.pads[0] + b.pads[1] if empty else b.sources.size for b in blocks]
    block_spec = normalize(
        (layout.x_chunks[0][batch], spec.x_shape[1], *local),
        spec.w_shape,
        (spec.out_shape[1],) if spec.has_bias else None,
        stride=spec.stride,
        padding=tuple((0, 0) if empty else b.pads for b in blocks),
        dilation=spec.dilation,
        groups=spec.groups,
    )
    return _BlockPlan(
        tuple(b.crops for b in blocks), tuple(b.select for b in blocks), block_spec, method, empty
    )


def _graph_array(
    name: str,
    layer: dict[Any, Any],
    dependencies: list[DaskArray],
    chunks: tuple[tuple[int, ...], ...],
    dtype: np.dtype,
) -> DaskArray:
    from dask.highlevelgraph import HighLevelGraph

    graph = HighLevelGraph.from_collections(name, layer, dependencies=dependencies)
    return _da().Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype))


class _Layer:
    """A graph layer whose tasks give tuples (the per-block VJPs), as a dependency of layers
    built on it (Dask's graph API takes collections)."""

    def __init__(self, graph: Any, name: str) -> None:
        self.graph, self.name = graph, name

    def __dask_graph__(self) -> Any:
        return self.graph

    def __dask_layers__(self) -> tuple[str, ...]:
        return (self.name,)


def _token(*args: object) -> str:
    from dask.base import tokenize

    return tokenize(*args)


def correlate(x: Any, w: Any, bias: Any, spec: CorrSpec, method: Method) -> DaskArray:
    dtype = np.dtype(w.dtype)
    x = _as_dask(x, dtype).rechunk({1: -1})
    layout = _layout(x.chunks, spec)
    w_d = _single_chunk(w, dtype)
    b_d = None if bias is None else _single_chunk(bias, dtype)
    name = "polyconv-correlate-" + _token(x, w_d, b_d, spec, method)
    w_key = (w_d.name, *(0,) * w_d.ndim)
    b_key = None if b_d is None else (b_d.name, 0)
    layer = {}
    for batch, index in layout.tasks():
        plan = _plan(layout, batch, index, spec, method)
        chunks = [layout.axes[a][i].chunks for a, i in enumerate(index)]
        parts = _nested(x.name, batch, chunks)
        layer[(name, batch, 0, *index)] = (_correlate_block, parts, w_key, b_key, plan)
    deps = [x, w_d] + ([] if b_d is None else [b_d])
    return _graph_array(name, layer, deps, layout.out_chunks, dtype)


def _accumulation_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _folded(
    name: str, blocks: _Layer, layout: _Layout, channels: int, dtype: np.dtype
) -> DaskArray:
    """The input gradient, chunked like ``x``: each chunk sums the block input gradients (the
    first item of each task's tuple in ``blocks``) that land in it."""
    x_chunks = layout.x_chunks
    folds = [axis_folds(x_chunks[2 + a], axis) for a, axis in enumerate(layout.axes)]
    layer = {}
    for batch in range(len(x_chunks[0])):
        for chunk in itertools.product(*(range(len(c)) for c in x_chunks[2:])):
            landing = list(itertools.product(*(folds[a][c] for a, c in enumerate(chunk))))
            keys = [(blocks.name, batch, *(b for b, _ in pairs)) for pairs in landing]
            how = [tuple(f for _, f in pairs) for pairs in landing]
            shape = (
                x_chunks[0][batch],
                channels,
                *(x_chunks[2 + a][c] for a, c in enumerate(chunk)),
            )
            layer[(name, batch, 0, *chunk)] = (_grad_x_chunk, keys, how, shape, dtype)
    return _graph_array(name, layer, [blocks], (x_chunks[0], (channels,), *x_chunks[2:]), dtype)


def correlate_vjp(
    x: Any, w: Any, bias: Any, grad_y: Any, spec: CorrSpec, method: Method
) -> tuple[DaskArray, DaskArray, DaskArray | None]:
    out_dtype = np.dtype(w.dtype)
    dtype = _accumulation_dtype(out_dtype)
    x = _as_dask(x, dtype).rechunk({1: -1})
    layout = _layout(x.chunks, spec)
    w_d = _single_chunk(w, dtype)
    b_d = None if bias is None else _single_chunk(bias, dtype)
    gy = _as_dask(grad_y, dtype).rechunk(layout.out_chunks)
    token = _token(x, w_d, b_d, gy, spec, method)
    w_key = (w_d.name, *(0,) * w_d.ndim)
    b_key = None if b_d is None else (b_d.name, 0)

    vjp_name = "polyconv-vjp-" + token
    vjp_layer: dict[Any, Any] = {}
    for batch, index in layout.tasks():
        plan = _plan(layout, batch, index, spec, method)
        chunks = [layout.axes[a][i].chunks for a, i in enumerate(index)]
        parts = _nested(x.name, batch, chunks)
        gy_key = (gy.name, batch, 0, *index)
        vjp_layer[(vjp_name, batch, *index)] = (_vjp_block, parts, w_key, b_key, gy_key, plan)
    from dask.highlevelgraph import HighLevelGraph

    deps = [x, w_d, gy] + ([] if b_d is None else [b_d])
    vjps = _Layer(HighLevelGraph.from_collections(vjp_name, vjp_layer, dependencies=deps), vjp_name)
    vjp_keys = list(vjp_layer)
    grad_x = _folded("polyconv-vjp-x-" + token, vjps, layout, spec.x_shape[1], dtype)

    def reduced(which: int, shape: tuple[int, ...]) -> DaskArray:
        name = f"polyconv-vjp-{'wb'[which - 1]}-" + token
        layer = {
            (name, k, *(0,) * len(shape)): (_partial, key, which) for k, key in enumerate(vjp_keys)
        }
        chunks = ((1,) * len(vjp_keys), *((n,) for n in shape))
        return _graph_array(name, layer, [vjps], chunks, dtype).sum(axis=0, dtype=dtype)

    grad_w = reduced(1, spec.w_shape)
    grad_bias = None if bias is None else reduced(2, (spec.out_shape[1],)).astype(out_dtype)
    return grad_x.astype(out_dtype), grad_w.astype(out_dtype), grad_bias


def _transpose_block(grad_y: np.ndarray, w: np.ndarray, plan: _BlockPlan) -> tuple[np.ndarray]:
    """One ``y`` chunk's transpose: the input gradient of its forward block (which reads the
    block's input with its halo), as a 1-tuple like a VJP block's."""
    block = TransposeSpec(plan.spec, grad_y.shape, (0,) * plan.spec.rank, True, False)
    with limited_threads(_task_threads()):
        return (_numpy.correlate_transpose(grad_y, w, None, block, method=plan.method),)


def transpose_chunks(y: DaskArray, spec: TransposeSpec) -> tuple[tuple[int, ...], ...]:
    """The transpose's output chunks: ``y``'s along the batch and spatial axes, scaled by the
    stride, and the channels in one chunk."""
    spatial = (
        chunks_scaled_up(c, s, n)
        for c, s, n in zip(y.chunks[2:], spec.forward.stride, spec.out_shape[2:], strict=True)
    )
    return (y.chunks[0], (spec.out_shape[1],), *spatial)


def correlate_transpose(
    backend: Backend, y: Any, w: Any, bias: Any, spec: TransposeSpec, method: Method
) -> DaskArray:
    """The transpose as the forward's input gradient, one task per ``y`` chunk (its block, as
    the forward's VJP computes it) and one per output chunk (summing the blocks that land in
    it: each reads the ``y`` chunks within about ``extent / stride`` of it, and for padding
    modes other than zeros the ones whose padding copied it, across the image)."""
    out_dtype = np.dtype(w.dtype)
    dtype = _accumulation_dtype(out_dtype)
    forward = spec.forward
    y = _as_dask(y, dtype)
    out_chunks = transpose_chunks(y, spec)
    layout = _layout(out_chunks, forward)
    gy = _transpose_default.extended_with_zeros(backend, y, spec).rechunk(layout.out_chunks)
    w_d = _single_chunk(w, dtype)
    token = _token(gy, w_d, spec, method)
    w_key = (w_d.name, *(0,) * w_d.ndim)
    name = "polyconv-transpose-blocks-" + token
    layer: dict[Any, Any] = {}
    for batch, index in layout.tasks():
        plan = _plan(layout, batch, index, forward, method)
        if not plan.reads_padding_only:  # else no output reads it
            layer[(name, batch, *index)] = (
                _transpose_block,
                (gy.name, batch, 0, *index),
                w_key,
                plan,
            )
    from dask.highlevelgraph import HighLevelGraph

    blocks = _Layer(HighLevelGraph.from_collections(name, layer, dependencies=[gy, w_d]), name)
    out = _folded("polyconv-transpose-" + token, blocks, layout, spec.out_shape[1], dtype)
    if bias is not None:
        out = out + _single_chunk(bias, dtype)[(slice(None),) + (None,) * spec.rank]
    return out.astype(out_dtype)


def correlate_transpose_vjp(
    backend: Backend,
    y: Any,
    w: Any,
    bias: Any,
    grad_out: Any,
    spec: TransposeSpec,
    method: Method,
) -> tuple[DaskArray, DaskArray, DaskArray | None]:
    """The default identities (:mod:`polyconv.backends._transpose_default`) on the Dask
    forward and VJP, with ``grad_out`` chunked like the transpose's output, so that ``grad_y``
    comes chunked like ``y`` and ``grad_w`` as a tree reduction."""
    dtype = np.dtype(w.dtype)
    y = _as_dask(y, dtype)
    grad_out = _as_dask(grad_out, dtype).rechunk(transpose_chunks(y, spec))
    grad_y, grad_w, grad_bias = _transpose_default.correlate_transpose_vjp(
        backend, y, w, bias, grad_out, spec, method
    )
    return (
        grad_y.rechunk({0: y.chunks[0], **{2 + a: c for a, c in enumerate(y.chunks[2:])}}),
        grad_w,
        grad_bias,
    )


def _compute_tree(tree: Any) -> Any:
    """Every Dask array in ``tree`` (tuples, named tuples, lists) computed in one graph."""
    da = _da()
    leaves: list[Any] = []

    def collect(node: Any) -> None:
        if isinstance(node, da.Array):
            leaves.append(node)
        elif isinstance(node, (tuple, list)):
            for item in node:
                collect(item)

    collect(tree)
    import dask

    values = iter(dask.compute(*leaves))

    def rebuild(node: Any) -> Any:
        if isinstance(node, da.Array):
            return next(values)
        if isinstance(node, list):
            return [rebuild(item) for item in node]
        if isinstance(node, tuple):
            items = [rebuild(item) for item in node]
            return type(node)(*items) if hasattr(node, "_fields") else tuple(items)
        return node

    return rebuild(tree)


class DaskBackend(Backend):
    name = "dask"
    framework = "dask"
    lazy = True

    def owns(self, obj: object) -> bool:
        array = sys.modules.get("dask.array")  # not imported: obj cannot be a Dask array
        return array is not None and isinstance(obj, array.Array)

    def dtype_name(self, a: Any) -> str:
        return np.dtype(a.dtype).name

    def convert(self, a: Any, dtype: str, like: Any) -> Any:
        # A Dask array stays lazy; a NumPy one (a kernel, a bias, a layer's parameters) stays
        # NumPy: it is made one chunk where a graph needs it.
        if self.owns(a):
            return a if a.dtype == np.dtype(dtype) else a.astype(dtype)
        return np.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a.compute() if self.owns(a) else a)

    def flip(self, a: Any, axes: tuple[int, ...]) -> Any:
        return _da().flip(a, axes) if self.owns(a) else np.flip(a, axes)

    def choose_method(self, spec: CorrSpec) -> Method:
        # Each chunk runs on the NumPy backend: its cost model, on the whole problem.
        return _numpy.choose_method(spec)

    def correlate(
        self, x: Any, w: Any, bias: Any, spec: CorrSpec, *, method: Method = "direct"
    ) -> DaskArray:
        return correlate(x, w, bias, spec, method)

    def correlate_vjp(
        self,
        x: Any,
        w: Any,
        bias: Any,
        grad_y: Any,
        spec: CorrSpec,
        *,
        method: Method = "direct",
    ) -> tuple[DaskArray, DaskArray, DaskArray | None]:
        return correlate_vjp(x, w, bias, grad_y, spec, method)

    def correlate_transpose(
        self, y: Any, w: Any, bias: Any, spec: TransposeSpec, *, method: Method = "direct"
    ) -> DaskArray:
        return correlate_transpose(self, y, w, bias, spec, method)

    def correlate_transpose_vjp(
        self,
        y: Any,
        w: Any,
        bias: Any,
        grad_out: Any,
        spec: TransposeSpec,
        *,
        method: Method = "direct",
    ) -> tuple[DaskArray, DaskArray, DaskArray | None]:
        return correlate_transpose_vjp(self, y, w, bias, grad_out, spec, method)

    def compile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        # A training step builds one graph of its loss and gradients and computes it at once.
        return lambda *args: _compute_tree(fn(*args))
