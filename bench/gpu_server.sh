#!/usr/bin/env bash
# The control server's cost on a lent GPU (issue 9.8), in one call: the served/unserved epoch-time ratio of the
# airbench net on 50,000 CIFAR-shaped images (server off, on with no client, on with one subscribed client in
# another process), the 3,000-point snapshot to a RemoteRunClient, and, on that machine's quiet CPU, the digits
# ratio and the command round trip. Needs, carried: .carry/whl (wheels of fastapi, uvicorn, websockets, httpx
# and their dependencies for the GPU image's Python; the image has no network).
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_shim.sh
python -m pip install -q --no-index --find-links .carry/whl --target /tmp/pydeps fastapi uvicorn websockets httpx 2>&1 | tail -3
export PYTHONPATH=$SHIM:/tmp/pydeps TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-cache
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python -c "import torch, os, fastapi, uvicorn; print('torch', torch.__version__, 'cpus', os.cpu_count(), 'fastapi', fastapi.__version__, 'uvicorn', uvicorn.__version__)" | tee -a "$OUT/device.txt"
timeout ${S_GPU_TIMEOUT:-330} python bench/server_bench.py --device cuda --dataset synthetic-cifar --epochs ${S_EPOCHS:-6} \
    --repeats ${S_REPEATS:-5} --batch-size 1000 --parts 1,3 2>&1 | grep -v "UserWarning\|warnings.warn" | tee "$OUT/server_gpu.txt"
OMP_NUM_THREADS=1 timeout ${S_CPU_TIMEOUT:-150} python bench/server_bench.py --device cpu --repeats 9 --parts 1,2 2>&1 \
    | tee "$OUT/server_cpu_gpu_host.txt"
