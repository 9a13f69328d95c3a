"""A description of the machine and the libraries, printed above every result table: a timing
means nothing without the CPU, the core count and the thread settings it was taken with."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "XLA_FLAGS",
    "POLYCONV_NUM_THREADS",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, Any]:
    """CPU, cores, load, library versions and thread settings, as JSON-ready values."""
    from polyconv.backends._numpy.parallel import thread_count

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            p: _version(p) for p in ("polyconv", "numpy", "scipy", "torch", "jax", "jaxlib")
        },
        "threads": {
            "environment": {v: os.environ.get(v, "unset") for v in THREAD_VARIABLES},
            "polyconv_numpy_threads": thread_count(),
        },
    }
    try:
        import torch

        info["threads"]["torch_intra_op"] = torch.get_num_threads()
        info["threads"]["torch_inter_op"] = torch.get_num_interop_threads()
    except ImportError:
        pass
    try:
        import jax

        info["jax_devices"] = [str(d) for d in jax.devices()]
    except ImportError:
        pass
    return info


def markdown(info: dict[str, Any]) -> str:
    """The description as a markdown bullet list."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    threads = info["threads"]
    env = ", ".join(f"{k}={v}" for k, v in threads["environment"].items())
    lines = [
        f"- CPU: {info['cpu']}; {info['logical_cores']} logical cores, "
        f"{info['usable_cores']} usable by this process",
        f"- Load average (1, 5, 15 min) at start: {info['load_average_1_5_15']}",
        f"- {info['platform']}, Python {info['python']}",
        f"- Versions: {versions}",
        f"- Threads: torch intra-op {threads.get('torch_intra_op')}, "
        f"inter-op {threads.get('torch_inter_op')}; "
        f"polyconv NumPy pool {threads['polyconv_numpy_threads']}; environment: {env}",
    ]
    if "jax_devices" in info:
        lines.append(f"- JAX devices: {', '.join(info['jax_devices'])}")
    return "\n".join(lines)
