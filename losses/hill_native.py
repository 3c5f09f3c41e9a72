"""The HILL terms on a CPU as compiled C (hill_native.c), built at first use with the system's C compiler.

Inside a training step the numpy node's calls run with caches the model's forward pass has just emptied, and
each costs several times its warm price (docs/speed.md); one C call does the whole per-step arithmetic. The
library is built once per source version into the user's cache folder (``HILL_NATIVE_CACHE`` overrides it),
through a temporary file renamed into place, so two processes building at once, or a build cut off half-way,
leave either a whole library or none. Where no compiler is found, the build fails or ``HILL_NATIVE=0`` is set,
:func:`available` says why and the numpy node is used: the same formula, slower.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

SOURCE = Path(__file__).with_name("hill_native.c")
FLAGS = ("-O3", "-shared", "-fPIC")  # no -ffast-math: the IEEE arithmetic the source spells out
_lock = threading.Lock()
_state: dict[str, Any] = {}  # "lib" (the loaded library or None) and "why" (None, or why there is none)


class NativeError(ValueError):
    """Bad input to the C kernel (a label or sample index out of range)."""


def cache_dir() -> Path:
    """Where built libraries go: ``HILL_NATIVE_CACHE``, else ``$XDG_CACHE_HOME/hill-app/native`` or
    ``~/.cache/hill-app/native``."""
    if os.environ.get("HILL_NATIVE_CACHE"):
        return Path(os.environ["HILL_NATIVE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hill-app" / "native"


def library_path(compiler: str) -> Path:
    """The library's file: named by a hash of the source, the compiler and the flags."""
    key = hashlib.sha256(SOURCE.read_bytes() + "\0".join((compiler, *FLAGS, sys.platform)).encode()).hexdigest()
    return cache_dir() / f"hill_native-{key[:16]}.so"


def available() -> tuple[bool, str]:
    """(True, the library's path) once the library is loaded, building it if need be; else (False, why)."""
    with _lock:
        if "lib" not in _state:
            _state["lib"], _state["why"] = _load()
        lib, why = _state["lib"], _state["why"]
    return (True, str(lib._name)) if lib is not None else (False, why)


def reset() -> None:
    """Forget the loaded library, so the next :func:`available` looks again (tests change the environment)."""
    with _lock:
        _state.clear()


def _load() -> tuple[Any, str | None]:
    if os.environ.get("HILL_NATIVE", "1") == "0":
        return None, "HILL_NATIVE=0 is set"
    compiler = os.environ.get("CC") or "cc"
    cc = shutil.which(compiler)
    if cc is None:
        return None, f"no C compiler: {compiler!r} is not on PATH (set CC to one)"
    path = library_path(cc)
    if path.is_file():
        try:
            return _bind(ctypes.CDLL(str(path))), None
        except (OSError, AttributeError):
            pass  # damaged or foreign: build it again
    try:
        _build(cc, path)
        return _bind(ctypes.CDLL(str(path))), None
    except (OSError, AttributeError, subprocess.SubprocessError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        return None, f"building {SOURCE.name} into {path.parent} failed: {first}"


def _build(cc: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".build-", suffix=".so")
    os.close(fd)
    try:
        r = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            first = (r.stderr or r.stdout).strip().splitlines()
            raise OSError(f"{cc} exited with {r.returncode}: {first[0] if first else 'no message'}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    f = lib.hill_terms_grad
    i64, p = ctypes.c_int64, ctypes.c_void_p
    f.argtypes = [i64, i64, i64, i64, p, i64, p, p, p, p, p, p, p, p, p, p, p, ctypes.c_double, p, p, p]
    f.restype = ctypes.c_int
    return lib


class Constants:
    """The targets and the frozen map as float64 arrays the C call reads, kept alive with their addresses."""

    def __init__(self, a: np.ndarray, c: np.ndarray, targets: Any) -> None:
        def f64(t: Any) -> np.ndarray:
            v = t.detach().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)
            return np.ascontiguousarray(v, dtype=np.float64)

        self.arrays = [
            f64(a),
            f64(c),
            f64(targets.centers),
            f64(targets.spreads),
            f64(targets.class_mask),
            f64(targets.sep_min),
            f64(targets.sep_pairs),
            f64(targets.point_pos),
            f64(targets.point_mask),
        ]
        self.d = int(self.arrays[0].shape[1])
        self.k = int(self.arrays[2].shape[0])
        self.n_points = int(self.arrays[7].shape[0])
        self.r0 = float(targets.ref_radius)
        self.ptrs = [arr.ctypes.data for arr in self.arrays]


def terms_grad(
    x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, consts: Constants, g: tuple[float, ...] | None
) -> tuple[list[float], torch.Tensor | None]:
    """The six terms (center, spread, sep, point, scale, |1 - scale|) of the batch ``x`` (B, D) float32, and
    with ``g`` d(g . terms)/dx as a (B, D) float32 tensor."""
    ok, why = available()
    if not ok:
        raise RuntimeError(f"the HILL C kernel is not available: {why}")
    if x.dim() != 2 or x.shape[1] != consts.d or x.dtype != torch.float32:
        raise NativeError(f"features: expected (B, {consts.d}) float32, got {tuple(x.shape)} {x.dtype}")
    if x.stride(1) != 1:
        x = x.contiguous()
    y = y if y.dtype == torch.int64 and y.is_contiguous() else y.long().contiguous()
    idx = idx if idx.dtype == torch.int64 and idx.is_contiguous() else idx.long().contiguous()
    b = x.shape[0]
    terms = (ctypes.c_double * 6)()
    gx = torch.empty((b, consts.d), dtype=torch.float32) if g is not None else None
    gbuf = (ctypes.c_double * 6)(*g) if g is not None else None
    p = consts.ptrs
    rc = _state["lib"].hill_terms_grad(
        b, consts.d, consts.k, consts.n_points, x.data_ptr(), x.stride(0), y.data_ptr(), idx.data_ptr(),
        *p, consts.r0, gbuf, terms, gx.data_ptr() if gx is not None else None,
    )  # fmt: skip
    if rc:
        if rc == 1:
            raise NativeError(f"labels: expected values in [0, {consts.k}), got {y.min().item()}..{y.max().item()}")
        if rc == 2:
            raise NativeError(
                f"sample indices: expected values in [0, {consts.n_points}), got {idx.min().item()}..{idx.max().item()}"
            )
        raise MemoryError("the HILL C kernel could not allocate its work buffer")
    return list(terms), gx
