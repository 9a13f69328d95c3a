"""JAX arrays spread over 8 simulated CPU devices: results laid out like the input, computed
where the data is, forward and gradients, both methods.

The device count is fixed when JAX starts, so the checks run in one fresh interpreter (one, to
pay JAX's start-up once), which reports each check's outcome as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax")

SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import polyconv as pc

    results = {}
    mesh = Mesh(np.array(jax.devices()), ("d",))
    rng = np.random.default_rng(0)
    x_host = rng.standard_normal((8, 2, 16, 16)).astype(np.float32)
    w_host = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    x = jax.device_put(x_host, NamedSharding(mesh, P("d")))
    w = jax.device_put(w_host, NamedSharding(mesh, P()))

    def layout(a):
        spec = list(a.sharding.spec)
        return spec + [None] * (a.ndim - len(spec))

    def close(a, b):
        return bool(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4))

    for method in ("direct", "fft"):
        kw = dict(padding="same", padding_mode="reflect", method=method)
        expected = pc.correlate(x_host, w_host, **kw)
        first, repeat = pc.correlate(x, w, **kw), pc.correlate(x, w, **kw)
        jitted = jax.jit(lambda a, b: pc.correlate(a, b, **kw))(x, w)
        results[f"data_parallel_{method}"] = {
            "values": all(close(y, expected) for y in (first, repeat, jitted)),
            "layouts": [layout(y) for y in (first, repeat, jitted)],
        }
        loss = lambda w_, x_: jnp.sum(pc.correlate(x_, w_, **kw) ** 2)
        expected_grad = pc.correlate_vjp(x_host, w_host, None, 2 * expected, **kw)[1]
        grads = [jax.grad(loss)(w, x), jax.jit(jax.grad(loss))(w, x)]
        grad_x = pc.correlate_vjp(x, w, None, 2 * jnp.asarray(expected), **kw)[0]
        results[f"grad_{method}"] = {
            "values": all(close(g, expected_grad) for g in grads),
            "grad_w_devices": [len(g.sharding.device_set) for g in grads],
            "grad_x_layout": layout(grad_x),
        }

    tall = jax.device_put(
        rng.standard_normal((2, 2, 64, 32)).astype(np.float32), NamedSharding(mesh, P(None, None, "d"))
    )
    w5 = jnp.asarray(rng.standard_normal((3, 2, 5, 5)).astype(np.float32))
    w3 = jnp.asarray(rng.standard_normal((3, 2, 3, 3)).astype(np.float32))
    cases = {
        "full_dilated": (w5, dict(padding="full", dilation=2)),  # 64 rows give 72
        "reflect": (w3, dict(padding="same", padding_mode="reflect")),  # a gather
        "indivisible": (w3, dict(padding="full", dilation=2)),  # 64 rows give 68
    }
    for name, (kernel, kw) in cases.items():
        expected = pc.correlate(np.asarray(tall), np.asarray(kernel), **kw)
        for method in ("direct", "fft"):
            y = pc.correlate(tall, kernel, method=method, **kw)
            results[f"height_{name}_{method}"] = {"layout": layout(y), "values": close(y, expected)}

    explicit = jax.make_mesh((8,), ("d",))  # explicit axes: the layout is in the types
    x_explicit = jax.device_put(x_host, NamedSharding(explicit, P("d")))
    w_explicit = jax.device_put(w_host, NamedSharding(explicit, P()))
    y = pc.correlate(x_explicit, w_explicit, padding="same", method="direct")
    results["data_parallel_explicit"] = {
        "values": close(y, pc.correlate(x_host, w_host, padding="same", method="direct")),
        "layout": layout(y),
    }

    for name in ("full_dilated", "reflect"):  # user's jit on an Auto mesh: XLA propagates
        kernel, kw = cases[name]
        for method in ("direct", "fft"):
            y = jax.jit(lambda a, b: pc.correlate(a, b, method=method, **kw))(tall, kernel)
            results[f"user_jit_height_{name}_{method}"] = layout(y)
    batch = jax.jit(lambda a, b: pc.correlate(a, b, padding="full", dilation=2))(x, w)
    results["user_jit_batch_full_dilated"] = layout(batch)

    tall_host = np.asarray(tall)
    tall_explicit = jax.device_put(tall_host, NamedSharding(explicit, P(None, None, "d")))
    for name, (kernel, kw) in cases.items():
        kernel_host = np.asarray(kernel)
        kernel_explicit = jax.device_put(kernel_host, NamedSharding(explicit, P()))
        expected = pc.correlate(tall_host, kernel_host, **kw)
        grads = pc.correlate_vjp(tall_host, kernel_host, None, 2 * expected, **kw)[:2]
        for method in ("direct", "fft"):
            call = lambda a, b: pc.correlate(a, b, method=method, **kw)
            ys = [call(tall_explicit, kernel_explicit)]
            if (name, method) == ("full_dilated", "fft"):  # the FFT's lax.cond, in user's jit
                ys.append(jax.jit(call)(tall_explicit, kernel_explicit))
            outcome = {
                "values": all(close(y, expected) for y in ys),
                "layouts": [layout(y) for y in ys],
            }
            if name == "reflect":  # the gradient of a gather: a scatter
                vjp = pc.correlate_vjp(tall_explicit, kernel_explicit, None, 2 * ys[0], method=method, **kw)
                outcome["vjp_values"] = all(close(g, e) for g, e in zip(vjp[:2], grads))
                outcome["vjp_layouts"] = [layout(g) for g in vjp[:2]]
            if name != "indivisible":  # jax.grad through both methods
                loss = lambda a, b: jnp.sum(call(a, b) ** 2)
                with jax.set_mesh(explicit):
                    by_grad = jax.jit(jax.grad(loss, (0, 1)))(tall_explicit, kernel_explicit)
                outcome["grad_values"] = all(close(g, e) for g, e in zip(by_grad, grads))
                outcome["grad_layouts"] = [layout(g) for g in by_grad]
            results[f"explicit_height_{name}_{method}"] = outcome

    for name, (kernel, kw) in cases.items():  # jax.grad on an Auto mesh, eager and jitted
        kernel_host = np.asarray(kernel)
        expected = pc.correlate(tall_host, kernel_host, **kw)
        grads = pc.correlate_vjp(tall_host, kernel_host, None, 2 * expected, **kw)[:2]
        for method in ("direct", "fft"):
            loss = lambda a, b: jnp.sum(pc.correlate(a, b, method=method, **kw) ** 2)
            by_grad = [jax.grad(loss, (0, 1))(tall, kernel), jax.jit(jax.grad(loss, (0, 1)))(tall, kernel)]
            results[f"grad_height_{name}_{method}"] = all(
                close(g, e) for pair in by_grad for g, e in zip(pair, grads)
            )

    grid = Mesh(np.array(jax.devices()).reshape(4, 2), ("rows", "cols"))
    tiles = jax.device_put(tall_host, NamedSharding(grid, P(None, None, "rows", "cols")))
    kernel, kw = cases["full_dilated"]
    expected = pc.correlate(tall_host, np.asarray(kernel), **kw)
    grads = pc.correlate_vjp(tall_host, np.asarray(kernel), None, 2 * expected, **kw)[:2]
    for method in ("direct", "fft"):
        y = pc.correlate(tiles, kernel, method=method, **kw)
        loss = lambda a, b: jnp.sum(pc.correlate(a, b, method=method, **kw) ** 2)
        by_grad = jax.jit(jax.grad(loss, (0, 1)))(tiles, kernel)
        results[f"tiles_{method}"] = {
            "values": close(y, expected) and all(close(g, e) for g, e in zip(by_grad, grads)),
            "layouts": [layout(y), layout(by_grad[0])],
        }

    y_host = rng.standard_normal((8, 3, 32, 16)).astype(np.float32)
    w_host = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    transposed_cases = {
        "stride": dict(stride=2, padding=1, output_padding=1),
        "reflect": dict(padding="same", padding_mode="reflect"),  # a fold of the padding
    }
    for mesh_name, on in (("auto", mesh), ("explicit", explicit)):
        w_on = jax.device_put(w_host, NamedSharding(on, P()))
        for part, partition in (("height", P(None, None, "d")), ("batch", P("d"))):
            y_on = jax.device_put(y_host, NamedSharding(on, partition))
            for case, kw in transposed_cases.items():
                expected = pc.correlate_transpose(y_host, w_host, **kw)
                grads = pc.correlate_transpose_vjp(y_host, w_host, None, 2 * expected, **kw)[:2]
                for method in ("direct", "fft"):
                    out = pc.correlate_transpose(y_on, w_on, method=method, **kw)
                    vjp = pc.correlate_transpose_vjp(
                        y_on, w_on, None, 2 * jnp.asarray(expected), method=method, **kw
                    )[:2]
                    loss = lambda a, b: jnp.sum(pc.correlate_transpose(a, b, method=method, **kw) ** 2)
                    with jax.set_mesh(on):
                        by_grad = jax.jit(jax.grad(loss, (0, 1)))(y_on, w_on)
                    results[f"transpose_{mesh_name}_{part}_{case}_{method}"] = {
                        "values": close(out, expected)
                        and all(close(g, e) for g, e in zip(vjp, grads))
                        and all(close(g, e) for g, e in zip(by_grad, grads)),
                        "layouts": [layout(a) for a in (out, vjp[0], by_grad[0])],
                    }

    devices = jax.devices()
    try:
        pc.correlate(jax.device_put(x_host, devices[0]), jax.device_put(w_host, devices[1]))
        results["different_devices"] = "accepted"
    except ValueError as error:
        results["different_devices"] = str(error)
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def outcomes() -> dict[str, object]:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env.pop("JAX_ENABLE_X64", None)
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_batch_sharded_x_with_replicated_w_is_accepted_on_every_path(
    outcomes: dict, method: str
) -> None:
    outcome = outcomes[f"data_parallel_{method}"]
    assert outcome["values"]
    # the first eager call, a repeat (the cached route) and jax.jit: laid out over the batch
    assert outcome["layouts"] == [["d", None, None, None]] * 3


def test_data_parallel_layout_on_a_mesh_with_explicit_axes_is_accepted(outcomes: dict) -> None:
    outcome = outcomes["data_parallel_explicit"]
    assert outcome["values"]
    assert outcome["layout"] == ["d", None, None, None]


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_data_parallel_gradients_equal_the_unsharded_ones(outcomes: dict, method: str) -> None:
    outcome = outcomes[f"grad_{method}"]
    assert outcome["values"]
    assert outcome["grad_w_devices"] == [8, 8]  # computed where the data is
    assert outcome["grad_x_layout"] == ["d", None, None, None]


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("case", ["full_dilated", "reflect"])
def test_a_height_sharded_result_keeps_its_layout(outcomes: dict, case: str, method: str) -> None:
    outcome = outcomes[f"height_{case}_{method}"]
    assert outcome["values"]
    assert outcome["layout"] == [None, None, "d", None]


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_an_axis_the_mesh_does_not_divide_comes_back_whole(outcomes: dict, method: str) -> None:
    outcome = outcomes[f"height_indivisible_{method}"]
    assert outcome["values"]
    assert outcome["layout"] == [None, None, None, None]  # a JAX array's shards are equal


def test_arrays_on_different_devices_are_still_refused(outcomes: dict) -> None:
    assert "put all inputs on one device" in outcomes["different_devices"]


@pytest.mark.parametrize("case", ["full_dilated", "reflect"])
def test_inside_the_users_jit_on_an_auto_mesh_a_height_layout_is_kept(
    outcomes: dict, case: str
) -> None:
    # padding="full" with dilation 2 (the case issue 19 measured), and a padding mode's
    # indices taken by slices (a gather lost the layout)
    for method in ("direct", "fft"):
        assert outcomes[f"user_jit_height_{case}_{method}"] == [None, None, "d", None]


def test_inside_the_users_jit_on_an_auto_mesh_a_batch_layout_is_kept(outcomes: dict) -> None:
    assert outcomes["user_jit_batch_full_dilated"] == ["d", None, None, None]


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("case", ["full_dilated", "reflect", "indivisible"])
def test_a_height_sharded_input_on_an_explicit_mesh_is_computed_where_it_lies(
    outcomes: dict, case: str, method: str
) -> None:
    outcome = outcomes[f"explicit_height_{case}_{method}"]
    height = None if case == "indivisible" else "d"  # 68 rows over 8 devices: whole
    assert outcome["values"]
    assert outcome["layouts"] == [[None, None, height, None]] * len(outcome["layouts"])
    if case == "reflect":
        assert outcome["vjp_values"]
        assert outcome["vjp_layouts"] == [[None, None, "d", None], [None, None, None, None]]
    if case != "indivisible":
        assert outcome["grad_values"]
        assert outcome["grad_layouts"] == [[None, None, "d", None], [None, None, None, None]]


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("case", ["full_dilated", "reflect", "indivisible"])
def test_jax_grad_of_a_height_sharded_input_equals_the_unsharded_gradients(
    outcomes: dict, case: str, method: str
) -> None:
    # eager and jitted; through the FFT this failed inside XLA's CPU runtime (RET_CHECK in
    # fft_thunk.cc) before the transforms' axes were gathered apart from them
    assert outcomes[f"grad_height_{case}_{method}"]


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_an_input_tiled_over_a_two_axis_mesh_keeps_its_tiles(outcomes: dict, method: str) -> None:
    outcome = outcomes[f"tiles_{method}"]
    assert outcome["values"]
    assert outcome["layouts"] == [[None, None, "rows", "cols"]] * 2


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("case", ["stride", "reflect"])
@pytest.mark.parametrize("part", ["height", "batch"])
@pytest.mark.parametrize("mesh", ["auto", "explicit"])
def test_a_sharded_transposed_correlation_is_computed_where_it_lies(
    outcomes: dict, mesh: str, part: str, case: str, method: str
) -> None:
    # forward, correlate_transpose_vjp and jax.grad: each laid out like y
    outcome = outcomes[f"transpose_{mesh}_{part}_{case}_{method}"]
    assert outcome["values"]
    expected = [None, None, "d", None] if part == "height" else ["d", None, None, None]
    assert outcome["layouts"] == [expected] * 3
