"""A run's history as the window shows it, read once from journal records and checkpoint nodes.

One reader for the three places that need it: Open run (the folder's files), attaching to a served job (its
journal pages and checkpoint tree) and a run resumed in the window. Applying it is idempotent with the live
events that follow (an epoch replaces the same epoch, a checkpoint or commit seen twice is shown once).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Fork:
    branch: str
    parent: str | None
    epoch: int | None


@dataclass
class RunHistory:
    epochs: list[dict[str, Any]] = field(default_factory=list)
    forks: list[Fork] = field(default_factory=list)
    commits: list[int] = field(default_factory=list)  # epochs completed when edits were committed
    nodes: list[dict[str, Any]] = field(default_factory=list)
    current_branch: str = "main"
    projection: str | None = None  # method of the newest fitted projection
    finished: dict[str, Any] | None = None

    @property
    def branch_names(self) -> list[str]:
        names = dict.fromkeys(["main"])
        names.update(dict.fromkeys(str(r.get("branch") or "main") for r in self.epochs))
        names.update(dict.fromkeys(f.branch for f in self.forks))
        return list(names)

    def class_count(self) -> int:
        """Classes, from the newest epoch record with per-class accuracy (0 when none)."""
        for r in reversed(self.epochs):
            pc = r.get("val_per_class_accuracy")
            if isinstance(pc, list):
                return len(pc)
        return 0


def read_history(records: Iterable[dict[str, Any]], nodes: Iterable[dict[str, Any]] = ()) -> RunHistory:
    """The history of journal ``records`` (in order) and checkpoint ``nodes``: epochs, forks with the epoch of
    the checkpoint they were loaded from, commits, and the branch training was on last."""
    h = RunHistory(nodes=[n for n in nodes if isinstance(n, dict) and isinstance(n.get("uuid"), str)])
    by_uuid = {n["uuid"]: n for n in h.nodes}
    for r in records:
        t = r.get("type")
        if t == "branch" and isinstance(r.get("branch"), str):
            src = by_uuid.get(r.get("checkpoint"))
            parent = src["branch"] if src else r.get("from_branch")
            epoch = src.get("epoch") if src else r.get("epoch")
            h.forks.append(Fork(r["branch"], parent, epoch))
        elif t == "epoch":
            h.epochs.append(r)
        elif t == "targets" and isinstance(r.get("epoch"), int):
            if r["epoch"] not in h.commits:
                h.commits.append(r["epoch"])
        elif t == "projection_fitted":
            h.projection = r.get("method")
        elif t == "finished":
            h.finished = r
        if isinstance(r.get("branch"), str):
            h.current_branch = r["branch"]
    return h


def read_tree_index(path: str | Path) -> list[dict[str, Any]]:
    """The nodes of a run's ``checkpoints/tree.json`` (no file: none). Read-only: nothing is created."""
    p = Path(path)
    if p.is_dir():
        p = p / "tree.json" if (p / "tree.json").exists() else p / "checkpoints" / "tree.json"
    if not p.exists():
        return []
    nodes = json.loads(p.read_text())["nodes"]
    return [n for n in nodes if isinstance(n, dict) and isinstance(n.get("uuid"), str)]


def read_run_folder(run_dir: Path) -> RunHistory:
    """The history of a run folder (journal.jsonl and checkpoints/tree.json); OSError/ValueError if unreadable."""
    from hill_app.engine.journal import read_journal

    return read_history(
        list(read_journal(run_dir / "journal.jsonl")), read_tree_index(run_dir / "checkpoints" / "tree.json")
    )


def read_client_history(client: Any, page: int = 5000) -> RunHistory:
    """The history of a run through its client (journal pages, the checkpoint tree)."""
    records: list[dict[str, Any]] = []
    while True:
        part = client.journal(len(records), page)
        records.extend(part)
        if len(part) < page:
            break
    return read_history(records, client.checkpoints())


def latest_snapshot(path: Path) -> dict[str, Any] | None:
    """The newest latent snapshot stored in a run's snapshots.h5 (pauses, commits), or None."""
    if not path.exists():
        return None
    try:
        from hill_app.engine.snapshots import read_snapshots

        snaps = read_snapshots(path)
    except Exception:  # an unreadable analysis file must not stop the tree and curves from showing
        return None
    if not snaps:
        return None
    s = max(snaps.values(), key=lambda d: (float(d.get("time", 0.0)), int(d.get("step", 0))))
    return {
        "z": np.asarray(s["z"], dtype=np.float32),
        "labels": np.asarray(s["labels"]),
        "preds": np.asarray(s["preds"]),
        "epoch": s.get("epoch"),
        "step": s.get("step"),
        "branch": s.get("branch"),
        "kind": s.get("kind"),
    }


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def class_names_for(dataset: str, k: int) -> list[str]:
    """Class names of a run opened from disk, without loading its data."""
    if dataset == "digits":
        return [str(i) for i in range(k)]
    if dataset == "cifar10" and k == len(CIFAR10_NAMES):
        return list(CIFAR10_NAMES)
    if dataset == "pamap2":
        from hill_app.datasets.pamap2 import CLASS_NAMES

        if len(CLASS_NAMES) == k:
            return list(CLASS_NAMES)
    return [f"class {i}" for i in range(k)]
