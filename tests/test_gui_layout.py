"""The window on a small screen and from one run to the next (issue 10.1, 10.4, 10.5): offscreen, a real
window, a real training thread, real mouse and key events.

At 1024 x 700, through a pause with edits, a commit-and-resume, a fork with a long branch name and long
messages: the window's minimum size stays within 1024 x 700 and it keeps that size; the latent view, the
banner and the docks do not overlap; no button, box or message is clipped; the latent view keeps room to
work in; a banner change while the user drags waits for the release. Then a second run shows nothing of the
first, New run refuses a bad choice without touching the live run, and Ctrl+Q closes the window.
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")
from gui_helpers import drag, free_drop_point  # noqa: E402
from PySide6.QtCore import QPoint, QRect, Qt, QTimer  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QAbstractButton,
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDialogButtonBox,
    QInputDialog,
    QLineEdit,
    QWidget,
)

from hill_app.engine.config import RunConfig  # noqa: E402
from hill_app.gui.widgets import WrapLabel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
LEFT = Qt.MouseButton.LeftButton
NOMOD = Qt.KeyboardModifier.NoModifier
CTRL = Qt.KeyboardModifier.ControlModifier
WAIT_MS = 300_000  # generous: a loaded 2-core machine may be slow; never a limit on how fast things are
W, H = 1024, 700
LONG_BRANCH = "retry-from-the-first-checkpoint-with-a-much-larger-learning-rate"  # 64, the longest name

pytestmark = pytest.mark.usefixtures("qt_settings")


def settle() -> None:
    for _ in range(3):
        QApplication.processEvents()


def in_window(win, w: QWidget) -> QRect:
    return QRect(w.mapTo(win, QPoint(0, 0)), w.size())


def panels(win) -> dict[str, QRect]:
    """The central area and every dock on screen, in window coordinates (a dock tabbed away is not shown)."""
    out = {"central": in_window(win, win.centralWidget())}
    for d in win.docks:
        if d.isVisible() and not d.visibleRegion().isEmpty():
            out[d.objectName()] = in_window(win, d)
    return out


def clip_ancestor(w: QWidget) -> QWidget | None:
    """The viewport of the nearest scroll area above ``w`` (what clips it), if any."""
    p = w.parentWidget()
    while p is not None:
        if isinstance(p, QAbstractScrollArea) and p.viewport() is not w:
            return p.viewport()
        p = p.parentWidget()
    return None


def clipped_controls(win) -> list[str]:
    """Visible controls narrower than they ask to be, or cut off at a side of the scroll area holding them."""
    bad = []
    kinds = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit)
    for w in win.findChildren(QWidget):
        if not isinstance(w, kinds) or not w.isVisible() or w.visibleRegion().isEmpty():
            continue
        if w.window() is not win or w.parentWidget() is win.toolbar or "qt_" in w.objectName():
            continue
        if isinstance(w.parentWidget(), QAbstractSpinBox) or isinstance(w.parentWidget(), QComboBox):
            continue  # a spin box's or an editable combo's own line edit
        name = f"{type(w).__name__}({getattr(w, 'text', lambda: '')() or w.objectName() or w.toolTip()[:30]!r})"
        if isinstance(w, QAbstractButton) and w.width() < w.minimumSizeHint().width():
            bad.append(f"{name}: {w.width()} px wide, needs {w.minimumSizeHint().width()}")
        vp = clip_ancestor(w)
        if vp is not None:
            r = QRect(w.mapTo(vp, QPoint(0, 0)), w.size())
            if r.left() < 0 or r.right() > vp.width() - 1:
                bad.append(f"{name}: x {r.left()}..{r.right()} outside its scroll area (0..{vp.width() - 1})")
    return bad


def clipped_texts(win) -> list[str]:
    """Word-wrapped labels shown lower than their text needs."""
    bad = []
    for lab in win.findChildren(WrapLabel):
        if not lab.isVisible() or not lab.text() or lab.visibleRegion().isEmpty():
            continue
        if clip_ancestor(lab) is not None:
            continue  # it scrolls: its height is not limited
        need = lab.heightForWidth(lab.width())
        if lab.height() < need:
            bad.append(f"{lab.plain()[:60]!r}: {lab.height()} px high, its text needs {need}")
    return bad


def assert_fits(win, where: str) -> None:
    """Issue 10.1 at 1024 x 700."""
    settle()
    mh = win.minimumSizeHint().expandedTo(win.minimumSize())
    assert mh.width() <= W and mh.height() <= H, (where, mh)
    assert (win.width(), win.height()) == (W, H), (where, "the window changed its own size")
    ps = panels(win)
    whole = QRect(0, 0, W, H)
    names = list(ps)
    for i, a in enumerate(names):
        assert whole.contains(ps[a]), (where, a, ps[a])
        for b in names[i + 1 :]:
            assert not ps[a].intersects(ps[b]), (where, a, ps[a], b, ps[b])
    assert clipped_controls(win) == [], where
    assert clipped_texts(win) == [], where
    # the latent view keeps room to work in
    vp = win.view.plot.viewport()
    assert vp.width() >= 450 and vp.height() >= 240, (where, vp.size())
    # the commit button says all of its text
    if win.commit_btn.isVisible():
        assert win.commit_btn.width() >= win.commit_btn.sizeHint().width(), where


def long_messages(win) -> None:
    text = "a long message naming /a/very/deep/folder/" + "sub-folder/" * 12 + " and a uuid " + "0123abcd" * 8
    win.log.add_info(text)
    win.log.add_log("warning", text * 2)
    win.statusBar().showMessage(text)
    win.checkpoints.note.setText(text)
    win.controls.optimizer.result.show_text(text)
    win.controls.edits.result.show_text(text)


def fork(qtbot, win, branch: str) -> None:
    """Select the first checkpoint with a real click and fork it through the dialog's OK button."""
    win.checkpoints_dock.raise_()
    settle()
    panel = win.checkpoints
    first = min(panel.nodes.values(), key=lambda n: (n["epoch"], n["step"]))["uuid"]
    item = panel.items[first]
    panel.tree.scrollToItem(item)
    qtbot.mouseClick(panel.tree.viewport(), LEFT, pos=panel.tree.visualItemRect(item).center())
    seen = {}

    def answer():
        dlg = QApplication.activeModalWidget()
        try:
            assert isinstance(dlg, QInputDialog), dlg
            dlg.setTextValue(branch)
            qtbot.mouseClick(dlg.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok), LEFT)
        except Exception as e:  # never leave the dialog open: record and cancel
            seen["error"] = repr(e)
            if dlg is not None:
                dlg.reject()

    QTimer.singleShot(0, answer)
    qtbot.mouseClick(panel.load_btn, LEFT)
    assert "error" not in seen, seen
    qtbot.waitUntil(lambda: panel.result_text().startswith(("success", "failed")), timeout=WAIT_MS)
    assert panel.result_text().startswith("success"), panel.result_text()


