"""fit: learning kernels by gradient descent, identically on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

import polyconv as pc
from polyconv import reference
from polyconv.backends import Backend
from polyconv.layers import Params
from polyconv.lesson import AGREEMENT_ATOL, AGREEMENT_RTOL, EDGE_KERNEL, band_image
from polyconv.training import _compiled_step, sgd_init, sgd_update

IMAGE = band_image()
EDGES = reference.correlate(IMAGE[None], EDGE_KERNEL[None, None])[0].astype(np.float32)


def _lesson_layer(backend: str) -> pc.Conv2D:
    return pc.Conv2D((1, 2), bias=False, backend=backend, seed=0)


def _weight(layer: pc.Conv2D) -> np.ndarray:
    return layer.backend.to_numpy(layer.weight)


def _multichannel_problem() -> tuple[np.ndarray, np.ndarray]:
    """Images and the outputs of a hidden strided, padded, grouped layer (learnable exactly)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (8, 4, 7, 6)).astype(np.float32)
    hidden = rng.uniform(-0.5, 0.5, (6, 2, 3, 3))
    y = reference.correlate(
        x, hidden, rng.uniform(-1, 1, 6), stride=2, padding=1, groups=2, padding_mode="reflect"
    )
    return x, y.astype(np.float32)


def _multichannel_layer(backend: str) -> pc.Conv2D:
    return pc.Conv2D(
        3,
        in_channels=4,
        out_channels=6,
        stride=2,
        padding=1,
        groups=2,
        padding_mode="reflect",
        backend=backend,
        seed=2,
    )


# --- learning -------------------------------------------------------------------------------


def test_lesson_kernel_is_learned_within_1e_2_of_the_edge_kernel(backend: Backend) -> None:
    layer = _lesson_layer(backend.name)
    pc.fit(layer, IMAGE, EDGES, lr=3e-2, steps=40)
    np.testing.assert_allclose(_weight(layer)[0, 0], EDGE_KERNEL, atol=1e-2)


@pytest.mark.parametrize(
    ("batch_size", "momentum"), [(None, 0.0), (3, 0.9)], ids=["full-batch", "minibatch-momentum"]
)
def test_loss_histories_from_one_seed_agree_across_backends_step_by_step(
    backend_pair: tuple[Backend, Backend], batch_size: int | None, momentum: float
) -> None:
    x, y = _multichannel_problem()
    histories, weights = [], []
    for backend in backend_pair:
        layer = _multichannel_layer(backend.name)
        histories.append(
            pc.fit(layer, x, y, lr=0.005, steps=12, batch_size=batch_size, momentum=momentum)
        )
        weights.append(_weight(layer))
    np.testing.assert_allclose(*histories, rtol=AGREEMENT_RTOL, atol=AGREEMENT_ATOL)
    np.testing.assert_allclose(*weights, rtol=AGREEMENT_RTOL, atol=AGREEMENT_ATOL)


def test_lesson_loss_histories_agree_across_backends_step_by_step(
    backend_pair: tuple[Backend, Backend],
) -> None:
    first, second = (
        pc.fit(_lesson_layer(b.name), IMAGE, EDGES, lr=3e-2, steps=10) for b in backend_pair
    )
    np.testing.assert_allclose(first, second, rtol=AGREEMENT_RTOL, atol=AGREEMENT_ATOL)


def test_fit_lowers_the_loss_of_a_multichannel_strided_padded_layer(backend: Backend) -> None:
    x, y = _multichannel_problem()
    layer = _multichannel_layer(backend.name)

    def full_loss() -> float:
        return float(np.sum((backend.to_numpy(layer(x)) - y) ** 2))

    before = full_loss()
    pc.fit(layer, x, y, lr=0.01, steps=30, batch_size=4, momentum=0.5)
    assert full_loss() < 0.5 * before


