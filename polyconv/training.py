"""Learning a layer's kernel by gradient descent, with one algorithm for every backend.

A training step is a pure function of the backend's arrays, written once against the
:class:`~polyconv.backends.Backend` interface: the forward pass is ``backend.correlate``, the
gradient is ``backend.correlate_vjp`` applied to the loss gradient, and the update is SGD with
momentum as a pair of pure ``init`` / ``update`` functions (the optax pattern). NumPy, PyTorch and
JAX therefore run the same arithmetic in the same order; ``backend.compile`` turns the step into
one ``jax.jit`` computation on JAX and leaves it as is elsewhere.

Conventions (those of the classic lesson):

- ``loss="sse"`` is ``sum((y_hat - y) ** 2)``; ``"mse"`` divides it by the number of outputs.
- ``history[t]`` is the loss of step ``t``'s (mini)batch *before* step ``t``'s update.
- SGD with momentum ``mu`` keeps ``v <- mu * v + g`` and steps ``p <- p - lr * v`` (PyTorch's
  convention); with ``momentum=0`` it is exactly ``p <- p - lr * g``.
- Minibatches: each epoch is a fresh permutation of the samples from
  ``numpy.random.default_rng(seed)``, cut into ``batch_size`` slices (a short last slice is
  dropped, so every step sees the same shapes); the index sequence is identical on every backend.
- Divergence: a loss that is NaN or infinite, or larger than ``DIVERGENCE_FACTOR`` times
  ``max(first loss, 1)``, stops training with :class:`DivergenceError`; the layer is left with the
  parameters of the last step whose loss was finite and within that bound.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from ._core.select import as_input, resolve_method
from ._spec.spec import CorrSpec, normalize
from .backends import Array, Backend, Method
from .backends import get as get_backend
from .layers import Params, _ConvND, to_backend

__all__ = [
    "DIVERGENCE_FACTOR",
    "LOSSES",
    "DivergenceError",
    "SGDState",
    "fit",
    "sgd_init",
    "sgd_update",
]

#: A loss above this multiple of ``max(first loss, 1)`` counts as divergence.
DIVERGENCE_FACTOR = 1e6


class DivergenceError(FloatingPointError):
    """Training blew up: the loss became NaN/inf or grew past the divergence bound.

    A ``FloatingPointError`` (as NumPy raises under ``np.errstate(all="raise")``), because nothing
    about the arguments was invalid by itself: the arithmetic overflowed. ``step``, ``loss`` and
    ``lr`` say where; ``history`` holds the losses of the steps completed before it.
    """

    def __init__(self, message: str, *, step: int, loss: float, lr: float, history: np.ndarray):
        super().__init__(message)
        self.step, self.loss, self.lr, self.history = step, loss, lr, history

    def __reduce__(self) -> tuple[object, ...]:  # keyword-only fields: pickle them explicitly
        return (_rebuild_divergence, (str(self), self.step, self.loss, self.lr, self.history))


def _rebuild_divergence(
    message: str, step: int, loss: float, lr: float, history: np.ndarray
) -> DivergenceError:
    return DivergenceError(message, step=step, loss=loss, lr=lr, history=history)


# --- pure pieces of the algorithm ---------------------------------------------------------------


def _tree_map(fn: Callable[..., Array], *trees: Params) -> Params:
    """``fn`` applied leaf by leaf to ``Params`` trees; a ``None`` bias stays ``None``."""
    return Params(
        *(None if leaves[0] is None else fn(*leaves) for leaves in zip(*trees, strict=True))
    )


class SGDState(NamedTuple):
    """Optimizer state: the momentum buffer, or ``None`` for plain SGD."""

    velocity: Params | None


def sgd_init(params: Params, momentum: float) -> SGDState:
    return SGDState(_tree_map(lambda p: p * 0, params) if momentum else None)


def sgd_update(
    grads: Params, state: SGDState, learning_rate: Array, momentum: Array
) -> tuple[Params, SGDState]:
    """The parameter increments ``-lr * v`` with ``v = momentum * v + grads``, and the new state."""
    direction = grads
    if state.velocity is not None:
        direction = _tree_map(lambda v, g: momentum * v + g, state.velocity, grads)
        state = SGDState(direction)
    return _tree_map(lambda d: -learning_rate * d, direction), state


def apply_updates(params: Params, updates: Params) -> Params:
    return _tree_map(lambda p, u: p + u, params, updates)


class Loss(NamedTuple):
    """A loss as a function of the residual ``y_hat - y``, and its gradient."""

    value: Callable[[Array, int], Array]
    grad: Callable[[Array, int], Array]


def _total(a: Array) -> Array:
    """The sum of all elements, through the Array API namespace where the array has one
    (array-api-strict arrays have no ``.sum`` method; torch tensors have no namespace)."""
    namespace = getattr(a, "__array_namespace__", None)
    return namespace().sum(a) if namespace is not None else a.sum()


LOSSES: dict[str, Loss] = {
    "sse": Loss(lambda r, n: _total(r * r), lambda r, n: 2 * r),
    "mse": Loss(lambda r, n: _total(r * r) / n, lambda r, n: r * (2 / n)),
}


def _compiled_step(
    backend: Backend, spec: CorrSpec, loss_name: str, method: Method = "direct"
) -> Callable[..., tuple[Params, SGDState, Array]]:
    """One training step for this geometry, compiled by the backend. Compiled afresh for every
    ``fit``: a backend setting read while tracing (JAX's matmul precision) must never be served
    stale from a cache."""
    loss = LOSSES[loss_name]
    outputs = math.prod(spec.out_shape)

    def step(
        params: Params,
        state: SGDState,
        x: Array,
        y: Array,
        learning_rate: float,
        momentum: float,
    ) -> tuple[Params, SGDState, Array]:
        y_hat, vjp = backend.correlate_with_vjp(
            x, params.weight, params.bias, spec, with_grad_x=False, method=method
        )
        residual = y_hat - y
        grad_y = loss.grad(residual, outputs)
        _, grad_w, grad_b = vjp(grad_y)
        updates, state = sgd_update(Params(grad_w, grad_b), state, learning_rate, momentum)
        return apply_updates(params, updates), state, loss.value(residual, outputs)

    return backend.compile(step)


def _minibatch_indices(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Sample indices per step: epoch-wise permutations cut into ``batch_size`` slices."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


# --- validation ---------------------------------------------------------------------------------


def _check_hyperparameters(
    lr: object, steps: object, momentum: object, loss: object, callback: object
) -> tuple[float, int, float]:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if (
        isinstance(momentum, bool)
        or not isinstance(momentum, (int, float))
        or not 0 <= momentum < 1
    ):
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(step, loss), got {callback!r}")
    return float(lr), steps, float(momentum)


def _batched_shape(layer: _ConvND, x_shape: tuple[int, ...]) -> tuple[int, ...]:
    """``x_shape`` with the batch (and for a plain input, channel) axes the layer adds."""
    rank = layer.rank
    if layer.is_plain_input(x_shape):
        return (1, 1, *x_shape)
    if len(x_shape) == rank + 1:
        return (1, *x_shape)
    if len(x_shape) == rank + 2:
        return x_shape
    raise ValueError(
        f"x must have shape (N, C_in, *spatial) or (C_in, *spatial) with {rank} spatial axes"
        f"{' (or plain (*spatial))' if layer.in_channels == layer.out_channels == 1 else ''}"
        f" for {type(layer).__name__}; got shape {x_shape}"
    )


def _batches(
    layer: _ConvND, x: object, y: object, batch_size: int | None, seed: int
) -> tuple[Iterator[tuple[Array, Array]], tuple[int, ...]]:
    """The (x, y) batch of every step, as batched arrays of the layer's backend and dtype, and
    the shape of an x batch.

    The full batch is converted once. Minibatches are gathered on the host and moved to the
    layer's device each step, as a data loader does: that needs nothing of the backend but
    ``convert``, and the index sequence is the same on every backend.
    """
    x_shape, y_shape = as_input("x", x).shape, as_input("y", y).shape
    batched_shape = _batched_shape(layer, x_shape)
    spec = normalize(batched_shape, layer.weight_shape, **layer.options)
    added_axes = len(batched_shape) - len(x_shape)
    if y_shape != spec.out_shape[added_axes:]:
        raise ValueError(
            f"y must have the shape the layer gives for x, {spec.out_shape[added_axes:]}, "
            f"got {y_shape}"
        )
    samples = batched_shape[0]
    if batch_size is None:
        batch_size = samples
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= samples
    ):
        raise ValueError(
            f"batch_size must be None or an int from 1 to the number of samples ({samples}), "
            f"got {batch_size!r}"
        )
    backend, dtype, like = layer.backend, layer.dtype, layer.weight
    if batch_size == samples:
        lift = (None,) * added_axes + (...,)
        x_all = to_backend("x", x, backend, dtype, like)[lift]
        y_all = to_backend("y", y, backend, dtype, like)[lift]
        return itertools.repeat((x_all, y_all)), batched_shape
    host = get_backend("numpy")
    x_host = to_backend("x", x, host, dtype, None)
    y_host = to_backend("y", y, host, dtype, None)
    batches = (
        (backend.convert(x_host[index], dtype, like), backend.convert(y_host[index], dtype, like))
        for index in _minibatch_indices(samples, batch_size, seed)
    )
    return batches, (batch_size, *batched_shape[1:])


# --- the loop -----------------------------------------------------------------------------------


def fit(
    layer: _ConvND,
    x: object,
    y: object,
    *,
    lr: float,
    steps: int,
    batch_size: int | None = None,
    loss: str = "sse",
    momentum: float = 0.0,
    callback: Callable[[int, float], object] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Train ``layer`` in place so that ``layer(x)`` approaches ``y``; returns the loss per step.

    ``x`` and ``y`` take the shapes the layer takes and gives (a layer with one input and one
    output channel accepts the lesson's plain ``(H, W)`` image); they are converted to the layer's
    backend and dtype. ``batch_size`` (default: all samples) draws minibatches along axis 0 with
    ``numpy.random.default_rng(seed)``. ``callback(step, loss)`` runs after every step, with the
    layer already holding the updated parameters; a true return value stops training early.

    Returns a float64 NumPy array, ``history[t]`` being the loss before step ``t``'s update. Raises
    :class:`DivergenceError` if the loss turns NaN/inf or exceeds ``DIVERGENCE_FACTOR`` times
    ``max(first loss, 1)``, leaving the layer with its last parameters of finite, bounded loss.
    """
    if not isinstance(layer, _ConvND):
        raise TypeError(
            f"layer must be a polyconv Conv1D, Conv2D or Conv3D, got {type(layer).__name__}"
        )
    lr, steps, momentum = _check_hyperparameters(lr, steps, momentum, loss, callback)
    batches, batch_shape = _batches(layer, x, y, batch_size, seed)
    backend = layer.backend
    spec = normalize(
        batch_shape,
        layer.weight_shape,
        None if layer.bias is None else (layer.out_channels,),
        **layer.options,
    )
    method = resolve_method(backend, spec, layer.options["method"])
    step_fn = _compiled_step(backend, spec, loss, method)

    params = last_good = layer.params
    state = sgd_init(params, momentum)
    history: list[float] = []
    bound = math.inf
    for step, (x_batch, y_batch) in zip(range(steps), batches, strict=False):
        # Overflow is detected below and reported as divergence; NumPy's warning would only
        # repeat it, less precisely.
        with np.errstate(over="ignore", invalid="ignore"):
            new_params, state, loss_array = step_fn(params, state, x_batch, y_batch, lr, momentum)
        value = float(backend.to_numpy(loss_array))
        if step == 0 and math.isfinite(value):
            bound = DIVERGENCE_FACTOR * max(value, 1.0)
        if not value <= bound:  # also catches NaN
            layer._replace_params(last_good)
            raise _divergence(step, value, lr, bound, history)
        history.append(value)
        last_good, params = params, new_params
        layer._replace_params(params)
        if callback is not None and callback(step, value):
            break

    if history and not all(np.isfinite(backend.to_numpy(p)).all() for p in params if p is not None):
        layer._replace_params(last_good)
        step = len(history) - 1
        raise DivergenceError(
            f"fit diverged at step {step}: its update (lr={lr:g}) made the parameters "
            f"non-finite although the loss was {history[-1]:.6g}; try a smaller learning rate, "
            f"e.g. lr={lr / 10:g}. The layer keeps the parameters from before that update.",
            step=step,
            loss=history[-1],
            lr=lr,
            history=np.asarray(history, dtype=np.float64),
        )
    return np.asarray(history, dtype=np.float64)


def _divergence(
    step: int, value: float, lr: float, bound: float, history: list[float]
) -> DivergenceError:
    if step == 0 and not math.isfinite(value):
        reason = f"the loss is {value} before any update: check x and y for NaN or inf values"
    else:
        what = (
            f"is {value}"
            if not math.isfinite(value)
            else f"{value:.6g} exceeds the bound {bound:.6g}"
        )
        reason = (
            f"the loss {what} (lr={lr:g}); try a smaller learning rate, e.g. lr={lr / 10:g}. "
            f"The layer keeps the parameters of step {step - 1}"
            + (f" (loss {history[-1]:.6g})" if history else "")
        )
    return DivergenceError(
        f"fit diverged at step {step}: {reason}",
        step=step,
        loss=value,
        lr=lr,
        history=np.asarray(history, dtype=np.float64),
    )
