"""The latent view, driven with real mouse and key events through the plot's viewport (offscreen Qt)."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QImage, QMouseEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from hill_app.gui.latent_view import LatentView  # noqa: E402
from hill_app.gui.palette import class_colors  # noqa: E402
from hill_app.losses import apply_edits, layout_from_points  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LEFT = Qt.MouseButton.LeftButton
NOB = Qt.MouseButton.NoButton
NOMOD = Qt.KeyboardModifier.NoModifier
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
CENTERS = np.array([[-4.0, 3.0], [0.0, 3.5], [4.0, 3.0], [-4.0, -3.0], [0.0, -3.5], [4.0, -3.0]])


def synthetic(k=6, n=600, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    z = (CENTERS[:k][y] + shift + rng.normal(size=(n, 2)) * 0.55).astype(np.float32)
    pred = y.copy()
    wrong = rng.random(n) < 0.1
    pred[wrong] = (y[wrong] + 1) % k
    return z, y, pred


# ------------------------------------------------------------------ real events


def send(view, kind, pos, button=NOB, buttons=NOB, mods=NOMOD):
    """A QMouseEvent through the viewport's normal event path (event filters included)."""
    vp = view.plot.viewport()
    p = QPointF(pos)
    ev = QMouseEvent(kind, p, QPointF(vp.mapToGlobal(p.toPoint())), button, buttons, mods)
    QApplication.sendEvent(vp, ev)


def drag(view, a, b, steps=10, mods=NOMOD):
    a, b = QPointF(a), QPointF(b)
    send(view, QEvent.Type.MouseButtonPress, a, LEFT, LEFT, mods)
    for i in range(1, steps + 1):
        t = i / steps
        send(view, QEvent.Type.MouseMove, a + (b - a) * t, NOB, LEFT, mods)
    send(view, QEvent.Type.MouseButtonRelease, b, LEFT, NOB, mods)
    QApplication.processEvents()


def click(view, pos, mods=NOMOD):
    send(view, QEvent.Type.MouseButtonPress, pos, LEFT, LEFT, mods)
    send(view, QEvent.Type.MouseButtonRelease, pos, LEFT, NOB, mods)


def isolated_point(view, c, min_px=14.0):
    """A point of class c whose nearest neighbour and every handle/ring edge are far enough in pixels to click it."""
    pos = view.display_positions()
    px = np.array([[view.view_to_widget(p).x(), view.view_to_widget(p).y()] for p in pos], dtype=float)
    lay = view.edit_stack.layout
    cen = np.array(
        [[view.class_center_scene_pos(j).x(), view.class_center_scene_pos(j).y()] for j in range(len(lay.centers))]
    )
    kx = abs(view.view_to_widget((1, 0)).x() - view.view_to_widget((0, 0)).x())
    for i in np.flatnonzero(view._labels == c):
        d = np.hypot(*(px - px[i]).T)
        d[i] = np.inf
        dc = np.hypot(*(cen - px[i]).T)
        ring = np.abs(dc - lay.spreads * kx)
        if d.min() > min_px and dc.min() > 20 and ring.min() > 9:
            return int(i), QPointF(*px[i])
    raise AssertionError("no isolated point")


@pytest.fixture
def view(qtbot):
    v = LatentView()
    qtbot.addWidget(v)
    v.resize(800, 600)
    v.show()
    qtbot.waitExposed(v)
    z, y, p = synthetic()
    v.set_snapshot(z, y, p, NAMES)
    v.set_editable(True)
    QApplication.processEvents()
    return v


@pytest.fixture
def spy(view):
    got = []
    view.editsChanged.connect(lambda e: got.append(e))
    return got


# ------------------------------------------------------------------ drawing


def test_snapshot_draws_points_handles_rings_and_legend(view):
    n, k = 600, 6
    assert len(view.scatter.data) == n
    assert len(view.handle_items) == k and len(view.ring_items) == k
    assert [lab[2] for lab in view.overlay._labels] == NAMES
    assert view.legend.texts()[:k] == NAMES and "misclassified" in view.legend.texts()
    lay = view.edit_stack.layout
    for c in range(k):
        r = view.ring_items[c].rect()
        assert r.center().x() == pytest.approx(lay.centers[c, 0]) and r.width() / 2 == pytest.approx(lay.spreads[c])
    # the first snapshot is fitted: every point is inside the viewport
    vp = view.plot.viewport().rect()
    assert all(vp.contains(view.view_to_widget(p)) for p in view.display_positions()[::37])


def test_misclassified_points_are_marked(view):
    d = view.scatter.data
    order = view.points.order
    wrong = view._preds[order] != view._labels[order]
    assert wrong.any() and (~wrong).any()
    assert set(d["symbol"][wrong]) == {"x"} and set(d["symbol"][~wrong]) == {"o"}
    # wrong ones are drawn last (on top of their cluster) and keep their true class colour
    assert not wrong[: (~wrong).sum()].any()
    cols = class_colors(6)
    i = int(np.flatnonzero(wrong)[0])
    c = int(view._labels[order][i])
    b = d["brush"][i].color()
    assert (b.red(), b.green(), b.blue()) == cols[c]


