"""The pictures: ``polyconv lesson --plot/--animate``, ``polyconv verify --plot``, the exercises'
``--plot``, the docs' figure generator, and the one-line message when matplotlib is missing."""

from __future__ import annotations

import dataclasses
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from polyconv import cli, lesson, plots
from polyconv.verify import BackendResult, verify

pytest.importorskip("matplotlib", reason="the pictures need matplotlib (the plot extra)")
Image = pytest.importorskip("PIL.Image", reason="reading the pictures back needs Pillow")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _panels(figure: object) -> list[object]:
    """The figure's axes that are not colour bars."""
    return [axes for axes in figure.axes if axes.get_label() != "<colorbar>"]  # type: ignore[attr-defined]


def _assert_picture(path: Path, kind: str, *, smallest: int = 300, largest: int = 2000) -> None:
    with Image.open(path) as image:
        assert image.format == kind
        width, height = image.size
        assert smallest <= width <= largest and 150 <= height <= largest, image.size
        image.verify()


def test_lesson_plot_writes_one_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lesson.png"
    assert cli.main(["lesson", "--backend", "numpy", "--steps", "4", "--plot", str(path)]) == 0
    assert f"Figure saved to {path}" in capsys.readouterr().out
    _assert_picture(path, "PNG", smallest=800)


def test_lesson_figure_has_x_k_y_the_weights_the_loss_and_the_differences() -> None:
    runs = {name: lesson.run_backend(name, lr=3e-2, steps=5, seed=0) for name in ("numpy",)}
    figure = lesson.figure(runs, lr=3e-2)
    titles = [axes.get_title() for axes in _panels(figure)]
    assert len(titles) == 6
    assert titles[:3] == ["image X", "kernel K", "Y = corr2d(X, K): the edges"]
    loss_axes = _panels(figure)[4]
    assert loss_axes.get_yscale() == "log"


def test_weights_panel_draws_each_tap_over_the_steps_against_its_target() -> None:
    run = lesson.run_backend("numpy", lr=3e-2, steps=5, seed=0)
    weights_axes = _panels(lesson.figure({"numpy": run}, lr=3e-2))[3]
    lines = {line.get_label(): line for line in weights_axes.get_lines()}
    for tap in (0, 1):
        np.testing.assert_array_equal(lines[f"K[0, {tap}]"].get_ydata(), run.kernel_steps[:, tap])
    assert set(lines) >= {"target 1", "target -1"}


def test_differences_panel_draws_each_backend_relative_to_numpys_loss() -> None:
    run = lesson.run_backend("numpy", lr=3e-2, steps=5, seed=0)
    other = lesson.BackendRun(**{**run.__dict__, "history": run.history * (1 + 3e-7)})
    # NumPy comes first in the figure even when it is not the first backend given.
    differences_axes = _panels(lesson.figure({"other": other, "numpy": run}, lr=3e-2))[5]
    (curve,) = (line for line in differences_axes.get_lines() if line.get_label() == "other")
    np.testing.assert_allclose(curve.get_ydata(), 3e-7, rtol=1e-6)
    assert "numpy" in differences_axes.get_ylabel()


def test_animation_has_one_frame_per_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "slide.gif"
    assert cli.main(["lesson", "--backend", "numpy", "--steps", "1", "--animate", str(path)]) == 0
    assert "Animation (42 frames)" in capsys.readouterr().out  # Y is 6x7
    _assert_picture(path, "GIF")
    with Image.open(path) as image:
        assert image.n_frames == 42


def test_small_arrays_show_their_values_without_a_negative_zero() -> None:
    figure = plots.arrays_figure({"K": np.array([[1.0, -0.004]])}, number_format=".2f")
    (axes,) = _panels(figure)
    assert [text.get_text() for text in axes.texts] == ["1.00", "0.00"]


def test_arrays_on_one_scale_share_one_colour_bar() -> None:
    figure = plots.arrays_figure({"a": np.eye(2), "b": -2 * np.eye(3)}, same_scale=True)
    limits = [axes.images[0].get_clim() for axes in _panels(figure)]
    assert limits == [(-2.0, 2.0), (-2.0, 2.0)]
    assert len(figure.axes) == 3


def test_verify_plot_draws_one_error_over_bound_image_per_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "verify.png"
    argv = ["verify", "--input", "1,2,5,6", "--kernel", "2,2,2,3", "--no-timing"]
    assert cli.main([*argv, "--backends", "numpy", "--plot", str(path)]) == 0
    assert f"saved to {path}" in capsys.readouterr().out
    _assert_picture(path, "PNG")


def test_verify_image_is_the_signed_error_over_bound_at_each_output_position() -> None:
    report = verify((2, 3, 5, 6), (4, 3, 2, 3), backends=["numpy"], timing=False)
    (check,) = (c for c in report.results[0].checks if c.result == "y")
    assert check.error_over_bound is not None and check.error_over_bound.shape == (2, 4, 4, 4)
    assert np.abs(check.error_over_bound).max() == pytest.approx(check.worst_ratio)
    (axes,) = _panels(plots.verify_figure(report))
    drawn = np.asarray(axes.images[0].get_array())
    expected = check.error_over_bound.reshape(8, 4, 4)
    strongest = np.take_along_axis(expected, np.abs(expected).argmax(0)[None], 0)[0]
    np.testing.assert_array_equal(drawn, strongest)


