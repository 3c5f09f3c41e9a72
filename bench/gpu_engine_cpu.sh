#!/usr/bin/env bash
# On a lent GPU machine: bench/engine_overhead.py on its CPU three times, and the step, model and loss tests
# with CUDA.
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_shim.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
for i in 1 2 3; do OMP_NUM_THREADS=1 timeout 60 python bench/engine_overhead.py --device cpu --epochs 15 2>&1 | grep "HILL/plain" | tail -1; done | tee $OUT/engine_cpu_gpu_host.txt
(cd tests && timeout 150 python -m pytest -q -x -p no:cacheprovider --rootdir=. test_step.py test_models.py test_hill_loss.py 2>&1 | tail -4) | tee $OUT/pytest_gpu_host.txt
