"""The benchmark cases and their targets (issue 6). Every case builds its arrays only when it
runs, so ``--only`` and ``--quick`` never allocate the large ones they skip."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import numpy as np

import polyconv as pc
from polyconv.backends import get as get_backend
from polyconv.lesson import band_image

from ._bench import Bench, Case, Target, Timed
from ._device import jax_array, torch_array

SECTIONS = {
    "images": "1. Single-channel images, NumPy backend vs torch and SciPy",
    "layers": "2. Multi-channel layers, NumPy backend forward and backward vs torch",
    "native": "3. Torch and JAX backends vs their native calls",
    "training": "4. Training: pc.fit vs a hand-written native loop",
    "memory": "5. Memory of the NumPy backend's forward",
    "methods": "6. Direct and FFT methods on the layers: what the cost model must choose between",
}

NOTES = {
    "methods": (
        "pc.correlate(x, w, method=...) on each backend's own arrays, for the layers of section 2 "
        "and four small problems (valid padding). "
        "*auto chose* is the method the cost model (polyconv.backends._cost) picks; tests/test_methods.py "
        "checks it against these rows and those of sections 1 and 3 (benchmarks/results.json)."
    ),
    "images": (
        "x is (1, 1, H, W) and w (1, 1, k, k), float32, valid padding. SciPy gets the 2-D arrays; "
        "fftconvolve and oaconvolve get the flipped kernel (they convolve). Ratios are to the "
        "fastest of torch and the three SciPy calls."
    ),
    "layers": (
        "Padding 1 (dilation 2: padding 2), so stride-1 outputs are 'same'. *forward*: one "
        "pc.correlate(x, w) or F.conv2d(x, w). *backward*: `torch fwd+autograd.grad` runs "
        "y = F.conv2d(x, w) and torch.autograd.grad(y, (x, w), grad_y) in every call (autograd "
        "needs the fresh graph); `polyconv numpy fwd+vjp` runs pc.correlate then "
        "pc.correlate_vjp(x, w, None, grad_y), the same work; `polyconv numpy vjp` is "
        "correlate_vjp alone (it recomputes no forward). The target compares fwd+bwd with fwd+bwd."
    ),
    "native": (
        "pc.correlate on torch tensors vs F.conv2d, and on jax arrays vs "
        "jax.jit(lax.conv_general_dilated, precision=HIGHEST); x (1, 1, H, W), valid padding. "
        "JAX results are waited for with block_until_ready. *lesson*: the 6x8 image and a 1x2 "
        "kernel; its target is on the overhead, polyconv median minus native median."
    ),
    "training": (
        "Seconds per steady-state step of full-batch SGD (momentum 0, no bias): each run trains "
        "51 steps from fresh parameters and times steps 1 to 50 from inside (a perf_counter "
        "stamp after each step: pc.fit's callback, the same stamp in the native loops), so "
        "setup and the first step (JAX's compile) are excluded on both sides. Native torch: "
        "autograd, `w -= lr * w.grad` under no_grad, loss.item() per step. Native JAX: "
        "jax.jit(jax.value_and_grad(loss)), `w = w - lr * g` and float(loss) per step. Lesson: "
        "sum-of-squares loss, lr 3e-2; N8: mean-squared loss, lr 3e-2."
    ),
    "memory": (
        "Peak of tracemalloc's traced memory during one forward call (after a warm-up call), "
        "tracing started after the inputs were built; the ratio is peak / (input + output "
        "bytes), target <= 2. The backend's kept scratch buffers are released before the call, "
        "so they count. NumPy reports its array buffers to tracemalloc; scratch memory "
        "inside BLAS and pocketfft is not traced."
    ),
}

RNG_SEED = 0


def _normal(*shape: int) -> np.ndarray:
    return np.random.default_rng(RNG_SEED).standard_normal(shape, dtype=np.float32)


def _auto_method(x: np.ndarray, w: np.ndarray, backend: str, **options: Any) -> str:
    """The method ``method="auto"`` resolves to for this problem on ``backend``."""
    return get_backend(backend).choose_method(pc.normalize(x.shape, w.shape, **options))


# --- 1. single-channel images --------------------------------------------------------------------


def _images(size: int, k: int) -> Bench:
    import torch.nn.functional as F
    from scipy import signal

    x, w = _normal(1, 1, size, size), _normal(1, 1, k, k)
    xt, wt = torch_array(x), torch_array(w)
    x2, w2 = x[0, 0], w[0, 0]
    flipped = np.ascontiguousarray(w2[::-1, ::-1])
    natives = (
        "torch F.conv2d",
        "scipy correlate(auto)",
        "scipy fftconvolve",
        "scipy oaconvolve",
    )
    return Bench(
        impls={
            "polyconv numpy auto": lambda: pc.correlate(x, w),
            "polyconv numpy direct": lambda: pc.correlate(x, w, method="direct"),
            "polyconv numpy fft": lambda: pc.correlate(x, w, method="fft"),
            natives[0]: lambda: F.conv2d(xt, wt),
            natives[1]: lambda: signal.correlate(x2, w2, mode="valid", method="auto"),
            natives[2]: lambda: signal.fftconvolve(x2, flipped, mode="valid"),
            natives[3]: lambda: signal.oaconvolve(x2, flipped, mode="valid"),
        },
        baseline=natives,
        methods={"polyconv numpy auto": _auto_method(x, w, "numpy")},
        targets=[Target("numpy auto <= 1.0x best of torch/SciPy", "polyconv numpy auto", natives)],
        problem=_problem(x, w),
    )


# --- 2. multi-channel layers ----------------------------------------------------------------------


class Layer(NamedTuple):
    shape: tuple[int, int, int, int]  # x: (N, C, H, W)
    out_channels: int
    stride: int = 1
    dilation: int = 1


LAYERS = {
    "N32-C16-64x64-O32-k3": Layer((32, 16, 64, 64), 32),
    "N8-C64-56x56-O64-k3": Layer((8, 64, 56, 56), 64),
    "N32-C16-64x64-O32-k3-stride2": Layer((32, 16, 64, 64), 32, stride=2),
    "N32-C16-64x64-O32-k3-dilation2": Layer((32, 16, 64, 64), 32, dilation=2),
}


def _layer_arrays(name: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """x, a 3x3 w, and the options: padding = dilation keeps stride-1 outputs "same"."""
    layer = LAYERS[name]
    options = dict(stride=layer.stride, padding=layer.dilation, dilation=layer.dilation)
    return _normal(*layer.shape), _normal(layer.out_channels, layer.shape[1], 3, 3), options


def _problem(x: np.ndarray, w: np.ndarray, **options: object) -> dict[str, object]:
    return {"x_shape": list(x.shape), "w_shape": list(w.shape), "options": options}


# Small problems where the two methods are close: a cost model that is only right for large
# ones would choose badly here (the lesson's size is in section 3).
SMALL_PROBLEMS = {
    "N8-C3-32x32-O8-k3": ((8, 3, 32, 32), (8, 3, 3, 3)),
    "N4-C8-32x32-O8-k5": ((4, 8, 32, 32), (8, 8, 5, 5)),
    "N1-C1-64x64-O1-k3": ((1, 1, 64, 64), (1, 1, 3, 3)),
    "N1-C1-128x128-O1-k5": ((1, 1, 128, 128), (1, 1, 5, 5)),
    "N1-C1-6x8-O1-k1x2": ((1, 1, 6, 8), (1, 1, 1, 2)),  # the lesson's size
    "N2-C3-12x12-O4-k3": ((2, 3, 12, 12), (4, 3, 3, 3)),
}


def _layer_methods(backend: str, name: str) -> Bench:
    """The direct and FFT methods of one backend on a layer (or a small problem), and what
    "auto" chose."""
    if name in SMALL_PROBLEMS:
        x_shape, w_shape = SMALL_PROBLEMS[name]
        x, w, options = _normal(*x_shape), _normal(*w_shape), {}
    else:
        x, w, options = _layer_arrays(name)
    if backend == "torch":
        xb, wb = torch_array(x), torch_array(w)
    elif backend == "jax":
        xb, wb = jax_array(x), jax_array(w)
    else:
        xb, wb = x, w
    rows = {
        f"polyconv {backend} {method}": partial(pc.correlate, xb, wb, method=method, **options)
        for method in ("direct", "fft")
    }
    return Bench(
        impls=rows,  # type: ignore[arg-type]
        baseline=tuple(rows),
        methods={name: _auto_method(x, w, backend, **options) for name in rows},
        problem=_problem(x, w, **options),
    )


def _layer_forward(name: str) -> Bench:
    import torch.nn.functional as F

    x, w, options = _layer_arrays(name)
    xt, wt = torch_array(x), torch_array(w)
    return Bench(
        impls={
            "polyconv numpy auto": lambda: pc.correlate(x, w, **options),
            "torch F.conv2d": lambda: F.conv2d(xt, wt, **options),
        },
        baseline=("torch F.conv2d",),
        methods={"polyconv numpy auto": _auto_method(x, w, "numpy", **options)},
        targets=[Target("forward <= 2.0x torch", "polyconv numpy auto", ("torch F.conv2d",), 2.0)],
    )


def _layer_backward(name: str) -> Bench:
    import torch
    import torch.nn.functional as F

    x, w, options = _layer_arrays(name)
    grad_y = _normal(*pc.output_shape(x.shape, w.shape, **options))
    xt = torch_array(x).requires_grad_()
    wt = torch_array(w).requires_grad_()
    gt = torch_array(grad_y)

    def torch_backward() -> object:
        return torch.autograd.grad(F.conv2d(xt, wt, **options), (xt, wt), gt)

    def polyconv_backward() -> object:
        pc.correlate(x, w, **options)
        return pc.correlate_vjp(x, w, None, grad_y, **options)

    native = ("torch fwd+autograd.grad",)
    return Bench(
        impls={
            "polyconv numpy fwd+vjp": polyconv_backward,
            "polyconv numpy vjp": lambda: pc.correlate_vjp(x, w, None, grad_y, **options),
            native[0]: torch_backward,
        },
        baseline=native,
        methods={"polyconv numpy vjp": _auto_method(x, w, "numpy", **options)},
        targets=[Target("fwd+bwd <= 2.5x torch fwd+bwd", "polyconv numpy fwd+vjp", native, 2.5)],
    )


# --- 3. torch and JAX backends vs native -----------------------------------------------------------

LESSON_KERNEL = np.array([[[[1.0, -1.0]]]], dtype=np.float32)


def _native_problem(size: int | None, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``None`` sizes: the lesson's 6x8 band image and its 1x2 kernel."""
    if size is None:
        return band_image()[None, None], LESSON_KERNEL
    return _normal(1, 1, size, size), _normal(1, 1, k, k)  # type: ignore[arg-type]


