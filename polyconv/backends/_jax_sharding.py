"""JAX arrays spread over devices: where they are, and where polyconv's results go.

Two arrays are compatible when they live on the same set of devices, however each is laid out
over it (``x`` sharded over the batch with ``w`` replicated on the same mesh: data-parallel
training); so a placement is described by its devices alone, never by ``str(sharding)``.

A result of ``correlate`` is laid out like ``x`` (its batch and spatial axes partitioned as
``x``'s, its channels whole, and an axis whose length the mesh does not divide whole: a JAX
array's shards are equal); gradients like the arrays they are gradients of. XLA's own
propagation loses that layout on some problems (a height-sharded input with ``padding="full"``
and dilation 2 comes back fully replicated, as does a padding mode's gather), so polyconv asks
for it explicitly: a sharding constraint on its result, ``out_shardings`` for its gradients. Only arrays whose
layout is known (concrete, committed, ``NamedSharding`` over more than one device) get one;
inside the user's ``jax.jit`` on a mesh with ``Auto`` axes the tracers' types carry no layout,
so the user's shardings and XLA's propagation decide. On a mesh with explicit axes
(``jax.make_mesh``'s default) the layout is part of the arrays' types, tracers included, and
polyconv computes with the axes made ``Auto`` inside (:func:`on_explicit_mesh`).
"""

from __future__ import annotations

import functools
import math
from typing import Any


@functools.cache
def _jax() -> Any:
    import jax

    return jax


def placement(a: Any) -> str:
    """The devices a concrete, committed JAX array lives on, as a string that is equal for
    arrays on the same devices."""
    devices = sorted(a.devices(), key=lambda d: (d.platform, d.id))
    return str(devices[0]) if len(devices) == 1 else ",".join(map(str, devices))


def _named(a: Any) -> Any:
    """``a``'s ``NamedSharding`` when it is concrete and spread over several devices."""
    jax = _jax()
    if a is None or isinstance(a, jax.core.Tracer):
        return None
    sharding = getattr(a, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding) and len(sharding.device_set) > 1:
        return sharding
    return None


def _spec(sharding: Any, ndim: int) -> list[Any]:
    spec = list(sharding.spec)
    return spec + [None] * (ndim - len(spec))


def input_layout(x: Any) -> Any:
    """``x``'s layout when it is known and spread over devices, else None."""
    return _named(x)


def _axis_size(mesh: Any, names: Any) -> int:
    names = names if isinstance(names, tuple) else (names,)
    return math.prod(mesh.shape[n] for n in names)


def result_spec(layout: Any, shape: tuple[int, ...], rank: int) -> Any:
    """The ``PartitionSpec`` of a correlation's result of ``shape`` from ``layout`` (its
    input's): the channel axis whole, and every axis whose length the mesh does not divide whole
    too (a JAX array's shards are equal)."""
    spec = _spec(layout, len(shape))
    spec[len(shape) - rank - 1] = None  # the channel axis (the result may be unbatched)
    for axis, names in enumerate(spec):
        if names is not None and shape[axis] % _axis_size(layout.mesh, names):
            spec[axis] = None
    return _jax().sharding.PartitionSpec(*spec)


def _explicit(mesh: Any) -> bool:
    return any(t == _jax().sharding.AxisType.Explicit for t in mesh.axis_types)


def laid_out_like(y: Any, layout: Any, rank: int) -> Any:
    """``y`` (a correlation's result, traced) constrained to ``layout`` (its input's), see
    :func:`_result_spec`."""
    jax = _jax()
    if _explicit(layout.mesh):
        return y  # explicit axes: on_explicit_mesh gave the result its layout
    target = jax.sharding.NamedSharding(layout.mesh, result_spec(layout, y.shape, rank))
    return jax.lax.with_sharding_constraint(y, target)


def explicit_layout(x: Any) -> Any:
    """``x``'s sharding when it is partitioned over a mesh axis of type ``Explicit`` (read from
    its type, so tracers inside the user's ``jax.jit`` too), else None."""
    jax = _jax()
    sharding = getattr(jax.typeof(x), "sharding", None)
    if not isinstance(sharding, jax.sharding.NamedSharding) or not _explicit(sharding.mesh):
        return None
    return sharding if any(names is not None for names in sharding.spec) else None


