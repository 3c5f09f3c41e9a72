"""The checkpoint tree in the window (offscreen, real window, real training thread, real clicks): the tree fills
from checkpoint events, Load / fork from selected... forks a branch through the engine, the metrics view
draws a curve per branch starting at the fork, failures show their reason, and the tree and curves come
back from the run folder."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QInputDialog  # noqa: E402

from hill_app.engine.config import RunConfig  # noqa: E402
from hill_app.engine.journal import read_journal  # noqa: E402
from hill_app.gui.checkpoint_panel import COL_BRANCH, COL_EPOCH, COL_NOTE, UUID_ROLE, read_tree_index  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
LEFT = Qt.MouseButton.LeftButton
WAIT_MS = 300_000  # generous: a loaded CI machine may be slow; never a limit on how fast things are

pytestmark = pytest.mark.usefixtures("qt_settings")


def journal(run_dir: Path) -> list[dict]:
    return list(read_journal(run_dir / "journal.jsonl"))


def show_checkpoints(win) -> None:
    win.checkpoints_dock.raise_()
    QApplication.processEvents()


def click_row(qtbot, panel, uid: str) -> None:
    """Select a checkpoint with a real click on its row."""
    item = panel.items[uid]
    panel.tree.scrollToItem(item)
    rect = panel.tree.visualItemRect(item)
    assert rect.isValid() and rect.height() > 0
    qtbot.mouseClick(panel.tree.viewport(), LEFT, pos=rect.center())
    assert panel.selected_node()["uuid"] == uid


def answer_fork_dialog(qtbot, name: str, seen: dict) -> None:
    """Fill the fork dialog once it is open (it runs its own event loop) and press its OK button."""

    def fill():
        dlg = QApplication.activeModalWidget()
        try:
            assert isinstance(dlg, QInputDialog), dlg
            seen["suggested"] = dlg.textValue()
            seen["label"] = dlg.labelText()
            dlg.setTextValue(name)
            box = dlg.findChild(QDialogButtonBox)
            ok = box.button(QDialogButtonBox.StandardButton.Ok)
            seen["ok_text"] = ok.text()
            qtbot.mouseClick(ok, LEFT)
        except Exception as e:  # never leave the dialog open (the test would hang): record and cancel
            seen["error"] = repr(e)
            if dlg is not None:
                dlg.reject()

    QTimer.singleShot(0, fill)


def plain(rich: str) -> str:
    from PySide6.QtGui import QTextDocument

    doc = QTextDocument()
    doc.setHtml(rich)
    return doc.toPlainText()


def tree_rows(panel) -> list[tuple]:
    """(depth, branch, epoch, note, uuid) of every row, depth first, as shown."""
    out = []

    def walk(item, depth):
        out.append(
            (
                depth,
                item.text(COL_BRANCH),
                int(item.text(COL_EPOCH)),
                item.text(COL_NOTE),
                item.data(COL_BRANCH, UUID_ROLE),
            )
        )
        for i in range(item.childCount()):
            walk(item.child(i), depth + 1)

    for i in range(panel.tree.topLevelItemCount()):
        walk(panel.tree.topLevelItem(i), 0)
    return out


def test_fork_from_a_checkpoint_at_a_pause(qtbot, main_window, qt_settings, tmp_path):
    """Pause -> select the first checkpoint -> Load / fork... (named 'retry-1') -> resume: training continues
    on retry-1 from epoch 1; the tree nests retry-1 under the checkpoint it came from; each branch has its
    curve, and retry-1's leaves main's at epoch 1. Then the run folder alone brings it all back."""
    win = main_window
    panel = win.checkpoints
    run_dir = tmp_path / "run"
    assert win.start_run(RunConfig(epochs=5, pause_at=[3], checkpoint_every=1, device="cpu"), run_dir)
    qtbot.waitUntil(lambda: win.state == "paused", timeout=WAIT_MS)
    show_checkpoints(win)

    # At the pause: main's checkpoints after epochs 1 (periodic) and 2 (the pause), one list, main highlighted.
    rows = tree_rows(panel)
    assert [(d, b, e, n) for d, b, e, n, _ in rows] == [(0, "main", 1, "periodic"), (0, "main", 2, "pause")]
    first, second = rows[0][4], rows[1][4]
    assert panel.nodes[second]["parent"] == first
    assert panel.items[first].font(COL_BRANCH).bold()
    assert "on branch main" in plain(panel.header.text())
    assert not panel.load_btn.isEnabled()  # nothing selected yet

    click_row(qtbot, panel, first)
    assert panel.load_btn.isEnabled()
    seen: dict = {}
    answer_fork_dialog(qtbot, "retry-1", seen)
    qtbot.mouseClick(panel.load_btn, LEFT)  # opens the dialog; fill() answers it
    assert "error" not in seen, seen
    assert seen["suggested"] == "main-from-e1" and seen["ok_text"] == "Load and fork"
    assert "now (training is paused)" in seen["label"]
    # Submitted: pending until the training thread reports what happened.
    assert panel.result_text().startswith("pending"), panel.result_text()
    assert not panel.load_btn.isEnabled()  # one load at a time

    qtbot.waitUntil(lambda: panel.result_text().startswith("success"), timeout=WAIT_MS)
    assert "now training on branch 'retry-1'" in panel.result_text()
    assert win.session.branch == "retry-1"
    assert panel.current_branch == "retry-1" and win.metrics.current_branch == "retry-1"
    assert "retry-1" in win.banner_title.text()
    assert not panel.items[first].font(COL_BRANCH).bold()  # main is no longer the current branch
    ARTIFACTS.mkdir(exist_ok=True)
    QApplication.processEvents()
    assert win.grab().save(str(ARTIFACTS / "checkpoints_at_pause.png"))

    # Resume: retry-1 trains epoch 2 and reaches its own scheduled pause before epoch 3; resume again.
    qtbot.mouseClick(win.commit_btn, LEFT)
    qtbot.waitUntil(lambda: any(n["branch"] == "retry-1" for n in panel.nodes.values()), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: win.state == "paused", timeout=WAIT_MS)
    assert "branch retry-1" in win.banner_title.text()
    qtbot.mouseClick(win.commit_btn, LEFT)
    qtbot.waitUntil(lambda: win.state == "finished", timeout=WAIT_MS)
    assert win.error_box is None, win.last_error

    # The engine: the session ended on retry-1; the journal says where the branch came from.
    assert win.session.branch == "retry-1"
    recs = journal(run_dir)
    branches = [r for r in recs if r["type"] == "branch"]
    assert len(branches) == 1
    b = branches[0]
    assert (b["branch"], b["from_branch"], b["checkpoint"], b["epoch"]) == ("retry-1", "main", first, 1)
    loads = [r for r in recs if r["type"] == "command" and r["command"] == "load_checkpoint"]
    assert [r["status"] for r in loads] == ["requested", "pending", "running", "success"]
    assert loads[0]["args"] == {"uuid": first, "branch_name": "retry-1"}
    assert [(r["branch"], r["epoch"]) for r in recs if r["type"] == "epoch"] == [
        ("main", 1),
        ("main", 2),
        ("retry-1", 2),
        ("retry-1", 3),
        ("retry-1", 4),
        ("retry-1", 5),
    ]

    # The tree: retry-1's checkpoints are one list under main's epoch-1 checkpoint, as the parents say.
    rows = tree_rows(panel)
    assert [(d, b, e, n) for d, b, e, n, _ in rows] == [
        (0, "main", 1, "periodic"),
        (1, "retry-1", 2, "pause"),
        (1, "retry-1", 3, "periodic"),
        (1, "retry-1", 4, "periodic"),
        (1, "retry-1", 5, "periodic"),
        (1, "retry-1", 5, "final"),
        (0, "main", 2, "pause"),
    ]
    retry = [r[4] for r in rows if r[1] == "retry-1"]
    assert panel.nodes[retry[0]]["parent"] == first
    assert all(panel.nodes[retry[i]]["parent"] == retry[i - 1] for i in range(1, len(retry)))
    assert all(panel.items[u].font(COL_BRANCH).bold() for u in retry)
    on_disk = read_tree_index(run_dir / "checkpoints" / "tree.json")
    assert {n["uuid"] for n in on_disk} == set(panel.nodes)
    assert "on branch retry-1 \u00b7 forked from main at epoch 1" in plain(panel.header.text())

    # The metrics view: a curve per branch; retry-1 starts at epoch 1 on main's value and leaves it.
    m = win.metrics
    assert m.branch_names() == ["main", "retry-1"]
    x_main, y_main = m.branches["main"].curves["val"].getData()
    x_retry, y_retry = m.branches["retry-1"].curves["val"].getData()
    assert list(x_main) == [1, 2] and list(x_retry) == [1, 2, 3, 4, 5]
    val = {(r["branch"], r["epoch"]): r["val_accuracy"] for r in recs if r["type"] == "epoch"}
    assert list(y_main) == pytest.approx([100 * val[("main", e)] for e in (1, 2)])
    assert y_retry[0] == pytest.approx(100 * val[("main", 1)])
    assert list(y_retry[1:]) == pytest.approx([100 * val[("retry-1", e)] for e in (2, 3, 4, 5)])
    xt, _ = m.branches["retry-1"].curves["total"].getData()
    assert list(xt) == [1, 2, 3, 4, 5]
    labels = {lab.text for _, lab in m.acc_legend.items}
    assert {"train main", "val main", "train retry-1", "val retry-1"} <= labels
    assert {"total main", "total retry-1"} <= {lab.text for _, lab in m.loss_legend.items}
    # Same colour family per metric, a line style of its own per branch.
    p_main, p_retry = (m.branches[n].curves["val"].opts["pen"] for n in ("main", "retry-1"))
    assert p_main.style() != p_retry.style()
    assert p_retry.widthF() > p_main.widthF()  # the current branch is drawn thicker
    # The lineage plots follow retry-1: main's epoch 1, then retry-1's epochs.
    assert [(r["branch"], r["epoch"]) for r in m.epochs] == [("main", 1)] + [("retry-1", e) for e in (2, 3, 4, 5)]

    ARTIFACTS.mkdir(exist_ok=True)
    show_checkpoints(win)
    QApplication.processEvents()
    assert win.grab().save(str(ARTIFACTS / "checkpoints.png"))

    # A restart: a new window, given only the folder, shows the same tree, curves and the last pause's view.
    from hill_app.gui.main_window import MainWindow

    win2 = MainWindow(settings=qt_settings)
    qtbot.addWidget(win2)
    win2.show()
    qtbot.waitExposed(win2)
    try:
        assert win2.open_run(run_dir)
        p2, m2 = win2.checkpoints, win2.metrics
        assert set(p2.nodes) == {n["uuid"] for n in on_disk}
        assert [(d, b, e, n) for d, b, e, n, _ in tree_rows(p2)] == [(d, b, e, n) for d, b, e, n, _ in rows]
        assert p2.current_branch == "retry-1"
        assert m2.branch_names() == ["main", "retry-1"]
        for name in ("main", "retry-1"):
            for kind in ("train", "val", "total"):
                a, b = m.branches[name].curves[kind].getData(), m2.branches[name].curves[kind].getData()
                assert list(a[0]) == list(b[0]) and np.allclose(a[1], b[1], equal_nan=True)
        assert [(r["branch"], r["epoch"]) for r in m2.epochs] == [(r["branch"], r["epoch"]) for r in m.epochs]
        assert win2._snapshot is not None and win2._snapshot["branch"] == "retry-1"  # its pause before epoch 3
        assert "Opened" in win2.banner_title.text() and win2.state == "finished"
        assert not p2.load_btn.isEnabled() and not p2.save_btn.isEnabled()  # read-only
        assert not (run_dir / "checkpoints" / "tree.json.tmp").exists()
        assert read_tree_index(run_dir) == on_disk  # nothing was written
        win2.checkpoints_dock.raise_()
        QApplication.processEvents()
        assert win2.grab().save(str(ARTIFACTS / "checkpoints_opened.png"))
    finally:
        win2.close()


def test_load_while_training_waits_for_the_epoch_boundary_and_failures_show_the_reason(qtbot, main_window, tmp_path):
    """While training runs, a load is pending until the next epoch boundary. A load of a uuid that does not
    exist (sent by an agent through the engine) fails, and the panel shows the reason; training goes on.
    Save checkpoint (with a note) adds a node of the current branch."""
    win = main_window
    panel = win.checkpoints
    run_dir = tmp_path / "run"
    assert win.start_run(RunConfig(epochs=60, pause_at=[], checkpoint_every=1, device="cpu"), run_dir)
    show_checkpoints(win)
    qtbot.waitUntil(lambda: len(panel.nodes) >= 1 and win.state == "running", timeout=WAIT_MS)

    # A uuid that does not exist: failed, with the engine's reason, in the panel.
    bad = win.session.submit("load_checkpoint", {"uuid": "0" * 32, "branch_name": "nowhere"}, source="agent")
    assert bad.status == "pending"
    qtbot.waitUntil(lambda: panel.result_text().startswith("failed"), timeout=WAIT_MS)
    text = panel.result_text()
    assert "no checkpoint with uuid" in text and "0" * 32 in text, text
    assert win.session.branch == "main" and win.state == "running"

    # Save checkpoint with a note (the panel's own button).
    panel.note.setText("before the fork")
    n_before = len(panel.nodes)
    qtbot.mouseClick(panel.save_btn, LEFT)
    qtbot.waitUntil(lambda: any(n["note"] == "before the fork" for n in panel.nodes.values()), timeout=WAIT_MS)
    assert len(panel.nodes) > n_before
    qtbot.waitUntil(lambda: panel.result_text().startswith("success"), timeout=WAIT_MS)

    # Fork from the first checkpoint while training runs: pending, then applied at an epoch boundary.
    first = next(iter(panel.nodes))
    click_row(qtbot, panel, first)
    seen: dict = {}
    answer_fork_dialog(qtbot, "warm restart", seen)  # sanitised by the engine to warm-restart
    qtbot.mouseClick(panel.load_btn, LEFT)
    assert "error" not in seen, seen
    assert "at the next epoch boundary" in seen["label"]
    assert panel.result_text().startswith("pending") and "next epoch boundary" in panel.result_text()
    qtbot.waitUntil(lambda: panel.result_text().startswith("success"), timeout=WAIT_MS)
    assert "'warm-restart' (asked for 'warm restart')" in panel.result_text()
    assert win.session.branch == "warm-restart"
    qtbot.waitUntil(lambda: len(win.metrics.branches.get("warm-restart").records) >= 1, timeout=WAIT_MS)
    win.stop_run()
    qtbot.waitUntil(lambda: win.state == "finished", timeout=WAIT_MS)

    recs = journal(run_dir)
    fails = [
        r for r in recs if r["type"] == "command" and r["command"] == "load_checkpoint" and r["status"] == "failed"
    ]
    assert len(fails) == 1 and "no checkpoint with uuid" in fails[0]["reason"]
    fork_epoch = panel.nodes[first]["epoch"]
    br = win.metrics.branches["warm-restart"]
    assert (br.parent, br.fork_epoch) == ("main", fork_epoch)
    assert br.records[0]["epoch"] == fork_epoch + 1  # the branch retrains from the checkpoint on
    x, y = br.curves["val"].getData()
    assert x[0] == fork_epoch and np.isfinite(y).all()
    # The stop's final checkpoint is on the new branch, nested under the checkpoint it was forked from.
    finals = [n for n in panel.nodes.values() if n["note"] == "final"]
    assert finals and finals[-1]["branch"] == "warm-restart"
    item = panel.items[finals[-1]["uuid"]]
    assert item.parent() is panel.items[first]
