"""Pictures of the lesson, its exercises and ``polyconv verify`` (matplotlib: the ``plot`` extra).

Every function that draws returns a matplotlib :class:`~matplotlib.figure.Figure` on the Agg
canvas, so no display or GUI is needed (a notebook shows the figure inline when it is a cell's
value), and :func:`save` writes it. matplotlib is imported only here, and only when a figure is
made: ``import polyconv`` never imports it. Arrays are drawn with a diverging colour map centred on
0 (negative blue, zero white, positive red), each with its colour bar, and small arrays carry their
values in the cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "arrays_figure",
    "kernels_and_losses_figure",
    "lesson_figure",
    "loss_curves_figure",
    "missing_matplotlib",
    "save",
    "save_sliding_animation",
    "show_array",
    "verify_figure",
]

DIVERGING = "RdBu_r"
# Arrays with at most this many cells show their values in the cells.
MAX_ANNOTATED_CELLS = 120
FLOAT32_EPS = float(np.finfo(np.float32).eps)
_MARKERS = "os^Dv<>p"
_LINESTYLES = ("-", "--", ":", "-.")


def missing_matplotlib(what: str) -> str | None:
    """``None`` when matplotlib can be imported, else one line saying that ``what`` needs it and
    how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return (
            f"{what} needs matplotlib, which is not installed; install it with "
            "`pip install -e '.[plot]'` in the polyconv checkout (or `pip install matplotlib`)"
        )
    return None


def _new_figure(width: float, height: float) -> Figure:
    message = missing_matplotlib("plotting")
    if message is not None:
        raise ImportError(message)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)  # Agg explicitly: files only, whatever pyplot's backend is
    return figure


def save(figure: Figure, path: str, *, dpi: int = 100) -> None:
    """Write ``figure`` to ``path`` (the format follows the suffix: .png, .svg, .pdf)."""
    figure.savefig(path, dpi=dpi)


def _limit(arrays: Sequence[np.ndarray]) -> float:
    """The half-range of a colour scale centred on 0 that holds every finite value."""
    largest = max(
        (float(np.abs(a[np.isfinite(a)]).max()) for a in arrays if np.isfinite(a).any()),
        default=0.0,
    )
    return largest if largest > 0 else 1.0


def _as_image(array: object) -> np.ndarray:
    image = np.asarray(array, dtype=np.float64)
    if image.ndim == 1:
        return image[None]
    if image.ndim != 2:
        raise ValueError(f"an image must have 1 or 2 axes, got shape {image.shape}")
    return image


def _number(value: float, number_format: str) -> str:
    """``value`` formatted, without the sign of a value that rounds to 0 (-0.004 -> 0.00)."""
    text = format(value, number_format)
    return format(0.0, number_format) if float(text) == 0 else text


def show_array(
    axes: Axes,
    array: object,
    title: str,
    *,
    limit: float | None = None,
    annotate: bool = True,
    number_format: str = "g",
    colorbar: bool = True,
    colorbar_label: str | None = None,
) -> Any:
    """Draw a 1-D or 2-D array on ``axes``: colour centred on 0 within ``±limit`` (default: the
    array's largest magnitude), NaN cells grey, the values in the cells when there are few."""
    import matplotlib
    from matplotlib.ticker import FixedLocator, MaxNLocator

    image = _as_image(array)
    limit = _limit([image]) if limit is None else limit
    cmap = matplotlib.colormaps[DIVERGING].with_extremes(bad="0.85")
    drawn = axes.imshow(np.ma.masked_invalid(image), cmap=cmap, vmin=-limit, vmax=limit)
    axes.set_title(title)
    for axis, count in ((axes.yaxis, image.shape[0]), (axes.xaxis, image.shape[1])):
        small = count <= 12  # every index labelled; else a few integers
        axis.set_major_locator(
            FixedLocator(range(count)) if small else MaxNLocator(nbins=10, integer=True)
        )
    if annotate and image.size <= MAX_ANNOTATED_CELLS:
        for (i, j), value in np.ndenumerate(image):
            if np.isfinite(value):
                axes.text(
                    j,
                    i,
                    _number(value, number_format),
                    ha="center",
                    va="center",
                    fontsize=8 if image.size > 20 else 11,
                    color="white" if abs(value) > 0.6 * limit else "black",
                    in_layout=False,  # inside the axes anyway; the layout need not measure them
                )
    if colorbar:
        bar = axes.figure.colorbar(drawn, ax=axes, shrink=0.8)
        if colorbar_label:
            bar.set_label(colorbar_label)
    return drawn