def _native_targets(row: str, native: str, k: int | None, may_use_fft: bool) -> list[Target]:
    """Overhead on the lesson's problem; else auto no slower than native, and faster with large
    kernels where "auto" may choose the FFT (``Backend.auto_may_use_fft``: not on JAX with its
    64-bit mode off, its default, whose float32 transforms would cost accuracy)."""
    if k is None:
        return [Target("overhead < 10 us", row, (native,), 10e-6, "overhead", strict=True)]
    targets = [Target("auto <= 1.05x native", row, (native,), 1.05)]
    if k >= 11 and may_use_fft:
        targets.append(Target("auto faster than native", row, (native,), 1.0, strict=True))
    return targets


def _native_bench(
    backend: str,
    size: int | None,
    k: int | None,
    convert: Callable[[np.ndarray], Any],
    native: str,
    native_call: Callable[[Any, Any], Any],
) -> Bench:
    """polyconv's ``backend`` on its own arrays (``convert``) against ``native_call`` on them."""
    x, w = _native_problem(size, k)
    xb, wb = convert(x), convert(w)
    owner = get_backend(backend)
    auto = f"polyconv {backend} auto"
    return Bench(
        impls={
            auto: lambda: pc.correlate(xb, wb),
            f"polyconv {backend} direct": lambda: pc.correlate(xb, wb, method="direct"),
            f"polyconv {backend} fft": lambda: pc.correlate(xb, wb, method="fft"),
            native: lambda: native_call(xb, wb),
        },
        baseline=(native,),
        methods={auto: _auto_method(x, w, backend)},
        targets=_native_targets(auto, native, k, owner.auto_may_use_fft(owner.device_name(xb))),
        problem=_problem(x, w),
    )


