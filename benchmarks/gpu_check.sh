#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: the gpu-marked tests, then the benchmarks on CuPy.
#
#   bash benchmarks/gpu_check.sh            (from the repository root)
#
# Needs CuPy, numpy, pytest and hypothesis already installed; installs nothing from the
# network (minires runs from the source tree via PYTHONPATH). Logs go to ${OUT:-/tmp}/gpu_check/.
# Exits non-zero when CuPy sees no GPU, when a test fails, or when a benchmark fails.
set -u -o pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
LOG=${OUT:-/tmp}/gpu_check
mkdir -p "$LOG"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0
summary=()

echo "== device"
nvidia-smi -L 2>&1 | tee "$LOG/nvidia-smi.txt" || echo "nvidia-smi not found or failed"
if ! $PY - <<'EOF' 2>&1 | tee "$LOG/cupy.txt"
import sys
import cupy
import minires
print("cupy", cupy.__version__, "| CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
      "| devices", cupy.cuda.runtime.getDeviceCount())
print("device 0:", cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
if not minires.gpu_available():
    sys.exit("minires.gpu_available() is False: CuPy imports but no CUDA device answers")
print("minires.gpu_available(): True")
EOF
then
    echo "FAIL: CuPy cannot use a GPU here (see $LOG/cupy.txt)" >&2
    exit 2
fi

echo "== gpu tests: $PY -m pytest -q -m gpu tests/"
if $PY -m pytest -q -m gpu tests/ 2>&1 | tee "$LOG/pytest_gpu.txt"; then
    summary+=("gpu tests      : $(tail -n 1 "$LOG/pytest_gpu.txt")")
else
    status=1
    summary+=("gpu tests      : FAILED -- $(tail -n 1 "$LOG/pytest_gpu.txt")")
fi

echo "== op benchmark: $PY benchmarks/ops_bench.py --device all --json $LOG/ops_bench.json"
if $PY benchmarks/ops_bench.py --device all --json "$LOG/ops_bench.json" 2>&1 | tee "$LOG/ops_bench.txt"; then
    summary+=("ops benchmark  : ok, table in $LOG/ops_bench.txt")
else
    status=1
    summary+=("ops benchmark  : FAILED (see $LOG/ops_bench.txt)")
fi

echo "== train-step benchmark: $PY benchmarks/train_step.py --device gpu"
if $PY benchmarks/train_step.py --device gpu --json "$LOG/train_step.json" 2>&1 | tee "$LOG/train_step.txt"; then
    summary+=("train step     : ok, table in $LOG/train_step.txt")
else
    status=1; summary+=("train step     : FAILED (see $LOG/train_step.txt)")
fi

echo
echo "== summary (logs in $LOG)"
head -n 1 "$LOG/nvidia-smi.txt" 2>/dev/null | sed 's/^/gpu            : /'
head -n 1 "$LOG/cupy.txt" | sed 's/^/cupy           : /'
printf '%s\n' "${summary[@]}"
if [ -f "$LOG/ops_bench.txt" ]; then
    echo "cupy rows (ms, minires vs torch-cuda if installed):"
    grep '^cupy ' "$LOG/ops_bench.txt" || echo "  (none)"
fi
[ -f "$LOG/train_step.txt" ] && grep -E '^resnet' "$LOG/train_step.txt"
[ "$status" -eq 0 ] && echo "RESULT: OK" || echo "RESULT: FAILED"
exit "$status"
