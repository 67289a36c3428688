#!/usr/bin/env bash
# Every CPU table of benchmarks/README.md ("Round two", then "Round three"), in one command, from the repository root:
#
#   PYTHON=/path/to/python-with-torch-and-mygrad bash benchmarks/cpu_report.sh
#
# Optional: BEFORE=/dir/holding/an/older/minires (adds that version to the one-process step
# comparison, e.g. from `git archive <commit> minires | tar -x -C /dir`), OUT=log directory.
# ROUND3_ONLY=1 runs round three's part alone.
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset for the runs (they select a slower kernel).
# At 1 thread the CPU clock is used (steady on a shared machine); at 2 threads only wall time
# can show what the second core buys, so run that part on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-/tmp/minires_cpu_report}
mkdir -p "$OUT"
run() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH="$PWD" "$PY" "$@"; }
before=()
if [ -n "${BEFORE:-}" ]; then before=(--before "$BEFORE"); fi

if [ -z "${ROUND3_ONLY:-}" ]; then   # ROUND3_ONLY=1: round three's tables alone
run benchmarks/ops_bench.py --threads 1 --clock cpu --repeats 12 | tee "$OUT/ops_1thread.txt"
run benchmarks/autotune_shapes.py | tee "$OUT/autotune_shapes.txt"
run benchmarks/ops_bench.py --threads 2 --repeats 12 | tee "$OUT/ops_2threads.txt"
if [ -n "${BEFORE:-}" ]; then
  run benchmarks/conv_ab.py --before "$BEFORE" | tee "$OUT/conv_threads.txt"
  run benchmarks/conv_ab.py --before "$BEFORE" --clock process | tee "$OUT/conv_threads_cpu.txt"
fi
run benchmarks/step_ab.py --threads 1 --clock cpu "${before[@]}" | tee "$OUT/steps_1thread.txt"
run benchmarks/step_ab.py --threads 2 "${before[@]}" | tee "$OUT/steps_2threads.txt"
run benchmarks/train_step.py --threads 1 2 | tee "$OUT/train_step_memory.txt"   # fresh processes: peak memory
run benchmarks/train_step.py --profile --models resnet20 --threads 1 --clock cpu | tee "$OUT/profile_1thread.txt"
run benchmarks/train_step.py --profile --models resnet20 --threads 2 | tee "$OUT/profile_2threads.txt"
fi

# Round three: for a quiet machine, wall clock throughout.
if [ -n "${BEFORE:-}" ]; then
  run benchmarks/conv_ab.py --before "$BEFORE" --repeats 5 --rounds 3 | tee "$OUT/r3_conv_threads.txt"
fi
run benchmarks/step_ab.py --models resnet20 resnet56 --threads 1 2 --steps 2 --rounds 5 "${before[@]}" | tee "$OUT/r3_steps.txt"
run benchmarks/step_ab.py --models resnet20 resnet56 --threads 1 2 --steps 2 --rounds 5 "${before[@]}" --malloc default | tee "$OUT/r3_steps_malloc_default.txt"
for round in 1 2; do
  for malloc in keep default; do
    run benchmarks/train_step.py --frameworks minires --threads 1 2 --steps 6 --malloc "$malloc" | tee "$OUT/r3_malloc_${malloc}_$round.txt"
  done
done
run benchmarks/train_step.py --threads 1 2 --steps 3 --frameworks minires torch mygrad | tee "$OUT/r3_peak_memory.txt"
run benchmarks/train_step.py --profile --models resnet20 --threads 1 --steps 4 | tee "$OUT/r3_profile_1thread.txt"
run benchmarks/train_step.py --profile --models resnet20 --threads 2 --steps 4 | tee "$OUT/r3_profile_2threads.txt"
echo "logs in $OUT"
