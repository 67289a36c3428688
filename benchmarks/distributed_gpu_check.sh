#!/usr/bin/env bash
# Data parallel on a GPU machine: 2 MPI ranks sharing one GPU (a correctness check, not a speed-up).
#
#   bash benchmarks/distributed_gpu_check.sh          (from the repository root; about 2 minutes)
#
# Needs CuPy and a GPU, plus mpi4py and mpiexec. Offline machines: put the wheels in a folder
# (pip download mpi4py mpich -d .mpi-wheels, for the GPU machine's Python) and set
# MPI_WHEELS=.mpi-wheels; they are installed from there, nothing from the network.
# Runs: tests/test_distributed.py (the GPU cases compare 2 ranks on CuPy, float64, with one
# process on the CPU, to 1e-10, with synchronised and local batch norm), whether the MPI is
# CUDA-aware, and 20 steps of ResNet-20 with `train --distributed --device gpu` on 2 ranks and
# on 1 process. Logs in ${OUT:-/tmp}/distributed_gpu/. Non-zero exit on any failure.
set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
LOG=${OUT:-/tmp}/distributed_gpu
mkdir -p "$LOG"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=2
status=0

if ! $PY -c "import mpi4py" 2>/dev/null && [ -n "${MPI_WHEELS:-}" ]; then
    $PY -m pip install -q --no-index --find-links "$MPI_WHEELS" mpi4py mpich 2>&1 | tail -n 3
fi
MPIEXEC=$(dirname "$(command -v $PY)")/mpiexec
[ -x "$MPIEXEC" ] || MPIEXEC=$(command -v mpiexec || true)
if ! $PY -c "import mpi4py" 2>/dev/null || [ -z "$MPIEXEC" ]; then
    echo "FAIL: mpi4py or mpiexec missing (set MPI_WHEELS, see the top of this script)" >&2
    exit 2
fi

echo "== tests/test_distributed.py (GPU cases included)"
$PY -m pytest -q -rs -p no:cacheprovider tests/test_distributed.py 2>&1 | tee "$LOG/pytest.txt" || status=1

echo "== CUDA-aware MPI?"
"$MPIEXEC" -n 1 $PY -c "from minires.distributed import cuda_aware_mpi; print('cuda_aware_mpi():', cuda_aware_mpi())" 2>&1 | tee "$LOG/cuda_aware.txt" || status=1

echo "== ResNet-20, 20 steps, synthetic data: 1 process, then 2 ranks on the same GPU"
ARGS=(--depth 20 --device gpu --dataset synthetic --iterations 20 --no-progress)
$PY -m minires.train "${ARGS[@]}" --out "$LOG/run1" 2>&1 | tee "$LOG/train1.txt" | tail -n 2 || status=1
"$MPIEXEC" -n 2 $PY -m minires.train "${ARGS[@]}" --distributed --out "$LOG/run2" 2>&1 | tee "$LOG/train2.txt" | tail -n 3 || status=1
"$MPIEXEC" -n 2 $PY -m minires.train "${ARGS[@]}" --distributed --sync-bn --out "$LOG/run2sync" 2>&1 | tee "$LOG/train2sync.txt" | tail -n 2 || status=1

echo "== summary: $(tail -n 1 "$LOG/pytest.txt"); $(cat "$LOG/cuda_aware.txt"); exit $status"
exit $status
