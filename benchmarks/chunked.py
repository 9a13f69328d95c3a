"""``python -m benchmarks.chunked``: polyconv's Dask backend against dask-image and NumPy,
an image larger than the memory used, and scaling over worker processes.

1. ``images``: a SIZE x SIZE float32 image in CHUNK x CHUNK chunks (default 8192 in 2048),
   3x3 and 11x11 kernels, zero padding ("same"), Dask's threaded scheduler: polyconv on the
   Dask array, ``dask_image.ndfilters.correlate`` on it (SciPy's ndimage per chunk), and
   polyconv's NumPy backend on the whole image in memory. Rounds interleave the three; each
   figure is a median, and each ratio the median of the rounds' ratios (the machine is shared,
   so a round's implementations see the same load).
2. ``large``: a LARGE x LARGE float32 image in a zarr store on disk (default 32768: 4 GiB, in
   LARGE_CHUNK x LARGE_CHUNK chunks, default 1024: a task's halo reaches the next row of
   chunks, so about two rows of chunks are held at once; with 2048 chunks, 256 MiB a row,
   the peak measured 1.8 GiB),
   correlated with a 3x3 kernel (reflect padding) and written to another zarr store, in a fresh
   process (glibc's mmap threshold fixed at 1 MiB, see below) whose peak resident memory
   (``ru_maxrss``) is reported with the time.
3. ``scaling``: the same graph (a zarr image of SIZE x SIZE, 3x3, written to zarr) on a
   ``LocalCluster`` of 1 and of 2 worker processes (one thread each), interleaved, after one
   untimed run on each.
4. ``transpose``: the transposed correlation (stride 2, 3x3, 8 to 8 channels, padding 1,
   output_padding 1) of a float32 ``y`` of 8 x SIZE/8 x SIZE/8 in chunks of CHUNK/8, threaded
   scheduler: the Dask backend's chunked transpose, the interface's default written with the
   Dask forward operations (one output chunk: what the Dask backend did before it had its own),
   and the NumPy backend on the whole array. Interleaved rounds, medians and median ratios.

    python -m benchmarks.chunked [--rounds 5] [--size 8192] [--chunk 2048] [--large 32768]
                                 [--large-chunk 1024] [--json PATH]
                                 [--only images,large,scaling,transpose]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import _machine


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def images(size: int, chunk: int, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    import dask.array as da
    from dask_image import ndfilters

    import polyconv as pc

    rng = np.random.default_rng(0)
    x = rng.standard_normal((size, size), dtype=np.float32)
    x_dask = da.from_array(x, chunks=chunk)
    results: dict[str, Any] = {}
    for k in (3, 11):
        w = rng.standard_normal((k, k)).astype(np.float32)
        rows = {
            "polyconv dask": lambda w=w: pc.correlate(
                x_dask[None, None], w[None, None], padding="same"
            ).compute(scheduler="threads"),
            "dask_image.ndfilters.correlate": lambda w=w: ndfilters.correlate(
                x_dask, w, mode="constant"
            ).compute(scheduler="threads"),
            "polyconv numpy (whole image)": lambda w=w: pc.correlate(
                x[None, None], w[None, None], padding="same"
            ),
        }
        ours = rows["polyconv dask"]()[0, 0]
        theirs = rows["dask_image.ndfilters.correlate"]()
        agree = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
        times: dict[str, list[float]] = {name: [] for name in rows}
        for r in range(rounds):
            for name, fn in rows.items():
                times[name].append(_timed(fn))
            log(f"images k={k} round {r + 1}: " + ", ".join(f"{t[-1]:.2f}" for t in times.values()))
        dask_times = times["polyconv dask"]
        results[f"{k}x{k}"] = {
            "median_s": {name: statistics.median(t) for name, t in times.items()},
            "times_s": times,
            "ratio_to_dask_image": statistics.median(
                a / b
                for a, b in zip(dask_times, times["dask_image.ndfilters.correlate"], strict=True)
            ),
            "ratio_to_numpy": statistics.median(
                a / b
                for a, b in zip(dask_times, times["polyconv numpy (whole image)"], strict=True)
            ),
            "max_relative_difference_to_dask_image": agree,
        }
    return results


_WRITE_IMAGE = """
import sys, dask.array as da, numpy as np
size, chunk, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
image = da.random.default_rng(0).standard_normal((size, size), chunks=chunk, dtype=np.float32)
image.to_zarr(path, overwrite=True)
"""

_CORRELATE_ZARR = """
import resource, sys, time, dask.array as da, numpy as np
import polyconv as pc
source, target = sys.argv[1], sys.argv[2]
start = time.perf_counter()
image = da.from_zarr(source)
kernel = np.random.default_rng(1).standard_normal((1, 1, 3, 3)).astype(np.float32)
edges = pc.correlate(image[None, None], kernel, padding="same", padding_mode="reflect")
edges[0, 0].to_zarr(target, overwrite=True, compute=True)
seconds = time.perf_counter() - start
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


# glibc raises its mmap threshold as large blocks are freed, after which a freed 16 MiB chunk
# stays in a thread's heap arena instead of going back to the system: resident memory then
# grows with the number of chunks a process has ever held. A fixed threshold (1 MiB) keeps
# large arrays mmapped, so that freeing one returns it (measured on an 8192x8192 zarr image
# in 2048x2048 chunks: peak 510 MiB without, 344 MiB with).
_FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}


