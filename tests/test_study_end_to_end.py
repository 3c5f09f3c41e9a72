"""A short digits study end to end: two scripted participants with different strategies, then the report,
whose numbers must equal those in the sessions' own logs (summary.json, journal.jsonl, study_log.jsonl)."""

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hill_app.cli import main
from hill_app.studies.protocol import load_protocol
from hill_app.studies.runner import run_participant

pytestmark = pytest.mark.slow

PROTOCOL = """
[study]
name = "tiny digits study"
conditions = ["hill", "baseline"]
panels = ["latent"]
seconds_per_pause = 30
instructions = "Train the best model you can."

[training]
dataset = "digits"
epochs = 3
pause_at = [3]
alpha = 0.5
lam = 0.1
seed = 0
device = "cpu"
"""

COMPACT = {
    "description": "tighten the clusters",
    "interventions": [
        {
            "epoch": 3,
            "edits": [
                {"op": "strategy", "name": "compactness", "strength": 0.3},
                {"op": "scale_spread", "class": 8, "factor": 0.6},
            ],
        }
    ],
    "questionnaire": {"umux_lite": [5, 6], "nasa_tlx": [50, 60, 70, 80, 90, 100]},
}
SEPARATE = {
    "interventions": [
        {
            "epoch": 3,
            "edits": [
                {"op": "separate", "classes": [3, 5], "min_distance": 1.5},
                {"op": "separate", "classes": [1, 8], "min_distance": 1.5},
                {"op": "move_center", "class": 4, "to": [2.5, -2.5]},
                {"op": "move_points", "indices": [7], "to": [0.5, 0.5]},
            ],
        }
    ]
}
ANSWERS_P02 = {
    "umux_lite": [7, 7],
    "nasa_tlx": {"mental": 20, "physical": 5, "temporal": 30, "performance": 10, "effort": 25, "frustration": 10},
}


def journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    proto = root / "tiny.toml"
    proto.write_text(PROTOCOL)
    (root / "p01.json").write_text(json.dumps(COMPACT))
    (root / "p02.json").write_text(json.dumps(SEPARATE))
    out = root / "out"
    # one intra-op thread: on a busy 2-core machine torch's thread pool makes this tiny model ~3x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_study(root, proto, out)
    finally:
        torch.set_num_threads(threads)
    rows = {r["participant"]: r for r in csv.DictReader((out / "report" / "results.csv").open())}
    return root, out, rows


def run_study(root: Path, proto: Path, out: Path) -> None:
    # P01 through the command line (answers in its edits file), P02 through the API (answers given apart)
    assert (
        main(["study", str(proto), "--participant", "P01", "--out", str(out), "--scripted", str(root / "p01.json")])
        == 0
    )
    res = run_participant(
        load_protocol(proto), "P02", out, scripted=root / "p02.json", answers=ANSWERS_P02, answers_source="answers.json"
    )
    assert res["gain"] == pytest.approx(
        res["conditions"]["hill"]["test_accuracy"] - res["conditions"]["baseline"]["test_accuracy"]
    )
    assert main(["report", str(out)]) == 0


def test_folders_and_logs(study):
    _, out, _ = study
    for pid in ("P01", "P02"):
        pdir = out / pid
        for cond in ("hill", "baseline"):
            for f in ("config.json", "journal.jsonl", "snapshots.h5", "summary.json"):
                assert (pdir / cond / f).exists(), (pid, cond, f)
        assert (pdir / "protocol.toml").read_text() == PROTOCOL
        log = journal(pdir / "study_log.jsonl")
        types = [r["type"] for r in log]
        assert types[0] == "session_started" and types[-1] == "session_finished"
        assert [r["condition"] for r in log if r["type"] == "condition_started"] == ["hill", "baseline"]
        hill_pauses = [r for r in log if r["type"] == "pause_ended" and r["condition"] == "hill"]
        assert [p["epoch"] for p in hill_pauses] == [3] and hill_pauses[0]["seconds"] >= 0
        committed = [r for r in log if r["type"] == "edits_committed"]
        assert len(committed) == 1 and committed[0]["condition"] == "hill" and committed[0]["pause_epoch"] == 3
        # every edit with its before / after positions
        assert len(committed[0]["per_edit"]) == len(committed[0]["edits"])
        for rec in committed[0]["per_edit"]:
            assert any(k in rec for k in ("centers", "spreads", "points", "separations"))
        q = {r["name"]: r for r in log if r["type"] == "questionnaire"}
        assert set(q) == {"umux_lite", "nasa_tlx"}
    p02 = journal(out / "P02" / "study_log.jsonl")
    per = next(r for r in p02 if r["type"] == "edits_committed")["per_edit"]
    assert per[2]["centers"]["4"]["after"] == [2.5, -2.5]
    moved = per[3]["points"][0]
    assert moved["index"] == 7 and moved["after"] == [0.5, 0.5] and len(moved["before"]) == 2