def resume_to_the_end(qtbot, win) -> None:
    """Commit (or resume) at every pause until the run ends. A resume can be followed by the next pause within
    one poll, so the window may never be seen running: wait for the commit's answer, not for a state."""
    while True:
        qtbot.waitUntil(lambda: win.state in ("paused", "finished") and not win.commit_pending, timeout=WAIT_MS)
        if win.state == "finished":
            return
        qtbot.mouseClick(win.commit_btn, LEFT)
        assert win.commit_pending


def test_the_window_fits_1024x700_through_edits_a_resume_a_fork_and_long_messages(qtbot, main_window, tmp_path):
    win = main_window
    win.resize(W, H)
    assert_fits(win, "idle")
    assert not win.view.legend.isVisible()  # no empty legend box before the first snapshot
    assert win.start_run(RunConfig(epochs=5, pause_at=[2, 4], checkpoint_every=1, device="cpu"), tmp_path / "run")
    qtbot.waitUntil(lambda: win.state == "paused", timeout=WAIT_MS)
    assert_fits(win, "first pause")
    assert win.banner_title.shown_text() == win.banner_title.text() == "Paused before epoch 2"

    view, vp = win.view, win.view.plot.viewport()
    for c in (3, 7):
        drag(vp, view.class_center_scene_pos(c), free_drop_point(view, c))
    assert [e["op"] for e in view.edits()] == ["move_center", "move_center"]
    assert win.commit_btn.text() == "Commit 2 edits and resume"
    assert_fits(win, "two edits")

    # A banner change while the mouse is held waits for the release: the view, and the drop target with it,
    # do not move under the user's hand.
    c = 5
    start, drop = view.class_center_scene_pos(c), free_drop_point(view, c)
    before = (vp.mapToGlobal(QPoint(0, 0)), vp.size(), win.banner_text.text())
    QTest.mouseMove(vp, start.toPoint())
    QTest.mousePress(vp, LEFT, NOMOD, start.toPoint())
    QTest.mouseMove(vp, (start + (drop - start) * 0.5).toPoint())
    assert view.dragging
    reason = "paused again on request: " + "a reason long enough to wrap the banner to more lines " * 6
    win.handle_event("paused", {"epoch": 2, "reason": reason}, 0.0)
    settle()
    assert (vp.mapToGlobal(QPoint(0, 0)), vp.size(), win.banner_text.text()) == before
    QTest.mouseMove(vp, drop.toPoint())
    QTest.mouseRelease(vp, LEFT, NOMOD, drop.toPoint())
    settle()
    assert not view.dragging and "a reason long enough" in win.banner_text.plain()
    assert view.edits()[-1]["op"] == "move_center" and view.edits()[-1]["class"] == c
    assert_fits(win, "banner with a long reason")

    qtbot.mouseClick(win.commit_btn, LEFT)  # commit and resume
    qtbot.waitUntil(lambda: win.state == "running", timeout=WAIT_MS)
    assert_fits(win, "resumed")
    qtbot.waitUntil(lambda: win.state == "paused", timeout=WAIT_MS)
    assert_fits(win, "second pause")

    fork(qtbot, win, LONG_BRANCH)
    assert LONG_BRANCH in win.banner_title.text() and LONG_BRANCH in win.banner_text.plain()
    assert_fits(win, "after a fork")
    long_messages(win)
    assert_fits(win, "long messages")
    # a status-bar message has room to be read (the step line gives way to it)
    sb = win.statusBar()
    assert sb.currentMessage().startswith("a long message")
    room = min(in_window(win, w).left() for w in (win.device_label, win.progress)) - in_window(win, sb).left()
    assert room >= 400 and not win.stats_label.isVisible(), room
    win.log_dock.raise_()
    assert_fits(win, "long messages, command log shown")
    ARTIFACTS.mkdir(exist_ok=True)
    assert win.grab().save(str(ARTIFACTS / "window_1024x700_fork.png"))

    resume_to_the_end(qtbot, win)
    assert win.error_box is None, win.last_error
    assert_fits(win, "finished")
    assert win.view.status_label.full_text() == "The run has ended \u00b7 start a new run to edit"


