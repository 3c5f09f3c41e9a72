# Sourced by the scripts that run on a lent GPU machine (PyTorch preinstalled, nothing installed from here):
# the mapped packages (losses -> hill_app.losses, datasets, studies) need an install, and the image's setuptools
# may be old, so the package goes on the path through a shim folder instead.
# Usage: source bench/gpu_shim.sh [SOURCE_TREE]   (default: the current folder); sets SHIM and PYTHONPATH.
_shim_src=${1:-.}
SHIM=/tmp/shim
rm -rf "$SHIM" && mkdir -p "$SHIM"
cp -r "$_shim_src/hill_app" "$SHIM/hill_app"
for _shim_pkg in losses datasets studies; do cp -r "$_shim_src/$_shim_pkg" "$SHIM/hill_app/$_shim_pkg"; done
export PYTHONPATH=$SHIM PYTHONUNBUFFERED=1