def test_baseline_has_no_edits_and_the_same_start(study):
    _, out, _ = study
    for pid in ("P01", "P02"):
        base = journal(out / pid / "baseline" / "journal.jsonl")
        hill = journal(out / pid / "hill" / "journal.jsonl")
        assert not [r for r in base if r["type"] == "targets"]
        assert len([r for r in hill if r["type"] == "targets"]) == 1
        assert json.loads((out / pid / "baseline" / "config.json").read_text()) == json.loads(
            (out / pid / "hill" / "config.json").read_text()
        )
        e_b = {r["epoch"]: r for r in base if r["type"] == "epoch"}
        e_h = {r["epoch"]: r for r in hill if r["type"] == "epoch"}
        for e in (1, 2):  # before the pause the two runs are the same run
            assert e_b[e]["train_loss"] == e_h[e]["train_loss"] and e_b[e]["val_accuracy"] == e_h[e]["val_accuracy"]


def test_report_numbers_equal_the_logs(study):
    _, out, rows = study
    assert set(rows) == {"P01", "P02"}
    for pid, row in rows.items():
        hill = json.loads((out / pid / "hill" / "summary.json").read_text())
        base = json.loads((out / pid / "baseline" / "summary.json").read_text())
        assert row["complete"] == "true"
        assert float(row["test_accuracy"]) == hill["test_accuracy"]
        assert float(row["baseline_test_accuracy"]) == base["test_accuracy"]
        assert float(row["gain"]) == hill["test_accuracy"] - base["test_accuracy"]
        recs = journal(out / pid / "hill" / "journal.jsonl")
        paused = next(r for r in recs if r["type"] == "paused")
        resumed = next(r for r in recs if r["type"] == "resumed")
        assert float(row["pause_seconds_e3"]) == resumed["time"] - paused["time"]
        assert float(row["mean_pause_seconds"]) == float(row["pause_seconds_e3"])
        assert int(row["edits_e3"]) == len(next(r for r in recs if r["type"] == "targets")["edits"])
    assert float(rows["P01"]["umux_lite"]) == 75.0
    assert float(rows["P01"]["umux_lite_sus"]) == pytest.approx(0.65 * 75 + 22.9)
    assert float(rows["P01"]["nasa_tlx_raw"]) == 75.0
    assert float(rows["P02"]["umux_lite"]) == 100.0
    assert float(rows["P02"]["nasa_tlx_raw"]) == pytest.approx(100 / 6)
    assert rows["P01"]["nasa_tlx_weighted"] == ""
    assert rows["P01"]["strategy_e3"] == "compactness"
    assert rows["P02"]["strategy_e3"] == "separation"
    assert rows["P02"]["strategy_overall"] == rows["P02"]["strategy_e3"]
    stats = {r["column"]: r for r in csv.DictReader((out / "report" / "summary.csv").open())}
    gains = [float(rows[p]["gain"]) for p in ("P01", "P02")]
    assert int(stats["gain"]["n"]) == 2
    assert float(stats["gain"]["mean"]) == pytest.approx(np.mean(gains), abs=1e-15)
    assert float(stats["gain"]["std"]) == pytest.approx(np.std(gains, ddof=1), abs=1e-15)


