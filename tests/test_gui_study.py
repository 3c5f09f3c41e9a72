"""The study window end to end (offscreen, real widgets, real training thread, real mouse events): instructions
-> restricted training with a countdown per pause -> questionnaires -> thank you, with the baseline run by the
runner's own code, and a study folder that `hill-app report` reads like a scripted participant's."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")
from gui_helpers import drag, free_drop_point  # noqa: E402
from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from hill_app.engine.journal import read_journal  # noqa: E402
from hill_app.gui.study_window import StudyWindow  # noqa: E402
from hill_app.studies.cli import report_main  # noqa: E402
from hill_app.studies.protocol import load_protocol  # noqa: E402
from hill_app.studies.questionnaires import PAIRS, TLX_SCALES, score_answers  # noqa: E402
from hill_app.studies.report import load_participant  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
LEFT = Qt.MouseButton.LeftButton
NOMOD = Qt.KeyboardModifier.NoModifier
WAIT_MS = 300_000  # generous for a loaded CI machine; never a limit on how fast things are

PROTOCOL = """
[study]
name = "tiny digits study"
conditions = ["hill", "baseline"]
panels = ["latent"]
{edit_ops}
seconds_per_pause = {seconds}
instructions = \"\"\"
Train the most accurate digit classifier you can.

Training pauses once, before epoch 3. Drag the class centres to reshape the map; when the time runs out
(or you press Commit edits and resume) training goes on toward your map.
\"\"\"

