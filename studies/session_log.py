"""The study log of a participant session, and readers for the logs a session leaves.

The study log (``<participant>/study_log.jsonl``) is an engine :class:`Journal` (JSON lines, fsynced per
record): what the study adds to the runs' own journals (which remain the source of truth for training):
who, which protocol, which condition ran in which folder, each pause's start, end and duration, each
committed edit with the class centres / spreads / points before and after it, each command's outcome,
and the questionnaire answers with their scores. Record types are listed in studies/README.md.

:class:`ConditionRecorder` listens on a session's event channel (synchronously, in the training thread),
so the headless runner and the study window write the same records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hill_app.engine.journal import Journal, read_journal
from hill_app.engine.snapshots import read_snapshots
from hill_app.losses import TargetLayout, apply_edit, layout_from_points, validate_edit

STUDY_LOG = "study_log.jsonl"


def session_started(
    log: StudyLog,
    *,
    participant: str,
    mode: str,
    protocol: Any,
    seed: int,
    class_names: list[str],
    app_version: str | None,
    pid: int,
    scripted: str | None = None,
    interventions: list[dict[str, Any]] | None = None,
) -> None:
    """The first record of a session, written the same way by the runner and the study window."""
    log.write(
        "session_started",
        participant=participant,
        mode=mode,
        protocol=protocol.to_json(),
        protocol_text=protocol.text,
        scripted=scripted,
        interventions=interventions or [],
        conditions=list(protocol.conditions),
        seed=seed,
        class_names=list(class_names),
        hill_app=app_version,
        pid=pid,
    )


class StudyLog:
    """The participant's study log: one record per study event, each with seq, type and time."""

    def __init__(self, participant_dir: Path):
        self.path = Path(participant_dir) / STUDY_LOG
        self.journal = Journal(self.path)

    def write(self, type_: str, **fields: Any) -> dict:
        return self.journal.write(type_, **fields)

    def close(self) -> None:
        self.journal.close()


def read_study_log(participant_dir: Path) -> list[dict]:
    path = Path(participant_dir) / STUDY_LOG
    return list(read_journal(path)) if path.exists() else []


# ---------------------------------------------------------------- edits with before / after positions


def _layout_summary(layout: TargetLayout) -> dict[str, Any]:
    return {"centers": layout.centers.tolist(), "spreads": layout.spreads.tolist(), "group": layout.group.tolist()}


def describe_edits(
    z: np.ndarray, labels: np.ndarray, num_classes: int, edits: list[dict]
) -> tuple[list[dict[str, Any]], TargetLayout, TargetLayout]:
    """Replay ``edits`` on the layout of ``z`` and say what each one moved, from where to where.

    Returns (per-edit records, layout before, layout after). Each record holds the edit and, for what it
    changed: ``centers`` {class: {before, after}}, ``spreads`` {class: {before, after}}, ``points``
    [{index, label, before (the point's position in the view), after (where it was dropped)}],
    ``groups`` {before, after} (merges), ``separations`` [{classes, before, after}].
    """
    z = np.asarray(z, dtype=np.float64)
    labels = np.asarray(labels)
    before = layout_from_points(z, labels, num_classes)
    lay = before
    out = []
    for i, e in enumerate(edits):
        clean = validate_edit(e, num_classes, len(z), where=f"edits[{i}]")
        nxt = apply_edit(lay, clean)
        rec: dict[str, Any] = {"index": i, "edit": e}
        moved = np.nonzero(np.abs(nxt.centers - lay.centers).max(axis=1) > 1e-12)[0]
        if len(moved):
            rec["centers"] = {
                str(int(c)): {"before": lay.centers[c].tolist(), "after": nxt.centers[c].tolist()} for c in moved
            }
        grown = np.nonzero(np.abs(nxt.spreads - lay.spreads) > 1e-12)[0]
        if len(grown):
            rec["spreads"] = {
                str(int(c)): {"before": float(lay.spreads[c]), "after": float(nxt.spreads[c])} for c in grown
            }
        pts = [k for k, v in nxt.points.items() if lay.points.get(k) != v]
        if pts:
            rec["points"] = [
                {"index": int(k), "label": int(labels[k]), "before": z[k].tolist(), "after": list(nxt.points[k])}
                for k in sorted(pts)
            ]
        if (nxt.group != lay.group).any():
            rec["groups"] = {"before": lay.group.tolist(), "after": nxt.group.tolist()}
        a, b = np.nonzero(np.triu(np.abs(nxt.sep_min - lay.sep_min) > 1e-12, 1))
        if len(a):
            rec["separations"] = [
                {"classes": [int(x), int(y)], "before": float(lay.sep_min[x, y]), "after": float(nxt.sep_min[x, y])}
                for x, y in zip(a, b)
            ]
        out.append(rec)
        lay = nxt
    return out, before, lay