def test_history_holds_each_steps_loss_before_its_update() -> None:
    layer = _lesson_layer("numpy")
    initial = _weight(layer).copy()
    history = pc.fit(layer, IMAGE, EDGES, lr=3e-2, steps=2)
    first = np.sum((pc.corr2d(IMAGE, initial[0, 0]) - EDGES) ** 2)
    assert history.dtype == np.float64 and history.shape == (2,)
    np.testing.assert_allclose(history[0], first, rtol=1e-6)


def test_mse_is_the_sum_of_squares_over_the_output_count() -> None:
    sse = pc.fit(_lesson_layer("numpy"), IMAGE, EDGES, lr=1e-9, steps=1, loss="sse")
    mse = pc.fit(_lesson_layer("numpy"), IMAGE, EDGES, lr=1e-9, steps=1, loss="mse")
    np.testing.assert_allclose(mse, sse / EDGES.size, rtol=1e-6)


def test_one_step_is_gradient_descent_on_the_reference_gradient() -> None:
    layer = pc.Conv2D(2, in_channels=2, out_channels=3, padding="same", seed=4)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 2, 5, 5)).astype(np.float32)
    y = np.zeros((2, 3, 5, 5), dtype=np.float32)
    w0, b0 = layer.weight.astype(np.float64), layer.bias.astype(np.float64)
    residual = reference.correlate(x, w0, b0, padding="same") - y
    _, grad_w, grad_b = reference.correlate_vjp(x, w0, b0, 2 * residual, padding="same")
    pc.fit(layer, x, y, lr=0.1, steps=1)
    np.testing.assert_allclose(layer.weight, w0 - 0.1 * grad_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.bias, b0 - 0.1 * grad_b, rtol=1e-5, atol=1e-6)


def test_sgd_momentum_follows_the_heavy_ball_recurrence() -> None:
    params = Params(np.array([1.0, 2.0]), None)
    state = sgd_init(params, 0.9)
    velocity = np.zeros(2)
    for grad in ([1.0, -1.0], [0.5, 0.5], [-2.0, 1.0]):
        updates, state = sgd_update(Params(np.array(grad), None), state, 0.1, 0.9)
        velocity = 0.9 * velocity + np.array(grad)
        np.testing.assert_allclose(updates.weight, -0.1 * velocity)
        assert updates.bias is None


