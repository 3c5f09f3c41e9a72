#!/usr/bin/env bash
# One pass on a lent GPU machine with PyTorch preinstalled: the engine benchmark (GPU and CPU) and the
# tests that exercise CUDA paths (the package on the path through bench/gpu_shim.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_shim.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
[ "${SKIP_BENCH:-0}" = 1 ] || python bench/engine_overhead.py --device all --compile 2>&1 | tee "$OUT/engine_overhead.txt"
# a whole headless run on CUDA: compile auto-on, edits at pauses, CIFAR-shaped data
# (from outside the checkout, so that `hill_app` resolves to the shim, not the source folder)
REPO=$PWD
(cd /tmp && python -m hill_app train --dataset synthetic --model airbench --epochs 6 --pause-at 3,5 \
    --edits "$REPO/bench/gpu_edits.json" --device cuda --out /tmp/gpu_run 2>&1 | tail -4 | tee "$OUT/gpu_run.txt")
(cd tests && python -m pytest -q -p no:cacheprovider --rootdir=. test_step.py test_augment.py test_models.py \
    test_hill_loss.py test_commands.py 2>&1 | tail -5 | tee "$OUT/pytest_cuda.txt")
