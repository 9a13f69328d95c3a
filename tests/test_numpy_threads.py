"""The NumPy backend's threads: work is shared by the pool and the calling thread and comes
back in order; OpenBLAS's process-wide thread count is never changed (matrix products go to the
pool only when it is one already), so results do not depend on other threads; pool threads
compute under the caller's errstate, and after shutdown began the calling thread computes
alone; scratch buffers are kept per thread."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator

import numpy as np
import pytest

import polyconv as pc
from polyconv.backends._numpy import parallel as _numpy_parallel
from polyconv.backends._numpy.parallel import (
    SCRATCH_MAX_BYTES,
    ordered_map,
    release_scratch,
    scratch,
    thread_count,
)

needs_two_threads = pytest.mark.skipif(thread_count() < 2, reason="the pool has one thread")

OPENBLAS = _numpy_parallel._openblas()


def openblas_threads() -> int:
    """OpenBLAS's thread count, as threadpoolctl reads it (or the backend's own getter)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        if OPENBLAS is None:
            pytest.skip("NumPy does not use OpenBLAS here")
        return OPENBLAS[0]()
    counts = [i["num_threads"] for i in threadpool_info() if i["internal_api"] == "openblas"]
    if not counts:
        pytest.skip("NumPy does not use OpenBLAS here")
    return counts[0]


def pooled_calls() -> None:
    """Calls large enough for the pool on every path: im2col, tiles, taps, FFT, VJP."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 8, 40, 40)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    pc.correlate(x, w, padding=1, method="direct")
    pc.correlate_vjp(x, w, None, np.ones((4, 16, 40, 40), np.float32), padding=1, stride=1)
    image = rng.standard_normal((1, 2, 400, 401))
    pc.correlate(image, rng.standard_normal((2, 1, 5, 5)), groups=2, method="direct")
    pc.correlate(image[:, :1], rng.standard_normal((1, 1, 3, 3)), method="direct")
    pc.correlate(image, rng.standard_normal((2, 1, 31, 31)), groups=2, method="fft")


def test_openblas_thread_count_is_never_changed_by_a_call() -> None:
    before = openblas_threads()
    seen: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.add(openblas_threads())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(3):
            pooled_calls()
    finally:
        done.set()
        watcher.join()
    assert seen == {before} and openblas_threads() == before


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((3, 70, 300), (300, 50)), ((2, 1, 9, 40), (4, 40, 9000)), ((5, 6), (6, 7))],
)
def test_single_thread_matmul_equals_matmul_in_products_of_one_thread(a_shape, b_shape) -> None:
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    calls: list[int] = []
    real_matmul = np.matmul

    def counting(x, y, out=None):  # type: ignore[no-untyped-def]
        calls.append(x.shape[-2] * x.shape[-1] * y.shape[-1])
        return real_matmul(x, y, out=out)

    threadpoolctl = pytest.importorskip("threadpoolctl")
    _numpy_parallel.np.matmul = counting  # type: ignore[attr-defined]
    try:  # OpenBLAS on two threads, as a user may have it (on one, no cut is needed)
        with threadpoolctl.threadpool_limits(2, user_api="blas"):
            got = _numpy_parallel.single_thread_matmul(a, b)
    finally:
        _numpy_parallel.np.matmul = real_matmul  # type: ignore[attr-defined]
    np.testing.assert_allclose(got, a @ b, rtol=1e-12, atol=1e-12)
    assert max(calls) <= _numpy_parallel.SINGLE_THREAD_PRODUCT


def test_gradients_are_bitwise_reproducible_while_another_thread_runs_polyconv() -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    grad_y = rng.standard_normal((8, 32, 16, 16)).astype(np.float32)
    options = {"padding": 1, "stride": 2, "method": "direct"}
    first = pc.correlate_vjp(x, w, None, grad_y, **options)
    done = threading.Event()

    def other_user() -> None:
        while not done.is_set():
            pooled_calls()

    other = threading.Thread(target=other_user)
    other.start()
    try:
        for _ in range(4):
            again = pc.correlate_vjp(x, w, None, grad_y, **options)
            for a, b in zip(first[:2], again[:2], strict=True):
                np.testing.assert_array_equal(a, b)
    finally:
        done.set()
        other.join()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_input_warns_on_no_thread_under_warnings_as_errors(value) -> None:
    rng = np.random.default_rng(11)
    cases = [  # (x, w, groups): im2col, tiles, taps; each direct and by FFT
        (rng.standard_normal((4, 8, 40, 40)), rng.standard_normal((16, 8, 3, 3)), 1),
        (rng.standard_normal((1, 2, 400, 401)), rng.standard_normal((2, 1, 11, 11)), 2),
        (rng.standard_normal((1, 1, 600, 601)), rng.standard_normal((1, 1, 3, 3)), 1),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # process-wide: the pool threads' warnings too
        for x, w, groups in cases:
            x[0, 0, 7, 9], w[0, 0, 0, 0] = value, -value
            for method in ("direct", "fft"):
                y = pc.correlate(x, w, groups=groups, method=method)
                assert not np.isfinite(y).all()
                grad_y = np.ones_like(y)
                pc.correlate_vjp(x, w, None, grad_y, groups=groups, method=method)


def test_calls_after_shutdown_began_compute_on_the_calling_thread() -> None:
    """From an atexit handler (a first call there) and from a thread still running after the
    main thread returned, under warnings as errors."""
    script = textwrap.dedent(
        """
        import atexit, threading, time
        import numpy as np
        import polyconv as pc

        def call(where):
            x = np.ones((4, 8, 40, 40)); w = np.ones((16, 8, 3, 3))
            y = pc.correlate(x, w, padding=1, method="direct")
            print(where, float(y[0, 0, 1, 1]), flush=True)

        atexit.register(call, "atexit")
        threading.Thread(target=lambda: (time.sleep(0.5), call("thread"))).start()
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["72.0", "72.0", "atexit", "thread"], result.stdout