def arrays_figure(
    arrays: Mapping[str, object],
    *,
    title: str | None = None,
    same_scale: bool = False,
    annotate: bool = True,
    number_format: str = "g",
    height: float = 3.0,
) -> Figure:
    """A row of arrays (title -> 1-D or 2-D array), each with its colour bar, every cell the
    same size; ``same_scale`` gives them one colour scale, so equal colours mean equal values
    across panels. ``height`` is the least height in inches."""
    images = {name: _as_image(array) for name, array in arrays.items()}
    widths = [max(image.shape[1], 2) for image in images.values()]
    cell = min(0.5, 13.0 / (sum(widths) + 2.5 * len(images)))  # inches
    tallest = max(image.shape[0] for image in images.values())
    figure = _new_figure(
        cell * sum(widths) + 1.4 * len(images) + 0.5, max(height, cell * tallest + 1.6)
    )
    grid = figure.add_gridspec(1, len(images), width_ratios=widths)
    limit = _limit(list(images.values())) if same_scale else None
    for k, (name, image) in enumerate(images.items()):
        show_array(
            figure.add_subplot(grid[0, k]),
            image,
            name,
            limit=limit,
            annotate=annotate,
            number_format=number_format,
            colorbar=not same_scale or k == len(images) - 1,  # one scale: one colour bar
        )
    if title:
        figure.suptitle(title)
    return figure


def _plot_curves(axes: Axes, curves: Mapping[str, np.ndarray], *, first_step: int = 0) -> None:
    for i, (label, values) in enumerate(curves.items()):
        steps = np.arange(first_step, first_step + len(values))
        axes.plot(
            steps,
            values,
            label=label,
            marker=_MARKERS[i % len(_MARKERS)],
            markersize=3 if len(values) > 40 else 4,
            markevery=max(1, len(values) // 25),
            linestyle=_LINESTYLES[i % len(_LINESTYLES)],
        )


def loss_curves_figure(
    panels: Mapping[str, Mapping[str, np.ndarray]],
    *,
    title: str | None = None,
    log_scale: bool = True,
    ylabel: str = "loss",
    first_step: int = 0,
) -> Figure:
    """One panel per entry of ``panels`` (panel title -> {curve label -> loss per step}), side by
    side with one shared loss axis; ``first_step`` numbers the curves' first values."""
    figure = _new_figure(1.0 + 4.5 * len(panels), 4.0)
    axes_row = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for axes, (name, curves) in zip(axes_row, panels.items(), strict=True):
        _plot_curves(axes, curves, first_step=first_step)
        if log_scale:
            axes.set_yscale("log")
        axes.set_xlabel("step")
        axes.set_title(name)
        axes.grid(True, which="major", alpha=0.3)
        axes.legend(fontsize=8)
    axes_row[0].set_ylabel(ylabel)
    if title:
        figure.suptitle(title)
    return figure


def kernels_and_losses_figure(
    kernels: Mapping[str, np.ndarray],
    curves: Mapping[str, np.ndarray],
    *,
    title: str | None = None,
    ylabel: str = "loss",
) -> Figure:
    """Kernels in a row on one colour scale (title -> 2-D kernel), and under them the loss
    curves (label -> loss per step) on a log scale."""
    images = {name: _as_image(kernel) for name, kernel in kernels.items()}
    figure = _new_figure(max(3.0 * len(images), 7.0), 6.5)
    outer = figure.add_gridspec(2, 1, height_ratios=[1, 1.2])
    top = outer[0].subgridspec(1, len(images))
    limit = _limit(list(images.values()))
    for k, (name, image) in enumerate(images.items()):
        show_array(figure.add_subplot(top[0, k]), image, name, limit=limit, number_format=".2f")
    axes = figure.add_subplot(outer[1])
    _plot_curves(axes, curves)
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel(ylabel)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    return figure


def lesson_figure(
    x: np.ndarray,
    kernel: np.ndarray,
    y: np.ndarray,
    *,
    losses: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray],
    target: np.ndarray,
    lr: float,
) -> Figure:
    """The lesson on one page. Top: X, the kernel K and Y = corr2d(X, K). Bottom: the learned
    kernel's weights over the steps against the target, the loss (log scale), and every other
    backend's loss relative to the first backend's (NumPy's when it ran), step by step.

    ``losses``: backend -> loss per step; ``weights``: backend -> (steps + 1, kernel taps), the
    kernel before the first step and after each."""
    names = list(losses)
    first = names[0]
    figure = _new_figure(14.0, 7.5)
    grid = figure.add_gridspec(2, 3, height_ratios=[1, 1.25])
    limit = _limit([x, kernel, y])
    show_array(figure.add_subplot(grid[0, 0]), x, "image X", limit=limit)
    show_array(figure.add_subplot(grid[0, 1]), kernel, "kernel K", limit=limit)
    show_array(figure.add_subplot(grid[0, 2]), y, "Y = corr2d(X, K): the edges", limit=limit)

    axes = figure.add_subplot(grid[1, 0])
    taps = np.asarray(weights[first])
    steps = np.arange(len(taps))
    for tap, wanted in enumerate(np.asarray(target, dtype=np.float64).ravel()):
        (line,) = axes.plot(steps, taps[:, tap], marker=_MARKERS[tap], label=f"K[0, {tap}]")
        axes.axhline(wanted, color=line.get_color(), linestyle=":", label=f"target {wanted:g}")
    axes.set_xlabel("step")
    axes.set_ylabel("weight")
    axes.set_title(f"learning K ({first}, lr {lr:g})")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, ncols=2)

    axes = figure.add_subplot(grid[1, 1])
    _plot_curves(axes, {first: losses[first]})
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("loss sum((conv(X) - Y)²)")
    axes.set_title("loss (log scale)")
    axes.grid(True, which="major", alpha=0.3)

    axes = figure.add_subplot(grid[1, 2])
    reference = np.asarray(losses[first], dtype=np.float64)
    others = {
        name: (np.asarray(losses[name], dtype=np.float64) - reference) / reference
        for name in names[1:]
    }
    if others:
        _plot_curves(axes, others)
        for sign in (1, -1):
            axes.axhline(sign * FLOAT32_EPS, color="0.5", linestyle=":")
        axes.text(
            0.01, 0.97, "dotted: ± float32 epsilon", transform=axes.transAxes, va="top", fontsize=8
        )
        axes.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        axes.legend(fontsize=8, loc="best")
    else:
        axes.text(0.5, 0.5, "one backend ran:\nnothing to compare", ha="center", va="center")
    axes.set_xlabel("step")
    axes.set_ylabel(f"(loss - {first}'s loss) / {first}'s loss")
    axes.set_title(f"do the backends agree? (against {first})")
    axes.grid(True, alpha=0.3)
    return figure


