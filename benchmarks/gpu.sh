#!/usr/bin/env bash
# The test suite's CUDA runs and the benchmarks on CUDA, on a machine with an NVIDIA GPU and
# CUDA builds of torch and/or JAX. Run from the repository root:
#     bash benchmarks/gpu.sh [OUTPUT_DIR]      (default: benchmarks/gpu-results)
# Writes OUTPUT_DIR/tests.txt (pytest's report of every test on torch-cuda and jax-cuda),
# OUTPUT_DIR/benchmarks.md and OUTPUT_DIR/benchmarks.json (python -m benchmarks --device cuda),
# and OUTPUT_DIR/nvidia-smi.txt (the device). Exits non-zero if either step failed.
set -u
out="${1:-benchmarks/gpu-results}"
python="${PYTHON:-python}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi not found" > "$out/nvidia-smi.txt"
"$python" - <<'PY' | tee -a "$out/nvidia-smi.txt"
import importlib.util
if importlib.util.find_spec("torch"):
    import torch
    print("torch", torch.__version__, "cuda available:", torch.cuda.is_available())
if importlib.util.find_spec("jax"):
    import jax
    print("jax", jax.__version__, "devices:", jax.devices())
PY

# The backend tests on CUDA: every test parametrised by the `backend` fixture, its -cuda ids.
"$python" -m pytest -q -p no:cacheprovider -rs -k "cuda" tests 2>&1 | tee "$out/tests.txt"
tests=${PIPESTATUS[0]}

"$python" -m benchmarks --device cuda --json "$out/benchmarks.json" > "$out/benchmarks.md"
bench=$?
tail -n 40 "$out/benchmarks.md"
echo "tests exit $tests, benchmarks exit $bench; results in $out"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
