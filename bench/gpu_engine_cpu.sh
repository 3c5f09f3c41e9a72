set -uo pipefail
SHIM=/tmp/shim; rm -rf $SHIM; mkdir -p $SHIM
cp -r hill_app $SHIM/hill_app; cp -r losses $SHIM/hill_app/losses; cp -r datasets $SHIM/hill_app/datasets; cp -r studies $SHIM/hill_app/studies
export PYTHONPATH=$SHIM PYTHONUNBUFFERED=1
for i in 1 2 3; do OMP_NUM_THREADS=1 timeout 60 python bench/engine_overhead.py --device cpu --epochs 15 2>&1 | grep "HILL/plain" | tail -1; done | tee $OUT/engine_cpu_gpu_host.txt
(cd tests && timeout 150 python -m pytest -q -x -p no:cacheprovider --rootdir=. test_step.py test_models.py test_hill_loss.py 2>&1 | tail -4) | tee $OUT/pytest_gpu_host.txt
