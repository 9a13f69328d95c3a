"""The JAX backend: traceable under the user's transformations, compiled once per spec, exact
float32 by default, on the input's device, and never silently downcasting float64."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import traceback

import numpy as np
import pytest

import polyconv as pc
from polyconv import reference
from polyconv._core.callcache import CALLS

jax = pytest.importorskip("jax")
jnp = jax.numpy
jax_backend = pytest.importorskip("polyconv.backends.jax_backend")

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 4, 9, 7))
W = RNG.standard_normal((6, 2, 3, 2))
BIAS = RNG.standard_normal(6)
SPEC = {"stride": (2, 1), "padding": "same", "dilation": (1, 2), "groups": 2}


def test_correlate_inside_user_jit_equals_the_eager_call() -> None:
    x, w = jnp.asarray(X), jnp.asarray(W)
    jitted = jax.jit(lambda x, w: pc.correlate(x, w, **SPEC))
    np.testing.assert_allclose(jitted(x, w), pc.correlate(x, w, **SPEC), rtol=1e-12)


@pytest.mark.jax_x64  # float64 data, compared to 1e-10
def test_vmap_over_kernels_equals_one_call_per_kernel() -> None:
    x = jnp.asarray(X)
    kernels = jnp.asarray(RNG.standard_normal((3, *W.shape)))
    batched = jax.vmap(lambda w: pc.correlate(x, w, **SPEC))(kernels)
    for k in range(kernels.shape[0]):
        expected = reference.correlate(X, np.asarray(kernels[k]), **SPEC)
        np.testing.assert_allclose(batched[k], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.jax_x64  # float64 data, compared to 1e-10
def test_grad_of_user_code_equals_the_reference_vjp() -> None:
    grad_y = RNG.standard_normal(pc.output_shape(X.shape, W.shape, **SPEC))

    def loss(x: object, w: object, b: object) -> object:
        return jnp.sum(pc.correlate(x, w, b, **SPEC) * grad_y)

    grads = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(X), jnp.asarray(W), jnp.asarray(BIAS))
    expected = reference.correlate_vjp(X, W, BIAS, grad_y, **SPEC)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_float32_products_are_requested_at_highest_precision_by_default() -> None:
    x, w = jnp.asarray(X, jnp.float32), jnp.asarray(W, jnp.float32)
    jaxpr = str(jax.make_jaxpr(lambda x, w: pc.correlate(x, w, **SPEC))(x, w))
    assert "precision=(Precision.HIGHEST, Precision.HIGHEST)" in jaxpr


def test_precision_default_leaves_the_choice_to_jax() -> None:
    x, w = jnp.asarray(X, jnp.float32), jnp.asarray(W, jnp.float32)
    with jax_backend.precision("default"):
        jaxpr = str(jax.make_jaxpr(lambda x, w: pc.correlate(x, w, **SPEC))(x, w))
    assert "precision=None" in jaxpr
    assert jax_backend.get_precision() == "highest"


def test_a_call_needs_no_transfer_between_host_and_device() -> None:
    """Every padding mode's gather indices and the spec live in the compiled computation; a
    transfer inside the call would raise under the guard."""
    x, w, b = jnp.asarray(X), jnp.asarray(W), jnp.asarray(BIAS)
    grad_y = jnp.ones(pc.output_shape(X.shape, W.shape, **SPEC))
    for mode in ("zeros", "reflect", "symmetric"):
        pc.correlate(x, w, b, padding_mode=mode, **SPEC)  # compile outside the guard
        pc.correlate_vjp(x, w, b, grad_y, padding_mode=mode, **SPEC)
        with jax.transfer_guard("disallow"):
            y = pc.correlate(x, w, b, padding_mode=mode, **SPEC)
            grads = pc.correlate_vjp(x, w, b, grad_y, padding_mode=mode, **SPEC)
        assert y.devices() == x.devices()
        assert all(g.devices() == x.devices() for g in grads)


@pytest.mark.jax_x64  # float64 data, compared to 1e-10
def test_the_result_stays_on_the_inputs_device() -> None:
    device = jax.devices()[-1]
    x = jax.device_put(jnp.asarray(X), device)
    w = jax.device_put(jnp.asarray(W), device)
    assert pc.correlate(x, w, **SPEC).devices() == {device}
    assert pc.correlate(x, W, **SPEC).devices() == {device}  # NumPy w follows x


def test_a_spec_is_compiled_once(caplog: pytest.LogCaptureFixture) -> None:
    x, other_x, w = jnp.ones((1, 1, 13, 11)), jnp.zeros((1, 1, 13, 11)), jnp.ones((1, 1, 2, 5))

    def compilations() -> int:
        return sum("Finished XLA compilation of" in r.getMessage() for r in caplog.records)

    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        pc.correlate(x, w, padding=(3, 1))
        pc.correlate(other_x, w, padding=(3, 1))
        assert compilations() == 1
        pc.correlate(x, w, padding=(1, 3))  # another spec
        assert compilations() == 2
        with jax_backend.precision("default"):  # another precision
            pc.correlate(x, w, padding=(1, 3))
        assert compilations() == 3


@pytest.fixture
def fresh_call_caches() -> None:
    pc.clear_caches()


@pytest.mark.jax_x64  # float64 data
@pytest.mark.usefixtures("fresh_call_caches")
def test_repeated_calls_on_other_shapes_and_dtypes_equal_the_reference() -> None:
    """After one call, calls with the same arguments on JAX arrays of other shapes and dtypes
    are validated and cached afresh; their results stay the spec's."""
    pc.correlate(jnp.asarray(X), jnp.asarray(W), **SPEC)
    for x_dtype, w_dtype in (("float32", "float32"), ("float16", "float32"), ("int32", "float64")):
        x = RNG.standard_normal((3, 4, 8, 11)).astype(x_dtype)
        w = RNG.standard_normal((4, 2, 2, 3)).astype(w_dtype)
        y = pc.correlate(jnp.asarray(x), jnp.asarray(w), **SPEC)
        assert y.dtype == np.result_type(x_dtype, w_dtype, "float16")
        np.testing.assert_allclose(y, reference.correlate(x, w, **SPEC), rtol=2e-3, atol=2e-3)