[training]
dataset = "digits"
epochs = 4
pause_at = [3]
alpha = 0.5
lam = 0.1
seed = 0
device = "cpu"
"""

UMUX = [6, 7]
TLX = {"mental": 55, "physical": 10, "temporal": 40, "performance": 25, "effort": 50, "frustration": 20}

pytestmark = pytest.mark.usefixtures("qt_settings")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine torch's pool makes this tiny model ~3x slower (and the
    GUI thread, the hill run and the baseline share those cores). Both conditions run under the same count."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_protocol(tmp_path: Path, seconds: float = 5, edit_ops: list[str] | None = None) -> Path:
    p = tmp_path / "tiny.toml"
    ops = "" if edit_ops is None else f"edit_ops = {json.dumps(edit_ops)}"
    p.write_text(PROTOCOL.format(seconds=seconds, edit_ops=ops))
    return p


def study_log(pdir: Path) -> list[dict]:
    return list(read_journal(pdir / "study_log.jsonl"))


def open_study(qtbot, qt_settings, proto: Path, out: Path, pid: str) -> StudyWindow:
    win = StudyWindow(load_protocol(proto), pid, out, settings=qt_settings)
    # a failed test must not hang in the teardown's close on the "End the session?" box
    qtbot.addWidget(win, before_close_func=lambda w: setattr(w, "ask_before_close", False))
    win.show()
    qtbot.waitExposed(win)
    return win


def start_and_wait_for_pause(qtbot, win: StudyWindow) -> None:
    assert win.page == "instructions"
    qtbot.waitUntil(win.start_button.isEnabled, timeout=WAIT_MS)
    qtbot.mouseClick(win.start_button, LEFT)
    assert win.page == "training" and win.phase == "training"
    qtbot.waitUntil(lambda: win.win.state == "paused" and win.clock_label.text() != "", timeout=WAIT_MS)


def fill_questionnaires(qtbot, form, shots: str | None = None) -> dict:
    """Real clicks: UMUX-Lite radio buttons, a click on each TLX scale, one button per pair. With ``shots``,
    each step is saved (answered) as test-artifacts/<shots>_<step>.png."""

    def shot(step: str) -> None:
        if shots:
            ARTIFACTS.mkdir(exist_ok=True)
            QApplication.processEvents()
            assert form.window().grab().save(str(ARTIFACTS / f"{shots}_{step}.png"))

    assert form.step == "umux" and not form.next_button.isEnabled()
    for group, v in zip(form.umux_groups, UMUX):
        qtbot.mouseClick(group.button(v), LEFT)
    assert form.next_button.isEnabled()
    shot("umux")
    qtbot.mouseClick(form.next_button, LEFT)
    assert form.step == "tlx" and not form.next_button.isEnabled()
    for s in TLX_SCALES:
        sl = form.tlx_sliders[s]
        QTest.mouseClick(sl, LEFT, NOMOD, sl.pos_for(TLX[s]))
        assert sl.value() == TLX[s], (s, sl.value())
        assert form.tlx_values[s].text() == str(TLX[s])
    assert form.next_button.isEnabled()
    shot("tlx")
    qtbot.mouseClick(form.next_button, LEFT)
    assert form.step == "pairwise" and not form.next_button.isEnabled() and form.skip_button.isEnabled()
    winners = []
    for (a, b), (ba, bb) in zip(PAIRS, form.pair_buttons):  # the subscale rated higher mattered more
        w = a if TLX[a] >= TLX[b] else b
        qtbot.mouseClick(ba if w == a else bb, LEFT)
        winners.append(w)
    assert form.next_button.text() == "Submit" and form.next_button.isEnabled()
    shot("pairwise")
    qtbot.mouseClick(form.next_button, LEFT)
    return {"umux_lite": UMUX, "nasa_tlx": {k: float(v) for k, v in TLX.items()}, "nasa_tlx_pairwise": winners}


def report_rows(out: Path) -> dict[str, dict]:
    assert report_main(argparse.Namespace(study_dir=str(out), out=None)) == 0
    return {r["participant"]: r for r in csv.DictReader((out / "report" / "results.csv").open())}


def test_study_session_end_to_end(qtbot, qt_settings, tmp_path):
    """Instructions -> Start (a real click) -> scheduled pause with a countdown -> a class centre dragged with
    the mouse -> the countdown runs out: the edit is committed and training resumes by itself -> questionnaires
    filled with real clicks -> thank you, once the baseline (runner code, same seed) has run. The study folder
    then reads like a scripted participant's: the log, session.h5 and the report row."""
    proto = write_protocol(tmp_path, seconds=5)
    out = tmp_path / "study"
    study = open_study(qtbot, qt_settings, proto, out, "P07")
    ARTIFACTS.mkdir(exist_ok=True)
    qtbot.waitUntil(study.start_button.isEnabled, timeout=WAIT_MS)
    assert "Train the most accurate digit classifier" in study.instructions_text.toPlainText()
    assert not (out / "P07").exists()  # nothing is written before Start
    QApplication.processEvents()
    assert study.grab().save(str(ARTIFACTS / "study_instructions.png"))

    start_and_wait_for_pause(qtbot, study)
    win, view = study.win, study.win.view
    # The run is the protocol's; New Run is not offered; only the latent panel is.
    cfg = win.session.config
    assert (cfg.dataset, cfg.epochs, cfg.pause_at, cfg.alpha, cfg.lam, cfg.seed) == ("digits", 4, [3], 0.5, 0.1, 0)
    assert not win.new_run_action.isVisible() and not win.start_btn.isVisible() and not win.stop_action.isVisible()
    assert not win.controls_dock.isVisible()
    if hasattr(win, "checkpoints_dock"):  # the checkpoints panel is not in this protocol
        assert not win.checkpoints_dock.isVisible()
    if hasattr(win, "open_run_action"):
        assert not win.open_run_action.isVisible() and not win.open_run_action.isEnabled()
    assert win.pause_action.isVisible() and win.log_dock.isVisible() and win.metrics_dock.isVisible()
    assert study.countdown_bar.isVisible() and ":" in study.clock_label.text()
    assert "Pause before epoch 3" in study.phase_label.text()

    c = 3
    drop = free_drop_point(view, c)
    drag(view.plot.viewport(), view.class_center_scene_pos(c), drop)
    qtbot.waitUntil(lambda: len(view.edits()) == 1, timeout=5000)
    edit = view.edits()[0]
    assert edit["op"] == "move_center" and edit["class"] == c
    QApplication.processEvents()
    assert study.grab().save(str(ARTIFACTS / "study_pause.png"))
    assert study.remaining_seconds() > 0 and win.state == "paused"  # still the participant's time

    # Nobody presses anything: the countdown runs out, the edit is committed and training goes on.
    qtbot.waitUntil(lambda: study.page == "questionnaires", timeout=WAIT_MS)
    assert win.state == "finished" and study.hill_summary is not None
    answers = fill_questionnaires(qtbot, study.questionnaire, shots="study_questionnaire")
    assert study.page == "thanks"
    qtbot.waitUntil(lambda: study.phase == "done", timeout=WAIT_MS)
    assert study.close_button.isEnabled() and "complete" in study.thanks_label.text()
    QApplication.processEvents()
    assert study.grab().save(str(ARTIFACTS / "study_thanks.png"))

    pdir = out / "P07"
    log = study_log(pdir)
    types = [r["type"] for r in log]
    assert types[0] == "session_started" and types[-1] == "session_finished"
    assert "session_aborted" not in types
    started = log[0]
    assert started["mode"] == "interactive" and started["participant"] == "P07"
    assert started["protocol"]["sha256"] == load_protocol(proto).sha256
    assert started["class_names"] == [str(i) for i in range(10)]
    assert (pdir / "protocol.toml").read_text() == proto.read_text()
    assert [r["condition"] for r in log if r["type"] == "condition_started"] == ["hill", "baseline"]
    assert [r["condition"] for r in log if r["type"] == "condition_finished"] == ["hill", "baseline"]

    # The pause: started, timed out with the edit pending, ended after the allowed time.
    ps = [r for r in log if r["type"] == "pause_started" and r["condition"] == "hill"]
    assert [(r["epoch"], r["seconds_allowed"]) for r in ps] == [(3, 5.0)]
    to = [r for r in log if r["type"] == "pause_timed_out"]
    assert len(to) == 1 and to[0]["epoch"] == 3 and to[0]["edits"] == 1
    pe = [r for r in log if r["type"] == "pause_ended" and r["condition"] == "hill"]
    assert len(pe) == 1 and pe[0]["epoch"] == 3 and pe[0]["seconds"] >= 5.0 and pe[0]["over_time"] is True

    # The edit with its before / after positions; the committed layout puts the class where it was dropped.
    com = [r for r in log if r["type"] == "edits_committed"]
    assert len(com) == 1 and com[0]["condition"] == "hill" and com[0]["pause_epoch"] == 3
    assert com[0]["edits"] == [edit]
    moved = com[0]["per_edit"][0]["centers"][str(c)]
    assert moved["after"] == pytest.approx(edit["to"])
    assert moved["before"] == pytest.approx(com[0]["before"]["centers"][c])
    assert np.hypot(*np.subtract(moved["after"], moved["before"])) > 1e-3
    assert com[0]["after"]["centers"][c] == pytest.approx(edit["to"])
    hill = list(read_journal(pdir / "hill" / "journal.jsonl"))
    targets = [r for r in hill if r["type"] == "targets"]
    assert len(targets) == 1 and targets[0]["edits"] == [edit]

    # The answers and their scores, as questionnaires.score_answers computes them.
    expected = score_answers(answers)
    q = {r["name"]: r for r in log if r["type"] == "questionnaire"}
    assert set(q) == {"umux_lite", "nasa_tlx"}
    assert q["umux_lite"]["answers"] == UMUX
    for k, v in expected["umux_lite"].items():
        assert q["umux_lite"][k] == pytest.approx(v)
    for k, v in expected["nasa_tlx"].items():
        assert q["nasa_tlx"][k] == (pytest.approx(v) if not isinstance(v, (list, dict)) else v)
    assert q["umux_lite"]["score"] == pytest.approx(((6 - 1) + (7 - 1)) / 12 * 100)
    assert q["nasa_tlx"]["raw"] == pytest.approx(sum(TLX.values()) / 6)
    assert sum(q["nasa_tlx"]["weights"].values()) == 15

    # The baseline: the same config and seed, no edits, a full run; the two agree up to the pause.
    base = list(read_journal(pdir / "baseline" / "journal.jsonl"))
    assert not [r for r in base if r["type"] == "targets"]
    assert json.loads((pdir / "baseline" / "config.json").read_text()) == json.loads(
        (pdir / "hill" / "config.json").read_text()
    )
    acc = {cnd: json.loads((pdir / cnd / "summary.json").read_text())["test_accuracy"] for cnd in ("hill", "baseline")}
    fin = log[-1]
    assert fin["test_accuracy"] == acc and fin["gain"] == pytest.approx(acc["hill"] - acc["baseline"])
    with h5py.File(pdir / "session.h5", "r") as f:
        assert f.attrs["participant"] == "P07" and set(f) >= {"hill", "baseline"}
        assert f["hill"].attrs["complete"] and f["baseline"].attrs["complete"]
        assert "after_centers" in f["hill/pauses"][next(iter(f["hill/pauses"]))]

    # The report treats it like any session: complete, no problems, and the row's numbers are the logs'.
    res = load_participant(pdir)
    assert res.complete and res.problems == [] and res.same_start is True
    row = report_rows(out)["P07"]
    assert row["complete"] == "true"
    assert float(row["test_accuracy"]) == acc["hill"] and float(row["baseline_test_accuracy"]) == acc["baseline"]
    assert float(row["gain"]) == pytest.approx(acc["hill"] - acc["baseline"])
    assert float(row["pause_seconds_e3"]) == pytest.approx(pe[0]["seconds"], abs=0.05)
    assert int(row["edits_e3"]) == 1
    assert float(row["umux_lite"]) == pytest.approx(expected["umux_lite"]["score"])
    assert float(row["nasa_tlx_raw"]) == pytest.approx(expected["nasa_tlx"]["raw"])
    assert float(row["nasa_tlx_weighted"]) == pytest.approx(expected["nasa_tlx"]["weighted"])

    qtbot.mouseClick(study.close_button, LEFT)  # the session is over: closing asks nothing
    assert not study.isVisible()


