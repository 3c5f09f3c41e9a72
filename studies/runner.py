"""Run one participant session headless, with a scripted participant (an edits file).

Every condition gets the protocol's RunConfig with the same seed; the baseline runs the same protocol with
no edits (it still stops at the pauses, so its layouts are stored at the same epochs, and resumes at once).
The folder a session leaves: studies/README.md ("The folders a session leaves").
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import h5py
import numpy as np

from hill_app.engine.edits_file import (
    EditsFileError,
    Intervention,
    parse_edits,
    scripted_pause_handler,
)
from hill_app.engine.events import EventChannel
from hill_app.engine.files import fsync_dir
from hill_app.engine.session import TrainingSession

from .protocol import Protocol
from .questionnaires import AnswerError, score_answers
from .session_log import (
    ConditionRecorder,
    StudyLog,
    pause_snapshot,
    read_run,
    read_run_snapshots,
    read_study_log,
    session_started,
)
from .strategies import classify_pause

PARTICIPANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SESSION_H5 = "session.h5"
H5_FORMAT = "hill-app-study/1"


class StudyError(ValueError):
    """The session cannot start or run as asked; the message says why and what to do."""


def check_participant(pid: str) -> str:
    if not isinstance(pid, str) or not PARTICIPANT_RE.match(pid) or pid in (".", ".."):
        raise StudyError(
            f"participant id {pid!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit (it names a folder)"
        )
    if pid == "report":
        raise StudyError("participant id 'report' is reserved for the report folder")
    return pid


def load_for_config(cfg: Any) -> Any:
    """The data set a resolved RunConfig trains on, with its data sizes (C1: val_size, train_size)."""
    from hill_app.datasets import load_dataset

    kw = {k: getattr(cfg, k) for k in ("val_size", "train_size") if hasattr(cfg, k)}
    return load_dataset(
        cfg.dataset, cfg.data_root, download=False, synthetic_size=cfg.synthetic_size, seed=cfg.seed, **kw
    )


# ---------------------------------------------------------------- the scripted participant


def load_scripted(
    path: str | Path, protocol: Protocol, num_classes: int, view_size: int
) -> tuple[list[Intervention], dict[str, Any] | None]:
    """An edits file, plus its optional "questionnaire" answers; checked against the protocol's panels."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise EditsFileError(f"{path}: cannot read the edits file ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise EditsFileError(f"{path} line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
    answers = None
    if isinstance(data, dict) and "questionnaire" in data:
        data = dict(data)
        answers = data.pop("questionnaire")
    ivs = parse_edits(data, pause_at=protocol.pause_at, num_classes=num_classes, view_size=view_size, source=str(path))
    check_interventions(ivs, protocol, source=str(path))
    return ivs, answers


def check_interventions(ivs: list[Intervention], protocol: Protocol, source: str) -> None:
    for iv in ivs:
        where = f"{source}: intervention at epoch {iv.epoch}"
        for j, e in enumerate(iv.edits):
            why = protocol.check_edit(e)
            if why:
                raise EditsFileError(f"{where}, edits[{j}]: {why}")
        for j, c in enumerate(iv.commands):
            why = protocol.check_command(c["command"])
            if why:
                raise EditsFileError(f"{where}, commands[{j}]: {why}")


# ---------------------------------------------------------------- one participant


def _app_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hill-app")
    except PackageNotFoundError:  # not installed as a distribution: a study still runs
        return None


