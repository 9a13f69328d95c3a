"""An image larger than memory: edge detection and a learned kernel, chunk by chunk, from zarr.

The image lives in a zarr store on disk; polyconv's Dask backend correlates it one chunk (and
its halo) at a time and the result is written back to zarr, so the process never holds the
image. Steps:

1. write a synthetic image (discs and noise) to ``STORE/image.zarr``;
2. edge detection: a Laplacian kernel over the whole image, reflect padding read at the image's
   own border, written to ``STORE/edges.zarr``;
3. a learned kernel: ``pc.fit`` learns a 3x3 layer on a few tiles of the image (Dask arrays:
   each step is one graph of loss and gradients) to reproduce the edge map, then applies it to
   the whole image, written to ``STORE/learned.zarr``;
4. it compares the learned edge map with the exact one, chunk by chunk, and prints the peak
   memory of the process next to the image's size.

    python examples/large_image.py                        # 16384 x 16384 float32 (1 GiB)
    python examples/large_image.py --size 32768           # 4 GiB
    python examples/large_image.py --size 512 --chunk 128 # a few seconds

A progress bar (Dask's diagnostics) runs on the long steps. Needs the `dask` extra and zarr
(`pip install -e ".[dask]" zarr`).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from dask.diagnostics import ProgressBar

import polyconv as pc

LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float32)


def synthetic_tile(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    """One chunk of the image: discs and noise, from its global position (the noise makes the
    kernel easy to learn: neighbouring pixels of a smooth image are nearly the same input)."""
    (row0, _), (col0, _) = block_info[None]["array-location"]  # type: ignore[index]
    rows = np.arange(row0, row0 + block.shape[0], dtype=np.float32)[:, None]
    cols = np.arange(col0, col0 + block.shape[1], dtype=np.float32)[None, :]
    discs = ((rows % 97 - 48) ** 2 + (cols % 89 - 44) ** 2 < 30**2).astype(np.float32)
    noise = np.random.default_rng(row0 * 7919 + col0).standard_normal(block.shape)
    return discs + 0.3 * noise.astype(np.float32)


def peak_memory_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def step(title: str, work: object, progress: bool) -> float:
    """Run ``work`` (a callable) with a progress bar; return its seconds."""
    print(f"{title} ...", flush=True)
    start = time.perf_counter()
    if progress:
        with ProgressBar(dt=1.0):
            work()  # type: ignore[operator]
    else:
        work()  # type: ignore[operator]
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384, help="image side (default 16384)")
    parser.add_argument("--chunk", type=int, default=2048, help="chunk side (default 2048)")
    parser.add_argument("--store", type=Path, help="directory for the zarr stores (default: temp)")
    parser.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.size < 64 or args.chunk < 16:
        parser.error("--size must be at least 64 and --chunk at least 16")
    progress = not args.no_progress
    dask.config.set(scheduler="threads")

    with tempfile.TemporaryDirectory() as temporary:
        store = args.store or Path(temporary)
        store.mkdir(parents=True, exist_ok=True)
        shape, chunks = (args.size, args.size), (args.chunk, args.chunk)
        image_mib = args.size**2 * 4 / 2**20

        template = da.zeros(shape, chunks=chunks, dtype=np.float32)
        synthetic = template.map_blocks(synthetic_tile, dtype=np.float32)
        seconds = step(
            f"writing a {args.size}x{args.size} float32 image ({image_mib:.0f} MiB) to zarr",
            lambda: synthetic.to_zarr(str(store / "image.zarr"), overwrite=True),
            progress,
        )
        print(f"  {seconds:.1f} s")

        image = da.from_zarr(str(store / "image.zarr"))
        edges = pc.correlate(
            image[None], LAPLACIAN[None, None], padding="same", padding_mode="reflect"
        )[0]
        seconds = step(
            "edge detection (Laplacian, reflect padding) written to zarr",
            lambda: edges.to_zarr(str(store / "edges.zarr"), overwrite=True),
            progress,
        )
        print(f"  {seconds:.1f} s; result chunks {edges.chunksize}, like the image's")

        # Learn a 3x3 kernel from a few tiles: the edge map is the target.
        tile = min(args.chunk, 256)
        corners = [(0, 0), (args.size - tile, args.size - tile), (args.size // 2, 0)]
        exact = da.from_zarr(str(store / "edges.zarr"))
        x = da.stack([image[r : r + tile, c : c + tile] for r, c in corners])[:, None]
        y = da.stack([exact[r : r + tile, c : c + tile] for r, c in corners])[:, None]
        layer = pc.Conv2D(3, padding="same", padding_mode="reflect", bias=False, backend="dask")
        losses = pc.fit(layer, x, y, lr=5e-2, steps=args.steps, momentum=0.9, loss="mse")
        print(f"training: loss {losses[0]:.3g} -> {losses[-1]:.3g} in {len(losses)} steps")
        print("learned kernel:\n" + np.array2string(layer.weight[0, 0], precision=2))

        learned = layer(image[None])[0]
        seconds = step(
            "the learned kernel over the whole image, written to zarr",
            lambda: learned.to_zarr(str(store / "learned.zarr"), overwrite=True),
            progress,
        )
        print(f"  {seconds:.1f} s")

        difference = abs(da.from_zarr(str(store / "learned.zarr")) - exact).max()
        scale = abs(exact).max()
        worst, largest = dask.compute(difference, scale)
        print(f"learned vs exact edges: max difference {worst:.3g} (edges up to {largest:.3g})")
        print(f"peak memory {peak_memory_mib():.0f} MiB for a {image_mib:.0f} MiB image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