def on_explicit_mesh(
    compute: Any, layout: Any, result_specs: Any, rank: int | None, *arrays: Any
) -> Any:
    """``compute(*arrays)`` on ``layout``'s mesh (axes of type ``Explicit``) with its axes made
    ``Auto`` inside (``jax.sharding.auto_axes``): there XLA lays out the intermediate arrays
    (padding gathers and scatters, the FFT's fallback ``lax.cond`` whose branches would otherwise
    carry different sharding types, outputs the mesh does not divide), and the result is given
    ``result_specs`` (a ``PartitionSpec`` or a tuple of them, None for a None result). With a
    ``rank``, the single result is constrained inside to its spec too, so that it is computed
    where its data is rather than gathered and split again."""
    jax = _jax()

    def inner(*args: Any) -> Any:
        result = compute(*args)
        if rank is not None:
            result = jax.lax.with_sharding_constraint(result, result_specs)
        return result

    def named(spec: Any) -> Any:
        return None if spec is None else jax.sharding.NamedSharding(layout.mesh, spec)

    out = named(result_specs) if rank is not None else tuple(map(named, result_specs))
    return jax.sharding.auto_axes(inner, out_sharding=out)(*arrays)


def explicit_gradient_specs(layout: Any, w: Any, bias: Any) -> tuple[Any, Any, Any]:
    """The ``PartitionSpec`` s of ``(grad_x, grad_w, grad_bias)`` on ``x``'s explicit mesh: each
    like its array where that is laid out on the same mesh, else replicated."""
    jax = _jax()

    def like(a: Any) -> Any:
        if a is None:
            return None
        own = getattr(jax.typeof(a), "sharding", None)
        if isinstance(own, jax.sharding.NamedSharding) and own.mesh == layout.mesh:
            return own.spec
        return jax.sharding.PartitionSpec()

    return layout.spec, like(w), like(bias)


def gradient_shardings(x: Any, w: Any, bias: Any) -> tuple[Any, Any, Any] | None:
    """The layouts of ``(grad_x, grad_w, grad_bias)``: each like its array, on ``x``'s mesh
    (replicated where that array is not laid out over it); None when ``x``'s is not known."""
    sharding = _named(x)
    if sharding is None:
        return None
    jax = _jax()

    def like(a: Any) -> Any:
        own = _named(a)
        if own is not None and own.mesh == sharding.mesh:
            return own
        return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())

    return sharding, like(w), None if bias is None else like(bias)


def whole_along(a: Any, axes: tuple[int, ...]) -> Any:
    """``a`` (traced) made whole along ``axes`` (a transform's), when its type names a mesh of
    several devices; the other axes are left to XLA.

    XLA's CPU backend pins an all-gather's result to a layout with the gathered axis outermost,
    and feeds it to an FFT as it is, which the FFT refuses unless that axis is the first
    (``RET_CHECK ... fft_thunk.cc ... IsMonotonicWithDim0Major``; jax-ml/jax#22484, measured:
    ``jax.grad`` through ``method="fft"`` of a height-sharded input, jaxlib 0.10.2). So the
    axes are moved first, gathered there, and moved back: a real transpose then stands between
    the gather and the transform. Applied to every transform's input and output, it puts the
    same constraint on the gradient's transforms (a constraint's transpose is itself). The
    mesh is read from the type, which carries it inside any trace (on ``Auto`` meshes too,
    whose layouts it does not carry)."""
    jax = _jax()
    mesh = getattr(getattr(jax.typeof(a), "sharding", None), "mesh", None)
    if mesh is None or math.prod(mesh.shape.values()) <= 1:
        return a
    leading = tuple(range(len(axes)))
    moved = jax.numpy.moveaxis(a, axes, leading)
    free = jax.sharding.PartitionSpec.UNCONSTRAINED
    spec = jax.sharding.PartitionSpec(
        *(None if axis in leading else free for axis in range(a.ndim))
    )
    gathered = jax.lax.with_sharding_constraint(moved, jax.sharding.NamedSharding(mesh, spec))
    return jax.numpy.moveaxis(gathered, leading, axes)


def runs(index: Any, most: int = 8) -> list[tuple[int, int, int]] | None:
    """A constant index map as at most ``most`` runs ``(start, length, step)`` of consecutive
    positions (step 1 or -1), or None. Taking along an axis by slices of these runs (reversed
    for step -1) and a concatenation keeps a layout on that axis in XLA's propagation, where a
    gather loses it (measured: a height-sharded input, reflect padding, inside the user's
    ``jax.jit`` on an ``Auto`` mesh)."""
    found: list[tuple[int, int, int]] = []
    position = 0
    while position < len(index):
        start, length, step = int(index[position]), 1, 0
        if position + 1 < len(index) and abs(int(index[position + 1]) - start) == 1:
            step = int(index[position + 1]) - start
            while (
                position + length < len(index)
                and int(index[position + length]) == start + step * length
            ):
                length += 1
        found.append((start, length, step or 1))
        position += length
        if len(found) > most:
            return None
    return found