def save_sliding_animation(
    path: str, x: np.ndarray, kernel: np.ndarray, y: np.ndarray, *, fps: int = 2
) -> int:
    """Write a GIF of ``kernel`` sliding over ``x`` while ``y = corr2d(x, kernel)`` fills in, one
    frame per output element, with Pillow (no ffmpeg needed). Returns the number of frames.

    The still parts are drawn once; each frame redraws only what moves (blitting), which keeps
    a frame a small fraction of a full redraw."""
    figure = _new_figure(10.0, 2.9)
    from matplotlib.patches import Rectangle
    from PIL import Image

    figure.set_dpi(72)
    x, kernel, y = _as_image(x), _as_image(kernel), _as_image(y)
    grid = figure.add_gridspec(1, 3, width_ratios=[x.shape[1], max(kernel.shape[1], 3), y.shape[1]])
    limit = _limit([x, kernel, y])
    x_axes = figure.add_subplot(grid[0, 0])
    show_array(x_axes, x, "image X", limit=limit, colorbar=False)
    show_array(figure.add_subplot(grid[0, 1]), kernel, "kernel K", limit=limit, colorbar=False)
    y_axes = figure.add_subplot(grid[0, 2])
    filled = np.full_like(y, np.nan)
    y_image = show_array(y_axes, filled, "Y = corr2d(X, K)", limit=limit, colorbar=False)
    window = Rectangle((-0.5, -0.5), kernel.shape[1], kernel.shape[0], fill=False, lw=3, ec="k")
    x_axes.add_patch(window)
    cell = Rectangle((-0.5, -0.5), 1, 1, fill=False, lw=3, ec="k")
    y_axes.add_patch(cell)
    title = figure.suptitle(f"Y[0, 0] = {_window_sum(x, kernel, 0, 0)} = 0")  # room for it
    values: list[Any] = []  # the texts of the outputs computed so far
    moving = [y_image, window, cell, title]
    for artist in moving:
        artist.set_animated(True)  # left out of the still background
    canvas = figure.canvas
    canvas.draw()
    background = canvas.copy_from_bbox(figure.bbox)  # type: ignore[attr-defined]
    frames = []
    for (i, j), value in np.ndenumerate(y):
        window.set_xy((j - 0.5, i - 0.5))
        cell.set_xy((j - 0.5, i - 0.5))
        filled[i, j] = value
        y_image.set_data(np.ma.masked_invalid(filled))
        color = "white" if abs(value) > 0.6 * limit else "black"
        text = y_axes.text(j, i, format(value + 0.0, "g"), ha="center", va="center", color=color)
        text.set_fontsize(8)
        text.set_animated(True)
        values.append(text)
        title.set_text(f"Y[{i}, {j}] = {_window_sum(x, kernel, i, j)} = {value + 0.0:g}")
        canvas.restore_region(background)  # type: ignore[attr-defined]
        for artist in (y_image, *values, window, cell, title):
            figure.draw_artist(artist)
        rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[attr-defined]
        frames.append(Image.fromarray(rgba[..., :3].copy()))
    frames[0].save(
        path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0
    )
    return y.size