def test_refusals_resume_early_and_closing_mid_session(qtbot, qt_settings, tmp_path):
    """A protocol that allows only moving class centres: dragging a spread ring and sending a command of a
    panel it lacks are refused with a visible message (and logged); Commit resumes before the time is up;
    closing the window before the end (confirmed in the box it asks) leaves a readable, incomplete session."""
    proto = write_protocol(tmp_path, seconds=120, edit_ops=["move_center"])
    out = tmp_path / "study"
    study = open_study(qtbot, qt_settings, proto, out, "P08")
    start_and_wait_for_pause(qtbot, study)
    win, view = study.win, study.win.view
    assert not study.message_label.isVisible()

    # A command of a panel the protocol does not allow (what the Optimiser panel would send).
    assert win.submit("update_optimizer", {"lr": 0.01}) is None
    assert study.message_label.isVisible()
    assert "needs the 'optimizer' panel" in study.message_label.text()
    assert "not allowed in this study" in win.statusBar().currentMessage()

    # An edit op it does not allow: a real drag of class 5's spread ring.
    c = 5
    centre, ring = view.class_center_scene_pos(c), view.ring_edge_pos(c, 0.0)
    drag(view.plot.viewport(), ring, centre + (ring - centre) * 0.5)
    qtbot.waitUntil(lambda: "scale_spread" in study.message_label.text(), timeout=5000)
    qtbot.waitUntil(lambda: view.edits() == [], timeout=5000)  # undone at once
    assert study.message_label.isVisible() and "not allowed by this protocol" in study.message_label.text()
    ARTIFACTS.mkdir(exist_ok=True)
    QApplication.processEvents()
    assert study.grab().save(str(ARTIFACTS / "study_refused.png"))

    # Moving a centre is allowed; Commit (a real click) resumes long before the two minutes are up.
    drag(view.plot.viewport(), view.class_center_scene_pos(2), free_drop_point(view, 2))
    qtbot.waitUntil(lambda: len(view.edits()) == 1, timeout=5000)
    assert view.edits()[0]["op"] == "move_center"
    qtbot.mouseClick(win.commit_btn, LEFT)
    qtbot.waitUntil(lambda: study.page == "questionnaires", timeout=WAIT_MS)

    # Close before answering: the box asks; Yes ends the session as incomplete.
    asked = {}

    def answer_yes():
        box = QApplication.activeModalWidget()
        asked["box"] = isinstance(box, QMessageBox) and box.windowTitle() == "End the session?"
        box.button(QMessageBox.StandardButton.Yes).click()

    QTimer.singleShot(50, answer_yes)
    study.close()
    assert asked == {"box": True}
    assert not study.isVisible() and study.phase == "aborted"

    pdir = out / "P08"
    log = study_log(pdir)
    types = [r["type"] for r in log]
    assert types[-1] == "session_aborted" and "session_finished" not in types
    assert "closed" in log[-1]["reason"]
    refused = [r for r in log if r["type"] == "refused"]
    assert [(r["kind"], r["name"]) for r in refused] == [("command", "update_optimizer"), ("edit", "scale_spread")]
    assert all(r["pause_epoch"] == 3 for r in refused)
    pe = [r for r in log if r["type"] == "pause_ended" and r["condition"] == "hill"]
    assert len(pe) == 1 and pe[0]["seconds"] < 120 and pe[0]["over_time"] is False
    assert not [r for r in log if r["type"] == "pause_timed_out"]
    com = [r for r in log if r["type"] == "edits_committed"]
    assert len(com) == 1 and [e["op"] for e in com[0]["edits"]] == ["move_center"]
    hill = list(read_journal(pdir / "hill" / "journal.jsonl"))
    assert not [r for r in hill if r["type"] == "command" and r["command"] == "update_optimizer"]

    res = load_participant(pdir)
    assert not res.complete and any("session aborted" in p for p in res.problems)
    row = report_rows(out)["P08"]
    assert row["complete"] == "false"


