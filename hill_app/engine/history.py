"""Reading a run's history back out of its journal: what took effect, in what order, and what it measured.

Used to resume after a crash (re-apply what happened after the last checkpoint) and to replay a run.
A crash followed by a resume leaves a segment whose effects were lost; those records are superseded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .commands import Command

# commands that change nothing the training math sees
NO_EFFECT = frozenset({"pause_training", "resume_training"})
TIMING_FIELDS = frozenset({"epoch_seconds", "images_per_s", "time", "seq"})


def effective_commands(
    records: Iterable[dict[str, Any]], after_checkpoint: str | None = None, after_seq: int | None = None
) -> list[Command]:
    """Commands that succeeded, in the order they were applied, with the (branch, step) they were applied at
    and their result.

    With ``after_checkpoint`` (its uuid; ``after_seq``: the journal's length when it was taken, which also
    places a checkpoint whose own record a kill prevented), only those applied after that checkpoint. A
    ``resumed_after_crash`` record drops what was applied after its checkpoint in the crashed segment (the
    resume re-applied it). A command's arguments are journaled once, on its first record (again on
    ``pending`` only when validation changed them); older journals repeat them on every record.
    """
    records = list(records)
    seqs = [r.get("seq") if isinstance(r.get("seq"), int) else i for i, r in enumerate(records)]
    running: list[tuple[int, dict[str, Any]]] = []  # (index, running record)
    final: dict[Any, tuple[str, Any]] = {}  # keyed by the records' uuids (str, or None in a damaged record)
    args: dict[Any, Any] = {}
    ckpt_index: dict[Any, int] = {}
    for i, r in enumerate(records):
        t = r.get("type")
        if t == "checkpoint":
            ckpt_index[r.get("uuid")] = i
        elif t == "resumed_after_crash":
            cut = _position(seqs, r.get("journal_seq"), ckpt_index.get(r.get("checkpoint"), -1), i)
            running = [(j, rec) for j, rec in running if j < cut]
        elif t == "command":
            uid = r.get("uuid")
            if "args" in r:
                args[uid] = r["args"]
            if r.get("status") == "running":
                running.append((i, r))
            elif r.get("status") in ("success", "failed"):
                final[uid] = (r["status"], r.get("result"))
    start = -1
    if after_checkpoint or after_seq is not None:
        start = _position(seqs, after_seq, ckpt_index.get(after_checkpoint, -1), len(records)) - 1
    out = []
    for j, r in running:
        status, result = final.get(r["uuid"], (None, None))
        if j <= start or status != "success" or r["command"] in NO_EFFECT:
            continue
        a = r["args"] if "args" in r else args.get(r["uuid"], {})
        c = Command(
            r["command"],
            dict(a or {}),
            uuid=r["uuid"],
            source=r.get("source", "user"),
            step=r.get("step"),
            epoch=r.get("epoch"),
            branch=r.get("branch", "main"),
            result=result,
            phase=r.get("phase"),
        )
        out.append(c)
    return out


def _position(seqs: list[Any], journal_seq: Any, ckpt_index: int, limit: int) -> int:
    """Index of the first record at or after a checkpoint: from the journal length it recorded when known
    (its own record may be missing after a kill), else from where its record stands."""
    if isinstance(journal_seq, int) and not isinstance(journal_seq, bool):
        for i in range(min(limit, len(seqs))):
            if seqs[i] >= journal_seq:
                return i
        return min(limit, len(seqs))
    return ckpt_index


def completed_pauses(records: Iterable[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(r.get("branch", "main"), int(r["epoch"])) for r in records if r.get("type") == "resumed"}


def interrupted_pauses(records: Iterable[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Pauses entered and never resumed (a crash or a stop came first), with the commands that reached a final
    status while they lasted ({command, source, status}, in order; re-applied ones excluded), across
    crashes. A resume enters such a pause again; its handler learns what was already done there."""
    open_: dict[tuple[str, int], list[dict[str, Any]]] = {}
    current: tuple[str, int] | None = None
    for r in records:
        t = r.get("type")
        if t == "paused" and isinstance(r.get("epoch"), int):
            current = (str(r.get("branch", "main")), r["epoch"])
            open_.setdefault(current, [])
        elif t == "resumed" and isinstance(r.get("epoch"), int):
            open_.pop((str(r.get("branch", "main")), r["epoch"]), None)
            current = None
        elif t in ("resumed_after_crash", "finished"):
            current = None  # (a stop while paused keeps the pause open: queued commands are applied at the end)
        elif (
            t == "command"
            and current is not None
            and r.get("status") in ("success", "failed")
            and r.get("source") != "replay"
            and r.get("command") not in NO_EFFECT
        ):
            open_[current].append({"command": r.get("command"), "source": r.get("source"), "status": r["status"]})
    return open_


def checkpoint_order(records: Iterable[dict[str, Any]]) -> list[str]:
    """Checkpoint uuids in the order they were written (replays write theirs in the same order). Those a
    resume superseded (written after the checkpoint it went back to, in the crashed segment) drop out."""
    records = list(records)
    seqs = [r.get("seq") if isinstance(r.get("seq"), int) else i for i, r in enumerate(records)]
    out: list[tuple[int, str]] = []
    pos: dict[Any, int] = {}
    for i, r in enumerate(records):
        t = r.get("type")
        if t == "checkpoint":
            pos[r.get("uuid")] = i
            out.append((i, r["uuid"]))
        elif t == "resumed_after_crash" and r.get("checkpoint"):
            cut = _position(seqs, r.get("journal_seq"), pos.get(r.get("checkpoint"), i), i)
            keep_resumed = r.get("checkpoint")
            out = [(j, u) for j, u in out if j < cut or u == keep_resumed]
    return [u for _, u in out]


def epoch_metrics(records: Iterable[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The epoch records by (branch, epoch); a later record for the same epoch (after a resume) wins."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        if r.get("type") == "epoch":
            out[(r.get("branch", "main"), int(r["epoch"]))] = {
                k: v for k, v in r.items() if k not in TIMING_FIELDS and k != "type"
            }
    return out


def compare_metrics(
    expected: dict[tuple[str, int], dict[str, Any]], got: dict[tuple[str, int], dict[str, Any]]
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
