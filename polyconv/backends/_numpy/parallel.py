"""Running independent pieces of NumPy work on every core, with memory kept between calls.

NumPy releases the GIL inside its matrix products, copies, ufuncs and FFTs, so Python threads
that each run a block of rows use all cores. Work is only split when it is large enough to pay
for the hand-off (tens of microseconds).

Matrix products split this way must not also split themselves: OpenBLAS threads each product
over the cores, and two pool threads' products then run four threads on two cores (and on a
busy machine its threads wait for each other at every call). OpenBLAS's thread count is
process-wide, so polyconv never changes it (another thread's products, the user's own included,
would change speed and rounding meanwhile). Work made of small products (the tiles' Toeplitz
products, the FFT's kernel spectrum) goes to the pool with each product cut, where needed, into
pieces that OpenBLAS runs on one thread whatever its count (:func:`single_thread_matmul`); work
made of large ones (im2col, the stride phases) goes to the pool only where OpenBLAS runs on one
thread anyway (:func:`blas_runs_one_thread`), and otherwise runs on the calling thread with
OpenBLAS threading each product whole: cut into such pieces, a layer's forward and VJP took
1.9 to 4.6x as long (docs/benchmarks.md, "Design measurements", blas-pieces).

Pool threads run under the caller's ``np.errstate`` (NumPy keeps it per thread; the warning
filters are process-wide already), so a NaN or inf warns or raises on no thread where it
would not on the caller's. A call made after interpreter shutdown has begun (from an
``atexit`` handler, or a thread still running after the main thread returned), when the pool
takes no new work, computes on the calling thread.

Fresh memory costs its page faults on every call (docs/benchmarks.md, "Design measurements",
page-faults), so the
blocks of work take their temporaries from :func:`scratch`, buffers each thread keeps.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

T = TypeVar("T")
R = TypeVar("R")

ENV_VAR = "POLYCONV_NUM_THREADS"
# Multiply-adds below which a problem runs on the calling thread (docs/benchmarks.md, "Design
# measurements", parallel-min-work).
PARALLEL_MIN_WORK = 1 << 21


_limit = threading.local()


def thread_count() -> int:
    """Threads the NumPy backend uses on the calling thread: the limit of an enclosing
    :func:`limited_threads`, else ``$POLYCONV_NUM_THREADS``, else the usable cores."""
    limit: int | None = getattr(_limit, "count", None)
    return _configured_thread_count() if limit is None else limit


@contextlib.contextmanager
def limited_threads(count: int) -> Iterator[None]:
    """The NumPy backend's calls made on this thread inside the block use at most ``count``
    threads of its pool: for callers that already run many calls at once, such as a Dask task
    among others on the scheduler's threads. (OpenBLAS's own thread count is process-wide and
    left alone, see the module's docstring.)"""
    saved = getattr(_limit, "count", None)
    _limit.count = max(1, min(count, _configured_thread_count()))
    try:
        yield
    finally:
        _limit.count = saved


@functools.cache
def _configured_thread_count() -> int:
    configured = os.environ.get(ENV_VAR)
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            raise ValueError(f"{ENV_VAR} must be a positive int, got {configured!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    # Imported here: importing concurrent.futures.thread registers an exit hook, which raises
    # once shutdown has begun (a first call from an atexit handler must still compute).
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=_configured_thread_count(), thread_name_prefix="polyconv")


def _submit(fn: Callable[[], None]) -> Future[None] | None:
    """``fn`` queued on the pool, or None once interpreter shutdown has begun (the pool, or
    creating or importing one, is refused then)."""
    try:
        return _pool().submit(fn)
    except RuntimeError:
        return None


def ordered_map(fn: Callable[[T], R], items: Iterable[T], parallel: bool = True) -> list[R]:
    """``[fn(item) for item in items]``, on the pool's threads and the calling thread together
    when ``parallel`` and there is more than one item and thread. Each thread claims the next
    unclaimed item until none is left, so there is one hand-off per helping thread rather than
    per item (a hand-off costs tens of microseconds here), and the caller works instead of
    waiting. Results come back in item order, so callers reduce them deterministically. The
    helpers compute under the caller's ``np.errstate``; after shutdown began there are none.

    A helper that has not started when the caller runs out of items is cancelled rather than
    awaited: a pool thread that calls this (nested work) never waits on a job queued behind
    itself."""
    items = list(items)
    helpers = min(thread_count(), len(items)) - 1 if parallel else 0
    if helpers < 1:
        return [fn(item) for item in items]
    results: list[R] = [None] * len(items)  # type: ignore[list-item]
    claims = itertools.count()  # next() on a count is atomic under the GIL
    errstate = np.geterr()

    def drain() -> None:
        for i in iter(claims.__next__, None):
            if i >= len(items):
                return
            results[i] = fn(items[i])

    def help_drain() -> None:
        with np.errstate(**errstate):
            drain()

    started = [f for f in (_submit(help_drain) for _ in range(helpers)) if f is not None]
    try:
        drain()
    finally:
        for helper in started:
            if not helper.cancel():
                helper.result()
    return results