# ---------------------------------------------------------------- the recorder


class ConditionRecorder:
    """Event listener that writes one condition's pauses, commits and command outcomes to the study log."""

    def __init__(self, log: StudyLog, condition: str, seconds_allowed: float | None):
        self.log = log
        self.condition = condition
        self.seconds_allowed = seconds_allowed
        self._pause: dict[str, Any] | None = None
        self._snap: dict[str, Any] | None = None
        self.pauses: list[dict[str, Any]] = []

    def __call__(self, ev: Any) -> None:
        d = ev.data
        if ev.kind == "snapshot":
            self._snap = d
        elif ev.kind == "paused":
            self._pause = {"epoch": d["epoch"], "step": d["step"], "t0": ev.time}
            self.log.write(
                "pause_started",
                condition=self.condition,
                epoch=d["epoch"],
                step=d["step"],
                reason=d.get("reason"),
                seconds_allowed=self.seconds_allowed,
            )
        elif ev.kind == "resumed":
            p = self._pause or {"epoch": d["epoch"], "step": d["step"], "t0": None}
            secs = None if p["t0"] is None else ev.time - p["t0"]
            over = None if secs is None or self.seconds_allowed is None else secs > self.seconds_allowed
            rec = self.log.write(
                "pause_ended",
                condition=self.condition,
                epoch=p["epoch"],
                step=d["step"],
                seconds=secs,
                seconds_allowed=self.seconds_allowed,
                over_time=over,
            )
            self.pauses.append(rec)
            self._pause = None
        elif ev.kind == "command" and d.get("status") in ("success", "failed"):
            self.log.write(
                "command",
                condition=self.condition,
                command=d["command"],
                args=d["args"],
                status=d["status"],
                reason=d.get("reason"),
                source=d.get("source"),
                epoch=d.get("epoch"),
                step=d.get("step"),
                uuid=d.get("uuid"),
            )
            if d["command"] == "set_latent_targets" and d["status"] == "success":
                self._committed(d)

    def condition_started(self, config: dict[str, Any], edits_scripted: int) -> None:
        self.log.write(
            "condition_started",
            condition=self.condition,
            run_dir=self.condition,
            config=config,
            edits_scripted=edits_scripted,
        )

    def condition_finished(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The record both the runner and the study window end a condition with."""
        return self.log.write(
            "condition_finished",
            condition=self.condition,
            test_accuracy=summary["test_accuracy"],
            val_accuracy=summary["val_accuracy"],
            epochs=summary["epochs"],
            steps=summary["steps"],
            edits_applied=summary["edits_applied"],
            wall_seconds=summary["wall_seconds"],
            pauses=[{"epoch": p["epoch"], "seconds": p["seconds"]} for p in self.pauses],
        )

    def _committed(self, d: dict[str, Any]) -> None:
        snap = self._snap  # the engine emits the "commit" snapshot (the base z + the new layout) just before
        edits = d["args"].get("edits", [])
        fields: dict[str, Any] = {
            "condition": self.condition,
            "step": d.get("step"),
            "pause_epoch": None if self._pause is None else self._pause["epoch"],
            "edits": edits,
        }
        if snap is not None and snap.get("kind") == "commit" and snap.get("step") == d.get("step"):
            k = len(snap["layout"]["centers"])
            per_edit, before, _ = describe_edits(snap["z"], snap["labels"], k, edits)
            fields.update(per_edit=per_edit, before=_layout_summary(before), after=snap["layout"])
        self.log.write("edits_committed", **fields)


# ---------------------------------------------------------------- reading a run folder


@dataclass
class PauseLog:
    epoch: int  # the pause came before this epoch (1-based)
    step: int
    branch: str
    reason: str
    started: float
    ended: float | None = None
    commits: list[dict] = field(default_factory=list)  # the run journal's 'targets' records in the pause
    commands: list[dict] = field(default_factory=list)  # terminal command records applied in the pause

    @property
    def scheduled(self) -> bool:
        return self.reason.startswith("scheduled pause")

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started

    @property
    def edits(self) -> list[dict]:
        """The edits in force after the pause: each commit replaces the previous one's teacher layout."""
        return list(self.commits[-1]["edits"]) if self.commits else []

    @property
    def layout_after(self) -> TargetLayout | None:
        return TargetLayout.from_json(self.commits[-1]["layout"]) if self.commits else None


@dataclass
class RunLog:
    run_dir: Path
    config: dict[str, Any]
    epochs: dict[int, dict]  # epoch -> record of the lineage that finished (later records win)
    pauses: list[PauseLog]
    summary: dict[str, Any] | None  # summary.json
    finished: dict[str, Any] | None  # the journal's 'finished' record
    errors: list[dict]

    @property
    def complete(self) -> bool:
        return self.summary is not None and self.finished is not None

    def pause_at(self, epoch: int) -> PauseLog | None:
        """The scheduled pause before ``epoch`` on the final branch (the last one, if a branch re-ran it)."""
        found = [p for p in self.pauses if p.epoch == epoch and p.scheduled]
        return found[-1] if found else None


def read_run(run_dir: Path) -> RunLog:
    run_dir = Path(run_dir)
    recs = list(read_journal(run_dir / "journal.jsonl"))
    config: dict[str, Any] = {}
    epochs: dict[int, dict] = {}
    pauses: list[PauseLog] = []
    finished = None
    errors = []
    open_: PauseLog | None = None
    for r in recs:
        t = r.get("type")
        if t == "run_started":
            config = r.get("config", {})
        elif t == "epoch":
            epochs[int(r["epoch"])] = r
        elif t == "paused":
            open_ = PauseLog(
                epoch=int(r["epoch"]),
                step=int(r["step"]),
                branch=r.get("branch", "main"),
                reason=r.get("reason", ""),
                started=float(r["time"]),
            )
            pauses.append(open_)
        elif t == "resumed" and open_ is not None:
            open_.ended = float(r["time"])
            open_ = None
        elif t == "targets" and open_ is not None:
            open_.commits.append(r)
        elif t == "command" and open_ is not None and r.get("status") in ("success", "failed"):
            open_.commands.append(r)
        elif t == "finished":
            finished = r
        elif t == "error":
            errors.append(r)
    summary = None
    if (run_dir / "summary.json").exists():
        summary = json.loads((run_dir / "summary.json").read_text())
    return RunLog(run_dir, config, dict(sorted(epochs.items())), pauses, summary, finished, errors)


def read_run_snapshots(run_dir: Path) -> dict[str, dict[str, Any]]:
    path = Path(run_dir) / "snapshots.h5"
    return read_snapshots(path) if path.exists() else {}


def pause_snapshot(snaps: dict[str, dict[str, Any]], pause: PauseLog) -> tuple[str, dict[str, Any]] | None:
    """The snapshot taken at a pause (kind 'pause'; else the first commit's, which has the same points)."""
    for kind in ("pause", "commit"):
        for name, s in sorted(snaps.items()):
            if s.get("kind") == kind and int(s["step"]) == pause.step and s.get("branch") == pause.branch:
                return name, s
    return None


def next_snapshot(snaps: dict[str, dict[str, Any]], pause: PauseLog) -> tuple[str, dict[str, Any]] | None:
    """The layout the model reached after training on from a pause: the next pause's snapshot or the final one."""
    later = [
        (int(s["step"]), name, s)
        for name, s in snaps.items()
        if s.get("kind") in ("pause", "final") and int(s["step"]) > pause.step and s.get("branch") == pause.branch
    ]
    if not later:
        return None
    _, name, s = min(later, key=lambda x: (x[0], x[1]))
    return name, s