def _torch_backend(size: int | None, k: int | None) -> Bench:
    import torch.nn.functional as F

    return _native_bench("torch", size, k, torch_array, "torch F.conv2d", F.conv2d)


def _jax_conv() -> Callable[..., Any]:
    import jax

    def conv(x: Any, w: Any) -> Any:
        return jax.lax.conv_general_dilated(
            x, w, (1, 1), "VALID", precision=jax.lax.Precision.HIGHEST
        )

    return jax.jit(conv)


def _jax_backend(size: int | None, k: int | None) -> Bench:

    native = "jax.jit(lax.conv_general_dilated)"
    return _native_bench("jax", size, k, jax_array, native, _jax_conv())


# --- 4. training ----------------------------------------------------------------------------------

STEPS = 50  # timed steps; each run trains one more, the untimed first step
LEARNING_RATE = 3e-2


def _training_problem(problem: str) -> tuple[np.ndarray, np.ndarray, pc.Conv2D, str]:
    """x, y, a fresh-layer template and the loss, batched (N, C, H, W) for the native loops."""
    if problem == "lesson":
        x = band_image()[None, None]
        layer = pc.Conv2D((1, 2), bias=False, backend="numpy")
        return x, pc.correlate(x, LESSON_KERNEL), layer, "sse"
    x = _normal(8, 3, 32, 32)
    true_w = np.random.default_rng(RNG_SEED + 1).standard_normal((8, 3, 3, 3), dtype=np.float32)
    layer = pc.Conv2D(3, in_channels=3, out_channels=8, bias=False, backend="numpy")
    return x, pc.correlate(x, true_w), layer, "mse"


