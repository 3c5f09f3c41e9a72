#!/usr/bin/env bash
# One entry for the whole set-up: `./dev.sh run` opens the app, `./dev.sh test` runs the tests, `./dev.sh lint`
# runs ruff and mypy as CI does. Each creates .venv on first use and installs everything the project needs into it.
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
    # setuptools warns, boxed, that an editable install of package-dir packages can be shadowed by folders of
    # the same name in the working directory: true of any editable install, and nothing a user can act on.
    # pip compiles the installed files to bytecode on one core; compileall does the same on all of them (torch
    # alone is ~20 s of CPU). The bytecode matters: with PYTHONDONTWRITEBYTECODE set nothing is cached later.
    PYTHONWARNINGS="ignore::UserWarning" "$VENV/bin/python" -m pip install -q --no-compile "${cons[@]}" -e ".[dev]" >&2
    "$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" >/dev/null || true
    rm -f "$VENV"/.installed-*
    touch "$stamp"
}

# ruff keeps the whole tree clean; mypy checks the Qt-free packages.
LINT_PATHS=(.)
MYPY_PACKAGES=(-p hill_app.engine -p hill_app.losses -p hill_app.datasets)

lint() {
    "$VENV/bin/ruff" check "${LINT_PATHS[@]}"
    "$VENV/bin/ruff" format --check "${LINT_PATHS[@]}"
    typecheck
}

typecheck() {
    # mypy cannot follow setuptools' editable finder (package-dir): build a tree of links in which losses/,
    # datasets/ and studies/ sit under hill_app/ as installed, and print paths as they are in the repository.
    local tree=build/mypy-path f
    rm -rf "$tree"
    mkdir -p "$tree/hill_app"
    for f in hill_app/*; do ln -s "$PWD/$f" "$tree/hill_app/"; done
    for f in losses datasets studies; do ln -s "$PWD/$f" "$tree/hill_app/$f"; done
    MYPYPATH="$tree" "$VENV/bin/mypy" "${MYPY_PACKAGES[@]}" \
        | sed -e "s#^$tree/hill_app/\(losses\|datasets\|studies\)/#\1/#" -e "s#^$tree/##"
}

cmd=${1:-run}; shift || true
case "$cmd" in
    setup) setup ;;
    run)   setup; exec "$VENV/bin/hill-app" "$@" ;;
    test)  setup
           # two pytest workers on the two cores, one torch thread each (2 x 2 threads oversubscribe: 4x slower)
           export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
           exec "$VENV/bin/python" -m pytest -n "${HILL_TEST_WORKERS:-2}" "$@" ;;
    lint)  setup; lint ;;
    mypy)  setup; typecheck ;;   # mypy alone (the pre-commit hook)
    *)     echo "usage: ./dev.sh [run|test|lint|mypy|setup] [args...]" >&2; exit 2 ;;
esac