@pytest.mark.usefixtures("fresh_call_caches")
def test_an_error_in_a_repeated_call_is_the_first_calls_error() -> None:
    """A bad call after a cached one is validated (its key differs), so its error is the
    spec's, with nothing of JAX's attached (such as its note on traceback frames)."""
    x, w = jnp.asarray(X), jnp.asarray(W)
    too_wide = jnp.ones((6, 2, 3, 30))

    def error_of_bad_call() -> ValueError:
        with pytest.raises(ValueError, match="kernel") as raised:
            pc.correlate(x, too_wide, **{**SPEC, "padding": "valid"})
        return raised.value

    first = error_of_bad_call()
    pc.correlate(x, w, **{**SPEC, "padding": "valid"})  # cached
    assert len(CALLS) == 1
    repeated = error_of_bad_call()
    assert traceback.format_exception_only(repeated) == traceback.format_exception_only(first)
    assert repeated.__cause__ is None and repeated.__context__ is None


def test_devices_follow_jax_rules_on_first_and_repeated_calls() -> None:
    """With two (host) devices: committed inputs on different devices are refused by the spec,
    an uncommitted input joins a committed one, as in JAX, and results stay on the inputs'
    device, whether or not the call's dispatch is compiled yet."""
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, polyconv as pc
        first, second = jax.devices()
        on = lambda device, shape: jax.device_put(jnp.ones(shape), device)
        for attempt in ("first", "repeated"):
            x, w = on(second, (1, 1, 6, 8)), on(second, (1, 1, 2, 2))
            assert pc.correlate(x, w).devices() == {second}
            assert pc.correlate(x, jnp.ones((1, 1, 2, 2))).devices() == {second}
            try:
                pc.correlate(x, on(first, (1, 1, 2, 2)))
            except ValueError as error:
                print(attempt, error)
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    refusals = result.stdout.splitlines()
    assert [line.split()[0] for line in refusals] == ["first", "repeated"], result.stdout
    assert all("w is on device cpu:0 but x is on cpu:1" in line for line in refusals)


def test_float64_with_x64_off_is_refused_with_how_to_enable_it() -> None:
    """In a fresh process, whatever the suite's setting: JAX would compute in float32."""
    script = textwrap.dedent(
        """
        import jax, numpy as np, polyconv as pc
        assert not jax.config.jax_enable_x64
        try:
            pc.correlate(np.ones((1, 1, 4)), np.ones((1, 1, 2)), backend="jax")
        except TypeError as error:
            print(error)
        """
    )
    env = {**os.environ, "JAX_ENABLE_X64": "0"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert "float64" in result.stdout
    assert 'jax.config.update("jax_enable_x64", True)' in result.stdout


@pytest.mark.jax_x64
def test_float32_input_computes_in_float32_with_x64_on() -> None:
    x, w = jnp.asarray(X, jnp.float32), jnp.asarray(W, jnp.float32)
    y = pc.correlate(x, w, **SPEC)
    assert y.dtype == jnp.float32
    expected = reference.correlate(np.asarray(x), np.asarray(w), **SPEC)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
