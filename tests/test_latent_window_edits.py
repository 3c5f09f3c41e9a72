"""The latent view inside the main window: several edits at one pause all reach the engine, and the window
does not move the view (its drop targets) while the user drags (offscreen, real training, real mouse events)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")
from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from hill_app.engine.config import RunConfig  # noqa: E402
from hill_app.engine.journal import read_journal  # noqa: E402

LEFT = Qt.MouseButton.LeftButton
NOMOD = Qt.KeyboardModifier.NoModifier
WAIT_MS = 300_000  # generous: a loaded 2-core machine may be slow; never a limit on how fast things are

pytestmark = pytest.mark.usefixtures("qt_settings")


def geometry(view):
    vp = view.plot.viewport()
    return vp.mapToGlobal(QPoint(0, 0)), vp.size(), view.vb.viewRange()


def drag_watching(qtbot, view, a, b, steps=6):
    """A QTest drag that lets the window's event loop run between moves (its polls, its banner updates) and
    records where the viewport is at every step."""
    vp = view.plot.viewport()
    pa, pb = QPointF(a).toPoint(), QPointF(b).toPoint()
    seen = [geometry(view)]
    QTest.mouseMove(vp, pa)
    QTest.mousePress(vp, LEFT, NOMOD, pa)
    for i in range(1, steps + 1):
        QTest.mouseMove(vp, pa + (pb - pa) * (i / steps))
        qtbot.wait(40)
        seen.append(geometry(view))
    QTest.mouseRelease(vp, LEFT, NOMOD, pb)
    QApplication.processEvents()
    return seen


def free_point(view):
    """A view point a click picks (no handle or ring there), well inside the viewport."""
    pos = view.display_positions()
    vp = view.plot.viewport()
    for i in range(len(pos)):
        p = QPointF(view.view_to_widget(pos[i]))
        if (
            30 < p.x() < vp.width() - 30
            and 30 < p.y() < vp.height() - 30
            and view.hit_at(p.toPoint(), points=False) is None
            and view.hit_at(p.toPoint()) == ("point", i)
        ):
            return i, p
    raise AssertionError("no free point")


def test_several_edits_at_a_pause_are_all_committed(qtbot, main_window, tmp_path):
    win = main_window
    win.resize(1024, 700)
    run_dir = tmp_path / "run"
    assert win.start_run(RunConfig(epochs=2, pause_at=[2], device="cpu"), run_dir)
    qtbot.waitUntil(lambda: win.state == "paused", timeout=WAIT_MS)
    view = win.view
    qtbot.waitUntil(lambda: view.num_points > 0, timeout=WAIT_MS)
    qtbot.wait(300)  # let the pause's own re-layout (banner, buttons) settle before the user acts
    lay = view.edit_stack.layout
    k = len(view.class_names)
    # the two classes whose handles are farthest apart on screen get moved and merged; a third gets its ring
    px = np.array([[view.class_center_scene_pos(c).x(), view.class_center_scene_pos(c).y()] for c in range(k)])
    mid = np.array([view.plot.viewport().width() / 2, view.plot.viewport().height() / 2])
    order = np.argsort(np.hypot(*(px - mid).T))
    a, b, r = int(order[0]), int(order[1]), int(order[2])

    moves = []
    here = view.class_center_scene_pos(a)
    toward_mid = QPointF(*(mid - px[a])) * (30 / max(1.0, float(np.hypot(*(mid - px[a])))))
    moves.append(drag_watching(qtbot, view, here, here + toward_mid + QPointF(0, 25)))
    c = view.class_center_scene_pos(r)
    edge = next(
        view.ring_edge_pos(r, ang)
        for ang in range(0, 360, 15)
        if view.hit_at(view.ring_edge_pos(r, ang).toPoint()) == ("ring", r)
    )
    moves.append(drag_watching(qtbot, view, edge, c + (edge - c) * 0.7))
    moves.append(
        drag_watching(qtbot, view, view.class_center_scene_pos(b), view.class_center_scene_pos(a) + QPointF(4, 3))
    )
    i, p = free_point(view)
    QTest.mouseClick(view.plot.viewport(), LEFT, NOMOD, p.toPoint())
    assert view.selected_indices() == [i]
    moves.append(drag_watching(qtbot, view, p, p + QPointF(-30, 20)))
    edits = view.edits()
    assert [e["op"] for e in edits] == ["move_center", "scale_spread", "merge", "move_center", "move_points"], edits
    assert edits[-1]["indices"] == [i]
    assert lay is not view.edit_stack.layout
    # while each drag ran, the viewport stayed where it was (no re-lay-out moved the drop targets)
    for seen in moves:
        assert all(s == seen[0] for s in seen), seen

    qtbot.mouseClick(win.commit_btn, LEFT)
    qtbot.waitUntil(lambda: win.state == "finished", timeout=WAIT_MS)
    assert win.error_box is None, win.last_error
    recs = list(read_journal(Path(run_dir) / "journal.jsonl"))
    cmds = [x for x in recs if x["type"] == "command" and x["command"] == "set_latent_targets"]
    assert cmds and cmds[-1]["status"] == "success"
    assert cmds[0]["args"]["edits"] == edits  # args are journaled once, with "requested"
    targets = [x for x in recs if x["type"] == "targets"]
    assert len(targets) == 1 and targets[0]["edits"] == edits
    centers = np.asarray(targets[0]["layout"]["centers"])
    np.testing.assert_allclose(centers[a], edits[3]["to"])
    np.testing.assert_allclose(centers[b], edits[3]["to"])
    assert targets[0]["layout"]["points"] == {str(i): pytest.approx(edits[-1]["to"][0])}