def test_report_gives_the_paired_gain_with_its_interval(study):
    from hill_app.studies.stats import bootstrap, paired_t

    _, out, rows = study
    gains = [float(rows[p]["gain"]) for p in ("P01", "P02")]
    ivs = {r["method"]: r for r in csv.DictReader((out / "report" / "paired_gain.csv").open())}
    t = ivs["paired t"]
    ref = paired_t(gains)
    assert int(t["n"]) == 2 and float(t["mean"]) == pytest.approx(ref.mean, abs=1e-15)
    assert float(t["ci_low"]) == pytest.approx(ref.lo) and float(t["ci_high"]) == pytest.approx(ref.hi)
    assert t["verdict"] == ref.verdict
    boot = next(v for k, v in ivs.items() if "bootstrap" in k)
    assert float(boot["ci_low"]) == pytest.approx(bootstrap(gains).lo)
    text = (out / "report" / "index.html").read_text()
    assert "Paired gain over participants" in text and f"[{ref.lo * 100:+.2f}, {ref.hi * 100:+.2f}]" in text
    assert ref.note() in text


def test_session_h5_holds_the_arrays(study):
    _, out, _ = study
    recs = journal(out / "P02" / "hill" / "journal.jsonl")
    targets = next(r for r in recs if r["type"] == "targets")
    with h5py.File(out / "P02" / "session.h5", "r") as f:
        assert f.attrs["format"] == "hill-app-study/1" and f.attrs["participant"] == "P02"
        assert set(f) == {"hill", "baseline"}
        (name,) = list(f["hill/pauses"])
        g = f["hill/pauses"][name]
        assert g.attrs["epoch"] == 3 and g.attrs["strategy"] == "separation"
        np.testing.assert_allclose(g["after_centers"][()], targets["layout"]["centers"])
        np.testing.assert_allclose(g["after_spreads"][()], targets["layout"]["spreads"])
        assert list(g["after_point_indices"][()]) == [7]
        z, labels, preds = g["z"][()], g["labels"][()], g["preds"][()]
        assert z.shape == (len(labels), 2) and preds.shape == labels.shape
        for c in range(10):
            np.testing.assert_allclose(g["before_centers"][c], z[labels == c].mean(axis=0), rtol=1e-5, atol=1e-5)
        assert f["hill/final/z"].shape == z.shape
        assert list(f["hill/metrics/epoch"][()]) == [1, 2, 3]
        base_acc = json.loads((out / "P02" / "baseline" / "summary.json").read_text())["test_accuracy"]
        assert f["baseline"].attrs["test_accuracy"] == base_acc
        assert "after_centers" not in f["baseline/pauses"][next(iter(f["baseline/pauses"]))]


def test_html_and_figures(study):
    _, out, _ = study
    rep = out / "report"
    text = (rep / "index.html").read_text()
    assert "P01" in text and "P02" in text and "results.csv" in text and "compactness" in text
    pngs = sorted((rep / "figures").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"accuracy_all.png", "P01_accuracy.png", "P02_accuracy.png", "P01_pause_e3.png", "P02_pause_e3.png"} <= names
    for p in pngs:
        assert f"figures/{p.name}" in text
    from PySide6.QtGui import (
        QImage,  # figures.py has made the offscreen QGuiApplication
    )

    for p in pngs:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, p.name
        img = QImage(str(p))
        assert not img.isNull() and img.width() >= 400 and img.height() >= 300
        colours = {img.pixel(x, y) for x in range(0, img.width(), 3) for y in range(0, img.height(), 3)}
        assert len(colours) > 20, f"{p.name} looks blank"