def test_fast_scatter_fill_matches_pyqtgraph_setdata(view):
    """The record-array fill used for speed gives the same styles and atlas cells as the public setData."""
    import pyqtgraph as pg

    ref = pg.ScatterPlotItem(pxMode=True)
    ref.fragmentAtlas = view.scatter.fragmentAtlas
    t = view.points.tables
    sid = view.points.style_id
    xy = view.display_positions()[view.points.order]
    ref.setData(
        x=xy[:, 0], y=xy[:, 1], symbol=t["sym"][sid], size=t["size"][sid], pen=t["pens"][sid], brush=t["brushes"][sid]
    )
    a, b = view.scatter.data, ref.data
    for f in ("x", "y", "size", "visible"):
        np.testing.assert_array_equal(a[f], b[f])
    assert list(a["symbol"]) == list(b["symbol"])
    assert all(p is q for p, q in zip(a["pen"], b["pen"])) and all(p is q for p, q in zip(a["brush"], b["brush"]))
    assert a["sourceRect"].tolist() == b["sourceRect"].tolist()


# ------------------------------------------------------------------ editing with real mouse events


def test_drag_center_pushes_exactly_one_move_center(view, spy):
    before = view.display_positions()
    a = view.class_center_scene_pos(2)
    b = a + QPointF(-90, 60)
    send(view, QEvent.Type.MouseButtonPress, a, LEFT, LEFT)
    for i in range(1, 11):
        send(view, QEvent.Type.MouseMove, a + (b - a) * (i / 10), NOB, LEFT)
        if i == 5:  # live: the cluster, its label and its arrow move during the drag, but no edit exists yet
            assert view.edits() == [] and spy == []
            assert view.class_center_scene_pos(2).x() == pytest.approx((a + (b - a) * 0.5).x(), abs=1.0)
            live = view.display_center(2)
            assert (view.overlay._labels[2][0], view.overlay._labels[2][1]) == pytest.approx(live)
            assert any(sg[2:4] == pytest.approx(live) for sg in view.overlay._segments)
    send(view, QEvent.Type.MouseButtonRelease, b, LEFT, NOB)
    assert len(spy) == 1
    (e,) = view.edits()
    assert e["op"] == "move_center" and e["class"] == 2
    want = view.widget_to_view(b)
    px = abs(view.widget_to_view(QPoint(1, 0))[0] - view.widget_to_view(QPoint(0, 0))[0])
    assert e["to"] == pytest.approx(list(want), abs=2 * px)
    # the whole cluster moved by the centre delta; others stayed
    after = view.display_positions()
    base = view.edit_stack.base
    delta = np.array(e["to"]) - base.centers[2]
    m = view._labels == 2
    np.testing.assert_allclose(after[m], before[m] + delta, atol=1e-9)
    np.testing.assert_allclose(after[~m], before[~m])
    assert view.class_center_scene_pos(2).x() == pytest.approx(b.x(), abs=1.0)


def test_qtest_mouse_functions_drive_a_drag(view, spy):
    """The same through QTest's own mouse functions (press, move with the button held, release)."""
    vp = view.plot.viewport()
    a = view.class_center_scene_pos(0).toPoint()
    b = a + QPoint(40, 50)
    QTest.mousePress(vp, LEFT, NOMOD, a)
    for i in range(1, 6):
        QTest.mouseMove(vp, a + (b - a) * (i / 5))
    QTest.mouseRelease(vp, LEFT, NOMOD, b)
    assert len(spy) == 1 and [e["op"] for e in view.edits()] == ["move_center"]
    assert view.edits()[0]["to"] == pytest.approx(list(view.widget_to_view(b)), abs=0.05)


def test_click_on_handle_without_moving_is_no_edit(view, spy):
    click(view, view.class_center_scene_pos(1))
    assert spy == [] and view.edits() == []


def test_drop_center_on_another_center_merges_where_dropped(view, spy):
    """Issue 10.4: the merged centre lands where the handle was dropped, not at the two centres' midpoint."""
    a = view.class_center_scene_pos(0)
    b = view.class_center_scene_pos(1) + QPointF(4, -3)  # within the snap distance of bravo's handle
    base = view.edit_stack.base
    drag(view, a, b)
    assert len(spy) == 1
    e = view.edits()
    assert [x["op"] for x in e] == ["merge", "move_center"] and e[0]["classes"] == [0, 1] and e[1]["class"] == 0
    lay = view.edit_stack.layout
    assert lay.group[0] == lay.group[1]
    px = abs(view.widget_to_view(QPoint(1, 0))[0] - view.widget_to_view(QPoint(0, 0))[0])
    np.testing.assert_allclose(lay.centers[0], view.widget_to_view(b), atol=1.5 * px)
    np.testing.assert_allclose(lay.centers[1], lay.centers[0])
    mid = (base.centers[0] + base.centers[1]) / 2
    assert np.linalg.norm(lay.centers[0] - mid) > 20 * px
    assert "alpha + bravo" in [lab[2] for lab in view.overlay._labels]  # one label for the merged pair
    view.undo()  # one gesture, one undo step
    assert view.edits() == []


