"""Behaviour specific to the PyTorch backend: tensors in and out, autograd, devices, TF32.

The agreement of every backend with the reference on random problems is in
``test_properties.py``; these tests pin down what only PyTorch users see.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import polyconv as pc
from polyconv import reference
from polyconv.backends import torch_backend
from polyconv.testing import assert_close, assert_vjp_close

torch = pytest.importorskip("torch")

# (x shape, w shape, keyword arguments): every padding mode, asymmetric and wider-than-input
# padding, stride, dilation, groups, ranks 1-3 and unbatched input.
CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "1d-zeros-stride": ((2, 3, 9), (4, 3, 3), {"padding": 2, "stride": 2}),
    "1d-reflect-dilation": (
        (1, 2, 8),
        (2, 2, 3),
        {"padding": [(1, 3)], "dilation": 2, "padding_mode": "reflect"},
    ),
    "2d-zeros-asymmetric-groups": (
        (2, 4, 7, 6),
        (6, 2, 3, 2),
        {"padding": ((1, 0), (2, 3)), "stride": (2, 1), "dilation": (1, 2), "groups": 2},
    ),
    "2d-replicate-same-unbatched": (
        (3, 6, 5),
        (2, 3, 3, 3),
        {"padding": "same", "padding_mode": "replicate"},
    ),
    "2d-circular-depthwise": (
        (1, 3, 5, 6),
        (3, 1, 2, 3),
        {"padding": ((2, 1), (0, 3)), "groups": 3, "padding_mode": "circular"},
    ),
    "3d-symmetric-wide": (
        (1, 2, 3, 4, 3),
        (2, 2, 2, 3, 2),
        {
            "padding": ((4, 1), (0, 5), (2, 2)),
            "dilation": (1, 2, 1),
            "stride": (1, 1, 2),
            "padding_mode": "symmetric",
        },
    ),
    "3d-zeros-full-unbatched": ((2, 3, 2, 4), (1, 2, 2, 2, 3), {"padding": "full"}),
}


def case_arrays(
    name: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """x, w, bias and an output gradient (float64) for a case, and its keyword arguments."""
    x_shape, w_shape, kwargs = CASES[name]
    rng = np.random.default_rng(seed)
    x, w, bias = (rng.uniform(-1, 1, shape) for shape in (x_shape, w_shape, w_shape[:1]))
    grad_y = rng.uniform(-1, 1, pc.output_shape(x_shape, w_shape, **kwargs))
    return x, w, bias, grad_y, kwargs


def leaf(a: np.ndarray) -> Any:
    return torch.tensor(a, requires_grad=True)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_tensor_input_gives_a_tensor_of_the_same_dtype(dtype: str) -> None:
    x, w, bias, _, kwargs = case_arrays("2d-zeros-asymmetric-groups")
    y = pc.correlate(*(torch.tensor(a.astype(dtype)) for a in (x, w, bias)), **kwargs)
    assert isinstance(y, torch.Tensor)
    assert y.dtype == getattr(torch, dtype)


@pytest.mark.parametrize("case", CASES)
def test_forward_equals_the_reference(case: str) -> None:
    x, w, bias, _, kwargs = case_arrays(case)
    y = pc.correlate(torch.tensor(x), torch.tensor(w), torch.tensor(bias), **kwargs)
    assert_close(
        y,
        reference.correlate(x, w, bias, **kwargs),
        x,
        w,
        bias,
        dtype="float64",
        spec_kwargs=kwargs,
    )


@pytest.mark.parametrize("case", CASES)
def test_backward_equals_correlate_vjp_and_the_reference(case: str) -> None:
    x, w, bias, grad_y, kwargs = case_arrays(case)
    tx, tw, tb = leaf(x), leaf(w), leaf(bias)
    (pc.correlate(tx, tw, tb, **kwargs) * torch.tensor(grad_y)).sum().backward()
    autograd = (tx.grad, tw.grad, tb.grad)

    vjp = pc.correlate_vjp(*(torch.tensor(a) for a in (x, w, bias, grad_y)), **kwargs)
    for name, got, want in zip(("grad_x", "grad_w", "grad_bias"), autograd, vjp, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)
    expected = reference.correlate_vjp(x, w, bias, grad_y, **kwargs)
    assert_vjp_close(autograd, expected, x, w, bias, grad_y, dtype="float64", spec_kwargs=kwargs)


def test_correlate_vjp_without_bias_gives_no_bias_gradient() -> None:
    x, w, _, grad_y, kwargs = case_arrays("1d-zeros-stride")
    grads = pc.correlate_vjp(torch.tensor(x), torch.tensor(w), None, torch.tensor(grad_y), **kwargs)
    assert grads[2] is None
    assert_vjp_close(
        grads,
        reference.correlate_vjp(x, w, None, grad_y, **kwargs),
        x,
        w,
        None,
        grad_y,
        dtype="float64",
        spec_kwargs=kwargs,
    )


def test_correlate_vjp_leaves_the_users_graph_alone() -> None:
    x, w, bias, grad_y, kwargs = case_arrays("2d-circular-depthwise")
    tx, tw, tb = leaf(x), leaf(w), leaf(bias)
    grads = pc.correlate_vjp(tx, tw, tb, torch.tensor(grad_y), **kwargs)
    assert tx.grad is None and tw.grad is None and tb.grad is None
    assert not any(g.requires_grad for g in grads)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_correlate_vjp_works_with_autograd_switched_off(mode: str) -> None:
    x, w, bias, grad_y, kwargs = case_arrays("2d-replicate-same-unbatched")
    with getattr(torch, mode)():
        grads = pc.correlate_vjp(*(torch.tensor(a) for a in (x, w, bias, grad_y)), **kwargs)
    assert_vjp_close(
        grads,
        reference.correlate_vjp(x, w, bias, grad_y, **kwargs),
        x,
        w,
        bias,
        grad_y,
        dtype="float64",
        spec_kwargs=kwargs,
    )


def test_torch_func_grad_of_user_code_equals_backward() -> None:
    x, w, _, _, kwargs = case_arrays("3d-symmetric-wide")
    tw = torch.tensor(w)

    def loss(t: Any) -> Any:
        return (pc.correlate(t, tw, **kwargs) ** 2).sum()

    tx = leaf(x)
    loss(tx).backward()
    torch.testing.assert_close(
        torch.func.grad(loss)(torch.tensor(x)), tx.grad, rtol=1e-12, atol=1e-12
    )


def test_convolve_backward_reaches_the_kernel() -> None:
    x, w, _, grad_y, kwargs = case_arrays("2d-zeros-asymmetric-groups")
    tw = leaf(w)
    (pc.convolve(torch.tensor(x), tw, **kwargs) * torch.tensor(grad_y)).sum().backward()
    flip_axes = tuple(range(2, w.ndim))
    _, expected_flipped, _ = reference.correlate_vjp(
        x, np.flip(w, flip_axes), None, grad_y, **kwargs
    )
    np.testing.assert_allclose(
        tw.grad.numpy(), np.flip(expected_flipped, flip_axes), rtol=1e-10, atol=1e-12
    )


def test_lists_with_backend_torch_give_a_float32_tensor() -> None:
    y = pc.correlate([[1, 2, 3, 4]], [[[1, 0, -1]]], backend="torch")
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    assert y.tolist() == [[-2.0, -2.0]]


def test_integer_tensors_compute_in_float32() -> None:
    y = pc.corr2d(torch.arange(9).reshape(3, 3), torch.ones(2, 2, dtype=torch.int64))
    assert y.dtype == torch.float32
    assert y.tolist() == [[8.0, 12.0], [20.0, 24.0]]


def test_numpy_and_torch_inputs_run_on_torch_and_reach_the_tensor() -> None:
    x, w, bias, grad_y, kwargs = case_arrays("1d-reflect-dilation")
    tw = leaf(w)
    y = pc.correlate(x, tw, bias, **kwargs)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
    (y * torch.tensor(grad_y)).sum().backward()
    _, grad_w, _ = reference.correlate_vjp(x, w, bias, grad_y, **kwargs)
    np.testing.assert_allclose(tw.grad.numpy(), grad_w, rtol=1e-10, atol=1e-12)


def test_numpy_inputs_stay_numpy_with_torch_imported() -> None:
    x, w, _, _, kwargs = case_arrays("2d-zeros-asymmetric-groups")
    assert type(pc.correlate(x, w, **kwargs)) is np.ndarray


def test_torch_and_jax_inputs_together_need_a_backend_argument() -> None:
    jnp = pytest.importorskip("jax.numpy")
    x, w, _, _, kwargs = case_arrays("1d-zeros-stride")
    tx, jw = torch.tensor(x, dtype=torch.float32), jnp.asarray(w, dtype=jnp.float32)
    with pytest.raises(TypeError, match=r"more than one framework.*backend="):
        pc.correlate(tx, jw, **kwargs)
    assert isinstance(pc.correlate(tx, jw, backend="torch", **kwargs), torch.Tensor)


def test_numpy_input_is_placed_on_the_tensors_device() -> None:
    # The meta device stands in for a GPU: it has shapes and dtypes, no data.
    x = torch.empty(2, 3, 8, 8, device="meta")
    for mode in ("zeros", "reflect"):
        y = pc.correlate(
            x, np.ones((4, 3, 3, 3), np.float32), padding=((1, 2), (0, 1)), padding_mode=mode
        )
        assert y.device.type == "meta"
        assert tuple(y.shape) == (2, 4, 9, 7)


def test_float16_on_cpu_is_within_the_float16_bound() -> None:
    x, w, bias, grad_y, kwargs = case_arrays("2d-circular-depthwise")
    x, w, bias, grad_y = (a.astype(np.float16) for a in (x, w, bias, grad_y))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, bias))
    y = pc.correlate(tx, tw, tb, **kwargs)
    assert_close(
        y,
        reference.correlate(x, w, bias, **kwargs),
        x,
        w,
        bias,
        dtype="float16",
        spec_kwargs=kwargs,
    )
    (y * torch.tensor(grad_y)).sum().backward()
    assert tx.grad.dtype == tw.grad.dtype == torch.float16


# --- TF32 ------------------------------------------------------------------------------------


def tf32_flags() -> list[object]:
    return [getattr(owner, attr) for owner, attr, _ in torch_backend._ieee_float32._flags()]


def ieee_flags() -> list[object]:
    return [value for _, _, value in torch_backend._ieee_float32._flags()]


@pytest.fixture
def user_tf32_flags() -> Any:
    """The TF32 flags switched on, as a user of an Ampere GPU might, and restored after."""
    flags = torch_backend._ieee_float32._flags()
    saved = tf32_flags()
    for owner, attr, ieee in flags:
        setattr(owner, attr, "tf32" if isinstance(ieee, str) else True)
    yield tf32_flags()
    for (owner, attr, _), value in zip(flags, saved, strict=True):
        setattr(owner, attr, value)


@pytest.fixture
def as_if_on_cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[object]]]:
    """Take the CUDA path on CPU tensors, recording the TF32 flags each convolution saw."""
    seen: list[list[object]] = []
    monkeypatch.setattr(torch_backend, "_has_tf32", lambda device_type: True)
    pc.clear_caches()  # calls prepared for the CPU path
    torch_backend._bare_native.cache_clear()
    conv2d = torch.nn.functional.conv2d

    def recording_conv2d(*args: Any, **kwargs: Any) -> Any:
        seen.append(tf32_flags())
        return conv2d(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", recording_conv2d)
    yield seen
    monkeypatch.undo()
    torch_backend._bare_native.cache_clear()


def test_tf32_is_off_in_the_forward_and_restored_after(
    user_tf32_flags: list[object], as_if_on_cuda: list[list[object]]
) -> None:
    pc.correlate(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 2, 2))
    assert as_if_on_cuda == [ieee_flags()]
    assert tf32_flags() == user_tf32_flags


def test_tf32_is_off_in_the_backward_and_restored_after(
    user_tf32_flags: list[object], as_if_on_cuda: list[list[object]]
) -> None:
    x = torch.ones(1, 1, 4, 4, requires_grad=True)
    y = pc.correlate(x, torch.ones(1, 1, 2, 2))
    seen_in_backward: list[list[object]] = []
    # Runs after polyconv's own pre-hook on the same node, just before the convolution's backward.
    y.grad_fn.register_prehook(lambda grad_outputs: seen_in_backward.append(tf32_flags()))
    y.sum().backward()
    assert seen_in_backward == [ieee_flags()]
    assert tf32_flags() == user_tf32_flags


def test_precision_default_leaves_the_users_tf32_flags_in_charge(
    user_tf32_flags: list[object], as_if_on_cuda: list[list[object]]
) -> None:
    with torch_backend.precision("default"):
        pc.correlate(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 2, 2))
    assert as_if_on_cuda == [user_tf32_flags]


def test_tf32_flags_are_restored_when_the_call_raises(user_tf32_flags: list[object]) -> None:
    with pytest.raises(RuntimeError, match="inside"), torch_backend._ieee_float32.held():
        assert tf32_flags() == ieee_flags()
        raise RuntimeError("inside")
    assert tf32_flags() == user_tf32_flags


def test_cpu_calls_do_not_touch_the_tf32_flags(
    user_tf32_flags: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail() -> None:
        raise AssertionError("TF32 flags switched for a CPU call")

    monkeypatch.setattr(torch_backend._ieee_float32, "enter", fail)
    x = torch.ones(1, 1, 4, 4, requires_grad=True)
    pc.correlate(x, torch.ones(1, 1, 2, 2)).sum().backward()
    assert tf32_flags() == user_tf32_flags


def test_precision_is_highest_unless_set() -> None:
    assert torch_backend.get_precision() == "highest"
    with torch_backend.precision("default"):
        assert torch_backend.get_precision() == "default"
    assert torch_backend.get_precision() == "highest"


def test_unknown_precision_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"torch backend must be one of \('highest', 'default'\)"):
        torch_backend.set_precision("tf32")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_input_stays_on_its_device_in_float32() -> None:
    x, w, bias, _, kwargs = case_arrays("2d-zeros-asymmetric-groups")
    x, w, bias = (a.astype(np.float32) for a in (x, w, bias))
    tx = torch.tensor(x, device="cuda", requires_grad=True)
    y = pc.correlate(tx, w, bias, **kwargs)
    assert y.device == tx.device and y.dtype == torch.float32
    assert_close(
        y,
        reference.correlate(x, w, bias, **kwargs),
        x,
        w,
        bias,
        dtype="float32",
        spec_kwargs=kwargs,
    )


def test_correlate_with_vjp_shares_one_forward_and_equals_correlate_vjp() -> None:
    """What a training step calls: the forward and a VJP from the same autograd graph."""
    from polyconv.backends import get

    rng = np.random.default_rng(3)
    x, w, b = (torch.from_numpy(rng.standard_normal(s)) for s in ((2, 4, 7, 6), (6, 2, 3, 2), (6,)))
    spec = pc.normalize(tuple(x.shape), tuple(w.shape), (6,), stride=(2, 1), groups=2, padding=1)
    grad_y = torch.from_numpy(rng.standard_normal(spec.out_shape))
    backend = get("torch")
    y, vjp = backend.correlate_with_vjp(x, w, b, spec)
    assert not y.requires_grad
    torch.testing.assert_close(y, backend.correlate(x, w, b, spec), rtol=0, atol=0)
    for got, want in zip(vjp(grad_y), backend.correlate_vjp(x, w, b, grad_y, spec), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_correlate_with_vjp_without_grad_x_gives_the_same_parameter_gradients() -> None:
    """What pc.fit asks for: autograd skips the input gradient, the rest is unchanged."""
    from polyconv.backends import get

    rng = np.random.default_rng(4)
    x, w, b = (torch.from_numpy(rng.standard_normal(s)) for s in ((2, 3, 6, 5), (4, 3, 2, 2), (4,)))
    spec = pc.normalize(tuple(x.shape), tuple(w.shape), (4,), padding=1)
    grad_y = torch.from_numpy(rng.standard_normal(spec.out_shape))
    backend = get("torch")
    _, vjp = backend.correlate_with_vjp(x, w, b, spec, with_grad_x=False)
    grad_x, grad_w, grad_b = vjp(grad_y)
    assert grad_x is None
    _, want_w, want_b = backend.correlate_vjp(x, w, b, grad_y, spec)
    torch.testing.assert_close(grad_w, want_w, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_b, want_b, rtol=1e-12, atol=1e-12)