def _python(code: str, *args: object) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **_FIXED_MMAP_THRESHOLD},
    )
    if completed.returncode:
        raise RuntimeError(completed.stderr)
    return completed.stdout


def large(size: int, chunk: int, directory: Path, log: Callable[[str], None]) -> dict[str, Any]:
    source, target = directory / "large.zarr", directory / "large-out.zarr"
    log(f"large: writing a {size}x{size} float32 image to {source}")
    _python(_WRITE_IMAGE, size, chunk, source)
    log("large: correlating it from zarr to zarr in a fresh process")
    seconds, peak = map(float, _python(_CORRELATE_ZARR, source, target).split())
    return {
        "shape": [size, size],
        "chunks": [chunk, chunk],
        "image_bytes": size * size * 4,
        "seconds": seconds,
        "peak_rss_bytes": peak,
    }


def scaling(
    size: int, chunk: int, rounds: int, directory: Path, log: Callable[[str], None]
) -> dict:
    import dask.array as da
    from distributed import Client, LocalCluster

    import polyconv as pc

    source = directory / "scaling.zarr"
    _python(_WRITE_IMAGE, size, chunk, source)
    kernel = np.random.default_rng(1).standard_normal((1, 1, 3, 3)).astype(np.float32)
    clusters = {
        workers: LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        for workers in (1, 2)
    }
    clients = {workers: Client(cluster) for workers, cluster in clusters.items()}
    times: dict[int, list[float]] = {1: [], 2: []}

    def run(workers: int) -> float:
        image = da.from_zarr(str(source))
        y = pc.correlate(image[None, None], kernel, padding="same")
        target = str(directory / f"scaling-out-{workers}.zarr")
        start = time.perf_counter()
        clients[workers].compute(y[0, 0].to_zarr(target, overwrite=True, compute=False)).result()
        return time.perf_counter() - start

    try:
        for workers in clients:  # warm-up: the workers import polyconv and NumPy's kernels
            run(workers)
        for r in range(rounds):
            for workers in clients:
                times[workers].append(run(workers))
            log(
                f"scaling round {r + 1}: 1 worker {times[1][-1]:.2f} s, 2 workers {times[2][-1]:.2f} s"
            )
    finally:
        for client in clients.values():
            client.close()
        for cluster in clusters.values():
            cluster.close()
    return {
        "shape": [size, size],
        "median_s": {f"{w} worker process(es)": statistics.median(t) for w, t in times.items()},
        "times_s": {str(w): t for w, t in times.items()},
        "speedup_2_over_1": statistics.median(
            a / b for a, b in zip(times[1], times[2], strict=True)
        ),
    }


def transpose(size: int, chunk: int, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    import dask.array as da

    import polyconv as pc
    from polyconv._spec.transpose import normalize_transpose
    from polyconv.backends import _transpose_default
    from polyconv.backends.dask_backend import DaskBackend

    rng = np.random.default_rng(0)
    side, block = size // 8, max(chunk // 8, 1)
    y = rng.standard_normal((1, 8, side, side), dtype=np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    kwargs: dict[str, Any] = {"stride": 2, "padding": 1, "output_padding": 1}
    y_dask = da.from_array(y, chunks=(1, 8, block, block))
    spec = normalize_transpose(y.shape, w.shape, None, **kwargs)
    rows: dict[str, Callable[[], Any]] = {
        "polyconv dask (chunked)": lambda: pc.correlate_transpose(
            y_dask, w, method="direct", **kwargs
        ).compute(scheduler="threads"),
        "interface default on dask (one chunk)": lambda: _transpose_default.correlate_transpose(
            DaskBackend(), y_dask, w, None, spec, "direct"
        ).compute(scheduler="threads"),
        "polyconv numpy (whole array)": lambda: pc.correlate_transpose(
            y, w, method="direct", **kwargs
        ),
    }
    expected = rows["polyconv numpy (whole array)"]()
    agree = float(np.abs(rows["polyconv dask (chunked)"]() - expected).max())
    times: dict[str, list[float]] = {name: [] for name in rows}
    for r in range(rounds):
        for name, fn in rows.items():
            times[name].append(_timed(fn))
        log(f"transpose round {r + 1}: " + ", ".join(f"{t[-1]:.2f}" for t in times.values()))
    ours = times["polyconv dask (chunked)"]
    return {
        "y_shape": list(y.shape),
        "y_chunk": block,
        "median_s": {name: statistics.median(t) for name, t in times.items()},
        "times_s": times,
        "ratio_to_default": statistics.median(
            a / b for a, b in zip(ours, times["interface default on dask (one chunk)"], strict=True)
        ),
        "ratio_to_numpy": statistics.median(
            a / b for a, b in zip(ours, times["polyconv numpy (whole array)"], strict=True)
        ),
        "max_abs_difference_to_numpy": agree,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chunked", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--large", type=int, default=32768)
    parser.add_argument("--large-chunk", type=int, default=1024)
    parser.add_argument("--only", default="images,large,scaling,transpose")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    parts = set(args.only.split(","))
    results: dict[str, Any] = {"machine": _machine.describe(), "options": vars(args)}
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        if "images" in parts:
            results["images"] = images(args.size, args.chunk, args.rounds, log)
        if "large" in parts:
            results["large"] = large(args.large, args.large_chunk, directory, log)
        if "scaling" in parts:
            results["scaling"] = scaling(args.size, args.chunk, args.rounds, directory, log)
        if "transpose" in parts:
            results["transpose"] = transpose(args.size, args.chunk, args.rounds, log)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