def _steady(stamps: list[float]) -> Timed:
    """Seconds per step from step 1 to the last, from the stamps taken after each step."""
    return Timed((stamps[-1] - stamps[0]) / (len(stamps) - 1))


def _fit_run(x: np.ndarray, y: np.ndarray, template: pc.Conv2D, loss: str, backend: str) -> Timed:
    layer = pc.Conv2D(template.kernel_size, bias=False, backend=backend, **_channels(template))
    stamps: list[float] = []
    pc.fit(layer, x, y, lr=LEARNING_RATE, steps=STEPS + 1, loss=loss, callback=_stamper(stamps))
    return _steady(stamps)


def _channels(layer: pc.Conv2D) -> dict[str, Any]:
    return dict(in_channels=layer.in_channels, out_channels=layer.out_channels)


def _stamper(stamps: list[float]) -> Callable[[int, float], None]:
    def stamp(step: int, loss: float) -> None:
        stamps.append(time.perf_counter())

    return stamp


def _torch_loop(x: np.ndarray, y: np.ndarray, w0: np.ndarray, loss: str) -> Timed:
    import torch
    import torch.nn.functional as F

    xt, yt = torch_array(x), torch_array(y)
    w: Any = torch.tensor(w0, requires_grad=True)  # Any: mypy cannot see .grad is set
    reduce = torch.sum if loss == "sse" else torch.mean
    stamps, history = [], []
    for _ in range(STEPS + 1):
        value = reduce((F.conv2d(xt, w) - yt) ** 2)
        value.backward()
        with torch.no_grad():
            w -= LEARNING_RATE * w.grad
        w.grad = None
        history.append(value.item())
        stamps.append(time.perf_counter())
    return _steady(stamps)