def test_minibatches_differ_between_steps_and_follow_the_seed() -> None:
    x, y = _multichannel_problem()
    runs = [
        pc.fit(_multichannel_layer("numpy"), x, y, lr=1e-9, steps=4, batch_size=2, seed=s)
        for s in (0, 0, 1)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    assert len(set(runs[0].tolist())) == 4  # a different batch (and loss) every step


def test_callback_sees_every_step_and_can_stop_training() -> None:
    seen: list[tuple[int, float]] = []
    layer = _lesson_layer("numpy")

    def stop_after_three(step: int, loss: float) -> bool:
        seen.append((step, loss))
        return step == 2

    history = pc.fit(layer, IMAGE, EDGES, lr=3e-2, steps=10, callback=stop_after_three)
    assert [step for step, _ in seen] == [0, 1, 2]
    assert history.tolist() == [loss for _, loss in seen]


def test_jax_training_step_is_jit_compiled() -> None:
    pytest.importorskip("jax", reason="jax is not installed")
    layer = _lesson_layer("jax")
    spec = pc.normalize((1, 1, 6, 8), layer.weight_shape)
    step = _compiled_step(layer.backend, spec, "sse")
    assert hasattr(step, "lower")  # a jax.jit-wrapped function
    pc.fit(layer, IMAGE, EDGES, lr=3e-2, steps=3)
    assert layer.backend.owns(layer.weight)


# --- divergence -----------------------------------------------------------------------------


def test_divergence_names_step_loss_and_lr_and_keeps_the_last_finite_parameters(
    backend: Backend,
) -> None:
    layer = _lesson_layer(backend.name)
    with pytest.raises(
        pc.DivergenceError, match=r"step \d+.*lr=1\b.*smaller learning rate"
    ) as info:
        pc.fit(layer, IMAGE, EDGES, lr=1.0, steps=50)
    error = info.value
    assert isinstance(error, FloatingPointError)
    assert error.lr == 1.0 and error.step >= 1 and not error.loss <= 1e6 * error.history[0]
    assert len(error.history) == error.step
    # The layer holds the parameters the last recorded loss was measured at.
    kept = _weight(layer)
    assert np.isfinite(kept).all()
    replay = _lesson_layer(backend.name)
    pc.fit(replay, IMAGE, EDGES, lr=1.0, steps=error.step - 1)
    np.testing.assert_array_equal(kept, _weight(replay))


def test_nan_in_the_data_is_reported_before_any_update() -> None:
    layer = _lesson_layer("numpy")
    initial = _weight(layer).copy()
    bad = IMAGE.copy()
    bad[0, 0] = np.nan
    with pytest.raises(pc.DivergenceError, match=r"step 0.*check x and y"):
        pc.fit(layer, bad, EDGES, lr=3e-2, steps=5)
    np.testing.assert_array_equal(_weight(layer), initial)


def test_an_update_that_overflows_the_parameters_is_divergence() -> None:
    layer = _lesson_layer("numpy")
    initial = _weight(layer).copy()
    with pytest.raises(pc.DivergenceError, match="non-finite") as info:
        pc.fit(layer, IMAGE, EDGES, lr=1e38, steps=1)
    assert info.value.step == 0 and math.isfinite(info.value.loss)
    np.testing.assert_array_equal(_weight(layer), initial)


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"steps": -1}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"momentum": 1.0}, "momentum"),
        ({"loss": "l1"}, "loss"),
        ({"batch_size": 2}, "batch_size"),  # the plain image is one sample
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_invalid_arguments_are_refused_naming_them(
    kwargs: dict[str, object], argument: str
) -> None:
    arguments: dict[str, object] = {"lr": 0.1, "steps": 1, **kwargs}
    with pytest.raises(ValueError, match=argument):
        pc.fit(_lesson_layer("numpy"), IMAGE, EDGES, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": np.float32(3e-2)},
        {"lr": np.float64(3e-2), "momentum": np.float32(0.5)},
        {"lr": 3e-2, "steps": np.int64(2)},
    ],
    ids=["float32-lr", "float-momentum", "int64-steps"],
)
def test_numpy_scalars_are_numbers_like_python_ones(kwargs: dict[str, object]) -> None:
    as_python = {
        name: value.item()
        for name, value in {"steps": 2, **kwargs}.items()
        if isinstance(value, np.generic)
    }
    given = pc.fit(_lesson_layer("numpy"), IMAGE, EDGES, **{"steps": 2, **kwargs})  # type: ignore[arg-type]
    plain = pc.fit(_lesson_layer("numpy"), IMAGE, EDGES, **{"steps": 2, **kwargs, **as_python})  # type: ignore[arg-type]
    np.testing.assert_array_equal(given, plain)


def test_a_numpy_bool_is_not_a_learning_rate() -> None:
    with pytest.raises(ValueError, match="lr"):
        pc.fit(_lesson_layer("numpy"), IMAGE, EDGES, lr=np.True_, steps=1)  # type: ignore[arg-type]


def test_y_of_the_wrong_shape_is_refused_with_the_expected_shape() -> None:
    with pytest.raises(ValueError, match=r"y must have the shape .*\(6, 7\), got \(6, 8\)"):
        pc.fit(_lesson_layer("numpy"), IMAGE, IMAGE, lr=0.1, steps=1)


def test_a_non_layer_is_refused() -> None:
    with pytest.raises(TypeError, match="layer must be"):
        pc.fit(EDGE_KERNEL, IMAGE, EDGES, lr=0.1, steps=1)  # type: ignore[arg-type]


def test_a_callback_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="callback"):
        pc.fit(_lesson_layer("numpy"), IMAGE, EDGES, lr=0.1, steps=1, callback=3)  # type: ignore[arg-type]