@pytest.fixture(params=["blas threaded", "blas on one thread"])
def blas(request: pytest.FixtureRequest) -> Iterator[None]:
    """OpenBLAS at its own thread count (a layer's blocks on the calling thread, each product
    threaded by OpenBLAS), or limited to one thread (the blocks on the pool)."""
    if request.param == "blas threaded":
        yield
        return
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        yield


@pytest.mark.usefixtures("blas")
def test_a_layer_split_over_the_pool_equals_the_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 40, 40))
    w = rng.standard_normal((16, 8, 3, 3))
    np.testing.assert_allclose(
        pc.correlate(x, w, padding=1, method="direct"),
        pc.reference.correlate(x, w, padding=1),
        rtol=1e-10,
        atol=1e-10,
    )


def assert_direct_vjp_equals_the_reference(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], options: dict, seed: int
) -> None:
    """grad_x and grad_w of the direct method on random float64 arrays, against the reference."""
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    grad_y = rng.standard_normal(pc.output_shape(x.shape, w.shape, **options))
    got = pc.correlate_vjp(x, w, None, grad_y, method="direct", **options)
    want = pc.reference.correlate_vjp(x, w, None, grad_y, **options)
    for actual, expected in zip(got[:2], want[:2], strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "options",
    [
        {"padding": 1},
        {"padding": 2, "dilation": 2},
        {"padding": (1, 2), "padding_mode": "reflect", "groups": 2},
        {"padding": 1, "stride": 2},
    ],
)
@pytest.mark.usefixtures("blas")
def test_a_layer_vjp_split_over_the_pool_equals_the_reference(options) -> None:
    # One image per piece of work: grad_w summed over them, grad_x a correlation of grad_y
    # with the flipped kernel (stride 1) or added back into each image's stride phases.
    w_shape = (16, 8 // options.get("groups", 1), 3, 3)
    assert_direct_vjp_equals_the_reference((4, 8, 40, 40), w_shape, options, seed=6)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "options"),
    [
        ((3, 4, 29), (6, 4, 5), {"stride": 3, "dilation": 2}),
        (
            (2, 4, 9, 11),
            (6, 2, 3, 2),
            {"stride": (3, 2), "padding": (2, 1), "dilation": (2, 3), "groups": 2},
        ),
        ((2, 4, 17, 16), (5, 4, 3, 3), {"stride": 2, "padding": 1, "padding_mode": "reflect"}),
        ((2, 3, 15, 15), (4, 3, 1, 1), {"stride": 2}),  # half the input read by no output
        ((1, 8, 300, 300), (6, 8, 3, 3), {"stride": 2, "padding": 1}),  # several blocks of rows
        ((2, 2, 7, 8, 9), (3, 2, 2, 3, 2), {"stride": (2, 1, 3), "padding": 1}),
    ],
)
@pytest.mark.usefixtures("blas")
def test_a_strided_vjp_by_stride_phases_equals_the_reference(x_shape, w_shape, options) -> None:
    assert_direct_vjp_equals_the_reference(x_shape, w_shape, options, seed=8)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("stride", [1, 2])
