"""The feedback plots with the mouse, as a researcher uses TensorBoard or W&B (issue 10.3): the wheel zooms, a
drag pans, a double click resets, Reset zoom resets them all, the values under the cursor show by the
cursor, the smoothing box and the log box act on the curves; and what a small plot shows stays readable
(class names never print over each other, long branch names are shortened in the legends). Offscreen Qt,
real mouse and key events through each plot's viewport."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QFont, QFontMetrics, QMouseEvent, QWheelEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from hill_app.gui.metrics_view import LEGEND_CHARS, MetricsView  # noqa: E402

LEFT = Qt.MouseButton.LeftButton
NOB = Qt.MouseButton.NoButton
NOMOD = Qt.KeyboardModifier.NoModifier
K = 10


def epoch(e: int) -> dict:
    return {
        "epoch": e,
        "train_loss": 2.0 / e,
        "train_ce": 2.0 / e,
        "train_center": 0.0,
        "train_spread": 0.0,
        "train_sep": 0.0,
        "train_point": 0.0,
        "train_scale": 0.0,
        "lam": 0.1,
        "train_accuracy": 0.4 + 0.05 * e,
        "val_accuracy": 0.45 + 0.05 * e,
        "val_per_class_accuracy": list(np.linspace(0.6, 1.0, K)),
        "val_confusion": (np.diag(np.full(K, 20)) + 1).tolist(),
    }


@pytest.fixture
def mv(qtbot):
    m = MetricsView()
    qtbot.addWidget(m)
    m.resize(1250, 280)
    m.show()
    qtbot.waitExposed(m)
    m.set_class_names([f"class {i}" for i in range(K)])
    for e in range(1, 9):
        m.add_epoch(epoch(e))
    m.refresh()
    QApplication.processEvents()
    return m


def at_epoch(plot, x: float, y: float) -> QPoint:
    """The viewport pixel of data point (x, y) in ``plot``."""
    vb = plot.getPlotItem().getViewBox()
    return plot.mapFromScene(vb.mapViewToScene(QPointF(x, y)))


def x_range(plot) -> tuple[float, float]:
    return tuple(plot.getPlotItem().getViewBox().viewRange()[0])


def wheel(plot, pos: QPoint, clicks: int) -> None:
    vp = plot.viewport()
    ev = QWheelEvent(
        QPointF(pos),
        QPointF(vp.mapToGlobal(pos)),
        QPoint(0, 0),
        QPoint(0, 120 * clicks),
        NOB,
        NOMOD,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(vp, ev)
    QApplication.processEvents()


def send(vp, kind: QEvent.Type, pos: QPoint, button, buttons) -> None:
    ev = QMouseEvent(kind, QPointF(pos), QPointF(vp.mapToGlobal(pos)), button, buttons, NOMOD)
    QApplication.sendEvent(vp, ev)


def press_move_release(qtbot, vp, a: QPoint, b: QPoint, steps: int = 8) -> None:
    """A left-button drag through the viewport's event path, the button held in every move event. pyqtgraph
    drops moves that follow each other within its mouse rate limit (10 ms), as a hand's never do: the moves
    are at least 20 ms apart (a floor, not a limit: a slow machine only spaces them more)."""
    send(vp, QEvent.Type.MouseMove, a, NOB, NOB)
    send(vp, QEvent.Type.MouseButtonPress, a, LEFT, LEFT)
    for i in range(1, steps + 1):
        qtbot.wait(20)
        send(vp, QEvent.Type.MouseMove, a + (b - a) * (i / steps), NOB, LEFT)
    send(vp, QEvent.Type.MouseButtonRelease, b, LEFT, NOB)
    QApplication.processEvents()


def double_click(vp, pos: QPoint) -> None:
    """What a double click delivers: press, release, double-click press, release (QTest.mouseDClick sends only
    the third of these, which pyqtgraph does not take for a click)."""
    send(vp, QEvent.Type.MouseButtonPress, pos, LEFT, LEFT)
    send(vp, QEvent.Type.MouseButtonRelease, pos, LEFT, NOB)
    send(vp, QEvent.Type.MouseButtonDblClick, pos, LEFT, LEFT)
    send(vp, QEvent.Type.MouseButtonRelease, pos, LEFT, NOB)
    QApplication.processEvents()


def test_wheel_zooms_drag_pans_double_click_and_reset_zoom_restore(mv, qtbot):
    plot = mv.acc_plot
    vp = plot.viewport()
    full = x_range(plot)
    assert full[0] <= 1 and full[1] >= 8
    wheel(plot, at_epoch(plot, 4.5, 70), 3)  # zoom in around epoch 4.5
    zoomed = x_range(plot)
    assert zoomed[1] - zoomed[0] < 0.8 * (full[1] - full[0]) and zoomed[0] < 4.5 < zoomed[1]

    a = at_epoch(plot, 4.5, 70)
    b = a + QPoint(120, 0)  # drag right: the view pans toward earlier epochs
    press_move_release(qtbot, vp, a, b)
    panned = x_range(plot)
    assert panned[0] < zoomed[0] - 0.2 and panned[1] - panned[0] == pytest.approx(zoomed[1] - zoomed[0], rel=1e-3)

    double_click(vp, QPoint(vp.width() // 2, vp.height() // 2))
    plot.getPlotItem().getViewBox().updateAutoRange()
    assert x_range(plot)[0] <= 1 and x_range(plot)[1] >= 8  # a double click shows everything again

    wheel(mv.loss_plot, at_epoch(mv.loss_plot, 3, 0.5), 4)
    wheel(plot, at_epoch(plot, 3, 70), 4)
    assert x_range(mv.loss_plot)[1] - x_range(mv.loss_plot)[0] < 6 and x_range(plot)[1] - x_range(plot)[0] < 6
    qtbot.mouseClick(mv.reset_btn, LEFT)
    for p in (mv.loss_plot, plot):
        p.getPlotItem().getViewBox().updateAutoRange()
        assert x_range(p)[0] <= 1 and x_range(p)[1] >= 8


def test_the_values_under_the_cursor_show_by_the_cursor(mv, qtbot):
    plot = mv.acc_plot
    qtbot.wait(20)
    QTest.mouseMove(plot.viewport(), at_epoch(plot, 3.1, 60))
    QApplication.processEvents()
    h = mv.hovers["accuracy"]
    assert h.text.isVisible()
    assert h.last == "epoch 3: val 60, train 55"  # the nearest epoch, each named curve's value
    qtbot.wait(20)
    QTest.mouseMove(mv.loss_plot.viewport(), at_epoch(mv.loss_plot, 6.2, 0.3))
    QApplication.processEvents()
    assert mv.hovers["loss"].last.startswith("epoch 6: ") and "cross-entropy 0.3333" in mv.hovers["loss"].last


def test_smoothing_and_log_scale_from_their_controls(mv, qtbot):
    raw = mv.val_acc.getData()[1].copy()
    mv.smooth_spin.selectAll()
    QTest.keyClicks(mv.smooth_spin, "0.6")
    QTest.keyClick(mv.smooth_spin, Qt.Key.Key_Return)
    assert mv.smoothing == pytest.approx(0.6)
    smooth = mv.val_acc.getData()[1]
    assert smooth[0] == pytest.approx(raw[0]) and smooth[-1] < raw[-1]
    qtbot.mouseClick(mv.log_check, LEFT, pos=QPoint(6, mv.log_check.height() // 2))
    assert mv.log_losses and mv.loss_plot.getPlotItem().ctrl.logYCheck.isChecked()
    y = mv.loss_curves["train_ce"].getData()[1]
    assert y[0] == pytest.approx(np.log10(2.0))  # drawn on a log axis (pyqtgraph stores log10)


def shown_ticks(plot, side: str) -> list[tuple[float, str]]:
    ax = plot.getPlotItem().getAxis(side)
    return list(ax._tickLevels[0]) if ax._tickLevels else []


def test_class_names_never_print_over_each_other(qtbot):
    m = MetricsView()
    qtbot.addWidget(m)
    m.set_class_names([f"class {i}" for i in range(K)])
    m.add_epoch(epoch(1))
    m.refresh()
    fm = QFontMetrics(m.class_plot.getPlotItem().getAxis("left").style.get("tickFont") or QFont())
    for size, all_named in (((1250, 900), True), ((700, 250), False)):
        m.resize(*size)
        m.show()
        QApplication.processEvents()
        ticks = shown_ticks(m.class_plot, "left")
        ys = [
            m.class_plot.mapFromScene(m.class_plot.getPlotItem().getViewBox().mapViewToScene(QPointF(0, v))).y()
            for v, _ in ticks
        ]
        gaps = np.diff(sorted(ys))
        assert (len(ticks) == K) == all_named, (size, ticks)
        assert ticks[0] == (0.0, "class 0") and len(ticks) >= 2
        assert gaps.min() >= fm.height(), (size, gaps)
        conf = shown_ticks(m.conf_plot, "left")
        assert conf and (len(conf) == K or len(conf) < K)


def test_long_branch_names_are_shortened_in_the_legends(mv):
    name = "retry-from-epoch-1-with-a-rather-long-branch-name"
    mv.add_branch(name, "main", 4)
    mv.add_epoch({**epoch(5), "branch": name})
    mv.refresh()
    labels = [lab.text for _, lab in mv.acc_legend.items]
    short = name[: LEGEND_CHARS - 1] + "\u2026"
    assert f"val {short}" in labels and f"train {short}" in labels and "val main" in labels
    assert all(len(t) <= len("train ") + LEGEND_CHARS for t in labels)
    # the hover names the branch in full
    assert mv.curve_label(mv.branches[name].curves["val"]) == f"val {name}"


def test_a_legend_shows_only_where_it_fits_inside_its_plot(qtbot):
    """In a small plot a legend covered the curves and ran out over the axis; it shows only where it fits
    (the values under the cursor name every curve either way)."""
    m = MetricsView()
    qtbot.addWidget(m)
    m.set_class_names([f"class {i}" for i in range(K)])
    name = "retry-from-epoch-1-with-a-rather-long-branch-name"
    for e in range(1, 5):
        m.add_epoch({**epoch(e), "train_center": 0.1 / e, "train_scale": 0.9})
    m.add_branch(name, "main", 2)
    m.add_epoch({**epoch(3), "branch": name, "train_center": 0.05, "train_scale": 0.95})
    m.refresh()
    for size, shown in (((1800, 600), True), ((800, 230), False)):
        m.resize(*size)
        m.show()
        QApplication.processEvents()
        for which, plot, legend in (("loss", m.loss_plot, m.loss_legend), ("accuracy", m.acc_plot, m.acc_legend)):
            assert m.legend_shown(which) == shown, (size, which)
            if shown:
                inside = plot.getPlotItem().getViewBox().sceneBoundingRect()
                assert inside.contains(legend.sceneBoundingRect()), (size, which)
    mv_hover = m.hovers["loss"]
    _, rows = mv_hover.values_at(3)
    assert {"scale penalty \u03bb|1\u2212scale|", "cross-entropy", f"total {name}"} <= {r[0] for r in rows}
