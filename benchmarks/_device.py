"""The device the benchmarks' torch and JAX arrays live on (``python -m benchmarks --device``).

NumPy (and SciPy, Dask) rows always run on the host; torch and JAX rows, native and polyconv
alike, get their arrays on the chosen device, and their timings wait for it to finish.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polyconv._timing import ready

DEVICES = ("cpu", "cuda")
_device = "cpu"


def set_device(name: str) -> None:
    """Use ``name`` (``"cpu"``, ``"cuda"`` or ``"cuda:N"``) for torch and JAX arrays; a CUDA
    device that neither framework finds is refused with the reason."""
    global _device
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and not index.isdigit()):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
    if kind == "cuda" and not (_torch_cuda() or _jax_gpus()):
        raise ValueError("--device cuda: neither torch nor JAX finds a CUDA device here")
    _device = name


def device() -> str:
    return _device


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _jax_gpus() -> list[Any]:
    try:
        import jax

        return list(jax.devices("gpu"))
    except (ImportError, RuntimeError):
        return []


def torch_array(a: np.ndarray) -> Any:
    """``a`` as a torch tensor on the benchmarks' device."""
    import torch

    tensor = torch.from_numpy(a)
    return tensor if _device == "cpu" else tensor.to(_device)


def jax_array(a: np.ndarray) -> Any:
    """``a`` as a JAX array on the benchmarks' device (committed to it, unless the CPU)."""
    import jax

    if _device == "cpu":
        return jax.numpy.asarray(a)
    index = _device.partition(":")[2]
    return jax.device_put(a, jax.devices("gpu")[int(index or 0)])


def wait(result: object) -> object:
    """``result`` once computed on the benchmarks' device: JAX's arrays (and tuples of them)
    by ``block_until_ready``, torch's CUDA work by synchronising."""
    ready(result)
    if _device != "cpu" and type(result).__module__.startswith("torch"):
        import torch

        torch.cuda.synchronize()
    return result
