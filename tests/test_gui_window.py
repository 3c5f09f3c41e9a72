"""The main window end to end (offscreen, real widgets, real training thread, real mouse and key events)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")
from gui_helpers import drag, free_drop_point  # noqa: E402
from PySide6.QtCore import QPointF, Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from hill_app.engine.config import RunConfig  # noqa: E402
from hill_app.engine.journal import read_journal  # noqa: E402
from hill_app.gui.main_window import MainWindow  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
LEFT = Qt.MouseButton.LeftButton
NOMOD = Qt.KeyboardModifier.NoModifier
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
WAIT_MS = 300_000  # generous: a loaded 2-core CI machine may be slow; never a limit on how fast things are

pytestmark = pytest.mark.usefixtures("qt_settings")


def journal(run_dir: Path) -> list[dict]:
    return list(read_journal(run_dir / "journal.jsonl"))


def focus_window(qtbot, win: MainWindow) -> None:
    """Window shortcuts (Space, Ctrl+Z, Ctrl+Enter) need the window active and focus outside text fields."""
    win.activateWindow()
    win.raise_()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    win.banner.setFocus()


LAUNCH = r"""
import json, os, runpy, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication
QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, sys.argv[1])
app = QApplication(["hill-app"])

def report():
    from hill_app.gui.main_window import MainWindow
    wins = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
    w = wins[0]
    c = w.next_config
    print("REPORT " + json.dumps({
        "windows": len(wins), "state": w.state, "dataset": c.dataset, "epochs": c.epochs, "pause_at": c.pause_at,
        "alpha": c.alpha, "lam": c.lam, "banner": w.banner_text.text(), "start": w.start_action.isEnabled(),
        "pause": w.pause_action.isEnabled(), "app": [app.applicationName(), app.organizationName()]}))
    w.close()
    app.quit()