def test_ring_drag_scales_the_spread(view, spy):
    lay = view.edit_stack.layout
    c = 4
    r = float(lay.spreads[c])
    a = view.ring_edge_pos(c, 0.0)
    cen = view.class_center_scene_pos(c)
    b = cen + (a - cen) * 1.6
    drag(view, a, b)
    assert len(spy) == 1
    (e,) = view.edits()
    assert e["op"] == "scale_spread" and e["class"] == c
    assert e["factor"] == pytest.approx(1.6, abs=0.03)
    new = view.edit_stack.layout
    assert new.spreads[c] == pytest.approx(r * e["factor"])
    # the points are scaled about the centre: their RMS distance to it is the new spread
    pts = view.display_positions()[view._labels == c]
    rms = np.sqrt(((pts - new.centers[c]) ** 2).sum(axis=1).mean())
    assert rms == pytest.approx(new.spreads[c], rel=1e-6)
    # shrinking works the same way
    drag(
        view,
        view.ring_edge_pos(c, 90.0),
        view.class_center_scene_pos(c) + (view.ring_edge_pos(c, 90.0) - view.class_center_scene_pos(c)) * 0.5,
    )
    assert view.edits()[-1]["factor"] == pytest.approx(0.5, abs=0.03)


def test_click_shift_click_then_drag_moves_exactly_the_selection(view, spy):
    i, pi = isolated_point(view, 0)
    j, pj = isolated_point(view, 5)
    click(view, pi)
    assert view.selected_indices() == [i]
    click(view, pj, SHIFT)
    assert view.selected_indices() == sorted([i, j])
    assert spy == []
    before = view.display_positions()
    drag(view, pj, pj + QPointF(30, 25))
    assert len(spy) == 1
    (e,) = view.edits()
    assert e["op"] == "move_points" and sorted(e["indices"]) == sorted([i, j])
    delta = np.array(view.widget_to_view(pj + QPointF(30, 25))) - np.array(view.widget_to_view(pj))
    for idx, to in zip(e["indices"], e["to"]):
        np.testing.assert_allclose(to, before[idx] + delta, atol=1e-6)
    after = view.display_positions()
    others = np.setdiff1d(np.arange(len(after)), [i, j])
    np.testing.assert_allclose(after[others], before[others])
    # a plain click on another point replaces the selection; shift-click on a selected one removes it
    k, pk = isolated_point(view, 3)
    click(view, pk)
    assert view.selected_indices() == [k]
    click(view, pk, SHIFT)
    assert view.selected_indices() == []


def test_rubber_band_selects_then_drag_moves_them(view, spy):
    # Ctrl+drag on empty space between clusters selects what is inside the rectangle
    c = view.class_center_scene_pos(3)
    a, b = c + QPointF(-60, -60), c + QPointF(5, 5)
    pos = view.display_positions()
    lo = np.minimum(view.widget_to_view(a), view.widget_to_view(b))
    hi = np.maximum(view.widget_to_view(a), view.widget_to_view(b))
    inside = np.flatnonzero(((pos >= lo) & (pos <= hi)).all(axis=1))
    assert view._hit(a) is None
    drag(view, a, b, mods=CTRL)
    assert len(inside) > 3 and view.selected_indices() == inside.tolist()
    assert spy == []
    # drag one selected point: the whole selection moves, as one edit
    sel_px = [view.view_to_widget(pos[i]) for i in inside]
    lay = view.edit_stack.layout
    start = None
    for i, p in zip(inside, sel_px):
        hit = view._hit(QPointF(p))
        if hit == ("point", int(i)):
            start = QPointF(p)
            break
    assert start is not None
    drag(view, start, start + QPointF(-40, 0))
    assert len(spy) == 1
    (e,) = view.edits()
    assert e["op"] == "move_points" and sorted(e["indices"]) == inside.tolist()
    assert lay is not view.edit_stack.layout


def test_undo_redo_with_real_key_presses(view, spy, qtbot):
    before = view.display_positions()
    drag(view, view.class_center_scene_pos(1), view.class_center_scene_pos(1) + QPointF(50, 40))
    drag(
        view,
        view.ring_edge_pos(3),
        view.class_center_scene_pos(3) + (view.ring_edge_pos(3) - view.class_center_scene_pos(3)) * 0.6,
    )
    assert [e["op"] for e in view.edits()] == ["move_center", "scale_spread"]
    two = view.display_positions()
    view.plot.setFocus()
    QTest.keyClick(view.plot, Qt.Key.Key_Z, CTRL)
    assert [e["op"] for e in view.edits()] == ["move_center"]
    QTest.keyClick(view.plot, Qt.Key.Key_Z, CTRL)
    assert view.edits() == []
    np.testing.assert_allclose(view.display_positions(), before)
    QTest.keyClick(view.plot, Qt.Key.Key_Z, CTRL | SHIFT)
    assert [e["op"] for e in view.edits()] == ["move_center"]
    QTest.keyClick(view.plot, Qt.Key.Key_Y, CTRL)
    assert [e["op"] for e in view.edits()] == ["move_center", "scale_spread"]
    np.testing.assert_allclose(view.display_positions(), two)
    assert len(spy) == 2 + 4  # two pushes, four undo/redo steps, each announced once
    assert spy[-1] == view.edits()
    # keys work on the widget itself too (e.g. when the main window gives it focus)
    QTest.keyClick(view, Qt.Key.Key_Z, CTRL)
    assert len(view.edits()) == 1


