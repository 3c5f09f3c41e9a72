"""Mouse helpers shared by the window tests: real press / move / release through a plot's viewport."""

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest

LEFT = Qt.MouseButton.LeftButton
NOMOD = Qt.KeyboardModifier.NoModifier


def drag(vp, a: QPointF, b: QPointF, steps: int = 8) -> None:
    """Press, move with the button held, release: QTest's mouse path through the viewport."""
    pa, pb = a.toPoint(), b.toPoint()
    QTest.mouseMove(vp, pa)
    QTest.mousePress(vp, LEFT, NOMOD, pa)
    for i in range(1, steps + 1):
        QTest.mouseMove(vp, pa + (pb - pa) * (i / steps))
    QTest.mouseRelease(vp, LEFT, NOMOD, pb)


def free_drop_point(view, c: int) -> QPointF:
    """A pixel ~70 px from class c's handle, far from every other handle (so the drop moves, never merges)."""
    here = view.class_center_scene_pos(c)
    others = [view.class_center_scene_pos(k) for k in range(len(view.class_names)) if k != c]
    vp = view.plot.viewport()
    best, best_score, best_d = None, -1e9, 0.0
    for ang in np.linspace(0, 2 * np.pi, 24, endpoint=False):
        p = QPointF(here.x() + 70 * np.cos(ang), here.y() + 70 * np.sin(ang))
        if not (40 < p.x() < vp.width() - 40 and 40 < p.y() < vp.height() - 40):
            continue
        d = min(np.hypot(p.x() - o.x(), p.y() - o.y()) for o in others)
        # Far enough from every other handle, then as central as possible (a readable screenshot).
        score = min(d, 60.0) - 0.01 * np.hypot(p.x() - vp.width() / 2, p.y() - vp.height() / 2)
        if score > best_score:
            best, best_score, best_d = p, score, d
    assert best is not None and best_d > 30, "no free spot to drop the class centre on"
    return best
