"""Reading a run's history back out of its journal: what took effect, in what order, and what it measured.

Used to resume after a crash (re-apply what happened after the last checkpoint) and to replay a run.
A crash followed by a resume leaves a segment whose effects were lost; those records are superseded.
"""
from __future__ import annotations

from typing import Any, Iterable

from .commands import Command

# commands that change nothing the training math sees
NO_EFFECT = frozenset({"pause_training", "resume_training"})
TIMING_FIELDS = frozenset({"epoch_seconds", "images_per_s", "time", "seq"})


def effective_commands(records: Iterable[dict[str, Any]], after_checkpoint: str | None = None) -> list[Command]:
    """Commands that succeeded, in the order they were applied, with the (branch, step) they were applied at.

    With ``after_checkpoint``, only those applied after that checkpoint was written. A ``resumed_after_crash``
    record drops what was applied after its checkpoint in the crashed segment (the resume re-applied it).
    """
    running: list[tuple[int, dict[str, Any]]] = []   # (index, running record)
    final: dict[str, str] = {}
    ckpt_index: dict[str, int] = {}
    for i, r in enumerate(records):
        t = r.get("type")
        if t == "checkpoint":
            ckpt_index[r["uuid"]] = i
        elif t == "resumed_after_crash":
            cut = ckpt_index.get(r.get("checkpoint"), -1)
            running = [(j, rec) for j, rec in running if j < cut]
        elif t == "command":
            if r.get("status") == "running":
                running.append((i, r))
            elif r.get("status") in ("success", "failed"):
                final[r["uuid"]] = r["status"]
    start = ckpt_index.get(after_checkpoint, -1) if after_checkpoint else -1
    out = []
    for j, r in running:
        if j <= start or final.get(r["uuid"]) != "success" or r["command"] in NO_EFFECT:
            continue
        c = Command(r["command"], r.get("args") or {}, uuid=r["uuid"], source=r.get("source", "user"),
                    step=r.get("step"), epoch=r.get("epoch"), branch=r.get("branch", "main"))
        out.append(c)
    return out


def completed_pauses(records: Iterable[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(r.get("branch", "main"), int(r["epoch"])) for r in records if r.get("type") == "resumed"}


def checkpoint_order(records: Iterable[dict[str, Any]]) -> list[str]:
    """Checkpoint uuids in the order they were written (replays write theirs in the same order)."""
    return [r["uuid"] for r in records if r.get("type") == "checkpoint"]


def epoch_metrics(records: Iterable[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The epoch records by (branch, epoch); a later record for the same epoch (after a resume) wins."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        if r.get("type") == "epoch":
            out[(r.get("branch", "main"), int(r["epoch"]))] = {k: v for k, v in r.items()
                                                              if k not in TIMING_FIELDS and k != "type"}
    return out


def compare_metrics(expected: dict[tuple[str, int], dict[str, Any]], got: dict[tuple[str, int], dict[str, Any]]
                    ) -> list[str]:
    """Every difference, as lines a person can read; empty when the two runs measured the same."""
    diffs = []
    for key in sorted(set(expected) | set(got)):
        if key not in got:
            diffs.append(f"{key[0]} epoch {key[1]}: missing in the replay")
            continue
        if key not in expected:
            diffs.append(f"{key[0]} epoch {key[1]}: not in the original run")
            continue
        e, g = expected[key], got[key]
        for f in sorted(set(e) | set(g)):
            if e.get(f) != g.get(f) and not (_nan(e.get(f)) and _nan(g.get(f))):
                diffs.append(f"{key[0]} epoch {key[1]} {f}: original {e.get(f)!r}, replay {g.get(f)!r}")
    return diffs


def _nan(v: Any) -> bool:
    return isinstance(v, float) and v != v