def test_reset_edits_is_undoable(view, spy):
    drag(view, view.class_center_scene_pos(0), view.class_center_scene_pos(0) + QPointF(30, 30))
    view.reset_edits()
    assert view.edits() == [] and spy[-1] == []
    view.undo()
    assert [e["op"] for e in view.edits()] == ["move_center"]


def test_not_editable_drags_make_no_edit(view, spy):
    view.set_editable(False)
    before = view.display_positions()
    a = view.class_center_scene_pos(2)
    send(view, QEvent.Type.MouseMove, a)
    assert view.plot.viewport().cursor().shape() == Qt.CursorShape.ForbiddenCursor
    drag(view, a, a + QPointF(80, 80))
    drag(view, view.ring_edge_pos(2), view.ring_edge_pos(2) + QPointF(40, 0))
    _, pi = isolated_point(view, 1)
    drag(view, pi, pi + QPointF(30, 30))
    QTest.keyClick(view.plot, Qt.Key.Key_Z, CTRL)
    assert spy == [] and view.edits() == []
    np.testing.assert_allclose(view.display_positions(), before)
    assert not view.undo_button.isEnabled()
    view.set_editable(True)
    send(view, QEvent.Type.MouseMove, view.class_center_scene_pos(2))
    assert view.plot.viewport().cursor().shape() == Qt.CursorShape.OpenHandCursor


def test_escape_cancels_a_drag(view, spy):
    before = view.display_positions()
    a = view.class_center_scene_pos(5)
    send(view, QEvent.Type.MouseButtonPress, a, LEFT, LEFT)
    send(view, QEvent.Type.MouseMove, a + QPointF(60, 0), NOB, LEFT)
    QTest.keyClick(view.plot, Qt.Key.Key_Escape)
    send(view, QEvent.Type.MouseButtonRelease, a + QPointF(60, 0), LEFT, NOB)
    assert spy == [] and view.edits() == []
    np.testing.assert_allclose(view.display_positions(), before)


# ------------------------------------------------------------------ hover


def test_hover_reports_the_point_and_shows_the_sample(view, qtbot):
    calls = []

    def render(i):
        calls.append(i)
        img = QImage(8, 8, QImage.Format.Format_RGB32)
        img.fill(QColor(40, 40, 40))
        return img

    view.set_sample_renderer(render)
    i, pi = isolated_point(view, 4)
    with qtbot.waitSignal(view.hovered, timeout=2000) as blocker:
        send(view, QEvent.Type.MouseMove, pi + QPointF(2, -1))
    assert blocker.args == [i]
    assert calls == [i]
    pop = view.hover_popup
    assert pop.isVisible()
    assert NAMES[4] in pop.text.text() and "predicted" in pop.text.text()
    assert pop.image.pixmap().width() >= 64  # 8x8 upscaled crisply
    empty = view.class_center_scene_pos(0) + QPointF(0, -200)
    assert view._hit(empty) is None
    with qtbot.waitSignal(view.hovered, timeout=2000) as blocker:
        send(view, QEvent.Type.MouseMove, empty)
    assert blocker.args == [-1] and not pop.isVisible()


def test_hover_is_throttled(view, qtbot):
    """Many moves inside one throttle interval cost one hit-test, reporting where the mouse ended."""
    got = []
    view.hovered.connect(got.append)
    i, pi = isolated_point(view, 2)
    far = view.class_center_scene_pos(0) + QPointF(0, -200)
    for k in range(30):
        send(view, QEvent.Type.MouseMove, far + QPointF(k, 0))
    send(view, QEvent.Type.MouseMove, pi)
    qtbot.waitUntil(lambda: got != [], timeout=2000)
    qtbot.wait(80)
    assert got == [i]


# ------------------------------------------------------------------ context menu, snapshots


def test_handle_context_menu_merge_push_apart_and_reset(view, spy, qtbot):
    send(
        view,
        QEvent.Type.MouseButtonPress,
        view.class_center_scene_pos(0),
        Qt.MouseButton.RightButton,
        Qt.MouseButton.RightButton,
    )
    assert view._menu is not None and view._menu.isVisible()
    view._menu.close()

    def action(menu, path):
        for a in menu.actions():
            if a.text() == path[0]:
                return a if len(path) == 1 else action(a.menu(), path[1:])
        raise AssertionError(path)

    lay = view.edit_stack.layout
    d = float(np.linalg.norm(lay.centers[0] - lay.centers[1]))
    action(view.build_handle_menu(0), ["Push apart from", "bravo"]).trigger()
    (e,) = view.edits()
    assert e == {"op": "separate", "classes": [0, 1], "min_distance": pytest.approx(max(1.5 * d, 0.5 * lay.ref_radius))}
    action(view.build_handle_menu(2), ["Merge with", "echo"]).trigger()
    assert view.edits()[-1] == {"op": "merge", "classes": [2, 4]}
    # merged classes are not offered again
    assert "echo" not in [a.text() for a in action(view.build_handle_menu(2), ["Merge with"]).menu().actions()]
    drag(view, view.class_center_scene_pos(5), view.class_center_scene_pos(5) + QPointF(0, 40))
    assert len(view.edits()) == 3
    reset = action(view.build_handle_menu(2), ["Reset this class"])
    assert reset.isEnabled()
    reset.trigger()
    assert [x["op"] for x in view.edits()] == ["separate", "move_center"]
    view.undo()
    assert len(view.edits()) == 3
    assert not action(view.build_handle_menu(3), ["Reset this class"]).isEnabled()


