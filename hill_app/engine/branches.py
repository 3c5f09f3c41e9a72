"""The checkpoint tree on disk: every checkpoint a node (uuid, branch, step, epoch, parent, metrics).

The index ``tree.json`` is rewritten atomically after each checkpoint file is in place, so it never names a
file that is not there; it survives restarts. Branch names are sanitised: nothing a command carries can
write outside the run folder.
"""
from __future__ import annotations

import json
import re
import time
import uuid as _uuid
from pathlib import Path
from typing import Any

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .files import atomic_write_text

_BRANCH_RE = re.compile(r"[^A-Za-z0-9_.-]+")


def sanitize_branch(name: str) -> str:
    """Letters, digits, '-', '_' and '.' only; no leading dots; at most 64 characters; never empty."""
    clean = _BRANCH_RE.sub("-", name).strip("-.")[:64].strip("-.")
    return clean or "branch"


class CheckpointTree:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.index_path = self.folder / "tree.json"
        self.nodes: list[dict[str, Any]] = []
        if self.index_path.exists():
            try:
                self.nodes = json.loads(self.index_path.read_text())["nodes"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise CheckpointError(f"{self.index_path}: unreadable checkpoint index ({e})") from e

    def add(self, state: dict[str, Any], *, branch: str, parent: str | None, step: int, epoch: int,
            metrics: dict[str, Any], note: str = "") -> dict[str, Any]:
        uid = _uuid.uuid4().hex
        fname = f"{uid}.pt"
        save_checkpoint(self.folder / fname, state)
        node = {"uuid": uid, "branch": branch, "parent": parent, "step": step, "epoch": epoch,
                "metrics": metrics, "file": fname, "time": time.time(), "note": note}
        self.nodes.append(node)
        atomic_write_text(self.index_path, json.dumps({"nodes": self.nodes}, indent=1) + "\n")
        return node

    def get(self, uid: str) -> dict[str, Any]:
        for n in self.nodes:
            if n["uuid"] == uid:
                return n
        raise CheckpointError(f"no checkpoint with uuid {uid!r} in {self.index_path}")

    def load(self, uid: str) -> dict[str, Any]:
        node = self.get(uid)
        path = (self.folder / node["file"]).resolve()
        if path.parent != self.folder.resolve():
            raise CheckpointError(f"checkpoint {uid}: file {node['file']!r} lies outside {self.folder}")
        return load_checkpoint(path)

    def latest(self) -> dict[str, Any] | None:
        return self.nodes[-1] if self.nodes else None

    def branches(self) -> list[str]:
        return list(dict.fromkeys(n["branch"] for n in self.nodes))

    def unique_branch(self, wanted: str, taken: set[str] | None = None) -> str:
        """A sanitised name no checkpoint and no branch in ``taken`` (those without a checkpoint yet) uses."""
        return unique_name(wanted, set(self.branches()) | set(taken or ()))


def unique_name(wanted: str, taken: set[str]) -> str:
    """``wanted`` sanitised, with ``-2``, ``-3`` ... appended until it is not in ``taken``."""
    base = sanitize_branch(wanted)
    if base not in taken:
        return base
    i = 2
    while f"{base}-{i}" in taken:
        i += 1
    return f"{base}-{i}"
