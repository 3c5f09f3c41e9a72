"""Exact replay of a journal (branches included), and resume after SIGKILL at random moments."""

import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from hill_app.engine.branches import CheckpointTree
from hill_app.engine.checkpoints import load_checkpoint
from hill_app.engine.config import RunConfig
from hill_app.engine.history import epoch_metrics
from hill_app.engine.journal import read_journal
from hill_app.engine.replay import replay_run
from hill_app.engine.session import TrainingSession

EDITS = {
    "interventions": [
        {
            "epoch": 3,
            "edits": [
                {"op": "strategy", "name": "compactness", "strength": 0.4},
                {"op": "move_points", "indices": [5, 9], "to": [0.2, -0.1]},
            ],
            "commands": [{"command": "update_optimizer", "args": {"lr": 0.02}}],
        },
        {"epoch": 5, "edits": [{"op": "separate", "classes": [3, 5], "min_distance": 1.2}]},
    ]
}


def branched_run(run_dir: Path) -> None:
    """Edits at a pause, then a fork from the first checkpoint onto a new branch with another lr."""
    state = {"forked": False}

    def handler(s, info):
        if info.epoch == 3:
            s.submit("set_latent_targets", {"edits": EDITS["interventions"][0]["edits"]})
            s.submit("save_checkpoint", {"note": "after edits"})
        if info.epoch == 5 and not state["forked"]:
            state["forked"] = True
            first = s.tree.nodes[0]["uuid"]
            s.submit("load_checkpoint", {"uuid": first, "branch_name": "retry lr/../x"})
            s.submit("update_optimizer", {"lr": 0.01})
        s.submit("resume_training", {})

    cfg = RunConfig(epochs=6, pause_at=[3, 5], seed=3, device="cpu")
    TrainingSession(cfg, run_dir, pause_handler=handler).run()


def test_replay_reproduces_a_branched_run_exactly(tmp_path):
    run = tmp_path / "run"
    branched_run(run)
    recs = list(read_journal(run / "journal.jsonl"))
    branches = {r["branch"] for r in recs if r["type"] == "epoch"}
    assert branches == {"main", "retry-lr-..-x"}, branches  # sanitised: no path separators
    summary, diffs = replay_run(run, tmp_path / "replay")
    assert diffs == []
    original = epoch_metrics(recs)
    replayed = epoch_metrics(read_journal(tmp_path / "replay" / "journal.jsonl"))
    assert set(original) == set(replayed) and len(original) >= 8
    assert summary["test_accuracy"] == json.loads((run / "summary.json").read_text())["test_accuracy"]


def test_replay_reports_a_difference(tmp_path):
    run = tmp_path / "run"
    cfg = RunConfig(epochs=3, pause_at=[], seed=1, device="cpu")
    TrainingSession(cfg, run).run()
    lines = (run / "journal.jsonl").read_text().splitlines()
    for i, line in enumerate(lines):
        rec = json.loads(line)
        if rec["type"] == "epoch" and rec["epoch"] == 2:
            rec["val_accuracy"] = rec["val_accuracy"] - 0.01
            lines[i] = json.dumps(rec)
    (run / "journal.jsonl").write_text("\n".join(lines) + "\n")
    _, diffs = replay_run(run, tmp_path / "replay")
    assert any("epoch 2 val_accuracy" in d for d in diffs)


@pytest.mark.parametrize("field", ["val_loss", "train_grad_norm"])
def test_replay_command_compares_exactly_one_ulp_differs_and_exits_non_zero(tmp_path, capsys, field):
    """`hill-app replay` is exact: an identical replay exits 0; one ulp (np.nextafter) on one logged value of one
    epoch is reported, naming the epoch and the field, and exits 1 (a relative tolerance would hide it)."""
    from hill_app.cli import main

    run = tmp_path / "run"
    TrainingSession(RunConfig(epochs=2, pause_at=[], seed=1, device="cpu"), run).run()
    assert main(["replay", str(run), "--out", str(tmp_path / "same")]) == 0
    out = capsys.readouterr().out
    assert "replay identical" in out and "compared exactly" in out, out

    lines = (run / "journal.jsonl").read_text().splitlines()
    for i, line in enumerate(lines):
        rec = json.loads(line)
        if rec["type"] == "epoch" and rec["epoch"] == 2:
            old = rec[field]
            new = rec[field] = float(np.nextafter(old, np.inf))
            assert new != old and abs(new - old) / abs(old) < 1e-15
            lines[i] = json.dumps(rec)
    (run / "journal.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["replay", str(run), "--out", str(tmp_path / "ulp")]) == 1
    out = capsys.readouterr().out
    assert "replay DIFFERS from the original in 1 place(s)" in out, out
    assert f"main epoch 2 {field}: original {new!r}, replay {old!r}" in out, out


def _cli(*args):
    return [sys.executable, "-m", "hill_app", *map(str, args)]


def _check_readable(run: Path) -> None:
    if (run / "journal.jsonl").exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            recs = list(read_journal(run / "journal.jsonl"))
        assert all(isinstance(r, dict) and "type" in r for r in recs)
        lines = (run / "journal.jsonl").read_bytes().split(b"\n")
        for line in lines[:-2]:  # everything but a torn last record parses
            if line.strip():
                json.loads(line)
    if (run / "checkpoints" / "tree.json").exists():
        tree = CheckpointTree(run / "checkpoints")
        for node in tree.nodes:
            load_checkpoint(run / "checkpoints" / node["file"])


def _records_so_far(run: Path) -> int:
    try:
        return (run / "journal.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path, record_property):
    edits = tmp_path / "edits.json"
    edits.write_text(json.dumps(EDITS))
    common = [
        "--epochs",
        7,
        "--pause-at",
        "3,5",
        "--edits",
        edits,
        "--seed",
        5,
        "--device",
        "cpu",
        "--checkpoint-every",
        1,
    ]
    ref = tmp_path / "ref"
    subprocess.run(_cli("train", *common, "--out", ref), check=True, capture_output=True)
    ref_records = _records_so_far(ref)

    run = tmp_path / "run"
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills = 0
    for _attempt in range(8):
        started = (run / "config.json").exists()
        cmd = _cli("train", "--resume", run) if started else _cli("train", *common, "--out", run)
        if not started and run.exists():
            import shutil

            shutil.rmtree(run)
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        # kill at a random moment of the run's progress: once the journal holds a random number of records
        # (a random delay in seconds lands after the end on a fast machine and before the first pause on a slow one)
        target = rng.randint(1, max(2, ref_records - 5))
        while p.poll() is None and _records_so_far(run) < target:
            time.sleep(0.005)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            kills += 1
        else:
            assert p.returncode == 0, p.stderr.read().decode()
        _check_readable(run)
        if (run / "summary.json").exists():
            break
        if kills >= 3:
            break
    if not (run / "summary.json").exists():
        cmd = _cli("train", "--resume", run) if (run / "config.json").exists() else _cli("train", *common, "--out", run)
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    _check_readable(run)
    record_property("sigkills", kills)  # how many kills this run survived (for the closing figures)
    assert kills >= 1
    got = json.loads((run / "summary.json").read_text())
    want = json.loads((ref / "summary.json").read_text())
    assert got["epochs"] == want["epochs"] == 7
    assert got["test_accuracy"] == want["test_accuracy"]
    assert epoch_metrics(read_journal(run / "journal.jsonl")) == epoch_metrics(read_journal(ref / "journal.jsonl"))
