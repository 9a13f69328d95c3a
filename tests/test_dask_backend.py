"""The Dask backend: lazy, chunked results equal to the NumPy backend's, on any scheduler.

The spec's arithmetic on Dask arrays is also checked by every backend-parametrised test (the
``backend`` fixture includes ``dask``); this module checks what is Dask's own: laziness, chunks,
halos across chunk boundaries and the global boundary of the padding modes, gradients as
reductions, layers and ``fit``, and worker processes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import polyconv as pc

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")


@st.composite
def chunked_problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, tuple, dict]:
    """A small problem of rank 1 to 3 with irregular chunks, and its keyword arguments."""
    rank = draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(4, 9 if rank < 3 else 6)) for _ in range(rank))
    groups = draw(st.sampled_from((1, 2)))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((2, 2, *spatial))
    w = rng.standard_normal((2, 2 // groups, *kernel))
    # chunks along the batch and spatial axes, irregular, and the channels split too
    chunks = (1, 1, *(draw(st.integers(1, n)) for n in spatial))
    kwargs = {
        "stride": draw(st.integers(1, 3)),
        "dilation": draw(st.integers(1, 2)),
        "groups": groups,
        "padding": draw(st.sampled_from(("valid", "same", "full", 2))),
        "padding_mode": draw(st.sampled_from(MODES)),
        "method": draw(st.sampled_from(("direct", "fft"))),
    }
    try:
        pc.output_shape(x.shape, w.shape, **{k: v for k, v in kwargs.items() if k != "method"})
    except ValueError:  # a kernel wider than the (padded) input: drawn again
        from hypothesis import reject

        reject()
    return x, w, chunks, kwargs


@given(chunked_problems())
def test_correlate_on_dask_equals_numpy_and_is_lazy(problem: tuple) -> None:
    x, w, chunks, kwargs = problem
    bias = np.arange(w.shape[0], dtype=x.dtype)
    y = pc.correlate(da.from_array(x, chunks=chunks), w, bias, **kwargs)
    assert isinstance(y, da.Array)
    expected = pc.correlate(x, w, bias, **kwargs)
    np.testing.assert_allclose(y.compute(scheduler="sync"), expected, rtol=1e-9, atol=1e-9)


@given(chunked_problems())
def test_vjp_on_dask_equals_numpy_with_grad_x_chunked_like_x(problem: tuple) -> None:
    x, w, chunks, kwargs = problem
    bias = np.zeros(w.shape[0])
    grad_y = np.random.default_rng(1).standard_normal(pc.correlate(x, w, **kwargs).shape)
    x_dask = da.from_array(x, chunks=chunks)
    grads = pc.correlate_vjp(x_dask, w, bias, da.from_array(grad_y, chunks=2), **kwargs)
    assert all(isinstance(g, da.Array) for g in grads[:2])
    assert grads[0].chunks[0] == x_dask.chunks[0] and grads[0].chunks[2:] == x_dask.chunks[2:]
    computed = dask.compute(*grads)  # one graph gives all three
    expected = pc.correlate_vjp(x, w, bias, grad_y, **kwargs)
    for got, want in zip(computed, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_output_chunks_follow_the_input_scaled_by_the_stride() -> None:
    x = da.zeros((4, 3, 100, 60), chunks=(2, 1, 25, 30), dtype=np.float32)
    y = pc.correlate(x, np.ones((5, 3, 3, 3), np.float32), stride=2, padding="same")
    assert y.chunks == ((2, 2), (5,), (13, 12, 13, 12), (15, 15))


def test_output_chunks_need_not_be_stride_multiples() -> None:
    x = da.zeros((1, 1, 10), chunks=(1, 1, 3))
    y = pc.correlate(x, np.ones((1, 1, 1)), stride=2)
    assert y.chunks[2] == (2, 1, 2)  # boundaries 3, 6, 9 become ceil(b / 2): 2, 3, 5


def test_circular_padding_reads_the_far_edge_of_the_image_not_of_the_chunk() -> None:
    x = np.arange(12.0)[None, None]
    w = np.array([[[1.0, 0.0, 0.0]]])  # each output reads its left neighbour
    y = pc.correlate(da.from_array(x, chunks=(1, 1, 4)), w, padding="same", padding_mode="circular")
    np.testing.assert_array_equal(y.compute()[0, 0], np.roll(np.arange(12.0), 1))


def test_an_output_chunk_that_reads_only_zero_padding() -> None:
    x, w = np.arange(1.0, 5.0).reshape(1, 1, 4), np.ones((1, 1, 1))
    kwargs = {"padding": 3, "stride": 3}  # outputs 0 and 3 read padding alone
    y = pc.correlate(da.from_array(x, chunks=(1, 1, 1)), w, **kwargs)
    np.testing.assert_array_equal(y.compute(), pc.correlate(x, w, **kwargs))
    grads = dask.compute(*pc.correlate_vjp(da.from_array(x, chunks=1), w, None, y, **kwargs)[:2])
    for got, want in zip(grads, pc.correlate_vjp(x, w, None, y.compute(), **kwargs), strict=False):
        np.testing.assert_array_equal(got, want)


def test_unbatched_input_and_dask_kernel_and_bias() -> None:
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((3, 9, 8)), rng.standard_normal((2, 3, 3, 3)), np.ones(2)
    y = pc.correlate(
        da.from_array(x, chunks=(1, 4, 4)), da.from_array(w, chunks=1), da.from_array(b, chunks=1)
    )
    np.testing.assert_allclose(y.compute(), pc.correlate(x, w, b), rtol=1e-12)


def test_convolve_on_dask_equals_numpy() -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 11, 7)), rng.standard_normal((3, 2, 3, 2))
    y = pc.convolve(da.from_array(x, chunks=(1, 2, 4, 3)), w, padding="same")
    np.testing.assert_allclose(y.compute(), pc.convolve(x, w, padding="same"), rtol=1e-12)


def test_float16_keeps_its_dtype_and_gradients_accumulate_in_float32() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 16, 16)).astype(np.float16)
    w = rng.standard_normal((1, 1, 3, 3)).astype(np.float16)
    x_dask = da.from_array(x, chunks=(1, 1, 5, 5))
    assert pc.correlate(x_dask, w).dtype == np.float16
    grad_y = np.ones((2, 1, 14, 14), np.float16)
    grads = dask.compute(*pc.correlate_vjp(x_dask, w, None, grad_y)[:2])
    exact = pc.correlate_vjp(x.astype(np.float64), w.astype(np.float64), None, grad_y.astype(float))
    for got, want in zip(grads, exact[:2], strict=True):
        assert got.dtype == np.float16
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-2)


def test_a_torch_array_beside_a_dask_array_is_a_type_error() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="more than one framework"):
        pc.correlate(da.ones((1, 1, 5, 5)), torch.ones(1, 1, 3, 3))


def test_fit_on_dask_follows_the_numpy_trajectory_with_numpy_parameters() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 1, 12, 12)).astype(np.float32)
    y = pc.correlate(x, rng.standard_normal((1, 1, 3, 3)).astype(np.float32), padding="same")
    on_numpy = pc.Conv2D(3, padding="same", seed=0)
    on_dask = pc.Conv2D(3, padding="same", seed=0, backend="dask")
    kwargs = {"lr": 1e-3, "steps": 6, "momentum": 0.9, "batch_size": 4}
    expected = pc.fit(on_numpy, x, y, **kwargs)
    history = pc.fit(
        on_dask, da.from_array(x, chunks=(2, 1, 5, 7)), da.from_array(y, chunks=3), **kwargs
    )
    assert isinstance(on_dask.weight, np.ndarray) and isinstance(on_dask.bias, np.ndarray)
    np.testing.assert_allclose(history, expected, rtol=1e-5)
    np.testing.assert_allclose(on_dask.weight, on_numpy.weight, rtol=1e-5, atol=1e-6)


def test_a_layer_on_dask_gives_a_lazy_result() -> None:
    layer = pc.Conv2D(3, out_channels=2, padding="same", backend="dask")
    assert isinstance(layer(da.ones((1, 1, 8, 8), chunks=4)), da.Array)


@st.composite
def chunked_transposes(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, tuple, dict]:
    """A small transposed problem of rank 1 to 3 with ``y`` in irregular chunks."""
    rank = draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, 7 if rank < 3 else 4)) for _ in range(rank))
    groups = draw(st.sampled_from((1, 2)))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    y = rng.standard_normal((2, 2, *spatial))
    w = rng.standard_normal((2, 4 // groups, *kernel))
    chunks = (1, 1, *(draw(st.integers(1, n)) for n in spatial))
    stride, dilation = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    kwargs = {
        "stride": stride,
        "dilation": dilation,
        "groups": groups,
        "padding": draw(st.sampled_from(("valid", "same", "full", 1))),
        "output_padding": draw(st.integers(0, max(stride, dilation) - 1)),
        "padding_mode": draw(st.sampled_from(MODES)),
        "method": draw(st.sampled_from(("direct", "fft"))),
    }
    try:
        pc.correlate_transpose(y, w, **kwargs)
    except ValueError:  # output_padding or padding the spec refuses here: drawn again
        from hypothesis import reject

        reject()
    return y, w, chunks, kwargs


@given(chunked_transposes())
def test_transpose_on_dask_equals_numpy_chunked_like_y_scaled_by_the_stride(problem: tuple) -> None:
    y, w, chunks, kwargs = problem
    bias = np.arange(4.0)
    y_dask = da.from_array(y, chunks=chunks)
    out = pc.correlate_transpose(y_dask, w, bias, **kwargs)
    assert isinstance(out, da.Array)
    assert out.chunks[0] == y_dask.chunks[0] and out.chunks[1] == (4,)
    axes = zip(out.shape[2:], y_dask.chunks[2:], out.chunks[2:], strict=True)
    for size, y_chunks, out_chunks in axes:
        scaled = [b * kwargs["stride"] for b in np.cumsum(y_chunks)[:-1].tolist()]
        assert np.cumsum(out_chunks)[:-1].tolist() == [b for b in scaled if b < size]
    expected = pc.correlate_transpose(y, w, bias, **kwargs)
    np.testing.assert_allclose(out.compute(scheduler="sync"), expected, rtol=1e-9, atol=1e-9)


@given(chunked_transposes())
def test_transpose_vjp_on_dask_equals_numpy_with_grad_y_chunked_like_y(problem: tuple) -> None:
    y, w, chunks, kwargs = problem
    bias = np.zeros(4)
    grad_out = np.random.default_rng(1).standard_normal(
        pc.correlate_transpose(y, w, **kwargs).shape
    )
    y_dask = da.from_array(y, chunks=chunks)
    grads = pc.correlate_transpose_vjp(y_dask, w, bias, da.from_array(grad_out, chunks=2), **kwargs)
    assert all(isinstance(g, da.Array) for g in grads[:2])
    assert grads[0].chunks[0] == y_dask.chunks[0] and grads[0].chunks[2:] == y_dask.chunks[2:]
    computed = dask.compute(*grads)
    expected = pc.correlate_transpose_vjp(y, w, bias, grad_out, **kwargs)
    for got, want in zip(computed, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_transpose_chunks_are_the_chunks_of_y_times_the_stride() -> None:
    y = da.zeros((2, 4, 9, 9), chunks=(1, 4, 5, 5))
    out = pc.correlate_transpose(y, np.ones((4, 3, 3, 3)), stride=2, output_padding=1)
    assert out.chunks == ((1, 1), (3,), (10, 10), (10, 10))


def test_transpose_is_lazy_until_computed() -> None:
    calls = []

    def counted(block: np.ndarray) -> np.ndarray:
        calls.append(block.shape)
        return block

    y = da.ones((1, 2, 12, 12), chunks=(1, 2, 5, 5)).map_blocks(counted, meta=np.empty((0,) * 4))
    w = np.ones((2, 1, 3, 3))
    out = pc.convolve_transpose(y, w, np.zeros(1), stride=2, padding="same")
    grads = pc.correlate_transpose_vjp(y, w, None, da.ones_like(out), stride=2, padding="same")
    assert (
        calls == []
        and isinstance(out, da.Array)
        and all(isinstance(g, da.Array) for g in grads[:2])
    )
    out.compute(scheduler="sync")
    assert calls


def test_convolve_transpose_on_dask_equals_numpy() -> None:
    rng = np.random.default_rng(0)
    y, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((3, 2, 3, 2))
    kwargs = {"stride": (2, 3), "padding": "same", "output_padding": 1}
    out = pc.convolve_transpose(da.from_array(y, chunks=(1, 2, 3, 4)), w, **kwargs)
    np.testing.assert_allclose(out.compute(), pc.convolve_transpose(y, w, **kwargs), rtol=1e-12)


def test_transpose_output_chunk_reads_only_the_y_chunks_near_it() -> None:
    y = da.ones((1, 1, 40), chunks=(1, 1, 4))
    out = pc.correlate_transpose(y, np.ones((1, 1, 3)), stride=2)
    graph = dict(out.__dask_graph__())
    y_keys = {key for key in graph if isinstance(key, tuple) and key[0] == y.name}
    middle = out.__dask_keys__()[0][0][4]
    reached, frontier = set(), [middle]
    while frontier:
        key = frontier.pop()
        for dep in _dependencies(graph, key):
            if dep not in reached:
                reached.add(dep)
                frontier.append(dep)
    # output samples [32, 40) read y[i] for 2 i <= j < 2 i + 3: y[15:20], in chunks 3 and 4
    assert reached & y_keys == {(y.name, 0, 0, 3), (y.name, 0, 0, 4)}


def _dependencies(graph: dict, key: object) -> set:
    from dask.core import get_dependencies

    return set(get_dependencies(graph, key))


def test_conv_transpose_layer_learns_with_fit_on_dask() -> None:
    rng = np.random.default_rng(0)
    y = rng.standard_normal((6, 2, 5, 5)).astype(np.float32)
    target_layer = pc.ConvTranspose2D(3, in_channels=2, stride=2, seed=1)
    target = target_layer(y)
    on_numpy = pc.ConvTranspose2D(3, in_channels=2, stride=2, seed=0)
    on_dask = pc.ConvTranspose2D(3, in_channels=2, stride=2, seed=0, backend="dask")
    kwargs = {"lr": 1e-3, "steps": 6, "momentum": 0.9, "batch_size": 4}
    expected = pc.fit(on_numpy, y, target, **kwargs)
    history = pc.fit(
        on_dask, da.from_array(y, chunks=(2, 2, 3, 2)), da.from_array(target, chunks=4), **kwargs
    )
    assert history[-1] < history[0]
    np.testing.assert_allclose(history, expected, rtol=1e-5)
    np.testing.assert_allclose(on_dask.weight, on_numpy.weight, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def cluster_client() -> object:
    """Two worker processes: everything sent to them must pickle."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_forward_and_gradients_run_on_worker_processes(cluster_client: object) -> None:
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 2, 20, 20)), rng.standard_normal((4, 1, 3, 3))
    kwargs = {"stride": 2, "padding": "same", "groups": 2, "padding_mode": "reflect"}
    x_dask = da.from_array(x, chunks=(1, 2, 7, 7))
    y = pc.correlate(x_dask, w, **kwargs)
    grad_y = np.ones(y.shape)
    computed = cluster_client.compute([y, *pc.correlate_vjp(x_dask, w, None, grad_y, **kwargs)[:2]])
    y_value, grad_x, grad_w = cluster_client.gather(computed)
    np.testing.assert_allclose(y_value, pc.correlate(x, w, **kwargs), rtol=1e-12)
    expected = pc.correlate_vjp(x, w, None, grad_y, **kwargs)
    np.testing.assert_allclose(grad_x, expected[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad_w, expected[1], rtol=1e-12)


def test_transpose_and_its_gradients_run_on_worker_processes(cluster_client: object) -> None:
    rng = np.random.default_rng(0)
    y, w = rng.standard_normal((2, 4, 9, 9)), rng.standard_normal((4, 1, 3, 3))
    kwargs = {"stride": 2, "padding": 1, "groups": 2, "padding_mode": "circular"}
    y_dask = da.from_array(y, chunks=(1, 4, 5, 4))
    out = pc.correlate_transpose(y_dask, w, **kwargs)
    grad_out = np.ones(out.shape)
    vjp = pc.correlate_transpose_vjp(y_dask, w, None, grad_out, **kwargs)[:2]
    got = cluster_client.gather(cluster_client.compute([out, *vjp]))
    expected = [
        pc.correlate_transpose(y, w, **kwargs),
        *pc.correlate_transpose_vjp(y, w, None, grad_out, **kwargs)[:2],
    ]
    for value, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-12)


def test_unbatched_float16_transpose_keeps_its_dtype() -> None:
    rng = np.random.default_rng(0)
    y = rng.standard_normal((2, 7, 6)).astype(np.float16)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float16)
    out = pc.correlate_transpose(da.from_array(y, chunks=(2, 3, 4)), w, stride=2)
    assert out.dtype == np.float16 and out.chunks == ((3,), (6, 6, 3), (8, 5))
    exact = pc.correlate_transpose(y.astype(float), w.astype(float), stride=2)
    np.testing.assert_allclose(out.compute(), exact, rtol=2e-3, atol=2e-2)
