"""Latent snapshots in HDF5, for analysis.

Layout (all under the file root):
  projection/weight (2, D) f4, projection/bias (2,) f4; attrs method, fitted_epoch
  snapshots/<name>/z (N, 2) f4       view-set points in view space
  snapshots/<name>/labels (N,) i8    true classes
  snapshots/<name>/preds (N,) i8     model predictions
  snapshots/<name>/view_indices (N,) i8  training-sample index of each view point
  snapshots/<name>/target_centers (K, 2), target_spreads (K,)  the committed teacher layout, if any
  attrs of each snapshot: epoch, step, branch, kind ('pause' | 'final' | ...), time
HDF5 is not safe against a kill mid-write, so each write goes to a copy that is renamed into place.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .files import fsync_dir, temp_name


class SnapshotError(OSError):
    """The snapshot file cannot be read or extended; the message names it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "snapshot file error"


class SnapshotStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _write(self, fn: Any) -> None:
        tmp = temp_name(self.path)
        try:
            if self.path.exists():
                shutil.copyfile(self.path, tmp)
            try:
                f = h5py.File(tmp, "a")
            except OSError as e:
                if self.path.exists() and not h5py.is_hdf5(self.path):
                    raise SnapshotError(
                        f"{self.path}: not a readable HDF5 snapshot file; move it aside to go on "
                        "without the earlier snapshots"
                    ) from None
                raise OSError(e.errno, str(e).splitlines()[0][:200], str(self.path)) from None
            with f:
                fn(f)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException as e:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            if isinstance(e, OSError) and not isinstance(e, SnapshotError):
                raise OSError(e.errno, e.strerror or str(e).splitlines()[0][:200], str(self.path)) from None
            raise
        fsync_dir(self.path.parent)

    def write_projection(self, projection: Any) -> None:
        def fn(f: h5py.File) -> None:
            if "projection" in f:
                del f["projection"]
            g = f.create_group("projection")
            g.create_dataset("weight", data=projection.weight.detach().cpu().numpy())
            g.create_dataset("bias", data=projection.bias.detach().cpu().numpy())
            g.attrs["method"] = projection.method
            g.attrs["fitted_epoch"] = projection.fitted_epoch

        self._write(fn)

    def write_snapshot(self, snap: dict[str, Any], view_indices: np.ndarray) -> str:
        name = f"{snap['branch']}_e{snap['epoch']:04d}_s{snap['step']:07d}_{snap['kind']}"

        def fn(f: h5py.File) -> None:
            root = f.require_group("snapshots")
            if name in root:
                del root[name]
            g = root.create_group(name)
            g.create_dataset("z", data=np.asarray(snap["z"], dtype=np.float32))
            g.create_dataset("labels", data=np.asarray(snap["labels"], dtype=np.int64))
            g.create_dataset("preds", data=np.asarray(snap["preds"], dtype=np.int64))
            g.create_dataset("view_indices", data=np.asarray(view_indices, dtype=np.int64))
            lay = snap.get("layout")
            if lay is not None:
                g.create_dataset("target_centers", data=np.asarray(lay["centers"], dtype=np.float32))
                g.create_dataset("target_spreads", data=np.asarray(lay["spreads"], dtype=np.float32))
            for k in ("epoch", "step", "branch", "kind"):
                g.attrs[k] = snap[k]
            g.attrs["time"] = time.time()

        self._write(fn)
        return name


def read_snapshots(path: Path) -> dict[str, dict[str, Any]]:
    """All snapshots as {name: {z, labels, preds, view_indices, attrs...}} (for reports and tests)."""
    out: dict[str, dict[str, Any]] = {}
    with h5py.File(path, "r") as f:
        for name, g in f.get("snapshots", {}).items():
            d = {k: g[k][()] for k in g}
            d.update({k: (v.decode() if isinstance(v, bytes) else v) for k, v in g.attrs.items()})
            out[name] = d
    return out