def run_participant(
    protocol: Protocol,
    participant: str,
    study_dir: str | Path,
    *,
    scripted: str | Path | None = None,
    interventions: list[Intervention] | None = None,
    answers: Any = None,
    answers_source: str | None = None,
    device: str | None = None,
    progress: TextIO | None = None,
    bundle: Any = None,
) -> dict[str, Any]:
    """Run every condition of ``protocol`` for one scripted participant; return what the session measured.

    ``scripted`` is an edits file (with an optional "questionnaire" key); ``interventions`` may be given
    instead. ``answers`` (questionnaire answers) override the file's. Raises StudyError, EditsFileError,
    AnswerError, ConfigError or DataError before anything is written when the inputs are wrong.
    """
    check_participant(participant)
    study_dir = Path(study_dir)
    pdir = study_dir / participant
    if pdir.exists() and any(pdir.iterdir()):
        raise StudyError(f"{pdir} already holds a session; choose another participant id or study folder")
    cfg = protocol.run_config(device)
    if bundle is None:
        bundle = load_for_config(cfg)
    k = bundle.num_classes
    file_answers = None
    if scripted is not None:
        # view indices are checked again against the real view set once the hill session exists
        interventions, file_answers = load_scripted(scripted, protocol, k, view_size=2**62)
    elif interventions is not None:
        check_interventions(interventions, protocol, source="interventions")
    else:
        interventions = []
    if answers is None and file_answers is not None:
        answers, answers_source = file_answers, f"{scripted} (questionnaire)"
    scores = None if answers is None else score_answers(answers, source=answers_source or "answers")

    pdir.mkdir(parents=True, exist_ok=True)
    if protocol.text is not None:
        (pdir / "protocol.toml").write_text(protocol.text, encoding="utf-8")
    if scripted is not None:
        (pdir / "scripted_edits.json").write_bytes(Path(scripted).read_bytes())
    log = StudyLog(pdir)
    app_version = _app_version()
    session_started(
        log,
        participant=participant,
        mode="scripted",
        protocol=protocol,
        seed=cfg.seed,
        class_names=list(bundle.class_names),
        app_version=app_version,
        pid=os.getpid(),
        scripted=None if scripted is None else str(Path(scripted).resolve()),
        interventions=[{"epoch": iv.epoch, "edits": iv.edits, "commands": iv.commands} for iv in interventions],
    )
    results: dict[str, Any] = {}
    try:
        for cond in protocol.conditions:
            results[cond] = run_condition(
                protocol, cond, pdir, log, cfg, bundle, interventions if cond == "hill" else [], progress=progress
            )
        if scores is None:
            log.write("questionnaires_skipped", reason="scripted participant without questionnaire answers")
        else:
            if "umux_lite" in scores:
                log.write("questionnaire", name="umux_lite", **scores["umux_lite"], source=answers_source)
            if "nasa_tlx" in scores:
                log.write("questionnaire", name="nasa_tlx", **scores["nasa_tlx"], source=answers_source)
        write_session_h5(pdir)
    except BaseException as e:
        log.write("session_aborted", reason=f"{type(e).__name__}: {e}")
        log.close()
        raise
    acc = {c: r["test_accuracy"] for c, r in results.items()}
    gain = acc["hill"] - acc["baseline"] if "baseline" in acc else None
    log.write("session_finished", test_accuracy=acc, gain=gain)
    log.close()
    return {"participant": participant, "dir": str(pdir), "conditions": results, "gain": gain, "questionnaires": scores}


class ConditionCancelled(Exception):
    """``cancel`` was set while a condition trained: it stopped at a step boundary and is not recorded finished."""