def test_a_layer_vjp_with_an_infinite_weight_reaches_exactly_the_gradients_that_read_it(
    stride,
) -> None:
    # The correlation of the zero-padded grad_y (stride 1), like the stride phases' unused
    # columns (stride 2), would also multiply the weight by zeros (NaN where no output reads
    # it); the exact scatter keeps only the defining sum's terms.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 8, 40, 40))
    w = rng.standard_normal((16, 8, 3, 3))
    grad_y = rng.standard_normal(pc.output_shape(x.shape, w.shape, padding=1, stride=stride))
    infinite = np.zeros_like(w)
    infinite[3, 2, 1, 0] = 1.0
    options = {"padding": 1, "stride": stride}
    ones = np.ones_like(grad_y)
    reads, _, _ = pc.reference.correlate_vjp(x, infinite, None, ones, **options)
    expected, _, _ = pc.reference.correlate_vjp(x, w * (1 - infinite), None, grad_y, **options)
    grad_x, _, _ = pc.correlate_vjp(
        x, np.where(infinite > 0, np.inf, w), None, grad_y, method="direct", **options
    )
    np.testing.assert_array_equal(~np.isfinite(grad_x), reads > 0)
    kept = reads == 0
    np.testing.assert_allclose(grad_x[kept], expected[kept], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("padding", [((1, 60), (1, 1)), ((60, 1), (2, 0)), ((3, 3), (30, 30))])
def test_a_layer_whose_blocks_read_only_padding_equals_the_reference(padding) -> None:
    # Large enough to be split into blocks of rows, each padding its own rows.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 16, 8, 64))
    w = rng.standard_normal((32, 16, 3, 3))
    np.testing.assert_allclose(
        pc.correlate(x, w, padding=padding, method="direct"),
        pc.reference.correlate(x, w, padding=padding),
        rtol=1e-10,
        atol=1e-10,
    )


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize(
    ("size", "k"),
    [
        ((1, 2, 600, 601), 3),
        ((1, 2, 300, 301), 11),
        ((2, 1, 40, 41, 42), 5),
        ((1, 1, 400, 401), 31),
        ((2, 1, 200, 2000), 15),
    ],
)
def test_an_image_split_over_the_pool_equals_the_reference(method, size, k) -> None:
    # Large enough for blocks of rows on every thread (tiles with a remainder tile; FFT pieces,
    # a single image's FFT cut into row tiles, one per thread, and pieces of one tile row each,
    # whose last tile row reads past the input's end while the other axis is extended).
    rng = np.random.default_rng(2)
    x = rng.standard_normal(size)
    w = rng.standard_normal((size[1], 1, *[k] * (len(size) - 2)))
    np.testing.assert_allclose(
        pc.correlate(x, w, groups=size[1], method=method),
        pc.reference.correlate(x, w, groups=size[1]),
        rtol=1e-9,
        atol=1e-9,
    )


@pytest.mark.parametrize(
    "options", [{"stride": (2, 1)}, {"dilation": (3, 2)}, {"stride": (3, 2), "padding": 4}]
)
def test_tiles_split_over_the_pool_with_stride_and_dilation_equal_the_reference(options) -> None:
    # Two outputs per group (two Toeplitz column groups per tile); the kernel rows' input rows
    # are strided or spread within each block's copy.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 700, 301))
    w = rng.standard_normal((4, 1, 5, 5))
    np.testing.assert_allclose(
        pc.correlate(x, w, groups=2, method="direct", **options),
        pc.reference.correlate(x, w, groups=2, **options),
        rtol=1e-9,
        atol=1e-9,
    )


@pytest.mark.parametrize(
    ("x_shape", "kernel", "options"),
    [
        ((2, 1, 1100, 1001), (3, 3), {"stride": (2, 3), "padding": (1, 4)}),
        ((1, 1, 900, 1201), (2, 4), {"dilation": (3, 2), "padding_mode": "reflect", "padding": 2}),
        ((1, 1, 130, 129, 128), (2, 2, 2), {"dilation": (1, 2, 3)}),
    ],
)
def test_taps_split_over_the_pool_equal_the_reference(x_shape, kernel, options) -> None:
    # One input and one output channel and at most 9 taps: the tap-by-tap scheme, blocks of
    # rows (of the only axis, in 1-D) on every thread, windows strided and dilated.
    rng = np.random.default_rng(4)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((1, 1, *kernel))
    np.testing.assert_allclose(
        pc.correlate(x, w, method="direct", **options),
        pc.reference.correlate(x, w, **options),
        rtol=1e-9,
        atol=1e-9,
    )


def test_a_long_signal_split_over_the_pool_equals_numpy_correlate() -> None:
    # The tap-by-tap scheme in 1-D: blocks of the only axis on every thread (the reference
    # would build a matrix of the signal's length squared).
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(600_001), rng.standard_normal(9)
    np.testing.assert_allclose(
        pc.correlate(x[None, None], w[None, None], stride=2, method="direct")[0, 0],
        np.correlate(x, w, mode="valid")[::2],
        rtol=1e-9,
        atol=1e-9,
    )


def test_ordered_map_returns_results_in_item_order() -> None:
    assert ordered_map(lambda i: i * i, range(50)) == [i * i for i in range(50)]


@needs_two_threads
def test_ordered_map_runs_items_on_the_calling_thread_and_the_pool() -> None:
    both_running = threading.Barrier(2, timeout=10)

    def item(i: int) -> str:
        if i < 2:  # the first two items can only finish if two threads run them at once
            both_running.wait()
        return threading.current_thread().name

    names = set(ordered_map(item, range(8)))
    assert threading.current_thread().name in names and len(names) == 2


def test_ordered_map_raises_an_items_error_once_no_item_is_running() -> None:
    running = 0
    lock = threading.Lock()

    def item(i: int) -> int:
        nonlocal running
        with lock:
            running += 1
        try:
            time.sleep(0.005)
            if i == 1:
                raise KeyError(i)
            return i
        finally:
            with lock:
                running -= 1

    with pytest.raises(KeyError):
        ordered_map(item, range(6))
    assert running == 0


@needs_two_threads
def test_nested_ordered_map_on_every_pool_thread_completes() -> None:
    # Every pool thread runs an item that maps again: helpers queued behind busy threads must
    # be cancelled, not awaited, or this deadlocks.
    def outer(i: int) -> list[int]:
        return ordered_map(lambda j: i * 10 + j, range(4))

    assert ordered_map(outer, range(2 * thread_count())) == [
        [i * 10 + j for j in range(4)] for i in range(2 * thread_count())
    ]


def test_scratch_reuses_one_buffer_per_name_and_thread() -> None:
    first = scratch("test.a", (4, 8), np.float32)
    again = scratch("test.a", (2, 3), np.float64)  # smaller: the same memory
    other = scratch("test.b", (4, 8), np.float32)
    assert np.shares_memory(first, again) and not np.shares_memory(first, other)
    assert again.shape == (2, 3) and again.dtype == np.float64


def test_scratch_grows_for_a_larger_request() -> None:
    small = scratch("test.grow", (4,), np.float32)
    large = scratch("test.grow", (1 << 16,), np.float32)
    assert large.shape == (1 << 16,) and not np.shares_memory(small, large)
    assert np.shares_memory(large, scratch("test.grow", (1 << 16,), np.float32))


def test_scratch_keeps_no_buffer_above_its_limit() -> None:
    size = SCRATCH_MAX_BYTES // 8 + 1
    assert not np.shares_memory(
        scratch("test.huge", (size,), np.float64), scratch("test.huge", (size,), np.float64)
    )


def test_scratch_buffers_of_different_threads_are_distinct() -> None:
    here = scratch("test.thread", (16,), np.float32)
    there: list[np.ndarray] = []
    worker = threading.Thread(
        target=lambda: there.append(scratch("test.thread", (16,), np.float32))
    )
    worker.start()
    worker.join()
    assert not np.shares_memory(here, there[0])


def test_a_finished_threads_scratch_buffers_are_freed() -> None:
    worker = threading.Thread(target=lambda: scratch("test.gone", (1024,), np.float32))
    worker.start()
    worker.join()
    gc.collect()
    assert not any("test.gone" in kept.by_name for kept in _numpy_parallel._every_thread_buffers)


def test_release_scratch_drops_the_kept_buffers() -> None:
    kept = scratch("test.release", (64,), np.float32)
    release_scratch()
    assert not np.shares_memory(kept, scratch("test.release", (64,), np.float32))


def test_limited_threads_holds_the_calling_thread_alone_and_restores_it() -> None:
    configured = thread_count()
    seen: list[int] = []
    with _numpy_parallel.limited_threads(1):
        assert thread_count() == 1
        other = threading.Thread(target=lambda: seen.append(thread_count()))
        other.start()
        other.join()
        assert ordered_map(lambda i: threading.get_ident(), range(8)) == [threading.get_ident()] * 8
    assert seen == [configured]  # another thread keeps the configured count
    assert thread_count() == configured
