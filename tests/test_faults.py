"""Fault injection (issue 13): kills at deterministic and random moments (during checkpoint, index, snapshot,
journal and config writes, right after a pause's commands), damaged run folders, two processes on one folder,
signals and a full disk. Every case ends in a run identical to an uninterrupted one, or in a one-line refusal
that leaves the folder as it was.

The killed runs are subprocesses (tests/fault_driver.py injects the fault); resumes run in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from hill_app.cli import main
from hill_app.engine.branches import CheckpointTree
from hill_app.engine.checkpoints import load_checkpoint
from hill_app.engine.history import epoch_metrics
from hill_app.engine.journal import read_journal
from hill_app.engine.replay import replay_run

pytestmark = pytest.mark.slow

EDITS = {
    "interventions": [
        {
            "epoch": 3,
            "edits": [
                {"op": "strategy", "name": "compactness", "strength": 0.4},
                {"op": "move_points", "indices": [5, 9], "to": [0.2, -0.1]},
            ],
            "commands": [{"command": "update_optimizer", "args": {"lr": 0.02}}],
        }
    ]
}
DRIVER = Path(__file__).with_name("fault_driver.py")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def common(edits: Path) -> list[str]:
    return [
        "--epochs",
        "4",
        "--pause-at",
        "3",
        "--edits",
        str(edits),
        "--seed",
        "5",
        "--device",
        "cpu",
        "--checkpoint-every",
        "1",
    ]


def records(run: Path) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(read_journal(run / "journal.jsonl"))


@pytest.fixture(scope="module")
def edits(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("faults") / "edits.json"
    p.write_text(json.dumps(EDITS))
    return p


@pytest.fixture(scope="module")
def reference(tmp_path_factory, edits):
    """The uninterrupted run every faulty one must equal."""
    out = tmp_path_factory.mktemp("faults") / "ref"
    assert main(["train", *common(edits), "--out", str(out)]) == 0
    recs = records(out)
    return {
        "metrics": epoch_metrics(recs),
        "summary": json.loads((out / "summary.json").read_text()),
        "n_records": len(recs),
        "dir": out,
    }


def drive(spec: dict | None, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(DRIVER), json.dumps(spec), *args] if spec else [sys.executable, "-m", "hill_app", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)


def check_readable(run: Path) -> None:
    """What a kill leaves: every complete journal record parses, every indexed checkpoint loads."""
    if (run / "journal.jsonl").exists():
        assert all(isinstance(r, dict) and "type" in r for r in records(run))
    if (run / "checkpoints" / "tree.json").exists():
        tree = CheckpointTree(run / "checkpoints")
        for node in tree.nodes:
            load_checkpoint(run / "checkpoints" / node["file"])


def assert_same_as(run: Path, reference: dict) -> None:
    summary = json.loads((run / "summary.json").read_text())
    want = reference["summary"]
    assert summary["epochs"] == want["epochs"] == 4 and not summary["stopped_early"]
    assert summary["test_accuracy"] == want["test_accuracy"]
    assert summary["test_per_class_accuracy"] == want["test_per_class_accuracy"]
    assert summary["edits_applied"] == want["edits_applied"] == 2  # the pause's edits, exactly once
    recs = records(run)
    assert epoch_metrics(recs) == reference["metrics"]
    assert [r["lr"] for r in sorted((r for r in recs if r["type"] == "epoch"), key=lambda r: r["seq"])][-1] == 0.02
    # one end of all its epochs (a stop before it writes a 'finished' record with stopped_early, then continues)
    assert sum(1 for r in recs if r["type"] == "finished" and not r["stopped_early"]) == 1


def folder_state(run: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# ---------------------------------------------------------------- kills at deterministic moments

KILLS = {
    # the headline: the pause's commands were applied and journaled, the pause not yet resumed
    "after-pause-commands": {"kind": "after_command", "match": "update_optimizer"},
    "after-commit-before-lr": {"kind": "after_command", "match": "set_latent_targets"},
    "before-resumed-record": {"kind": "journal_before", "match": "resumed"},
    "first-checkpoint-mid-write": {"kind": "before_replace", "match": ".pt", "nth": 1},
    "pause-checkpoint-mid-write": {"kind": "before_replace", "match": ".pt", "nth": 2},
    "checkpoint-file-without-index": {"kind": "after_replace", "match": ".pt", "nth": 2},
    "index-mid-write": {"kind": "before_replace", "match": "tree.json", "nth": 3},
    "checkpoint-without-journal-record": {"kind": "journal_before", "match": "checkpoint", "nth": 2},
    "projection-snapshot-mid-write": {"kind": "before_replace", "match": "snapshots.h5", "nth": 1},
    "pause-snapshot-mid-write": {"kind": "before_replace", "match": "snapshots.h5", "nth": 2},
    "commit-snapshot-mid-write": {"kind": "before_replace", "match": "snapshots.h5", "nth": 3},
    "torn-epoch-record": {"kind": "journal_torn", "match": "epoch", "nth": 2},
    "torn-command-record": {"kind": "journal_torn", "match": "command", "nth": 5},
    "before-run-started": {"kind": "journal_before", "match": "run_started"},
    "final-checkpoint-mid-write": {"kind": "before_replace", "match": ".pt", "nth": 5},
    "summary-mid-write": {"kind": "before_replace", "match": "summary.json"},
    "before-finished-record": {"kind": "journal_before", "match": "finished"},
}


@pytest.mark.parametrize("name", list(KILLS))
def test_kill_at_a_deterministic_moment_then_resume_is_identical(tmp_path, edits, reference, name):
    run = tmp_path / "run"
    r = drive(KILLS[name], ["train", *common(edits), "--out", str(run)])
    assert r.returncode == 137, r.stderr[-2000:]
    check_readable(run)
    assert (run / "edits.json").read_bytes() == edits.read_bytes()  # in the folder before any journal record
    assert main(["train", "--resume", str(run)]) == 0
    assert_same_as(run, reference)
    assert not [p for p in run.rglob(".*.tmp-*")]  # a write the kill interrupted leaves nothing behind
    # and the recovered journal still replays exactly
    _, diffs = replay_run(run, tmp_path / "replay")
    assert diffs == []


def test_kill_before_config_then_the_same_command_starts_the_run(tmp_path, edits, reference, capsys):
    """A kill before config.json leaves no run: --resume says so, the original command starts it."""
    run = tmp_path / "run"
    r = drive({"kind": "before_replace", "match": "config.json"}, ["train", *common(edits), "--out", str(run)])
    assert r.returncode == 137
    assert (run / "edits.json").exists() and not (run / "config.json").exists()
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "holds no run" in err and len(err.strip().splitlines()) == 1
    assert main(["train", *common(edits), "--out", str(run)]) == 0
    assert_same_as(run, reference)


def test_kills_during_the_resumes_too(tmp_path, edits, reference):
    """Killed, resumed, killed again during the resume's own writes, resumed again."""
    run = tmp_path / "run"
    assert drive(KILLS["after-pause-commands"], ["train", *common(edits), "--out", str(run)]).returncode == 137
    assert (
        drive({"kind": "before_replace", "match": ".pt", "nth": 1}, ["train", "--resume", str(run)]).returncode == 137
    )
    assert (
        drive({"kind": "journal_torn", "match": "epoch", "nth": 1}, ["train", "--resume", str(run)]).returncode == 137
    )
    check_readable(run)
    assert main(["train", "--resume", str(run)]) == 0
    assert_same_as(run, reference)
    assert sum(1 for r in records(run) if r["type"] == "resumed_after_crash") == 3
    assert replay_run(run, tmp_path / "replay")[1] == []


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_at_random_moments(tmp_path, edits, reference, record_property):
    """SIGKILL when the journal reaches a random length (spread over the whole run whatever the machine's
    load), resume, repeat; then finish and compare."""
    rng = random.Random(20250613)
    run = tmp_path / "run"
    journal = run / "journal.jsonl"
    kills = 0
    for _attempt in range(6):
        if (run / "summary.json").exists():
            break
        started = (run / "config.json").exists()
        args = ["train", "--resume", str(run)] if started else ["train", *common(edits), "--out", str(run)]
        p = subprocess.Popen(
            [sys.executable, "-m", "hill_app", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV
        )
        target = _lines(journal) + rng.randint(1, max(2, reference["n_records"] // 3))
        while p.poll() is None and _lines(journal) < target:
            time.sleep(0.005)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            kills += 1
        else:
            assert p.returncode == 0, p.stderr.read().decode()[-2000:]
        p.stderr.close()
        check_readable(run)
    if not (run / "summary.json").exists():
        assert main(["train", "--resume", str(run)]) == 0
    record_property("sigkills", kills)  # how many kills this run survived (for the closing figures)
    assert kills >= 3
    assert_same_as(run, reference)


# ---------------------------------------------------------------- signals


def _held(tmp_path: Path, match: str, nth: int, args: list[str]) -> tuple[subprocess.Popen, Path, Path]:
    ready, go = tmp_path / "ready", tmp_path / "go"
    spec = {"kind": "hold", "match": match, "nth": nth, "ready": str(ready), "go": str(go)}
    p = subprocess.Popen(
        [sys.executable, str(DRIVER), json.dumps(spec), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    while not ready.exists():
        assert p.poll() is None, p.communicate()[1][-2000:]
        time.sleep(0.02)
    return p, ready, go


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_at_a_step_with_a_checkpoint_and_says_how_to_resume(tmp_path, edits, reference, sig, code):
    run = tmp_path / "run"
    p, _, go = _held(tmp_path, "epoch", 2, ["train", *common(edits), "--out", str(run)])
    os.kill(p.pid, sig)
    go.write_text("")
    out, err = p.communicate(timeout=600)
    assert p.returncode == code, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = err.strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(sig).name}" in last and f"--resume {run}" in last
    recs = records(run)
    stopped = [r for r in recs if r["type"] == "stopped"]
    assert len(stopped) == 1 and stopped[0]["cause"] == "signal"
    assert any(r["type"] == "checkpoint" and r["uuid"] == stopped[0]["checkpoint"] for r in recs)
    assert main(["train", "--resume", str(run)]) == 0
    assert_same_as(run, reference)


# ---------------------------------------------------------------- two processes, one folder


def test_a_second_process_on_a_running_folder_is_refused_naming_the_holder(tmp_path, edits, reference, capsys):
    run = tmp_path / "run"
    p, ready, go = _held(tmp_path, "paused", 1, ["train", *common(edits), "--out", str(run)])
    holder = ready.read_text()
    before = (run / "journal.jsonl").read_bytes()
    for args in (["train", "--resume", str(run)], ["train", *common(edits), "--out", str(run)]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"process {holder}" in err or "already holds a run" in err, err
    assert main(["train", "--resume", str(run)]) == 2
    assert f"in use by process {holder}" in capsys.readouterr().err
    assert (run / "journal.jsonl").read_bytes() == before  # the refused ones wrote nothing
    go.write_text("")
    p.communicate(timeout=600)
    assert p.returncode == 0
    assert_same_as(run, reference)
    seqs = [r["seq"] for r in records(run)]
    assert seqs == list(range(len(seqs)))


def test_two_new_runs_racing_for_one_folder(tmp_path, edits):
    """Two `train --out X` at once: one runs, the other is refused; the folder is one run's, consistently."""
    run = tmp_path / "run"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hill_app",
                "train",
                "--epochs",
                "2",
                "--pause-at",
                "none",
                "--seed",
                str(seed),
                "--device",
                "cpu",
                "--out",
                str(run),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for seed in (1, 2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
    codes = sorted(c for c, _ in results)
    assert codes == [0, 2], results
    refused = next(e for c, e in results if c == 2)
    assert "in use by process" in refused or "already holds a run" in refused
    seed = json.loads((run / "config.json").read_text())["seed"]
    assert json.loads((run / "summary.json").read_text())["seed"] == seed
    started = [r for r in records(run) if r["type"] == "run_started"]
    assert len(started) == 1 and started[0]["config"]["seed"] == seed
    assert sum(1 for r in records(run) if r["type"] == "finished") == 1


# ---------------------------------------------------------------- damaged folders


@pytest.fixture(scope="module")
def crashed(tmp_path_factory, edits):
    """A run killed after its epoch-3 checkpoint (checkpoints after epochs 1, 2 (the pause) and 3)."""
    run = tmp_path_factory.mktemp("crashed") / "run"
    r = drive({"kind": "journal_before", "match": "epoch", "nth": 4}, ["train", *common(edits), "--out", str(run)])
    assert r.returncode == 137
    assert [n["epoch"] for n in CheckpointTree(run / "checkpoints").nodes] == [1, 2, 3]
    return run


def _newest(run: Path) -> Path:
    return run / "checkpoints" / CheckpointTree(run / "checkpoints").nodes[-1]["file"]


def _journal_lines(run: Path) -> list[str]:
    return (run / "journal.jsonl").read_text().splitlines(keepends=True)


class Marker:
    """A pickle payload: if it ever ran, a file would appear."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def damage_newest_deleted(run):
    _newest(run).unlink()


def damage_newest_truncated(run):
    p = _newest(run)
    p.write_bytes(p.read_bytes()[:1000])


def damage_newest_garbage(run):
    _newest(run).write_bytes(os.urandom(5000))


def damage_newest_pickle_payload(run):
    torch.save({"model": {}, "x": Marker(str(run.parent / "PAYLOAD-RAN"))}, _newest(run))


def damage_tree_garbage(run):
    (run / "checkpoints" / "tree.json").write_text('{"nodes": [{"uuid": 3')


def damage_tree_deleted(run):
    (run / "checkpoints" / "tree.json").unlink()


def damage_tree_lost_nodes(run):
    p = run / "checkpoints" / "tree.json"
    d = json.loads(p.read_text())
    d["nodes"] = d["nodes"][:1]
    p.write_text(json.dumps(d))


def damage_tree_points_outside(run):
    p = run / "checkpoints" / "tree.json"
    d = json.loads(p.read_text())
    shutil.copy(_newest(run), run.parent / "elsewhere.pt")
    d["nodes"][-1]["file"] = "../../elsewhere.pt"
    p.write_text(json.dumps(d))


def damage_temp_leftovers(run):
    (run / "checkpoints" / ".abc.pt.tmp-99999").write_bytes(b"half a checkpoint")
    (run / ".snapshots.h5.tmp-4242").write_bytes(b"half a snapshot file")
    (run / "checkpoints" / ".tree.json.tmp-77").write_text("{")


def damage_garbage_line_inserted(run):
    lines = _journal_lines(run)
    lines.insert(len(lines) // 2, "this is not a record }{\n")
    (run / "journal.jsonl").write_text("".join(lines))


def damage_journal_middle_cut(run):
    lines = _journal_lines(run)
    (run / "journal.jsonl").write_text("".join(lines[:8] + lines[14:]))


def damage_garbage_line_replacing_a_record(run):
    lines = _journal_lines(run)
    lines[12] = "#" * 40 + "\n"
    (run / "journal.jsonl").write_text("".join(lines))


def damage_journal_deleted(run):
    (run / "journal.jsonl").unlink()


def damage_journal_tail_cut(run):
    lines = _journal_lines(run)
    (run / "journal.jsonl").write_text("".join(lines[: len(lines) // 2]))


def damage_journal_written_twice(run):
    lines = _journal_lines(run)
    (run / "journal.jsonl").write_text("".join(lines + lines[-8:]))


def damage_config_garbage(run):
    (run / "config.json").write_text("{not json")


def damage_config_deleted(run):
    (run / "config.json").unlink()


def damage_config_bad_value(run):
    d = json.loads((run / "config.json").read_text())
    d["lam"] = -1
    (run / "config.json").write_text(json.dumps(d))


def damage_config_wrong_type(run):
    d = json.loads((run / "config.json").read_text())
    d["epochs"] = "four"
    (run / "config.json").write_text(json.dumps(d))


def damage_edits_deleted(run):
    (run / "edits.json").unlink()


def damage_edits_changed(run):
    (run / "edits.json").write_text(json.dumps({"interventions": []}))


def damage_snapshots_garbage(run):
    (run / "snapshots.h5").write_bytes(b"\x89HDF\r\n" + os.urandom(3000))


def damage_all_checkpoints_garbage(run):
    for p in (run / "checkpoints").glob("*.pt"):
        p.write_bytes(b"PK\x03\x04" + os.urandom(100))


# name -> (damage, "resumes" | a text the refusal must hold)
DAMAGES = {
    "newest-checkpoint-deleted": (damage_newest_deleted, "resumes"),
    "newest-checkpoint-truncated": (damage_newest_truncated, "resumes"),
    "newest-checkpoint-garbage": (damage_newest_garbage, "resumes"),
    "newest-checkpoint-pickle-payload": (damage_newest_pickle_payload, "resumes"),
    "index-garbage": (damage_tree_garbage, "resumes"),
    "index-deleted": (damage_tree_deleted, "resumes"),
    "index-lost-nodes": (damage_tree_lost_nodes, "resumes"),
    "index-names-a-file-outside": (damage_tree_points_outside, "resumes"),
    "temp-file-leftovers": (damage_temp_leftovers, "resumes"),
    "garbage-line-inserted-in-journal": (damage_garbage_line_inserted, "resumes"),
    "journal-cut-in-the-middle": (damage_journal_middle_cut, "are missing"),
    "garbage-line-replacing-a-record": (damage_garbage_line_replacing_a_record, "are missing"),
    "journal-deleted": (damage_journal_deleted, "journal.jsonl is missing"),
    "journal-cut-at-the-end": (damage_journal_tail_cut, "cut short or deleted"),
    "journal-written-twice": (damage_journal_written_twice, "two processes"),
    "config-garbage": (damage_config_garbage, "config.json: the run config is not valid JSON"),
    "config-deleted": (damage_config_deleted, "config.json: not found"),
    "config-bad-value": (damage_config_bad_value, "config.json: lam: must be >= 0"),
    "config-wrong-type": (damage_config_wrong_type, "config.json: epochs: must be a positive integer"),
    "edits-deleted": (damage_edits_deleted, "edits.json: missing"),
    "edits-changed": (damage_edits_changed, "edits.json: changed since the run started"),
    "snapshots-garbage": (damage_snapshots_garbage, "snapshots.h5: not a readable HDF5"),
    "all-checkpoints-garbage": (damage_all_checkpoints_garbage, "none of the run's 3 checkpoints"),
}


@pytest.mark.parametrize("name", list(DAMAGES))
def test_resume_from_a_damaged_folder(tmp_path, crashed, reference, name, capsys):
    damage, expect = DAMAGES[name]
    run = tmp_path / "run"
    shutil.copytree(crashed, run)
    damage(run)
    before = folder_state(run)
    rc = main(["train", "--resume", str(run)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if expect == "resumes":
        assert rc == 0, err
        assert_same_as(run, reference)
        assert not (tmp_path / "PAYLOAD-RAN").exists()
        assert not [p for p in run.rglob(".*.tmp-*")]
        resumed = [r for r in records(run) if r["type"] == "resumed_after_crash"][-1]
        if name.startswith(("newest-", "index-garbage", "index-lost")):
            assert resumed.get("notes"), resumed  # what was repaired or skipped is said, not silent
            assert any(w in " ".join(resumed["notes"]) for w in ("cannot be used", "rebuilt", "taken back")), resumed
        if name == "temp-file-leftovers":
            assert len(resumed["removed_temp_files"]) == 3
    else:
        assert rc == 2, err
        lines = [x for x in err.strip().splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert expect in lines[0], (expect, lines[0])
        assert "torn" not in lines[0]
        assert folder_state(run) == before  # refused: nothing in the folder changed


def test_resume_of_a_finished_run_is_refused(reference, capsys):
    run = reference["dir"]
    before = folder_state(run)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "finished all its 4 epochs" in err and "hill-app replay" in err
    assert folder_state(run) == before


def test_resume_with_changed_options_is_refused(crashed, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(crashed, run)
    before = folder_state(run)
    assert main(["train", "--resume", str(run), "--lr", "0.05"]) == 2
    err = capsys.readouterr().err
    assert "--lr" in err and "cannot be changed" in err and "update_optimizer" in err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"interventions": []}))
    assert main(["train", "--resume", str(run), "--edits", str(other)]) == 2
    assert "another edits file cannot be swapped in" in capsys.readouterr().err
    assert folder_state(run) == before


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def small_fs(tmp_path):
    """A 1.5 MiB tmpfs (needs root and mount; skipped where the test cannot make one)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_is_one_line_naming_the_file_and_the_run_resumes_elsewhere(small_fs, tmp_path, edits, reference):
    run = small_fs / "run"
    r = drive(None, ["train", *common(edits), "--out", str(run)])
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr
    assert "No space left on device" in last and str(run) in last, last
    assert ": : " not in last
    # nothing readable was lost: the folder, moved to a disk with room, resumes to the same result
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    assert main(["train", "--resume", str(moved)]) == 0
    assert_same_as(moved, reference)