def test_instructions_text_is_reflowed():
    from hill_app.gui.study_window import instructions_html

    out = instructions_html(
        "Train the best\nmodel you can.\n\nAt each pause:\n- drag a centre\n  or a ring\n- <merge> two classes"
    )
    assert out == (
        "<p>Train the best model you can.</p><p>At each pause:</p>"
        "<ul><li>drag a centre or a ring</li><li>&lt;merge&gt; two classes</li></ul>"
    )


def test_closing_stops_the_baseline_and_leaves_its_journal_readable(qtbot, tmp_path):
    """The baseline runs in the runner's run_condition with the worker's event channel (progress) and cancel token;
    a cancel (the window closing) stops it at its next step with a checkpoint and a 'stopped' record, and every
    journal stays readable."""
    from hill_app.datasets import load_dataset
    from hill_app.gui.study_window import BaselineWorker
    from hill_app.studies.session_log import StudyLog

    proto = tmp_path / "long.toml"
    proto.write_text(PROTOCOL.format(seconds=5, edit_ops="").replace("epochs = 4", "epochs = 200"))
    protocol = load_protocol(proto)
    cfg = protocol.run_config()
    pdir = tmp_path / "P01"
    log = StudyLog(pdir)
    bundle = load_dataset("digits", seed=0)
    w = BaselineWorker(protocol, pdir, log, cfg, bundle, hill_session=None)
    seen, failed = [], []
    w.progress.connect(lambda e, n, f: seen.append((e, n, f)))
    w.failed.connect(lambda msg, tb: failed.append(msg))
    w.start()
    try:
        qtbot.waitUntil(lambda: bool(seen) and seen[-1][0] >= 2, timeout=WAIT_MS)
        assert seen[-1][1] == 200 and 0 < seen[-1][2] < 1
    finally:
        w.cancel()
        assert w.wait(WAIT_MS)
    qtbot.waitUntil(lambda: bool(failed), timeout=5000)
    assert failed[0].startswith("StudyCancelled")
    log.close()
    recs = list(read_journal(pdir / "baseline" / "journal.jsonl"))
    stopped = [r for r in recs if r["type"] == "stopped"]
    assert len(stopped) == 1 and stopped[0]["reason"] == "cancelled" and not [r for r in recs if r["type"] == "error"]
    assert 1 <= max(r["epoch"] for r in recs if r["type"] == "epoch") < 200
    types = [r["type"] for r in study_log(pdir)]
    assert types[0] == "condition_started" and "condition_finished" not in types