def test_refusals(study, capsys):
    root, out, _ = study
    proto = str(root / "tiny.toml")
    # without --scripted the study window opens (tests/test_gui_study.py); mistakes are refused before it does
    assert main(["study", proto, "--participant", "P09", "--out", str(out), "--answers", "x.json"]) == 2
    assert "--answers belongs to a scripted participant" in capsys.readouterr().err
    assert main(["study", proto, "--participant", "P01", "--out", str(out)]) == 2
    assert "already holds a session" in capsys.readouterr().err
    assert main(["study", proto, "--participant", "P01", "--out", str(out), "--scripted", str(root / "p01.json")]) == 2
    assert "already holds a session" in capsys.readouterr().err
    assert (
        main(["study", proto, "--participant", "../evil", "--out", str(out), "--scripted", str(root / "p01.json")]) == 2
    )
    assert "participant id" in capsys.readouterr().err
    bad = root / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "interventions": [
                    {"epoch": 3, "edits": [], "commands": [{"command": "update_optimizer", "args": {"lr": 0.01}}]}
                ]
            }
        )
    )
    assert main(["study", proto, "--participant", "P10", "--out", str(out), "--scripted", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "needs the 'optimizer' panel" in err and str(bad) in err
    bad.write_text(json.dumps({"interventions": [{"epoch": 2, "edits": []}]}))
    assert main(["study", proto, "--participant", "P10", "--out", str(out), "--scripted", str(bad)]) == 2
    assert "not a pause epoch" in capsys.readouterr().err
    bad.write_text(json.dumps({**SEPARATE, "questionnaire": {"umux_lite": [9, 9]}}))
    assert main(["study", proto, "--participant", "P10", "--out", str(out), "--scripted", str(bad)]) == 2
    assert "outside the 1..7 scale" in capsys.readouterr().err
    assert not (out / "P10").exists() and not (out / "P09").exists()
    assert main(["report", str(root / "nothing")]) == 2


def test_an_interrupted_session_is_reported_as_incomplete(study, tmp_path):
    import shutil

    _, out, rows = study
    copy = tmp_path / "study"
    shutil.copytree(out / "P01", copy / "P01")
    shutil.copytree(out / "P02", copy / "P03")
    log = (copy / "P03" / "study_log.jsonl").read_text().splitlines()
    (copy / "P03" / "study_log.jsonl").write_text("\n".join(log[:-1]) + '\n{"seq": 99, "ty')  # torn last line
    (copy / "P03" / "baseline" / "summary.json").unlink()
    with pytest.warns(UserWarning, match="torn record skipped"):
        assert main(["report", str(copy), "--out", str(tmp_path / "rep")]) == 0
    got = {r["participant"]: r for r in csv.DictReader((tmp_path / "rep" / "results.csv").open())}
    assert got["P03"]["complete"] == "false" and got["P03"]["gain"] == ""
    assert got["P01"]["gain"] == rows["P01"]["gain"]
    stats = {r["column"]: r for r in csv.DictReader((tmp_path / "rep" / "summary.csv").open())}
    assert int(stats["gain"]["n"]) == 1 and float(stats["gain"]["mean"]) == float(rows["P01"]["gain"])
    text = (tmp_path / "rep" / "index.html").read_text()
    assert "did not finish" in text


def test_a_study_session_replays_exactly(study, tmp_path, capsys):
    """Each condition's folder is an ordinary run folder: `hill-app replay` re-runs it from its journal."""
    _, out, _ = study
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["replay", str(out / "P02" / "hill"), "--out", str(tmp_path / "replay")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "replay identical" in capsys.readouterr().out


def test_run_condition_takes_an_event_channel_and_a_cancel_token(tmp_path):
    """A caller listens on its own event channel and cancels from it (as the study window's baseline does): the
    condition stops at a step boundary, raises ConditionCancelled and is not recorded as finished."""
    import threading

    from hill_app.engine.events import EventChannel
    from hill_app.studies.runner import ConditionCancelled, load_for_config, run_condition
    from hill_app.studies.session_log import StudyLog, read_study_log

    proto_path = tmp_path / "tiny.toml"
    proto_path.write_text(PROTOCOL)
    protocol = load_protocol(proto_path)
    cfg = protocol.run_config("cpu")
    bundle = load_for_config(cfg)
    pdir = tmp_path / "P01"
    pdir.mkdir()
    log = StudyLog(pdir)
    events, cancel, epochs_seen = EventChannel(), threading.Event(), []

    def on_epoch(ev):
        if ev.kind == "epoch":
            epochs_seen.append(ev.data["epoch"])
            cancel.set()  # after the first epoch

    events.subscribe(on_epoch)
    with pytest.raises(ConditionCancelled, match="cancelled at epoch 1"):
        run_condition(protocol, "baseline", pdir, log, cfg, bundle, [], events=events, cancel=cancel)
    log.close()
    assert epochs_seen == [1]
    types = [r["type"] for r in read_study_log(pdir)]
    assert "condition_started" in types and "condition_finished" not in types
    recs = journal(pdir / "baseline" / "journal.jsonl")
    stopped = [r for r in recs if r["type"] == "stopped"]
    assert len(stopped) == 1 and stopped[0]["reason"] == "cancelled"
    assert [r["source"] for r in recs if r["type"] == "command" and r["command"] == "stop_training"][0] == "study"
