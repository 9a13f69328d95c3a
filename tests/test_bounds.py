"""The error bounds hold a correct result at the precision it was computed in, and still catch a
misplaced tap; ``method="auto"`` never trades accuracy for speed behind the user's back."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend

import polyconv as pc
from polyconv._core.select import resolve_method
from polyconv.backends import get
from polyconv.testing import assert_close, round_to

INSTALLED = [name for name in ("numpy", "torch", "jax") if name in pc.backends()]


def test_correctly_rounded_float16_subnormal_results_pass_verify() -> None:
    x, w = np.full((1, 1, 4), 1e-3, np.float16), np.full((1, 1, 1), 1e-3, np.float16)
    report = pc.verify(x, w, bias=False, backends=INSTALLED, timing=False)
    assert report.ok, str(report)


def shifted_kernel_problem(dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image, a kernel, and the kernel with its taps moved by one along the last axis."""
    rng = np.random.default_rng(3)
    x = round_to(rng.uniform(2.0**-6, 1.0, (1, 2, 9, 9)), dtype)
    w = round_to(rng.uniform(2.0**-6, 1.0, (2, 2, 3, 3)), dtype)
    return x, w, np.roll(w, 1, axis=-1)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize(
    ("method", "fft_dtype"), [("direct", "float64"), ("fft", "float64"), ("fft", "float32")]
)
def test_a_misplaced_tap_fails_the_bound(dtype: str, method: str, fft_dtype: str) -> None:
    x, w, misplaced = shifted_kernel_problem(dtype)
    wrong = pc.reference.correlate(x, misplaced, padding=1)
    with pytest.raises(AssertionError, match="exceed the error bound"):
        assert_close(
            wrong,
            pc.reference.correlate(x, w, padding=1),
            x,
            w,
            dtype=dtype,
            spec_kwargs={"padding": 1},
            check_dtype=False,
            method=method,
            fft_dtype=fft_dtype,
        )


def wide_range_image() -> tuple[np.ndarray, np.ndarray]:
    """A 64x64 image whose halves differ by 1e12 in scale, and a 31x31 kernel (float32)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (1, 1, 64, 64)).astype(np.float32)
    x[..., 32:] *= np.float32(1e12)
    return x, rng.uniform(-1.0, 1.0, (1, 1, 31, 31)).astype(np.float32)


def test_jax_fft_without_x64_is_within_its_float32_bound() -> None:
    jax_backend = require_backend("jax")
    import jax

    assert not jax.config.jax_enable_x64, "the suite runs JAX at its defaults"
    assert jax_backend.fft_dtype("float32") == "float32"
    x, w = wide_range_image()
    y = pc.correlate(jax.numpy.asarray(x), jax.numpy.asarray(w), padding="same", method="fft")
    expected = pc.reference.correlate(x, w, padding="same")
    kwargs = {"padding": "same"}
    assert_close(y, expected, x, w, dtype="float32", spec_kwargs=kwargs, method="fft",
                 fft_dtype="float32")  # fmt: skip
    with pytest.raises(AssertionError):  # the float64 transforms' bound does not hold it
        assert_close(y, expected, x, w, dtype="float32", spec_kwargs=kwargs, method="fft")


def test_jax_auto_without_x64_computes_directly() -> None:
    require_backend("jax")
    import jax

    x, w = (jax.numpy.asarray(a) for a in wide_range_image())
    assert get("jax").choose_method(pc.normalize(x.shape, w.shape, padding="same")) == "fft"
    by_auto = np.asarray(pc.correlate(x, w, padding="same"))
    np.testing.assert_array_equal(by_auto, pc.correlate(x, w, padding="same", method="direct"))
    pc.clear_caches()  # the choice is made on a call's first run
    with jax.enable_x64(True):  # float64 transforms: then the cost model decides
        by_auto_x64 = np.asarray(pc.correlate(x, w, padding="same"))
        np.testing.assert_array_equal(by_auto_x64, pc.correlate(x, w, padding="same", method="fft"))


def test_auto_computes_directly_on_a_device_without_a_fitted_cost_model() -> None:
    torch_backend = require_backend("torch")
    spec = pc.normalize((1, 1, 256, 256), (1, 1, 31, 31))
    assert torch_backend.choose_method(spec) == "fft"  # its model, fitted on the CPU
    assert resolve_method(torch_backend, spec, "auto", "cuda:0") == "direct"
    assert resolve_method(torch_backend, spec, "fft", "cuda:0") == "fft"
    assert resolve_method(torch_backend, spec, "auto", "cpu") == "fft"


def test_verify_prints_the_precision_each_backend_ran_in() -> None:
    report = pc.verify((1, 1, 6), (1, 1, 3), backends=INSTALLED, timing=False)
    lines = str(report).splitlines()
    assert (
        "numpy precision: direct: float16 and bfloat16 accumulate in float32; FFT transforms in float64"
        in lines
    )
    if "torch" in INSTALLED:
        assert any(line.startswith("torch precision:") and "allow_tf32=" in line for line in lines)
    if "jax" in INSTALLED:
        assert any(
            line.startswith("jax precision:") and "64-bit mode off" in line
            and "jax_default_matmul_precision=" in line and "FFT transforms in float32" in line
            for line in lines
        )  # fmt: skip


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_verify_checks_bfloat16_on_every_backend_against_its_bound(method: str) -> None:
    from polyconv.cli import main

    report = pc.verify(
        (2, 3, 9, 8), (4, 3, 3, 3), dtype="bfloat16", backends=INSTALLED, timing=False,
        padding="same", method=method,
    )  # fmt: skip
    assert report.ok, str(report)
    assert [r.dtype for r in report.results] == ["bfloat16"] * len(INSTALLED)
    assert pc.testing.eps("bfloat16") == 2.0**-7
    argv = ["verify", "--input", "1,2,7", "--kernel", "3,2,3", "--dtype", "bfloat16"]
    assert main([*argv, "--backends", ",".join(INSTALLED), "--no-timing"]) == 0


def test_float16_with_bfloat16_computes_in_float32() -> None:
    import ml_dtypes

    y = pc.correlate(np.ones((1, 1, 4), np.float16), np.ones((1, 1, 2), ml_dtypes.bfloat16))
    assert y.dtype == np.float32
