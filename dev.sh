#!/usr/bin/env bash
# One entry for the whole set-up: `./dev.sh run` opens the app, `./dev.sh test` runs the tests.
# Both create .venv on first use and install everything the project needs into it.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${HILL_VENV:-.venv}
PY=${PYTHON:-python3}

setup() {
    local stamp="$VENV/.installed-$(cat pyproject.toml constraints-cpu.txt | cksum | cut -d' ' -f1)"
    [ -f "$stamp" ] && return 0
    echo "Setting up $VENV (first run only) ..." >&2
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    # Without a GPU, pin the CPU build of torch so pip does not pull several GB of CUDA wheels.
    local cons=()
    if ! command -v nvidia-smi >/dev/null 2>&1; then cons=(-c constraints-cpu.txt); fi
    "$VENV/bin/python" -m pip install -q "${cons[@]}" -e ".[dev]" >&2
    rm -f "$VENV"/.installed-*
    touch "$stamp"
}

cmd=${1:-run}; shift || true
case "$cmd" in
    setup) setup ;;
    run)   setup; exec "$VENV/bin/hill-app" "$@" ;;
    test)  setup
           # two pytest workers on the two cores, one torch thread each (2 x 2 threads oversubscribe: 4x slower)
           export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
           exec "$VENV/bin/python" -m pytest -n "${HILL_TEST_WORKERS:-2}" "$@" ;;
    *)     echo "usage: ./dev.sh [run|test|setup] [args...]" >&2; exit 2 ;;
esac
