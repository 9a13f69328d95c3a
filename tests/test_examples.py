"""The lesson's exercises in examples/: each runs on every backend and prints what it claims."""

from __future__ import annotations

import os
import re
import runpy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from polyconv import reference
from polyconv.backends import Backend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(name: str) -> dict[str, object]:
    """The example's module namespace (its ``main`` is not run)."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")


def _run(name: str, *argv: str) -> int:
    main = _example(name)["main"]
    assert callable(main)
    return int(main(list(argv)))  # type: ignore[call-arg]


def test_kernel_sizes_finds_the_2x2_kernel_best_on_every_backend(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run("kernel_sizes", "--backend", backend.name, "--steps", "60") == 0
    out = capsys.readouterr().out
    assert "Best: 2x2, the smallest kernel that fits" in out
    assert re.search(r"Not fitting after 60 steps .*: 1x2\.", out)


def test_kernel_sizes_reports_no_fit_when_training_is_too_short(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _run("kernel_sizes", "--steps", "2") == 0
    assert "no size fits" in capsys.readouterr().out


def test_jitter_is_zero_for_a_smooth_decay_and_grows_with_oscillation() -> None:
    jitter = _example("learning_rate_and_batch_size")["jitter"]
    assert callable(jitter)
    smooth = 0.5 ** np.arange(40.0)
    noisy = smooth * (1 + 0.5 * (np.arange(40) % 2))
    assert jitter(smooth) < 1e-12
    assert jitter(noisy) > 0.1


def test_learning_rate_and_batch_size_prints_a_conclusion_from_its_measurements(
    backend: Backend, capsys: pytest.CaptureFixture[str], tmp_path: os.PathLike[str]
) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    plot = os.path.join(tmp_path, "jitter.png")
    assert (
        _run(
            "learning_rate_and_batch_size",
            "--backend",
            backend.name,
            "--steps",
            "16",
            "--plot",
            plot,
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+([\d.]+)\s+(\d+)\s+([\d.e+-]+)\s+([\d.e+-]+)$", out, flags=re.MULTILINE)
    assert len(rows) == 6
    jitters = {(float(lr), int(batch)): float(j) for lr, batch, _, j in rows}
    conclusion = re.search(r"Conclusion: .* (multiplies|divides) the jitter by ([\d.e+]+); ", out)
    assert conclusion is not None
    ratio = jitters[0.3, 2] / jitters[0.05, 2]
    printed = float(conclusion.group(2))
    measured = ratio if conclusion.group(1) == "multiplies" else 1 / ratio
    assert measured == pytest.approx(printed, rel=0.05)  # the sentence follows the table
    with open(plot, "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"


def test_fully_connected_view_matches_the_hand_built_matrix_on_every_backend(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        _run("fully_connected_view", "--backend", backend.name, "--height", "3", "--width", "4")
        == 0
    )
    out = capsys.readouterr().out
    assert "== pc.as_matrix(K, (1, H, W)): True" in out
    assert "exactly this fully-connected layer" in out


def test_hand_built_matrix_is_the_correlation_on_a_non_square_image() -> None:
    build: Callable[..., np.ndarray] = _example("fully_connected_view")["restricted_dense_weights"]  # type: ignore[assignment]
    kernel = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    image = np.arange(20.0).reshape(4, 5)
    expected = reference.correlate(image[None], kernel[None, None]).ravel()
    np.testing.assert_array_equal(build(kernel, 4, 5) @ image.ravel(), expected)


def test_large_image_writes_the_edges_of_its_zarr_image_chunked_like_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("dask.array")
    pytest.importorskip("zarr")
    import dask.array as da

    args = ["--size", "192", "--chunk", "64", "--steps", "20", "--store", str(tmp_path)]
    assert _run("large_image", *args, "--no-progress") == 0
    image = da.from_zarr(str(tmp_path / "image.zarr"))
    edges = da.from_zarr(str(tmp_path / "edges.zarr"))
    assert edges.chunks == image.chunks == ((64,) * 3, (64,) * 3)
    laplacian = _example("large_image")["LAPLACIAN"]
    expected = reference.correlate(
        image.compute()[None, None], laplacian[None, None], padding="same", padding_mode="reflect"
    )[0, 0]
    np.testing.assert_allclose(edges.compute(), expected, rtol=1e-5, atol=1e-5)
    losses = re.search(r"training: loss (\S+) -> (\S+) in 20 steps", capsys.readouterr().out)
    assert losses is not None and float(losses[2]) < float(losses[1]) / 4


def test_porting_a_model_finds_the_same_padding_mistake_and_passes_the_corrected_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for framework in ("torch", "flax"):
        pytest.importorskip(framework)
    assert _run("porting_a_model") == 0
    out = capsys.readouterr().out
    first_try, corrected, model = out.split("== ")[1:]
    assert "layer 1: FAIL" in first_try and "layer 2: ok" in first_try
    assert "flax padding='SAME' at stride 2 pads (0, 1)" in first_try
    assert corrected.count(": ok") == 3
    differences = re.findall(r"max \|difference\| ([\d.e+-]+)", model)
    assert len(differences) == 2 and all(float(d) < 1e-5 for d in differences)
    assert "corrected port: all three layers agree" in model
