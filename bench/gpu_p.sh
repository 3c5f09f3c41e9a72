#!/usr/bin/env bash
# One pass on a lent GPU (helper P, issue 11/12): the NaN reproduction, the engine against airbench's own loop
# with HILL/plain per mode, cifar_cpu_fast and airbench on the real CIFAR-10 subset, the CPU engine benchmark on
# that machine's (quiet) CPU, and the CUDA tests of the step and the models. Needs, carried: .whl (the airbench
# 0.1.8 sdist) and .data_p/cifar10-real (a copy of ../shared/data/cifar10-real).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
source bench/gpu_shim.sh
tar xzf .whl/airbench-0.1.8.tar.gz -C /tmp
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-cache
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python -c "import torch, os; print('torch', torch.__version__, 'cpus', os.cpu_count())" | tee -a "$OUT/device.txt"
T0=$(date +%s)
STAGES=${P_STAGES:-"nan gpu accuracy cpu tests"}   # a follow-up pass runs only some
MODES=${P_MODES:-"eager,eager-nograph,default,loss-only,fp16"}
on() { [[ " $STAGES " == *" $1 "* ]]; }
stage() { echo "== $1 ($(( $(date +%s) - T0 )) s)"; }
stage nan_repro
on nan && timeout 75 python bench/nan_repro.py cuda --net 2>&1 | grep -v "Warning\|warn\|detach" | tee "$OUT/nan_repro.txt"
stage gpu_vs_airbench
on gpu && timeout ${P_GPU_TIMEOUT:-190} python bench/gpu_vs_airbench.py --airbench-path /tmp/airbench-0.1.8 --modes "$MODES" --epochs ${P_EPOCHS:-4} 2>&1 | grep -v "UserWarning\|warnings.warn" | tee "$OUT/gpu_vs_airbench.txt"
stage cifar_accuracy
on accuracy && timeout 60 python bench/cifar_cpu.py accuracy --data-root .data_p/cifar10-real --device cuda --seeds 0,1,2 2>&1 | tee "$OUT/cifar_accuracy.txt"
stage engine_cpu
on cpu && timeout 30 python bench/engine_overhead.py --device cpu --epochs 15 2>&1 | tee "$OUT/engine_cpu_device.txt"
stage cuda_tests
on tests || exit 0
(cd tests && timeout ${P_TEST_TIMEOUT:-75} python -m pytest -q -x -p no:cacheprovider --rootdir=. test_step.py test_models.py test_optimizers.py test_augment.py -m cuda ${P_TESTK:+-k "$P_TESTK"} 2>&1 | tail -6) | tee "$OUT/pytest_cuda.txt"
stage done