def test_nothing_of_a_run_leaks_into_the_next_and_new_run_checks_before_stopping(qtbot, main_window, tmp_path):
    win = main_window
    first = tmp_path / "first"
    assert win.start_run(RunConfig(epochs=3, pause_at=[3], checkpoint_every=1, device="cpu"), first)
    qtbot.waitUntil(lambda: win.state == "paused", timeout=WAIT_MS)
    assert win.windowTitle() == "first" and "hill-app" not in win.windowTitle()  # Qt appends the app's name
    assert win.view.axis_labels() == ("PCA axis 1 (frozen map)", "PCA axis 2")
    # what the first run leaves on screen: an lr message, a checkpoint message, a fork, a drag edit
    opt = win.controls.optimizer
    opt.lr.setValue(0.02)
    qtbot.mouseClick(opt.apply_btn, LEFT)
    qtbot.waitUntil(lambda: opt.result.plain().startswith("success"), timeout=WAIT_MS)
    win.checkpoints.note.setText("before the fork")
    qtbot.mouseClick(win.checkpoints.save_btn, LEFT)
    qtbot.waitUntil(lambda: "before the fork" in win.log.plain_text(), timeout=WAIT_MS)
    fork(qtbot, win, "branch-of-the-first-run")
    view = win.view
    drag(view.plot.viewport(), view.class_center_scene_pos(2), free_drop_point(view, 2))
    assert len(view.edits()) == 1
    resume_to_the_end(qtbot, win)
    assert win.view.status_label.full_text() == "The run has ended \u00b7 start a new run to edit"
    assert "locked" not in win.view.status_label.full_text()
    # the command log: one row per command, in its last status
    from hill_app.engine.journal import read_journal

    cmds = {r["uuid"]: r["status"] for r in read_journal(first / "journal.jsonl") if r["type"] == "command"}
    assert win.log.command_rows() == len(cmds) >= 5
    assert all(win.log.row_text(u).startswith(st) for u, st in cmds.items()), [win.log.row_text(u) for u in cmds]

    second = tmp_path / "second"
    assert win.start_run(RunConfig(epochs=2, pause_at=[2], projection="lda", device="cpu"), second)
    # While the second run loads, nothing of the first is on screen.
    assert view.num_points == 0 and view.edits() == [] and not view.legend.isVisible()
    assert not any(h.isVisible() for h in view.handle_items)
    assert win.metrics.branch_names() == [] and win.metrics.epochs == []
    assert win.checkpoints.nodes == {} and win.checkpoints.result_text() == ""
    assert opt.result.plain() == "" and win.stats_label.text() == "" and win.statusBar().currentMessage() == ""
    assert "branch" not in win.banner_title.text() and "branch-of-the-first-run" not in win.banner_text.plain()
    assert win.view.axis_labels() == ("LDA axis 1 (frozen map)", "LDA axis 2")
    qtbot.waitUntil(lambda: win.state == "paused", timeout=WAIT_MS)
    assert win.banner_title.text() == "Paused before epoch 2"
    assert win.metrics.branch_names() == ["main"] and win.checkpoints.current_branch == "main"
    assert {n["branch"] for n in win.checkpoints.nodes.values()} == {"main"}
    assert all(str(second) in str(n.get("path", second)) for n in win.checkpoints.nodes.values())
    assert win.stats_label.text().startswith("epoch 1/2") and win.windowTitle() == "second"
    assert view.num_points > 0 and view.edits() == []

    # New run with a data folder that does not hold the data: refused in the dialog; the live run goes on.
    worker = win.worker
    seen = {}

    def choose_bad_folder():
        from hill_app.gui.new_run_dialog import NewRunDialog

        dlg = QApplication.activeModalWidget()
        try:
            assert isinstance(dlg, NewRunDialog), dlg
            dlg.dataset.setCurrentIndex(dlg.dataset.findData("cifar10"))
            dlg.data_root.setText(str(tmp_path))
            seen["start"] = dlg.start_button.isEnabled()
            seen["error"] = dlg.error.text()
            qtbot.mouseClick(dlg.start_button, LEFT)  # disabled: nothing happens
            seen["still_open"] = dlg.isVisible()
        finally:
            dlg.reject()

    QTimer.singleShot(0, choose_bad_folder)
    win.new_run_action.trigger()
    assert seen["start"] is False and seen["still_open"] is True, seen
    assert seen["error"].startswith("CIFAR-10 not found") and "--download" not in seen["error"]
    assert win.state == "paused" and win.worker is worker and worker.isRunning() and win.run_dir == second

    # Ctrl+Q quits: the window closes and the run trained here stops with its final checkpoint.
    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    win.banner.setFocus()
    QTest.keyClick(win, Qt.Key.Key_Q, CTRL)
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=WAIT_MS)
    assert not worker.isRunning()
    assert np.all([(second / "journal.jsonl").exists(), (second / "checkpoints").is_dir()])
