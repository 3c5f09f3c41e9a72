"""update_dataset: drop training samples by index (masked, so indices stay stable) or add samples from a file.

A file that is added becomes part of the run: its bytes are copied to RUN/added/<sha256><suffix> and parsed
from there, and resume and replay read that copy (checking its hash), never the path as it was given.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hill_app.datasets import DataError
from hill_app.datasets.samples_file import read_samples_file

from .commands import CommandError

if TYPE_CHECKING:
    from .session import TrainingSession


def drop_samples(s: TrainingSession, indices: Any) -> dict[str, Any]:
    if not isinstance(indices, list) or not indices:
        raise CommandError("update_dataset: 'indices' must be a non-empty list of training-sample indices")
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < s.n_train:
            raise CommandError(f"update_dataset: index {i!r} is not a training sample (0..{s.n_train - 1})")
    new = s.active.clone()
    new[torch.tensor(indices)] = False
    assert s.config.batch_size is not None  # the session's config is resolved
    if int(new.sum()) < s.config.batch_size:
        raise CommandError(
            f"update_dataset: dropping these would leave {int(new.sum())} samples, fewer than one "
            f"batch ({s.config.batch_size})"
        )
    s.active = new
    return {"dropped": len(set(indices)), "active": int(new.sum())}


ADDED_DIR = "added"
_STORED_RE = re.compile(r"^added/([0-9a-f]{64})(\.[A-Za-z0-9]{1,12})?$")
_NOT_DATA = ("/proc/", "/sys/", "/dev/")


def read_input_file(path: str | os.PathLike[str], max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (no device, fifo, folder or /proc entry);
    CommandError naming the path otherwise. The checks are made on the opened file, not on its name."""
    from .argtypes import MAX_ADD_FILE_BYTES

    limit = MAX_ADD_FILE_BYTES if max_bytes is None else max_bytes
    p = Path(path)
    real = os.path.realpath(p)
    if any(real.startswith(d) or real + "/" == d for d in _NOT_DATA):
        raise CommandError(f"{p}: {real} is a system file, not a data file")
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise CommandError(f"{p}: cannot read the file ({e.strerror or e})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise CommandError(f"{p}: expected a regular file, not a device, folder or pipe")
        if st.st_size > limit:
            raise CommandError(f"{p}: the file has {st.st_size} bytes; at most {limit} are read")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise CommandError(f"{p}: the file grew past {limit} bytes while it was read")
    return data


def store_added_file(s: TrainingSession, path: str) -> tuple[str, str]:
    """Copy the file into the run folder under its SHA-256; returns (its name relative to RUN, the hash)."""
    from .files import atomic_write_bytes

    data = read_input_file(path)
    sha = hashlib.sha256(data).hexdigest()
    suffix = Path(str(path)).suffix
    suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,12}", suffix) else ""
    rel = f"{ADDED_DIR}/{sha}{suffix}"
    dest = Path(s.run_dir) / rel
    if not (dest.is_file() and _sha256(dest) == sha):
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest, data)
    return rel, sha


def stored_path(run_dir: Path, rel: str) -> Path:
    """RUN/added/<sha256>: checked against its hash (CommandError if missing or changed)."""
    m = _STORED_RE.match(rel)
    if m is None:
        raise CommandError(f"{rel!r} is not a stored added-samples file (added/<sha256>)")
    p = Path(run_dir) / rel
    if not p.is_file():
        raise CommandError(f"{p}: the run's copy of added samples is missing; the run cannot be continued exactly")
    got = _sha256(p)
    if got != m.group(1):
        raise CommandError(
            f"{p}: content changed (sha256 {got[:12]}... instead of {m.group(1)[:12]}...); the run "
            "cannot be continued exactly"
        )
    return p


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def add_samples(s: TrainingSession, path: str) -> dict[str, Any]:
    """Append samples; they get the next training indices, so earlier indices (and the view set) stay valid.
    The file is copied into the run folder first and read from there."""
    rel, sha = store_added_file(s, path)
    try:
        x, y = read_samples_file(s.data, Path(s.run_dir) / rel)
    except DataError as e:
        raise CommandError(f"update_dataset: {path}: {e}") from None
    first = _append(s, x, y)
    s.train_data.added_files.append(rel)
    s.active = torch.cat([s.active, torch.ones(len(y), dtype=torch.bool)])
    return {
        "added": len(y),
        "first_index": first,
        "n_train": s.n_train,
        "per_class": torch.bincount(y, minlength=s.data.num_classes).tolist(),
        "file": str(path),
        "stored": rel,
        "sha256": sha,
    }


def sync_added_files(s: TrainingSession, files: list[str], source_dir: Path | None = None) -> None:
    """Make the training data hold exactly the base split plus ``files`` (restoring a checkpoint). Stored
    files (added/<sha256>) are read from the run folder and checked; older runs kept the path as given."""
    if list(files) == s.added_files:
        return
    s.train_data.truncate_to_base()
    for f in files:
        try:
            p = stored_path(source_dir or s.run_dir, f) if _STORED_RE.match(str(f)) else Path(f)
            x, y = read_samples_file(s.data, p)
        except DataError as e:
            raise CommandError(f"the checkpoint's added samples cannot be read again: {e}") from None
        _append(s, x, y)
        s.train_data.added_files.append(f)


def _append(s: TrainingSession, x: torch.Tensor, y: torch.Tensor) -> int:
    first = s.train_data.append(x, y)
    s.commit_layout(s.layout)  # point targets are indexed by training sample: resize them
    s.train_step.invalidate()
    return first