def run_condition(
    protocol: Protocol,
    cond: str,
    pdir: Path,
    log: StudyLog,
    cfg: Any,
    bundle: Any,
    interventions: list[Intervention],
    progress: TextIO | None = None,
    events: EventChannel | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """One condition of a session. ``events``: the channel the session emits on (a caller subscribes its own
    listeners, e.g. progress); ``cancel``: set it from any thread to stop the condition at the next step."""
    run_dir = pdir / cond
    events = events if events is not None else EventChannel()
    recorder = ConditionRecorder(log, cond, protocol.seconds_per_pause if cond == "hill" else None)
    events.subscribe(recorder)
    if progress is not None:
        from hill_app.engine.progress import ProgressBar

        progress.write(f"{pdir.name} / {cond}:\n")
        events.subscribe(ProgressBar(cfg.epochs, stream=progress))
    session = TrainingSession(cfg, run_dir, bundle=bundle, events=events)
    if interventions:
        try:
            parse_edits(
                {
                    "interventions": [
                        {"epoch": iv.epoch, "edits": iv.edits, "commands": iv.commands} for iv in interventions
                    ]
                },
                pause_at=cfg.pause_at,
                num_classes=session.data.num_classes,
                view_size=len(session.view_idx),
                source="scripted participant",
            )
        except EditsFileError:
            session.journal.close()
            raise
    session.pause_handler = scripted_pause_handler(interventions)
    if cancel is not None:
        sent = threading.Event()

        def stop_when_cancelled(ev: Any) -> None:  # on the training thread, at each step's event
            if cancel.is_set() and not sent.is_set():
                sent.set()
                session.submit("stop_training", {"reason": "cancelled"}, source="study")

        events.subscribe(stop_when_cancelled)
    recorder.condition_started(session.config.to_json(), sum(len(iv.edits) for iv in interventions))
    if cancel is not None and cancel.is_set():
        session.close()
        raise ConditionCancelled(f"{cond}: cancelled before it started")
    summary = session.run()
    if cancel is not None and cancel.is_set():
        raise ConditionCancelled(f"{cond}: cancelled at epoch {summary['epochs']}, step {summary['steps']}")
    session.snapshot("final")  # the final layout, for the report's last 'after' panel
    if progress is not None:
        progress.write(f"{pdir.name} / {cond}: test accuracy {summary['test_accuracy']:.4f}\n")
    recorder.condition_finished(summary)
    return summary


# ---------------------------------------------------------------- the session's HDF5 file


def _copy_group(src: h5py.Group, dst: h5py.Group) -> None:
    for k, v in src.attrs.items():
        dst.attrs[k] = v
    for name, obj in src.items():
        src.copy(obj, dst, name=name)


def write_session_h5(pdir: Path) -> Path:
    """(Re)build ``session.h5`` from the study log and the run folders; written to a copy, then renamed."""
    pdir = Path(pdir)
    study = read_study_log(pdir)
    started = next((r for r in study if r["type"] == "session_started"), {})
    proto = started.get("protocol", {})
    out = pdir / SESSION_H5
    tmp = pdir / f".{SESSION_H5}.tmp-{os.getpid()}"
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = H5_FORMAT
        f.attrs["participant"] = started.get("participant", pdir.name)
        f.attrs["protocol_name"] = proto.get("name", "")
        f.attrs["protocol_sha256"] = proto.get("sha256") or ""
        f.attrs["dataset"] = proto.get("dataset", "")
        f.attrs["written"] = time.time()
        for cond in started.get("conditions", []):
            run_dir = pdir / cond
            if not (run_dir / "journal.jsonl").exists():
                continue
            run = read_run(run_dir)
            g = f.create_group(cond)
            g.attrs["run_dir"] = cond
            g.attrs["complete"] = run.complete
            g.attrs["seed"] = int(run.config.get("seed", -1))
            if run.summary is not None:
                g.attrs["test_accuracy"] = float(run.summary["test_accuracy"])
                g.attrs["val_accuracy"] = float(run.summary["val_accuracy"])
                if run.summary.get("test_per_class_accuracy") is not None:
                    g.create_dataset(
                        "test/per_class_accuracy",
                        data=np.asarray(run.summary["test_per_class_accuracy"], dtype=np.float64),
                    )
            m = g.create_group("metrics")
            eps = list(run.epochs.values())
            m.create_dataset("epoch", data=np.array([r["epoch"] for r in eps], dtype=np.int64))
            for key in ("val_accuracy", "val_loss", "train_accuracy", "train_loss", "lr"):
                m.create_dataset(key, data=np.array([float(r.get(key, np.nan)) for r in eps], dtype=np.float64))
            snaps_path = run_dir / "snapshots.h5"
            if snaps_path.exists():
                with h5py.File(snaps_path, "r") as src:
                    for part in ("projection", "snapshots"):
                        if part in src:
                            _copy_group(src[part], g.create_group(part))
            snaps = read_run_snapshots(run_dir)
            pg = g.create_group("pauses")
            for p in run.pauses:
                name = f"e{p.epoch:04d}_s{p.step:07d}_{p.branch}"
                q = pg.create_group(name)
                q.attrs.update(
                    epoch=p.epoch,
                    step=p.step,
                    branch=p.branch,
                    reason=p.reason,
                    scheduled=p.scheduled,
                    seconds=np.nan if p.seconds is None else p.seconds,
                    edits=json.dumps(p.edits),
                    commits=len(p.commits),
                )
                found = pause_snapshot(snaps, p)
                before = None
                if found is not None:
                    sname, s = found
                    q.attrs["snapshot"] = sname
                    for key in ("z", "labels", "preds", "view_indices"):
                        q[key] = h5py.SoftLink(f"/{cond}/snapshots/{sname}/{key}")
                    from hill_app.losses import layout_from_points

                    k = int(s["labels"].max()) + 1 if p.layout_after is None else p.layout_after.num_classes
                    before = layout_from_points(s["z"], s["labels"], k)
                    q.create_dataset("before_centers", data=before.centers)
                    q.create_dataset("before_spreads", data=before.spreads)
                after = p.layout_after
                if after is not None:
                    q.create_dataset("after_centers", data=after.centers)
                    q.create_dataset("after_spreads", data=after.spreads)
                    q.create_dataset("after_sep_min", data=after.sep_min)
                    q.create_dataset("after_group", data=after.group)
                    idx = np.array(sorted(after.points), dtype=np.int64)
                    q.create_dataset("after_point_indices", data=idx)
                    q.create_dataset(
                        "after_point_positions",
                        data=np.array([after.points[i] for i in idx], dtype=np.float64).reshape(-1, 2),
                    )
                q.attrs["strategy"] = classify_pause(p.edits, before).text
            final = [n for n, s in snaps.items() if s.get("kind") == "final"]
            if final:
                for key in ("z", "labels", "preds", "view_indices"):
                    g[f"final/{key}"] = h5py.SoftLink(f"/{cond}/snapshots/{max(final)}/{key}")
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    fsync_dir(pdir)
    return out


__all__ = [
    "SESSION_H5",
    "AnswerError",
    "StudyError",
    "check_participant",
    "load_scripted",
    "run_participant",
    "write_session_h5",
]