class _Buffers:
    """One thread's scratch buffers, by name."""

    __slots__ = ("__weakref__", "by_name")

    def __init__(self) -> None:
        self.by_name: dict[str, np.ndarray] = {}


_local = threading.local()
# Every live thread's buffers, for release_scratch; a finished thread's go with it.
_every_thread_buffers: weakref.WeakSet[_Buffers] = weakref.WeakSet()
_registry_lock = threading.Lock()
# Scratch requests above this many bytes get a fresh array instead of a kept buffer: the
# blocks of work are made to need less (1-2 MB), so only whole-image buffers of large images
# go unkept, whose page faults are small next to their work. A thread keeps at most one buffer
# per name (a handful), so at most a few MB each in practice.
SCRATCH_MAX_BYTES = 4 << 20


def scratch(name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialised array for temporary work on the calling thread, in a buffer the thread
    keeps for the next request under the same ``name`` (grown when too small; requests above
    ``SCRATCH_MAX_BYTES`` are not kept). Fresh memory costs its page faults on every call,
    (docs/benchmarks.md, "Design measurements", page-faults), while
    a kept buffer is faulted in once. The caller must be done with the array before it asks
    for ``name`` again on the same thread, and must never return it."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > SCRATCH_MAX_BYTES:
        return np.empty(shape, dtype=dtype)
    kept: _Buffers | None = getattr(_local, "buffers", None)
    if kept is None:
        kept = _local.buffers = _Buffers()
        with _registry_lock:
            _every_thread_buffers.add(kept)
    buffer = kept.by_name.get(name)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = kept.by_name[name] = np.empty(nbytes, dtype=np.uint8)
    return buffer[:nbytes].view(dtype).reshape(shape)


def release_scratch() -> None:
    """Drop every thread's scratch buffers (the next requests allocate afresh). Not while a
    call of the backend runs."""
    with _registry_lock:
        for kept in _every_thread_buffers:
            kept.by_name.clear()


def split(total: int, pieces: int) -> list[tuple[int, int]]:
    """``range(total)`` as at most ``pieces`` contiguous ``(start, stop)`` chunks of near-equal size."""
    pieces = max(1, min(pieces, total))
    bounds = [total * i // pieces for i in range(pieces + 1)]
    return [(lo, hi) for lo, hi in itertools.pairwise(bounds) if hi > lo]


@functools.cache
def _openblas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """The thread-count getter and setter of the OpenBLAS NumPy loaded (NumPy's own wheels
    first), or None: another BLAS, or no ``/proc`` to find it in."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths, key=lambda p: "numpy" not in p):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    return get, set_
    return None


def run_blocks(fn: Callable[[T], R], items: list[T], parallel: bool) -> list[R]:
    """``fn`` on every item, in order, for work whose matrix products run on one thread each
    (:func:`single_thread_matmul`'s, or any where :func:`blas_runs_one_thread`): on the pool
    when ``parallel``, else on the calling thread. The same products in the same order either
    way: the results do not depend on the path."""
    return ordered_map(fn, items, parallel)


def _openblas_threads() -> int | None:
    """OpenBLAS's thread count now (read, never set), or None for another BLAS."""
    openblas = _openblas()
    return None if openblas is None else openblas[0]()


def blas_runs_one_thread() -> bool:
    """Whether OpenBLAS runs every product on one thread (its count is 1:
    ``OPENBLAS_NUM_THREADS=1``, ``threadpoolctl``, a Dask worker's setting). Only then do
    the pool's threads run large products side by side; otherwise work made of large products
    runs on the calling thread, each product whole and threaded by OpenBLAS (see the module
    docstring)."""
    return _openblas_threads() == 1


# OpenBLAS runs a product on one thread when ``m * n * k`` is at most its SMP_THRESHOLD_MIN
# (65536) times GEMM_MULTITHREAD_THRESHOLD (4 unless built otherwise).
SINGLE_THREAD_PRODUCT = 4 * 65536


def single_thread_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` as 2-D products of at most :data:`SINGLE_THREAD_PRODUCT`
    multiply-adds each (``a``'s rows and ``b``'s columns cut into pieces), which OpenBLAS runs
    on one thread whatever its process-wide count: what the pool's threads need, without
    changing that count. Each output element is the same dot product as in one call, and the
    cut depends only on the shapes, so results are reproducible. Where OpenBLAS already runs
    on one thread (``OPENBLAS_NUM_THREADS=1``, ``threadpoolctl``), one call: the cut costs time
    (the stride-2 layer benchmark, see docs/benchmarks.md)."""
    m, k = a.shape[-2:]
    n = b.shape[-1]
    if m * n * k <= SINGLE_THREAD_PRODUCT or _openblas_threads() == 1:
        return np.matmul(a, b, out=out)
    if out is None:
        stack = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        out = np.empty((*stack, m, n), dtype=np.result_type(a, b))
    cols = max(1, min(n, SINGLE_THREAD_PRODUCT // k))
    rows = max(1, SINGLE_THREAD_PRODUCT // (k * cols))
    for c in range(0, n, cols):
        for r in range(0, m, rows):
            np.matmul(
                a[..., r : r + rows, :],
                b[..., :, c : c + cols],
                out=out[..., r : r + rows, c : c + cols],
            )
    return out
