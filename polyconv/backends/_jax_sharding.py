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
inside the user's ``jax.jit`` the user's shardings and XLA's propagation decide, and on a mesh
with explicit axes (``jax.make_mesh``'s default) the layout is part of the arrays' types.
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


def laid_out_like(y: Any, layout: Any, rank: int) -> Any:
    """``y`` (a correlation's result, traced) constrained to ``layout`` (its input's), with the
    channel axis whole and every axis whose length the mesh does not divide whole too (a JAX
    array's shards are equal)."""
    jax = _jax()
    if any(t != jax.sharding.AxisType.Auto for t in layout.mesh.axis_types):
        return y  # explicit axes: the layout is part of the types, which JAX keeps itself
    spec = _spec(layout, y.ndim)
    spec[y.ndim - rank - 1] = None  # the channel axis (y may be unbatched)
    for axis, names in enumerate(spec):
        if names is not None and y.shape[axis] % _axis_size(layout.mesh, names):
            spec[axis] = None
    target = jax.sharding.NamedSharding(layout.mesh, jax.sharding.PartitionSpec(*spec))
    return jax.lax.with_sharding_constraint(y, target)


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