def test_a_disagreement_shows_where_it_is() -> None:
    ratios = np.zeros((2, 3, 4, 5))
    ratios[1, 2, 3, 1] = -7.0
    ratios[0, 0, 0, 0] = 0.5
    image = plots._worst_per_pixel(ratios, spatial_rank=2)
    assert image.shape == (4, 5)
    assert image[3, 1] == -7.0 and image[0, 0] == 0.5
    assert np.count_nonzero(image) == 2


@pytest.mark.parametrize(
    "script",
    ["kernel_sizes", "receptive_fields", "learning_rate_and_batch_size", "fully_connected_view"],
)
def test_each_exercise_draws_its_figure(
    script: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{script}.png"
    short = ["--steps", "6"] if script in {"kernel_sizes", "learning_rate_and_batch_size"} else []
    main = runpy.run_path(str(EXAMPLES / f"{script}.py"), run_name=f"example_{script}")["main"]
    assert main([*short, "--plot", str(path)]) == 0
    assert f"Figure saved to {path}" in capsys.readouterr().out
    _assert_picture(path, "PNG")


def test_docs_figure_generator_draws_every_figure_small(tmp_path: Path) -> None:
    make = runpy.run_path(str(EXAMPLES / "make_lesson_figures.py"))["make_figures"]
    written = make(tmp_path, steps=6)
    committed = sorted(p.name for p in (ROOT / "docs" / "images").iterdir())
    assert sorted(p.name for p in written) == committed  # docs/images holds exactly these
    for path in written:
        _assert_picture(path, path.suffix[1:].upper().replace("JPG", "JPEG"))
        assert path.stat().st_size < 200_000
    docs = (ROOT / "docs" / "lesson.md").read_text()
    for name in committed:
        assert f"(images/{name})" in docs


BLOCK_MATPLOTLIB = "import sys\nsys.modules['matplotlib'] = None  # import matplotlib fails\n"


@pytest.mark.parametrize(
    "command",
    [
        "from polyconv.cli import main\nsys.exit(main(['lesson', '--plot', 'x.png']))",
        "from polyconv.cli import main\nsys.exit(main(['lesson', '--animate', 'x.gif']))",
        "from polyconv.cli import main\n"
        "sys.exit(main(['verify', '--input', '1,1,4,4', '--kernel', '1,1,2,2', '--plot', 'x.png']))",
        "import runpy\nmain = runpy.run_path(sys.argv[1])['main']\nsys.exit(main(['--plot', 'x.png']))",
    ],
    ids=["lesson-plot", "lesson-animate", "verify-plot", "example-plot"],
)
def test_without_matplotlib_plotting_says_how_to_install_it(command: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_MATPLOTLIB + command, str(EXAMPLES / "receptive_fields.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=120,
    )
    message = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, message
    assert len(message.splitlines()) == 1
    assert "needs matplotlib" in message and "pip install -e '.[plot]'" in message
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.gif").exists()


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "image_shape"),
    [((2, 5), (1, 2, 3), (1, 3)), ((1, 1, 3, 4, 5), (2, 1, 2, 2, 2), (3, 4))],
    ids=["1-d unbatched", "3-d"],
)
def test_verify_image_of_one_and_three_spatial_axes_is_two_dimensional(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], image_shape: tuple[int, int]
) -> None:
    report = verify(x_shape, w_shape, backends=["numpy"], timing=False)
    (axes,) = _panels(plots.verify_figure(report))
    assert np.asarray(axes.images[0].get_array()).shape == image_shape


def test_verify_figure_shows_a_failed_backend_and_an_error_where_the_bound_is_zero() -> None:
    report = verify((1, 1, 3, 4), (1, 1, 2, 2), backends=["numpy"], timing=False)
    (result,) = report.results
    y_check = next(c for c in result.checks if c.result == "y")
    ratios = np.zeros_like(y_check.error_over_bound)
    ratios[0, 0, 1, 2] = np.inf  # an error where the bound is 0
    wrong = dataclasses.replace(
        result,
        backend="wrong",
        checks=(dataclasses.replace(y_check, error_over_bound=ratios, passed=False),),
    )
    broken = BackendResult("broken", "float32", "cpu", error="raised RuntimeError: boom")
    figure = plots.verify_figure(dataclasses.replace(report, results=(result, wrong, broken)))
    _, wrong_axes, broken_axes = _panels(figure)
    drawn = np.asarray(wrong_axes.images[0].get_array())
    assert np.unravel_index(np.abs(drawn).argmax(), drawn.shape) == (1, 2)
    assert "worst inf" in wrong_axes.get_title()
    assert "boom" in broken_axes.texts[0].get_text()