def test_new_snapshot_resets_the_base(view, spy):
    drag(view, view.class_center_scene_pos(0), view.class_center_scene_pos(0) + QPointF(30, 30))
    rng0 = view.vb.viewRange()
    z, y, p = synthetic(seed=1, shift=0.3)
    view.set_snapshot(z, y, p, NAMES)
    assert view.edits() == [] and spy[-1] == []
    np.testing.assert_allclose(view.edit_stack.base.centers, layout_from_points(z, y, 6).centers)
    np.testing.assert_allclose(view.display_positions(), z, atol=1e-6)
    assert view.vb.viewRange() == rng0  # still fits the view: no jump
    drag(view, view.class_center_scene_pos(0), view.class_center_scene_pos(0) + QPointF(30, 30))
    kept = view.edits()
    view.set_snapshot(*synthetic(seed=2), NAMES, keep_edits=True)
    assert view.edits() == kept


def test_committed_layout_shows_ghosts_and_arrows(view):
    z, y, p = synthetic()
    committed = apply_edits(
        layout_from_points(z, y, 6),
        [{"op": "move_center", "class": 1, "to": [0.0, 0.0]}, {"op": "scale_spread", "class": 2, "factor": 0.5}],
    )
    view.set_snapshot(z, y, p, NAMES, committed_layout=committed.to_json())
    assert "committed target" in view.legend.texts()
    ghosts = [m for m in view.overlay._markers if m[4] == 7.0]
    assert len(ghosts) == 6
    assert (ghosts[1][0], ghosts[1][1]) == (0.0, 0.0)
    arrows = [s for s in view.overlay._segments if s[4].style() == Qt.PenStyle.DashLine]
    assert len(arrows) == 6 and (arrows[1][2], arrows[1][3]) == (0.0, 0.0)
    assert view.edits() == []  # committed targets are shown, not re-applied as edits


def test_bad_snapshot_is_refused(view):
    z, y, p = synthetic()
    with pytest.raises(ValueError):
        view.set_snapshot(z[:, :1], y, p, NAMES)
    with pytest.raises(ValueError):
        view.set_snapshot(z, y, p, NAMES[:3])


def test_screenshot_after_edit(view, qtbot):
    z, y, p = synthetic()
    committed = apply_edits(layout_from_points(z, y, 6), [{"op": "move_center", "class": 3, "to": [-2.0, -1.0]}])
    view.set_snapshot(z, y, p, NAMES, committed_layout=committed.to_json())
    drag(view, view.class_center_scene_pos(2), view.class_center_scene_pos(2) + QPointF(-70, 90))
    c = view.class_center_scene_pos(5)
    drag(view, view.ring_edge_pos(5, 0.0), c + (view.ring_edge_pos(5, 0.0) - c) * 0.55)
    _, pi = isolated_point(view, 0)
    click(view, pi)
    drag(view, pi, pi + QPointF(40, 30))
    assert [e["op"] for e in view.edits()] == ["move_center", "scale_spread", "move_points"]
    QApplication.processEvents()
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    path = out / "latent_view.png"
    assert view.grab().save(str(path))
    assert path.stat().st_size > 10_000


def test_right_click_on_empty_space_opens_the_view_menu(view):
    empty = view.class_center_scene_pos(0) + QPointF(0, -200)
    R = Qt.MouseButton.RightButton
    send(view, QEvent.Type.MouseButtonPress, empty, R, R)
    send(view, QEvent.Type.MouseButtonRelease, empty, R, NOB)
    assert view._menu is not None and view._menu.isVisible()
    assert [a.text() for a in view._menu.actions() if a.text()][:2] == [
        "Fit view",
        "Select mode (drag to select points)",
    ]
    view._menu.close()