LAUNCH = r"""
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication
QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, sys.argv[1])
app = QApplication(["hill-app"])

def look():
    from hill_app.gui.study_window import StudyWindow
    wins = [w for w in app.topLevelWidgets() if isinstance(w, StudyWindow) and w.isVisible()]
    if not wins or not wins[0].start_button.isEnabled():
        QTimer.singleShot(100, look)
        return
    w = wins[0]
    print("REPORT", len(wins), w.page, w.participant, app.applicationDisplayName(), "|", w.windowTitle(), flush=True)
    w.close()          # before Start: nothing to confirm, nothing written

QTimer.singleShot(100, look)
from hill_app.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_hill_app_study_opens_the_window(tmp_path):
    """`hill-app study PROTOCOL --participant P` without --scripted opens the study window (a subprocess: the
    command runs its own QApplication event loop); closed before Start, it exits 1 and writes nothing."""
    import subprocess
    import sys

    proto = write_protocol(tmp_path)
    out = tmp_path / "study"
    env = {**os.environ, "HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            LAUNCH,
            str(tmp_path / "qsettings"),
            "study",
            str(proto),
            "--participant",
            "P11",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=WAIT_MS / 1000,
    )
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("REPORT ")]
    assert line, r.stdout + r.stderr[-3000:]
    # Qt shows the title with the application's display name; the title itself does not repeat it (issue 10.5)
    assert line[0].startswith("REPORT 1 instructions P11 hill-app study | ")
    assert "hill-app" not in line[0].split(" | ", 1)[1]
    assert r.returncode == 1, r.stderr[-3000:]
    assert "before the session started; nothing was written" in r.stderr
    assert not (out / "P11").exists()

    # A participant folder that already holds a session is refused before any window opens.
    (out / "P12").mkdir(parents=True)
    (out / "P12" / "study_log.jsonl").write_text("")
    from hill_app.cli import main

    assert main(["study", str(proto), "--participant", "P12", "--out", str(out)]) == 2
    assert main(["study", str(proto), "--participant", "P13", "--out", str(out), "--answers", "a.json"]) == 2
    assert not (out / "P13").exists()
