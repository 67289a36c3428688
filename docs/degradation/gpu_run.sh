#!/usr/bin/env bash
# The committed degradation evidence, on one GPU: run from the repository root.
#
#   OUT=/some/dir bash docs/degradation/gpu_run.sh
#
# 1. `--preset gpu`: depths 20 32 44 56, plain and residual, 3 seeds, 30 epochs of the CIFAR-10
#    learner's subset (the preset's --subset 4000 1000), JOBS runs at a time sharing the GPU (a step at batch 128 is launch-bound);
# 2. the reports: figures, tables, summaries and Figure 7 from the trained checkpoints (on the GPU);
# 3. everything except the checkpoints (*.npz) into ONE archive, $OUT/degradation-results.tar.gz,
#    whatever happened before (a trap), and a short summary on stdout.
# Each phase has a hard timeout; a run cut short keeps its finished epochs. Calling the script
# again on the same machine resumes the unfinished runs (the work directory is gitignored).
#
# Environment: OUT (required), DATA (a CIFAR-10 archive or folder; default: where minires finds it,
# $MINIRES_DATA_DIR or the user cache), JOBS (default 14),
# EXTRA_ARGS (more options for every degradation call, e.g. --cuda-graph),
# TRAIN_TIMEOUT (s, default 320), REPORT_TIMEOUT (s, default 100), TINY=1 (a CPU smoke test:
# depths 8 and 14, width 4, 1 epoch of 256 images, 2 seeds).
set -euo pipefail

: "${OUT:?set OUT to the folder that receives the archive}"
DATA=${DATA:-}
JOBS=${JOBS:-14}
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-320}
REPORT_TIMEOUT=${REPORT_TIMEOUT:-100}
WORK=${WORK:-runs/gpu-evidence}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

DEVICE=gpu
SMALL=()
if [[ "${TINY:-0}" == 1 ]]; then
  DEVICE=cpu
  SMALL=(--depths 8 14 --width 4 --epochs 1 --train-limit 256 --batch-size 64 --trained-below 0.95)
  JOBS=${TINY_JOBS:-2}
fi
DEG="python -m minires.experiments.degradation ${DATA:+--data-dir $DATA} --device $DEVICE --no-progress"
read -r -a EXTRA <<< "${EXTRA_ARGS:-}"
GPU_ARGS=(--preset gpu --out "$WORK/gpu" ${SMALL[@]+"${SMALL[@]}"} ${EXTRA[@]+"${EXTRA[@]}"})
if [[ "${TINY:-0}" == 1 ]]; then GPU_ARGS+=(--seeds 2); fi
mkdir -p "$WORK/gpu" "$OUT"
LOG="$WORK/gpu_run.log"
START=$(date +%s)
say() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }

archive() {
  local rc=$?
  say "archiving (exit status so far: $rc)"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$WORK/device.txt" 2>/dev/null || echo "$DEVICE" > "$WORK/device.txt"
  tar -czf "$OUT/degradation-results.tar.gz" -C "$WORK" --exclude='*.npz' --exclude='*.tmp' --exclude='curves.png' . \
    || say "tar reported a problem (the archive may be partial)"
  ls -l "$OUT" || true
  for d in gpu; do
    if [[ -f "$WORK/$d/results.md" ]]; then
      echo "===== $d preset: findings ====="
      sed -n '/^- /p' "$WORK/$d/results.md" | cut -c1-400
    fi
  done
}
trap archive EXIT

if [[ -n "$DATA" && ! -e "$DATA" ]]; then say "no CIFAR-10 at DATA=$DATA: stopping"; exit 2; fi
if [[ $DEVICE == gpu ]]; then
  python -c "import cupy; print('CuPy', cupy.__version__, 'devices:', cupy.cuda.runtime.getDeviceCount())" 2>&1 | tee -a "$LOG"
fi
say "phase 1: training, $JOBS runs at a time on $DEVICE (timeout ${TRAIN_TIMEOUT}s)"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null | tee -a "$LOG" || true
rc=0
timeout -k 15 "$TRAIN_TIMEOUT" $DEG "${GPU_ARGS[@]}" --jobs "$JOBS" --no-responses > "$WORK/gpu_train.log" 2>&1 || rc=$?
say "phase 1 done (status $rc; 124 = timed out)"
tail -n 3 "$WORK/gpu_train.log" | tee -a "$LOG" || true
grep -h "img/s" "$WORK"/gpu/runs/*-s0/log.txt 2>/dev/null | tail -n 8 | cut -c1-160 | tee -a "$LOG" || true

# Phase 2: the report and Figure 7 from the trained checkpoints.
say "phase 2: the gpu preset's report (timeout ${REPORT_TIMEOUT}s)"
rc2=0
timeout -k 10 "$REPORT_TIMEOUT" $DEG "${GPU_ARGS[@]}" --report-only > "$WORK/gpu_report.log" 2>&1 || rc2=$?
say "phase 2 (gpu report) status $rc2"
grep -h "Met\|NOT met\|cannot be checked" "$WORK/gpu/results.md" 2>/dev/null | cut -c1-400 || true