QTimer.singleShot(300, report)
sys.argv = ["hill-app"]
runpy.run_module("hill_app", run_name="__main__")
"""


def test_python_m_hill_app_opens_ready_for_the_default_protocol(tmp_path):
    """`python -m hill_app` (= `hill-app` with no arguments): the window opens with digits and the published
    protocol ready to start. A subprocess, because QApplication.exec/quit cannot run twice in one process."""
    import subprocess
    import sys

    env = {**os.environ, "HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run(
        [sys.executable, "-c", LAUNCH, str(tmp_path / "qsettings")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=WAIT_MS / 1000,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("REPORT ")]
    assert line, r.stdout + r.stderr[-3000:]
    rep = json.loads(line[0][len("REPORT ") :])
    assert rep["windows"] == 1 and rep["state"] == "idle"
    assert (rep["dataset"], rep["epochs"], rep["pause_at"], rep["alpha"], rep["lam"]) == (
        "digits",
        40,
        [25, 30, 35, 40],
        0.5,
        0.1,
    )
    assert "digits" in rep["banner"] and "40 epochs" in rep["banner"] and "25, 30, 35, 40" in rep["banner"]
    assert rep["start"] and not rep["pause"]
    assert rep["app"] == ["hill-app", "hill-app"]


def test_pause_drag_commit_undo_redo(qtbot, main_window, tmp_path):
    """The core loop: scheduled pause -> drag a class centre -> commit with a real click -> the engine trains
    toward it, and the journal holds the command (success) and the targets record."""
    win = main_window
    run_dir = tmp_path / "run"
    assert win.start_run(RunConfig(epochs=4, pause_at=[3], device="cpu"), run_dir)
    qtbot.waitUntil(lambda: win.state == "paused", timeout=WAIT_MS)
    view = win.view
    assert view.editable and win.commit_btn.isVisible() and win.commit_btn.isEnabled()
    assert win.commit_btn.text() == "Resume without edits"
    assert not win.undo_btn.isEnabled() and not win.redo_btn.isEnabled()
    assert win.progress.value() > 0 and "images/s" in win.stats_label.text() and "cpu" in win.device_label.text()

    # Hover pictures come from the run's data: an 8x8 digit, upscaled.
    img = win.worker.samples.render(0)
    assert img is not None and img.width() >= 64 and img.width() == img.height()

    c = 3
    vp = view.plot.viewport()
    start, drop = view.class_center_scene_pos(c), free_drop_point(view, c)
    drag(vp, start, drop)
    qtbot.waitUntil(lambda: len(view.edits()) == 1, timeout=5000)
    edit = view.edits()[0]
    assert edit["op"] == "move_center" and edit["class"] == c
    dropped = np.array(view.widget_to_view(drop))
    px = np.array(view.widget_to_view(QPointF(drop.x() + 1, drop.y() + 1))) - dropped
    tol = 3 * np.abs(px).max()  # three pixels, in view units
    assert np.allclose(edit["to"], dropped, atol=tol)
    assert win.commit_btn.text() == "Commit 1 edit and resume"
    assert win.undo_btn.isEnabled() and win.reset_btn.isEnabled() and not win.redo_btn.isEnabled()

    ARTIFACTS.mkdir(exist_ok=True)
    QApplication.processEvents()
    assert win.grab().save(str(ARTIFACTS / "main_window.png"))

    # Undo / redo with the buttons ...
    qtbot.mouseClick(win.undo_btn, LEFT)
    assert view.edits() == [] and win.redo_btn.isEnabled() and win.commit_btn.text() == "Resume without edits"
    qtbot.mouseClick(win.redo_btn, LEFT)
    assert view.edits() == [edit]
    # ... and with the keys (window shortcuts, focus outside the plot).
    focus_window(qtbot, win)
    QTest.keyClick(win, Qt.Key.Key_Z, CTRL)
    assert view.edits() == []
    QTest.keyClick(win, Qt.Key.Key_Z, CTRL | SHIFT)
    assert view.edits() == [edit]
    QTest.keyClick(win, Qt.Key.Key_Z, CTRL)
    QTest.keyClick(win, Qt.Key.Key_Y, CTRL)
    assert view.edits() == [edit]

    qtbot.mouseClick(win.commit_btn, LEFT)
    qtbot.waitUntil(lambda: win.state == "finished", timeout=WAIT_MS)
    assert win.error_box is None, win.last_error

    session = win.session
    assert session.layout is not None
    assert np.allclose(session.layout.centers[c], edit["to"], atol=1e-9)
    assert np.allclose(session.layout.centers[c], dropped, atol=tol)
    recs = journal(run_dir)
    cmds = [r for r in recs if r["type"] == "command" and r["command"] == "set_latent_targets"]
    assert [r["status"] for r in cmds] == ["requested", "pending", "running", "success"]
    # Commit and resume is one engine command, sent by the window (C5).
    assert cmds[0]["args"] == {"edits": [edit], "resume": True} and cmds[-1]["source"] == "window"
    assert cmds[-1]["result"]["resumed"] is True
    targets = [r for r in recs if r["type"] == "targets"]
    assert len(targets) == 1 and targets[0]["edits"] == [edit]
    assert targets[0]["layout"]["centers"][c] == pytest.approx(edit["to"])
    assert not [r for r in recs if r["type"] == "command" and r["command"] == "resume_training"]
    resumed = [r for r in recs if r["type"] == "resumed"]
    assert resumed and resumed[-1]["seq"] > cmds[-1]["seq"]
    assert (run_dir / "summary.json").exists()

    # Feedback: the epochs after the commit report each class's distance to its target.
    m = win.metrics
    assert [r["epoch"] for r in m.epochs] == [1, 2, 3, 4]
    assert "target_distance" in m.epochs[-1] and len(m.dist_curves) == 10
    assert m.dist_curves[c].getData()[1] is not None and np.isfinite(m.dist_curves[c].getData()[1]).any()
    assert m.commit_epochs == [2.5]
    log = win.log.plain_text()
    assert "success" in log and "set_latent_targets" in log
    assert "the window failed" not in log
    # The poll's timings are written for reading, not asserted: they measure the machine's load as much as the
    # window. The load-independent rules that keep the event loop responsive are pinned in test_gui_controller.
    stats = win.poll_stats
    assert stats.count > 0
    (ARTIFACTS / "poll_stats.json").write_text(
        json.dumps(
            {
                "polls": stats.count,
                "max_ms": stats.max_ms,
                "mean_ms": stats.mean_ms,
                "worst": stats.worst,
                "over_50ms": stats.slow,
            },
            indent=1,
        )
    )
    print(
        f"\nmain-thread poll: {stats.count} polls, max {stats.max_ms:.1f} ms {stats.worst[1]}, "
        f"mean {stats.mean_ms:.2f} ms, {len(stats.slow)} over 50 ms"
    )


def test_pause_on_demand_with_space_then_stop(qtbot, main_window, tmp_path):
    """Space pauses a running run at the next step; Stop ends it with a final checkpoint."""
    win = main_window
    run_dir = tmp_path / "run"
    assert win.start_run(RunConfig(epochs=200, pause_at=[], device="cpu"), run_dir)
    qtbot.waitUntil(lambda: win.state == "running" and win.progress.value() > 0, timeout=WAIT_MS)
    focus_window(qtbot, win)
    QTest.keyClick(win, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: win.state == "paused", timeout=WAIT_MS)
    assert "Paused" in win.banner_title.text()
    assert not win.pause_action.isEnabled() and win.stop_action.isEnabled()
    recs = journal(run_dir)
    pauses = [r for r in recs if r["type"] == "command" and r["command"] == "pause_training"]
    assert pauses[-1]["status"] == "success"
    assert [r for r in recs if r["type"] == "paused"][-1]["reason"] == "paused on request"

    # Ctrl+Enter with no edits resumes; then the Stop button in the Run panel ends the run.
    focus_window(qtbot, win)
    QTest.keyClick(win, Qt.Key.Key_Return, CTRL)
    qtbot.waitUntil(lambda: win.state == "running", timeout=WAIT_MS)
    assert not win.view.editable
    qtbot.mouseClick(win.controls.run.stop_btn, LEFT)
    qtbot.waitUntil(lambda: win.state == "finished", timeout=WAIT_MS)
    assert win.banner_title.text() == "Stopped"
    resumes = [r for r in journal(run_dir) if r["type"] == "command" and r["command"] == "resume_training"]
    assert resumes[-1]["status"] == "success"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped_early"] is True


def test_bad_cifar_folder_shows_the_message_and_the_window_stays_usable(qtbot, main_window, tmp_path):
    win = main_window
    empty = tmp_path / "not-cifar"
    empty.mkdir()
    assert win.start_run(RunConfig(dataset="cifar10", data_root=str(empty), device="cpu"), tmp_path / "bad")
    qtbot.waitUntil(lambda: win.error_box is not None and win.error_box.isVisible(), timeout=WAIT_MS)
    box = win.error_box
    assert box.windowTitle() == "Could not start the run"
    # Exactly the loader's one-line reason for this folder (it names the folder and what was looked for).
    from hill_app.datasets import DataError, load_dataset

    with pytest.raises(DataError) as expected:
        load_dataset("cifar10", empty)
    assert box.text() == str(expected.value)
    assert box.text().startswith("CIFAR-10 not found") and f"{empty}/cifar-10-batches-py" in box.text()
    assert "Traceback" not in box.text()
    assert "Traceback" in win.log.plain_text()  # the traceback went to the log console
    assert win.state == "failed" and win.start_action.isEnabled() and win.new_run_action.isEnabled()
    box.close()

    # The window is still usable: a new run starts and finishes.
    run_dir = tmp_path / "good"
    assert win.start_run(RunConfig(epochs=2, pause_at=[], device="cpu"), run_dir)
    qtbot.waitUntil(lambda: win.state == "finished", timeout=WAIT_MS)
    assert (run_dir / "summary.json").exists()


def test_exception_inside_training_keeps_what_was_written(qtbot, main_window, tmp_path, monkeypatch):
    """A crash in the training loop: a message box with the message (no traceback), the traceback in the log,
    the journal intact up to the crash, and the plots keep the epochs that ran."""
    from hill_app.engine.session import TrainingSession

    orig = TrainingSession._end_of_epoch

    def boom(self, m):
        if self.epoch >= 1:
            raise RuntimeError("simulated failure in epoch 2")
        return orig(self, m)

    monkeypatch.setattr(TrainingSession, "_end_of_epoch", boom)
    win = main_window
    run_dir = tmp_path / "run"
    assert win.start_run(RunConfig(epochs=5, pause_at=[], device="cpu"), run_dir)
    qtbot.waitUntil(lambda: win.error_box is not None and win.error_box.isVisible(), timeout=WAIT_MS)
    assert win.error_box.windowTitle() == "Training failed"
    assert win.error_box.text() == "RuntimeError: simulated failure in epoch 2"
    log = win.log.plain_text()
    assert "Traceback" in log and "simulated failure" in log
    recs = journal(run_dir)
    assert [r["epoch"] for r in recs if r["type"] == "epoch"] == [1]
    assert recs[-1]["type"] == "error" and "simulated failure" in recs[-1]["message"]
    assert [r["epoch"] for r in win.metrics.epochs] == [1]
    assert win.state == "failed" and win.start_action.isEnabled()


def test_new_run_dialog_starts_a_run_from_the_window(qtbot, main_window, tmp_path):
    """New Run... -> fill the dialog -> Start run: the window trains what the dialog described."""
    from hill_app.gui.new_run_dialog import NewRunDialog

    win = main_window
    run_dir = tmp_path / "from-dialog"
    seen = {}

    def fill():
        dlg = QApplication.activeModalWidget()
        assert isinstance(dlg, NewRunDialog)
        dlg.epochs.setValue(2)
        dlg.pause_at.setText("")
        dlg.device.setCurrentText("cpu")
        dlg.run_dir_edit.setText(str(run_dir))
        seen["ok"] = dlg.start_button.isEnabled()
        qtbot.mouseClick(dlg.start_button, LEFT)

    QTimer.singleShot(0, fill)
    win.new_run_action.trigger()  # runs the dialog's own (nested) event loop until Start run
    assert seen == {"ok": True}
    qtbot.waitUntil(lambda: win.state == "finished", timeout=WAIT_MS)
    cfg = json.loads((run_dir / "config.json").read_text())
    assert (cfg["dataset"], cfg["epochs"], cfg["pause_at"], cfg["device"]) == ("digits", 2, [], "cpu")
    assert win.settings.value("new_run/epochs") in (2, "2")  # remembered for next time (temp settings)
