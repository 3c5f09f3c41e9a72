#!/usr/bin/env bash
# `hill-app compare` on a lent GPU machine with PyTorch preinstalled, from the committed tree exported to
# .carry/src (so half-done edits in the working tree never travel into a measurement) and the real CIFAR-10
# subset copied to .carry/cifar10-real (both folders are ignored through .git/info/exclude; see
# docs/measuring-edits.md). Usage: bash bench/compare_gpu.sh OUTDIR [compare options...]
set -uo pipefail
cd "$(dirname "$0")/.."
SRC=${SRC:-.carry/src}
OUTDIR=$1; shift
source bench/gpu_shim.sh "$SRC"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.device_count())"
(cd /tmp && python3 -m hill_app.studies.compare "$@" --out "$OUTDIR")
