"""What ``--resume`` may continue from: the run folder checked whole before anything in it is written.

A folder is resumable when its journal is whole up to what its checkpoints know (each checkpoint records the
journal's length when it was taken), the files the run read (the edits file, added samples) are the ones it
started with, and the snapshot file is readable. A checkpoint index that cannot be read is rebuilt from the
journal's checkpoint records; an unreadable newest checkpoint falls back to the newest one that loads.
Anything else is refused with one line saying what is wrong and where.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .branches import CheckpointTree, valid_node
from .checkpoints import CheckpointError
from .config import ConfigError
from .journal import scan_journal

TEMP_RE = re.compile(r"^\..+\.tmp-\d+$")
INPUT_FILES = ("edits.json",)  # files beside config.json that a run reads, hashed into run_started


class ResumeError(ConfigError):
    """The folder cannot be continued exactly; the message says why and names the file."""


class RunFolderError(ConfigError):
    """A new run was asked for in a folder that already holds one."""


@dataclass
class ResumePlan:
    records: list[dict[str, Any]]
    tree: CheckpointTree
    notes: list[str] = field(default_factory=list)  # what was repaired or skipped, said to the user
    started: dict[str, Any] | None = None  # the run_started record, if the journal has one


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_hashes(run_dir: Path) -> dict[str, str]:
    """SHA-256 of the run's input files that are present (recorded when the run starts)."""
    return {name: sha256_file(run_dir / name) for name in INPUT_FILES if (run_dir / name).is_file()}


def remove_stale_temp_files(run_dir: Path) -> list[str]:
    """Temporary files of writes a kill interrupted (``.NAME.tmp-PID``); only called under the run lock, so
    no other process is writing them."""
    gone = []
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "added"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if TEMP_RE.match(p.name) and p.is_file():
                try:
                    p.unlink()
                    gone.append(str(p.relative_to(run_dir)))
                except OSError:
                    pass
    return gone


def check_new_run_folder(run_dir: Path) -> None:
    """A new run starts only in a folder without a run (no journal records, no checkpoints)."""
    j = run_dir / "journal.jsonl"
    if j.exists() and j.stat().st_size > 0:
        raise RunFolderError(
            f"{run_dir} already holds a run; choose another folder or continue it with --resume {run_dir}"
        )
    if (run_dir / "checkpoints" / "tree.json").exists():
        raise RunFolderError(f"{run_dir}: checkpoints/tree.json is there, from another run; choose another folder")


def plan_resume(run_dir: Path) -> ResumePlan:
    """Check the folder and say what the resume starts from (ResumeError when it cannot be exact)."""
    jpath = run_dir / "journal.jsonl"
    notes: list[str] = []
    if jpath.exists():
        try:
            scan = scan_journal(jpath)
        except OSError as e:
            raise ResumeError(f"{jpath}: cannot read the journal ({e.strerror or e})") from None
    else:
        scan = None
    records = scan.records if scan else []
    if scan is not None:
        problem = scan.seq_problem()
        if problem:
            raise ResumeError(
                f"{jpath}: {problem}; the journal is damaged and the run cannot be continued "
                "exactly (replay what is there, or start a new run)"
            )
        if scan.corrupt:
            line, what = scan.corrupt[0]
            notes.append(f"{jpath} line {line}: corrupt line skipped ({what}); no record is missing")
        if scan.torn:
            notes.append(f"{jpath}: {len(scan.torn)} torn record(s) skipped (cut short by a kill)")
    tree = _tree(run_dir, records, notes)
    for n in tree.nodes:
        check_journal_length(jpath, len(records), n.get("journal_seq"), n["uuid"], missing=scan is None)
    if records and not tree.nodes and any(r.get("type") == "checkpoint" for r in records):
        raise ResumeError(
            f"{run_dir / 'checkpoints'}: the journal names checkpoints but none of their files "
            "is there; the run cannot be continued"
        )
    last_finish = None
    for r in records:
        if r.get("type") == "finished":
            last_finish = r
        elif r.get("type") == "resumed_after_crash":
            last_finish = None
    if last_finish is not None and not last_finish.get("stopped_early"):
        raise ResumeError(
            f"{run_dir}: the run finished all its {last_finish.get('epochs')} epochs; there is "
            f"nothing to resume (replay it with: hill-app replay {run_dir})"
        )
    started = next((r for r in records if r.get("type") == "run_started"), None)
    want = (started or {}).get("inputs") or {}
    for name, sha in want.items():
        p = run_dir / str(name)
        if str(name) not in INPUT_FILES:
            continue
        if not p.is_file():
            raise ResumeError(
                f"{p}: missing; the run started with it (sha256 {str(sha)[:12]}...) and cannot "
                "be continued without it (restore the file)"
            )
        got = sha256_file(p)
        if got != sha:
            raise ResumeError(
                f"{p}: changed since the run started (sha256 {got[:12]}... instead of "
                f"{str(sha)[:12]}...); restore the original to continue the run"
            )
    snap = run_dir / "snapshots.h5"
    if snap.exists():
        _check_hdf5(snap)
    return ResumePlan(records, tree, notes, started)


def check_journal_length(jpath: Path, n_records: int, journal_seq: Any, uuid: str, missing: bool = False) -> None:
    """A checkpoint taken when the journal held ``journal_seq`` records needs all of them."""
    if isinstance(journal_seq, int) and not isinstance(journal_seq, bool) and journal_seq > n_records:
        what = "is missing" if missing else f"holds {n_records} record(s)"
        raise ResumeError(
            f"{jpath} {what}, but checkpoint {uuid[:8]} was taken when it held {journal_seq}: the "
            "journal was cut short or deleted, and the commands after it cannot be re-applied "
            "(restore the journal, or start a new run)"
        )


def _check_hdf5(path: Path) -> None:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            f.get("snapshots")
    except Exception as e:  # h5py raises OSError and others for a damaged file
        raise ResumeError(
            f"{path}: not a readable HDF5 snapshot file ({str(e).splitlines()[0][:120]}); move it "
            "aside to continue without the earlier snapshots"
        ) from None


def _tree(run_dir: Path, records: list[dict[str, Any]], notes: list[str]) -> CheckpointTree:
    """The checkpoint index, merged with the journal's checkpoint records whose files exist (an index that
    cannot be read, or that lost nodes to a crash, is rebuilt from them)."""
    folder = run_dir / "checkpoints"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = CheckpointTree(folder, create=False)
    except CheckpointError as e:
        notes.append(f"{e}; rebuilt from the journal's checkpoint records")
        tree = CheckpointTree(folder, nodes=[], create=False)
    have = {n["uuid"] for n in tree.nodes}
    from_journal = []
    for r in records:
        if r.get("type") != "checkpoint":
            continue
        node = {k: v for k, v in r.items() if k not in ("seq", "type")}
        node["time"] = r.get("time")
        if not valid_node(node) or node["uuid"] in have:
            continue
        if (folder / node["file"]).is_file():
            from_journal.append(node)
            have.add(node["uuid"])
    if from_journal:
        order = {r.get("uuid"): i for i, r in enumerate(records) if r.get("type") == "checkpoint"}
        merged = sorted(tree.nodes + from_journal, key=lambda n: order.get(n["uuid"], len(order)))
        notes.append(
            f"{tree.index_path}: {len(from_journal)} checkpoint(s) missing from the index were taken "
            "back from the journal"
        )
        tree.nodes = merged
        tree.dirty = True
    return tree
