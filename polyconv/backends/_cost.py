"""``method="auto"``: choose between the direct and the FFT method by a cost model.

In the spirit of ``scipy.signal.choose_conv_method``: count the work each method does on this
problem and weigh it by measured per-backend speeds; the cheaper estimate wins, and ties go to
the direct method (exact summation order, no FFT rounding). The counts follow the algorithms as
implemented, so the model sees what makes each one fast or slow:

- Direct, NumPy: with one input and one output channel and a small kernel, one multiply and
  one add per tap and output (elementwise passes over blocks of rows); with one input channel
  per group otherwise, Toeplitz tiles (``t`` outputs against
  ``L = (t - 1) * stride + extent`` inputs per kernel row, ``L / kernel`` times the defining
  multiply-adds, at matrix-product speed), plus the copy of every input row's tile windows and
  the sum of the kernel rows' products; otherwise
  im2col (one copy of every window, then a matrix product of the defining multiply-adds).
- Direct, PyTorch and JAX: the native convolution, whose speed depends on how much the channels
  feed the matrix units: a problem with one input and one output channel runs far below the
  peak rate (docs/benchmarks.md, "Design measurements", native-rates).
  Modelled as a rate rising with the contraction length ``C_in/G * prod(kernel)`` and with the
  output channels per group, plus a memory term per input and output element.
- FFT: NumPy's overlap-save plan of :mod:`polyconv._plan.fft`, or for PyTorch and JAX one
  whole-image transform (:mod:`polyconv._plan.whole`): forward transforms of
  the input tiles (``N * C_in``), inverse transforms of the output tiles (``N * C_out``), each
  ``~ length * log2(length)``, one complex product per (input, output) channel pair and
  frequency, and a per-sample term for tile copies; stride does not shrink any of it (the FFT
  computes every stride-1 output and keeps every ``stride``-th), which is why strided problems
  stay direct.

The constants were fitted to medians measured with ``python -m benchmarks`` on the project's
2-core machine, by ``python -m benchmarks.fit_methods``; only ratios within one backend matter.
``tests/test_methods.py`` checks the choice on the benchmark cases against the method that
measured faster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._plan.fft import fft_fits, fft_plan
from .._plan.whole import whole_image_fft
from .._spec.spec import CorrSpec
from ._interface import Method
from ._numpy.parallel import thread_count
from ._numpy.taps import numpy_uses_taps
from ._numpy.tiles import numpy_tile_length, numpy_tile_width, numpy_uses_tiles


@dataclass(frozen=True)
class CostModel:
    """Seconds per unit of counted work, for one backend (see the module docstring)."""

    # Direct method.
    gemm: float  # per multiply-add at matrix-product speed
    narrow: float  # per multiply-add when the contraction is one tap of one channel (native)
    contraction_knee: float  # contraction length at which the rate is halfway to ``gemm``
    direct_element: float  # per input/output element moved (or accumulator pass, NumPy)
    direct_call: float  # per call
    # FFT method.
    fft: float  # per length * log2(length) of one transform
    spectral: float  # per complex multiply-add of the spectral product
    fft_element: float  # per tile sample copied or cropped
    fft_call: float  # per call


# Fitted to the medians of ``python -m benchmarks`` (benchmarks/results.json) on the project's
# 2-core machine by ``python -m benchmarks.fit_methods``: least squares on the log of each
# case's direct/FFT time ratio (what the choice depends on), plus a lighter weight on the log of
# each time. A constant the fit drove to its floor is 0: that term is not what limits this
# backend on the benchmark cases.
MODELS: dict[str, CostModel] = {
    "numpy": CostModel(
        gemm=2e-11,
        narrow=4.9e-12,
        contraction_knee=3e-11,
        direct_element=6.2e-10,
        direct_call=0.00017,
        fft=9.1e-11,
        spectral=3.1e-09,
        fft_element=4.4e-09,
        fft_call=0.00076,
    ),
    "torch": CostModel(
        gemm=5.9e-11,
        narrow=9.1e-10,
        contraction_knee=4.4,
        direct_element=0.0,
        direct_call=3.2e-05,
        fft=1.6e-10,
        spectral=1.5e-08,
        fft_element=0.0,
        fft_call=0.00051,
    ),
    "jax": CostModel(
        gemm=6.5e-11,
        narrow=5.7e-09,
        contraction_knee=3.4,
        direct_element=0.0,
        direct_call=2.4e-05,
        fft=1.8e-10,
        spectral=9.3e-09,
        fft_element=0.0,
        fft_call=5e-05,
    ),
}


def _geometry(spec: CorrSpec) -> tuple[int, int, int, int, int]:
    """``(N, C_in, C_out, C_in/G, prod(out))``."""
    n, c_in = spec.x_shape[:2]
    c_out, cg = spec.w_shape[:2]
    return n, c_in, c_out, cg, math.prod(spec.out_shape[2:])


def direct_cost(spec: CorrSpec, backend: str | None = None) -> float:
    """Estimated seconds of the direct method on ``backend`` (None: NumPy)."""
    model = MODELS.get(backend or "numpy", MODELS["numpy"])
    n, c_in, c_out, cg, outputs = _geometry(spec)
    taps = math.prod(spec.kernel_shape)
    macs = n * c_out * outputs * cg * taps
    inputs = n * c_in * math.prod(spec.padded_shape)
    if backend in (None, "numpy") or backend not in MODELS:
        lead_taps = math.prod(spec.kernel_shape[:-1])
        if numpy_uses_taps(spec):  # a multiply and an add per tap and output, the first add spared
            return model.direct_call + n * outputs * (2 * taps - 1) * model.direct_element
        if numpy_uses_tiles(spec):
            t = numpy_tile_width(spec)
            width = spec.out_shape[-1]
            length = numpy_tile_length(spec, t)
            tiles = n * c_out * (outputs // width) * -(-width // t)
            tiled_macs = tiles * t * lead_taps * length
            # Each input row's windows are copied once, not once per kernel row; the kernel
            # rows' products are summed into the output.
            kernel_rows = spec.kernel_shape[0] if spec.rank > 1 else 1
            copies = n * c_in * (outputs // width) * -(-width // t) * lead_taps * length
            copies //= kernel_rows
            sums = tiles * t * (kernel_rows - 1)
            return (
                model.direct_call + tiled_macs * model.gemm + (copies + sums) * model.direct_element
            )
        copies = n * c_in * taps * outputs
        return model.direct_call + macs * model.gemm + copies * model.direct_element
    # A native convolution: the rate climbs from ``narrow`` towards ``gemm`` as the contraction
    # (input channels times taps) and the output channels per group grow.
    contraction = cg * taps * min(1.0, (c_out // spec.groups) / 8)
    share = contraction / (contraction + model.contraction_knee)
    per_mac = model.gemm * share + model.narrow * (1 - share)
    elements = inputs + n * c_out * outputs
    return model.direct_call + macs * per_mac + elements * model.direct_element


def fft_cost(spec: CorrSpec, backend: str | None = None) -> float:
    """Estimated seconds of the FFT method on ``backend`` (None: NumPy)."""
    model = MODELS.get(backend or "numpy", MODELS["numpy"])
    n, c_in, c_out, cg, _ = _geometry(spec)
    if backend in ("torch", "jax"):  # one whole-image transform per channel
        lengths, tiles = whole_image_fft(spec).lengths, 1
    else:  # NumPy's overlap-save tiles
        plans = fft_plan(spec, threads=thread_count())
        lengths, tiles = tuple(p.length for p in plans), math.prod(p.blocks for p in plans)
    length = math.prod(lengths)
    bins = length // lengths[-1] * (lengths[-1] // 2 + 1)  # real transform of the last axis
    transforms = n * (c_in + c_out) * tiles
    work = transforms * length * math.log2(max(length, 2)) * model.fft
    work += n * c_out * cg * tiles * bins * model.spectral
    work += transforms * length * model.fft_element
    return model.fft_call + work


def choose_method(spec: CorrSpec, backend: str | None = None) -> Method:
    """``"fft"`` when its estimated cost on ``backend`` is below the direct method's, else
    ``"direct"``. Kernels of one tap never use the FFT, nor does a problem whose transform could
    never be allocated (decided in O(axes), before any planning)."""
    if math.prod(spec.kernel_shape) == 1 or not fft_fits(spec):
        return "direct"
    return "fft" if fft_cost(spec, backend) < direct_cost(spec, backend) else "direct"