def test_void_qt_calls_cannot_exhaust_none():
    """PySide6 6.12 on CPython 3.11 drops a reference to None on every void call; hill_app.gui guards it.

    Whatever binding is installed: the guard is applied exactly when void calls leak, and 1000 of them
    leave None's reference count where a session cannot exhaust it."""
    import sys

    from PySide6.QtCore import QObject

    from hill_app.gui import compat

    o = QObject()
    leaks = compat.leaks_none(lambda: o.setObjectName(""))
    assert compat.guard_none_refcount() == compat.none_guarded() == (leaks and sys.version_info < (3, 12))
    before = sys.getrefcount(None)
    for _ in range(1000):
        o.setObjectName("")
    after = sys.getrefcount(None)
    assert after >= before or (compat.none_guarded() and after > compat.HEADROOM // 2)


def test_none_leak_detector_sees_a_leak():
    """The detector itself, on a call that does drop a reference to None (and one that does not)."""
    import ctypes
    import sys

    from hill_app.gui import compat

    dec, inc = ctypes.pythonapi.Py_DecRef, ctypes.pythonapi.Py_IncRef
    dec.argtypes = inc.argtypes = [ctypes.py_object]
    calls = []

    def leaky():
        calls.append(1)
        if sys.version_info < (3, 12):
            dec(None)

    try:
        assert compat.leaks_none(leaky) == (sys.version_info < (3, 12))
    finally:
        if sys.version_info < (3, 12):
            for _ in calls:
                inc(None)
    assert not compat.leaks_none(lambda: None)


def test_the_guard_gives_none_headroom_when_void_calls_leak(monkeypatch):
    """What the guard does where the binding leaks (PySide6 6.12.0 on CPython < 3.12), on any installed binding:
    the leak is simulated, so this runs even where the real binding does not leak (6.11 here)."""
    import ctypes
    import sys

    from hill_app.gui import compat

    monkeypatch.setattr(compat, "_NONE_GUARDED", False)
    monkeypatch.setattr(compat, "leaks_none", lambda call, repeat=16: True)
    before = sys.getrefcount(None)
    applied = compat.guard_none_refcount()
    if sys.version_info >= (3, 12) or hasattr(sys, "gettotalrefcount"):
        assert not applied and not compat.none_guarded()  # None is immortal there: nothing to guard
        return
    assert applied and compat.none_guarded()
    assert sys.getrefcount(None) - before >= compat.HEADROOM - 1000
    assert compat.guard_none_refcount() is True  # idempotent: no second headroom
    assert sys.getrefcount(None) - before < 2 * compat.HEADROOM
    dec, inc = ctypes.pythonapi.Py_DecRef, ctypes.pythonapi.Py_IncRef
    dec.argtypes = inc.argtypes = [ctypes.py_object]
    for _ in range(100_000):  # a long session's worth of leaking void calls
        dec(None)
    try:
        assert sys.getrefcount(None) > compat.HEADROOM // 2
    finally:
        for _ in range(100_000):
            inc(None)


def test_class_without_points_has_no_handle(view):
    z, y, p = synthetic()
    keep = y != 3
    view.set_snapshot(z[keep], y[keep], p[keep], NAMES)
    assert not view.handle_items[3].isVisible() and not view.ring_items[3].isVisible()
    assert "delta" not in [lab[2] for lab in view.overlay._labels]
    where = view.class_center_scene_pos(3)  # (0, 0): nothing to grab there but maybe points
    hit = view._hit(where)
    assert hit is None or hit[0] != "handle" or hit[1] != 3


def test_palette_is_distinct_and_long_enough():
    from hill_app.gui.palette import OKABE_ITO, class_colors

    cols = class_colors(12)
    assert len(set(cols)) == 12 and cols[:7] == list(OKABE_ITO)
    assert len(set(class_colors(17))) == 17
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in class_colors(40))
    QColor(*cols[0])  # usable as a QColor