def _window_sum(x: np.ndarray, kernel: np.ndarray, i: int, j: int) -> str:
    """The sum behind output (i, j), term by term for small kernels: ``0·1 + 1·(-1)``."""
    rows, columns = kernel.shape
    if kernel.size > 9:
        return f"sum(X[{i}:{i + rows}, {j}:{j + columns}] * K)"
    window = x[i : i + rows, j : j + columns]
    return " + ".join(
        f"{a + 0.0:g}·{b + 0.0:g}" if b >= 0 else f"{a + 0.0:g}·({b + 0.0:g})"
        for a, b in zip(window.ravel(), kernel.ravel(), strict=True)
    )


def _worst_per_pixel(ratios: np.ndarray, spatial_rank: int) -> np.ndarray:
    """The signed value of largest magnitude over the batch and channel axes (and depth, for 3-D),
    per position of the last one or two spatial axes."""
    kept = min(spatial_rank, 2)
    flat = ratios.reshape(-1, *ratios.shape[ratios.ndim - kept :])
    if flat.shape[0] == 0:
        return np.zeros(flat.shape[1:])
    worst = np.argmax(np.where(np.isnan(flat), np.inf, np.abs(flat)), axis=0)
    return np.take_along_axis(flat, worst[None], axis=0)[0]


def verify_figure(report: Any) -> Figure:
    """One image per backend of a :class:`polyconv.verify.VerifyReport`: the forward result's
    error divided by its bound, (result - reference) / bound, at every output position (the
    largest magnitude over the batch and channels), on one colour scale for all backends. Within
    ±1 everywhere means the backend passes; the pattern shows where the error concentrates."""
    spatial_rank = len(report.spec.w_shape) - 2
    panels: dict[str, np.ndarray | str] = {}
    for result in report.results:
        title = f"{result.backend} ({result.method})"
        checks = {check.result: check for check in result.checks}
        ratios = None if "y" not in checks else checks["y"].error_over_bound
        if result.error is not None or ratios is None:
            panels[title] = result.error or "no forward result"
        else:
            panels[title] = _worst_per_pixel(ratios, spatial_rank)
    images = [p for p in panels.values() if isinstance(p, np.ndarray)]
    # One scale for every backend, so that colours compare across panels; infinite ratios (an
    # error where the bound is 0) are drawn at its end.
    limit = _limit([np.where(np.isinf(image), np.nan, image) for image in images])
    columns = max(len(panels), 1)
    figure = _new_figure(1.0 + 4.0 * columns, 4.0)
    for k, (title, panel) in enumerate(panels.items()):
        axes = figure.add_subplot(1, columns, k + 1)
        if isinstance(panel, str):
            axes.text(0.5, 0.5, panel, ha="center", va="center", wrap=True, fontsize=8)
            axes.set_axis_off()
            axes.set_title(title)
            continue
        worst = float(np.nanmax(np.abs(panel))) if panel.size else 0.0
        show_array(
            axes,
            np.clip(panel, -limit, limit),
            f"{title}: worst {worst:.2g}",
            limit=limit,
            annotate=panel.size <= 36,
            number_format=".2f",
            colorbar_label="(y - reference) / bound",
        )
        axes.set_xlabel("output column")
        axes.set_ylabel("output row" if spatial_rank > 1 else "")
    figure.suptitle(
        f"polyconv verify, {report.dtype}: y's error / bound at each output position, the largest "
        "over batch and channels (a backend passes within ±1)"
    )
    return figure