def _jax_loop(x: np.ndarray, y: np.ndarray, w0: np.ndarray, loss: str) -> Timed:
    import jax
    import jax.numpy as jnp

    conv = _jax_conv()
    reduce = jnp.sum if loss == "sse" else jnp.mean

    def objective(w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        return reduce((conv(x, w) - y) ** 2)

    step = jax.jit(jax.value_and_grad(objective))  # built afresh, as pc.fit compiles afresh
    xj, yj, w = jax_array(x), jax_array(y), jax_array(w0)
    stamps, history = [], []
    for _ in range(STEPS + 1):
        value, grad = step(w, xj, yj)
        w = w - LEARNING_RATE * grad
        history.append(float(value))
        stamps.append(time.perf_counter())
    return _steady(stamps)


def _training(backend: str, problem: str) -> Bench:
    x, y, template, loss = _training_problem(problem)
    w0 = np.asarray(template.params.weight)
    native = f"native {backend} loop"
    loop = _torch_loop if backend == "torch" else _jax_loop
    return Bench(
        impls={
            f"pc.fit ({backend})": lambda: _fit_run(x, y, template, loss, backend),
            native: lambda: loop(x, y, w0, loss),
        },
        baseline=(native,),
        targets=[Target("step <= 1.3x native", f"pc.fit ({backend})", (native,), 1.3)],
    )


# --- 5. memory ------------------------------------------------------------------------------------


def _memory(size: int, k: int) -> Bench:
    x, w = _normal(1, 1, size, size), _normal(1, 1, k, k)
    out_bytes = 4 * (size - k + 1) ** 2
    rows = ("polyconv numpy auto", "polyconv numpy direct", "polyconv numpy fft")
    return Bench(
        impls={
            rows[0]: lambda: pc.correlate(x, w),
            rows[1]: lambda: pc.correlate(x, w, method="direct"),
            rows[2]: lambda: pc.correlate(x, w, method="fft"),
        },
        baseline=(),
        methods={rows[0]: _auto_method(x, w, "numpy")},
        targets=[Target("peak <= 2x (input + output)", r, limit=2.0, kind="memory") for r in rows],
        memory_bytes=x.nbytes + out_bytes,
    )


# --- the registry ---------------------------------------------------------------------------------


def all_cases() -> list[Case]:
    cases = [
        Case(f"images/{n}x{n}/k{k}", "images", n == 512 and k != 5, partial(_images, n, k))
        for n in (512, 2048)
        for k in (3, 5, 11, 31)
    ]
    cases += [  # --quick: the stride-2 layer, the cheapest (a quarter of the outputs)
        Case(f"layers/{layer}/{kind}", "layers", "stride2" in layer, partial(setup, layer))
        for layer in LAYERS
        for kind, setup in (("forward", _layer_forward), ("backward", _layer_backward))
    ]
    problems: list[tuple[int | None, int | None]] = [
        *((n, k) for n in (512, 2048) for k in (3, 11, 31)),
        (None, None),  # the lesson
    ]
    cases += [
        Case(
            f"native/{name}/" + ("lesson-6x8/k1x2" if n is None else f"{n}x{n}/k{k}"),
            "native",
            n is None or (n == 512 and k in (3, 31)),
            partial(native, n, k),
        )
        for name, native in (("torch", _torch_backend), ("jax", _jax_backend))
        for n, k in problems
    ]
    cases += [  # not in --quick: the FFT of a whole layer takes a quarter of a second
        Case(f"methods/{b}/{layer}", "methods", False, partial(_layer_methods, b, layer))
        for b in ("numpy", "torch", "jax")
        for layer in (*LAYERS, *SMALL_PROBLEMS)
    ]
    cases += [
        Case(f"training/{b}/{p}", "training", p == "lesson", partial(_training, b, p))
        for b in ("torch", "jax")
        for p in ("lesson", "N8-C3-32x32-O8-k3")
    ]
    cases.append(Case("memory/2048x2048/k11", "memory", True, partial(_memory, 2048, 11)))
    return cases