def test_view_follows_growing_snapshots_until_the_user_zooms(view, qtbot):
    from PySide6.QtGui import QWheelEvent

    z, y, p = synthetic()
    rng0 = view.vb.viewRange()
    view.set_snapshot(z * 3, y, p, NAMES)  # features grew: the layout left the view, so it is refitted
    rng1 = view.vb.viewRange()
    assert rng1[0][1] - rng1[0][0] > 2 * (rng0[0][1] - rng0[0][0])
    assert not view._escapes_view()
    # a real wheel zoom hands the range to the user: later snapshots leave it alone, even if they escape
    vp = view.plot.viewport()
    c = QPointF(vp.width() / 2, vp.height() / 2)
    ev = QWheelEvent(
        c,
        QPointF(vp.mapToGlobal(c.toPoint())),
        QPoint(0, 0),
        QPoint(0, 120),
        NOB,
        NOMOD,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(vp, ev)
    qtbot.waitUntil(lambda: view._user_ranged, timeout=2000)
    rng2 = view.vb.viewRange()
    assert rng2 != rng1
    view.set_snapshot(z * 9, y, p, NAMES)
    assert view.vb.viewRange() == rng2
    view.fit()  # Fit hands it back
    assert view.vb.viewRange() != rng2 and not view._user_ranged


# ------------------------------------------------------------------ drag priorities (issue 10.4), QTest mouse events

SIZES = [(800, 600), (480, 360)]  # a roomy view, and the smallest the main window gives it


@pytest.fixture(params=SIZES, ids=["800x600", "480x360"])
def sized_view(request, qtbot):
    w, h = request.param
    v = LatentView()
    qtbot.addWidget(v)
    v.resize(w, h)
    v.show()
    qtbot.waitExposed(v)
    z, y, p = synthetic()
    v.set_snapshot(z, y, p, NAMES)
    v.set_editable(True)
    QApplication.processEvents()
    return v


def qdrag(view, a, b, steps=8, mods=NOMOD):
    """QTest's press, moves with the button held, release, at integer viewport pixels."""
    vp = view.plot.viewport()
    pa, pb = QPointF(a).toPoint(), QPointF(b).toPoint()
    QTest.mouseMove(vp, pa)
    QTest.mousePress(vp, LEFT, mods, pa)
    for i in range(1, steps + 1):
        QTest.mouseMove(vp, pa + (pb - pa) * (i / steps))
    QTest.mouseRelease(vp, LEFT, mods, pb)
    QApplication.processEvents()
    return pa, pb


def qclick(view, pos, mods=NOMOD):
    vp = view.plot.viewport()
    QTest.mouseClick(vp, LEFT, mods, QPointF(pos).toPoint())
    QApplication.processEvents()


def point_on_a_ring(view):
    """A point drawn on a ring's edge (within 2 px), away from handles and from other points."""
    pos = view.display_positions()
    px = np.array([[view.view_to_widget(p).x(), view.view_to_widget(p).y()] for p in pos], dtype=float)
    k = len(view.class_names)
    cen = np.array([[view.class_center_scene_pos(j).x(), view.class_center_scene_pos(j).y()] for j in range(k)])
    radius = np.array([view.ring_radius_px(j) for j in range(k)])
    vp = view.plot.viewport()
    for i in range(len(px)):
        if not (20 < px[i, 0] < vp.width() - 20 and 20 < px[i, 1] < vp.height() - 20):
            continue
        dc = np.hypot(*(cen - px[i]).T)
        gap = np.abs(dc - radius)
        d = np.hypot(*(px - px[i]).T)
        d[i] = np.inf
        c = int(np.argmin(gap))
        if gap[c] < 2 and dc.min() > 16 and d.min() > 4 and view.hit_at(QPointF(*px[i])) == ("ring", c):
            return i, c, QPointF(*px[i])
    raise AssertionError("no point on a ring edge")


def test_selected_point_on_a_ring_wins_over_the_ring(sized_view):
    view = sized_view
    i, c, p = point_on_a_ring(view)
    # a click on the ring where a point is drawn selects that point (a click makes no spread edit) ...
    qclick(view, p)
    assert view.edits() == [] and view.selected_indices() == [i]
    # ... and then a drag from it, even pressed a pixel or two off its centre, moves the point, not the ring
    before = view.display_positions()
    start = p + QPointF(1, -1)
    assert view.hit_at(start) == ("point", i)
    pa, pb = qdrag(view, start, start + QPointF(-35, 25))
    (e,) = view.edits()
    assert e["op"] == "move_points" and e["indices"] == [i]
    delta = np.array(view.widget_to_view(pb)) - np.array(view.widget_to_view(pa))
    np.testing.assert_allclose(e["to"][0], before[i] + delta, atol=1e-6)
    assert view.edit_stack.layout.spreads[c] == pytest.approx(view.edit_stack.base.spreads[c])


@pytest.mark.parametrize("off_px", [4.0, -4.0, 0.0])
def test_ring_drag_scales_by_release_over_press_distance(sized_view, off_px):
    """Issue 10.4: new spread = old spread * r_release / r_press, the press measured where it was, also a few
    pixels off the ring's edge; a 40 px drag changes the spread by 40 px' worth, no jump on the first move."""
    view = sized_view
    for c in range(6):
        cen = view.class_center_scene_pos(c)
        r = view.ring_radius_px(c)
        for ang in np.radians([0, 45, 90, 135, 180, 225, 270, 315]):
            u = QPointF(np.cos(ang), -np.sin(ang))
            press = (cen + u * (r + off_px)).toPoint()
            release = (cen + u * (r + off_px + 40)).toPoint()
            vp = view.plot.viewport().rect()
            if view.hit_at(press) == ("ring", c) and vp.contains(release):
                break
        else:
            continue
        break
    else:
        raise AssertionError("no ring to grab")
    spread0 = float(view.edit_stack.layout.spreads[c])
    r_press = np.hypot(press.x() - cen.x(), press.y() - cen.y())
    r_release = np.hypot(release.x() - cen.x(), release.y() - cen.y())
    vp = view.plot.viewport()
    QTest.mouseMove(vp, press)
    QTest.mousePress(vp, LEFT, NOMOD, press)
    first = press + (release - press) * (4 / 40)
    QTest.mouseMove(vp, first)  # past the drag threshold: the ring grows by ~4 px, it does not jump
    r_first = np.hypot(first.x() - cen.x(), first.y() - cen.y())
    live_r = view.ring_items[c].rect().width() / 2
    assert live_r == pytest.approx(spread0 * r_first / r_press, rel=1e-6)
    QTest.mouseMove(vp, release)
    QTest.mouseRelease(vp, LEFT, NOMOD, release)
    (e,) = view.edits()
    assert e["op"] == "scale_spread" and e["class"] == c
    assert e["factor"] == pytest.approx(r_release / r_press, rel=1e-6)
    assert view.ring_radius_px(c) == pytest.approx(r * r_release / r_press, rel=1e-6)


def test_handle_grabbed_off_its_centre_keeps_the_offset(sized_view):
    view = sized_view
    c = 2
    start = view.edit_stack.layout.centers[c].copy()
    press = view.class_center_scene_pos(c) + QPointF(6, -6)  # 8.5 px off the centre: still the handle
    assert view.hit_at(press) == ("handle", c)
    pa, pb = qdrag(view, press, press + QPointF(-50, 30))
    (e,) = view.edits()
    assert e["op"] == "move_center" and e["class"] == c
    want = start + np.array(view.widget_to_view(pb)) - np.array(view.widget_to_view(pa))
    np.testing.assert_allclose(e["to"], want, atol=1e-9)


def test_merge_by_drop_lands_where_dropped_at_every_size(sized_view):
    view = sized_view
    a = view.class_center_scene_pos(3)
    b = view.class_center_scene_pos(4) + QPointF(-5, 5)
    start = view.edit_stack.layout.centers[3].copy()
    pa, pb = qdrag(view, a, b)
    e = view.edits()
    assert [x["op"] for x in e] == ["merge", "move_center"] and e[0]["classes"] == [3, 4]
    want = start + np.array(view.widget_to_view(pb)) - np.array(view.widget_to_view(pa))
    lay = view.edit_stack.layout
    np.testing.assert_allclose(lay.centers[3], want, atol=1e-9)
    np.testing.assert_allclose(lay.centers[4], want, atol=1e-9)


def test_drags_announce_themselves_and_never_change_the_views_geometry(sized_view, qtbot):
    """A window must not re-lay-out around the view during a drag: the view says when one runs, and nothing it
    shows during one (the selection count in its status line) can change its size hints."""
    view = sized_view
    states = []
    view.dragActive.connect(states.append)
    vp = view.plot.viewport()
    geo = (vp.mapToGlobal(QPoint(0, 0)), vp.size(), view.minimumSizeHint(), view.sizeHint())
    _, pi = isolated_point(view, 1)
    pa = pi.toPoint()
    QTest.mouseMove(vp, pa)
    QTest.mousePress(vp, LEFT, NOMOD, pa)
    assert view.dragging and states == [True] and view.selected_indices() != []
    for k in range(1, 6):
        QTest.mouseMove(vp, pa + QPoint(6 * k, 4 * k))
        QApplication.processEvents()
        assert (vp.mapToGlobal(QPoint(0, 0)), vp.size(), view.minimumSizeHint(), view.sizeHint()) == geo
    QTest.mouseRelease(vp, LEFT, NOMOD, pa + QPoint(30, 20))
    assert not view.dragging and states == [True, False] and len(view.edits()) == 1
    # a long status text (many selected points) elides instead of widening the view
    view.set_selection(np.arange(500))
    QApplication.processEvents()
    assert "500 selected" in view.status_label.full_text()
    assert view.minimumSizeHint().width() <= 480 and view.minimumSizeHint() == geo[2]


def test_axes_are_labelled(view):
    pi = view.plot.getPlotItem()
    assert view.axis_labels() == ("latent axis 1", "latent axis 2")
    assert pi.getAxis("bottom").label.isVisible() and pi.getAxis("left").label.isVisible()
    view.set_axis_labels("PCA 1", "PCA 2")
    assert view.axis_labels() == ("PCA 1", "PCA 2")
    assert "PCA 1" in pi.getAxis("bottom").label.toPlainText()


def test_several_edits_all_reach_the_commit_list(view, spy):
    """Issue 13.12: every gesture of a pause is in the list a commit sends, in order, and each is one undo step."""
    base = view.edit_stack.base
    qdrag(view, view.class_center_scene_pos(0), view.class_center_scene_pos(0) + QPointF(40, 40))
    c = view.class_center_scene_pos(4)
    qdrag(view, view.ring_edge_pos(4, 90.0), c + (view.ring_edge_pos(4, 90.0) - c) * 0.6)
    i, pi = isolated_point(view, 5)
    qclick(view, pi)
    qdrag(view, pi, pi + QPointF(25, -20))
    qdrag(view, view.class_center_scene_pos(2), view.class_center_scene_pos(1) + QPointF(3, 3))
    edits = view.edits()
    assert [e["op"] for e in edits] == ["move_center", "scale_spread", "move_points", "merge", "move_center"]
    assert edits[0]["class"] == 0 and edits[1]["class"] == 4 and edits[2]["indices"] == [i]
    assert edits[3]["classes"] == [2, 1] and edits[4]["class"] == 2
    assert len(spy) == 4 and spy[-1] == edits
    # the commit list is the whole teacher: replaying it on the base gives what is drawn
    want = apply_edits(base, edits)
    got = view.edit_stack.layout
    np.testing.assert_allclose(got.centers, want.centers)
    np.testing.assert_allclose(got.spreads, want.spreads)
    assert got.points == want.points
    for n in (3, 2, 1, 0):
        assert view.undo()
        assert view.edits() == edits[:n]
