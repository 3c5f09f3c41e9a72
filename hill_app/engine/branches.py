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


def valid_node(n: Any) -> bool:
    """A node as tree.json holds it: the fields the engine relies on, of the right types."""
    return (
        isinstance(n, dict)
        and isinstance(n.get("uuid"), str)
        and bool(n["uuid"])
        and isinstance(n.get("file"), str)
        and isinstance(n.get("branch"), str)
        and all(isinstance(n.get(k), int) and not isinstance(n.get(k), bool) for k in ("step", "epoch"))
        and (n.get("parent") is None or isinstance(n.get("parent"), str))
    )


class CheckpointTree:
    """``nodes`` given: start from them instead of reading the index; ``create``: make the folder now (a
    resume that may still be refused creates nothing)."""

    def __init__(self, folder: Path, nodes: list[dict[str, Any]] | None = None, create: bool = True):
        self.folder = Path(folder)
        if create:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.index_path = self.folder / "tree.json"
        self.nodes: list[dict[str, Any]] = []
        self.dirty = False  # nodes differ from the index on disk (rebuilt): written with the next save
        if nodes is not None:
            self.nodes = list(nodes)
            self.dirty = self.index_path.exists() or bool(nodes)
        elif self.index_path.exists():
            try:
                data = json.loads(self.index_path.read_text(encoding="utf-8"))
                self.nodes = data["nodes"]
                if not isinstance(self.nodes, list) or not all(valid_node(n) for n in self.nodes):
                    raise TypeError("a node lacks uuid, file, branch, step or epoch")
            except (OSError, UnicodeDecodeError, ValueError, RecursionError, KeyError, TypeError) as e:
                raise CheckpointError(
                    f"{self.index_path}: unreadable checkpoint index ({type(e).__name__}: {str(e)[:120]})"
                ) from None

    def save_index(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.index_path, json.dumps({"nodes": self.nodes}, indent=1) + "\n")
        self.dirty = False

    def add(
        self,
        state: dict[str, Any],
        *,
        branch: str,
        parent: str | None,
        step: int,
        epoch: int,
        metrics: dict[str, Any],
        note: str = "",
        **extra: Any,
    ) -> dict[str, Any]:
        """Write the checkpoint file, then the index that names it (so the index never names a missing file).
        ``extra`` (e.g. journal_seq) is kept in the node."""
        uid = _uuid.uuid4().hex
        fname = f"{uid}.pt"
        self.folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.folder / fname, state)
        node = {
            "uuid": uid,
            "branch": branch,
            "parent": parent,
            "step": step,
            "epoch": epoch,
            "metrics": metrics,
            "file": fname,
            "time": time.time(),
            "note": note,
            **extra,
        }
        self.nodes.append(node)
        self.save_index()
        return node

    def get(self, uid: str) -> dict[str, Any]:
        for n in self.nodes:
            if n["uuid"] == uid:
                return n
        raise CheckpointError(f"no checkpoint with uuid {uid!r} in {self.index_path}")

    def load(self, uid: str) -> dict[str, Any]:
        node = self.get(uid)
        if not isinstance(node.get("file"), str):
            raise CheckpointError(f"checkpoint {uid}: the index names no file")
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
