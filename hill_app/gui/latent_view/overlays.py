"""What is drawn over the points: class handles and spread rings, labels, pending-edit arrows, committed
targets (ghosts), moved-point guide lines, and the legend. Drawn in pixel units, so sizes hold at any zoom."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QLineF, QObject, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QPainter,
    QPen,
    QPolygonF,
)
from PySide6.QtWidgets import QGraphicsEllipseItem, QWidget

from hill_app.losses import TargetLayout

from ..palette import darker
from .interaction import HANDLE_SIZE

MAX_POINT_LINES = 3000  # moved-point guide lines drawn at most
GHOST_RADIUS = 7.0  # committed-target marker radius (px)


def rgb_color(rgb: tuple[int, int, int], alpha: int = 255) -> QColor:
    return QColor(rgb[0], rgb[1], rgb[2], alpha)


# ---------------------------------------------------------------------------------------------- overlay


class OverlayLayer(pg.GraphicsObject):
    """Class labels, arrows, origin dots and ghost markers in one item, drawn in pixel units so they keep
    their size at any zoom (one paint call instead of dozens of TextItems and ArrowItems)."""

    def __init__(self) -> None:
        super().__init__()
        self._segments: list[tuple[float, float, float, float, QPen, bool, float]] = []
        self._markers: list[tuple[float, float, QPen, QBrush, float]] = []
        self._lines = np.zeros((0, 4))
        self._labels: list[tuple[float, float, str, bool]] = []
        self._font = QFont()
        self._font.setPointSizeF(8.0)
        self._fm = QFontMetricsF(self._font)
        self._text_w: dict[str, float] = {}
        self._pad_px = 16.0
        self._line_pen = QPen(QColor(90, 90, 90, 110), 1.0)
        self._line_pen.setCosmetic(True)
        self._halo = QPen(QColor(255, 255, 255, 190), 1.0)
        self._halo.setCapStyle(Qt.PenCapStyle.RoundCap)
        self._label_bg = QBrush(QColor(255, 255, 255, 238))
        self._label_fg = QColor(32, 32, 32)
        self._bounds: QRectF | None = None
        self._data_rect = QRectF()
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setAcceptHoverEvents(False)

    def set_content(
        self,
        segments: list,
        markers: list,
        lines: np.ndarray,
        labels: list[tuple[float, float, str, bool]] | None = None,
    ) -> None:
        """segments: (x0, y0, x1, y1, pen, arrow_head, shorten_end_px); markers: (x, y, pen, brush, radius_px);
        lines: (M, 4) thin guide lines (moved points: where they are -> where they were dropped);
        labels: (x, y, text, below) class names drawn just above (x, y), or below it where an arrow
        would run through the label."""
        self.prepareGeometryChange()
        self._segments, self._markers = segments, markers
        self._lines = lines[:MAX_POINT_LINES] if len(lines) else np.zeros((0, 4))
        self._labels = labels or []
        for lab in self._labels:
            if lab[2] not in self._text_w:
                self._text_w[lab[2]] = self._fm.horizontalAdvance(lab[2])
        self._pad_px = max(
            [16.0, 36.0 if self._labels else 0.0] + [self._text_w[lab[2]] / 2 + 8 for lab in self._labels]
        )
        xs: list[float] = [lab[0] for lab in self._labels]
        ys: list[float] = [lab[1] for lab in self._labels]
        for s in segments:
            xs += [s[0], s[2]]
            ys += [s[1], s[3]]
        for m in markers:
            xs.append(m[0])
            ys.append(m[1])
        if len(self._lines):
            xs += [float(self._lines[:, [0, 2]].min()), float(self._lines[:, [0, 2]].max())]
            ys += [float(self._lines[:, [1, 3]].min()), float(self._lines[:, [1, 3]].max())]
        self._data_rect = QRectF() if not xs else QRectF(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
        self._bounds = None
        self.update()

    def viewTransformChanged(self) -> None:
        self.prepareGeometryChange()
        self._bounds = None

    def boundingRect(self) -> QRectF:
        if self._bounds is None:
            if not (self._segments or self._markers or len(self._lines) or self._labels):
                self._bounds = QRectF()
            else:
                px, py = self.pixelVectors()
                pad_x = self._pad_px * (px.length() if px is not None else 0.0)
                pad_y = self._pad_px * (py.length() if py is not None else 0.0)
                self._bounds = self._data_rect.adjusted(-pad_x, -pad_y, pad_x, pad_y)
        return self._bounds

    def paint(self, p: QPainter, *args: Any) -> None:
        tr = p.transform()
        p.resetTransform()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if len(self._lines):
            m = self._lines
            x0 = tr.m11() * m[:, 0] + tr.m21() * m[:, 1] + tr.dx()
            y0 = tr.m12() * m[:, 0] + tr.m22() * m[:, 1] + tr.dy()
            x1 = tr.m11() * m[:, 2] + tr.m21() * m[:, 3] + tr.dx()
            y1 = tr.m12() * m[:, 2] + tr.m22() * m[:, 3] + tr.dy()
            p.setPen(self._line_pen)
            p.drawLines([QLineF(a, b, c, d) for a, b, c, d in zip(x0, y0, x1, y1)])
        if self._labels:
            p.setFont(self._font)
            h = self._fm.height()
            asc = self._fm.ascent()
            for x, y, text, below in self._labels:
                c = tr.map(QPointF(x, y))
                w = self._text_w[text]
                top = c.y() + HANDLE_SIZE / 2 + 3 if below else c.y() - HANDLE_SIZE / 2 - 3 - h - 2
                box = QRectF(c.x() - w / 2 - 3, top, w + 6, h + 2)
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(self._label_bg)
                p.drawRoundedRect(box, 3, 3)
                p.setPen(self._label_fg)
                p.drawText(QPointF(box.left() + 3, box.top() + 1 + asc), text)
        for x0, y0, x1, y1, pen, head, shorten in self._segments:
            a, b = tr.map(QPointF(x0, y0)), tr.map(QPointF(x1, y1))
            dx, dy = b.x() - a.x(), b.y() - a.y()
            n = math.hypot(dx, dy)
            if n < shorten + 10:
                continue
            ux, uy = dx / n, dy / n
            tip = QPointF(b.x() - ux * shorten, b.y() - uy * shorten)
            start = QPointF(a.x() + ux * 5, a.y() + uy * 5)
            hl, hw = 10.0, 4.5
            base = QPointF(tip.x() - ux * hl, tip.y() - uy * hl)
            end = base if head else tip
            poly = QPolygonF(
                [tip, QPointF(base.x() - uy * hw, base.y() + ux * hw), QPointF(base.x() + uy * hw, base.y() - ux * hw)]
            )
            # A white halo first, so an arrow stays readable across a dense cluster of its own colour.
            halo = QPen(self._halo)
            halo.setWidthF(pen.widthF() + 3.0)
            p.setPen(halo)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawLine(start, end)
            p.setPen(pen)
            p.drawLine(start, end)
            if head:
                p.setPen(QPen(self._halo.color(), 1.6))
                p.setBrush(QBrush(pen.color()))
                p.drawPolygon(poly)
        for x, y, pen, brush, r in self._markers:
            c = tr.map(QPointF(x, y))
            p.setPen(pen)
            p.setBrush(brush)
            p.drawEllipse(c, r, r)


def overlay_content(
    base: TargetLayout,
    lay: TargetLayout,
    centers: np.ndarray,
    present: np.ndarray,
    committed: TargetLayout | None,
    names: list[str],
    colors: list[tuple[int, int, int]],
    z: np.ndarray,
    pos: np.ndarray,
) -> tuple[list, list, np.ndarray, list]:
    """What :meth:`OverlayLayer.set_content` draws for a layout: labels (one per merged group), arrows from
    where each class stands (``base``) to its edited centre (``centers``, live during a drag), committed
    ghosts with dashed arrows, and guide lines from moved points' snapshot positions ``z`` to ``pos``."""
    segs: list = []
    marks: list = []
    labels: list[tuple[float, float, str, bool]] = []
    seen: set[int] = set()

    def from_above(v: np.ndarray) -> bool:  # an arrow along v (away from the handle) runs up through the label
        return bool(v[1] > 1e-12 and v[1] > 0.35 * abs(v[0]))

    for c in range(len(names)):  # merged classes share a centre: one label "a + b"
        g = int(lay.group[c])
        if g in seen or not present[c]:
            continue
        seen.add(g)
        members = np.flatnonzero((lay.group == g) & present)
        below = False
        for m in members:
            moved = float(np.hypot(*(centers[m] - base.centers[m]))) > 1e-9
            below |= moved and from_above(base.centers[m] - centers[m])
            if committed is not None and not moved:
                below |= from_above(committed.centers[m] - base.centers[m])
        labels.append((float(centers[c][0]), float(centers[c][1]), " + ".join(names[m] for m in members), below))
    for c, rgb in enumerate(colors):
        if not present[c]:
            continue
        cur = base.centers[c]
        if committed is not None:
            tgt = committed.centers[c]
            pen = QPen(rgb_color(darker(rgb, 0.6), 200), 1.5, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            segs.append((cur[0], cur[1], tgt[0], tgt[1], pen, True, 9.0))
            gpen = QPen(rgb_color(darker(rgb, 0.8), 200), 1.6, Qt.PenStyle.DashLine)
            marks.append((tgt[0], tgt[1], gpen, QBrush(rgb_color(rgb, 60)), GHOST_RADIUS))
        new = centers[c]
        if float(np.hypot(*(new - cur))) > 1e-9:
            pen = QPen(rgb_color(darker(rgb, 0.6), 255), 2.0)
            segs.append((cur[0], cur[1], new[0], new[1], pen, True, HANDLE_SIZE / 2 + 2))
            marks.append((cur[0], cur[1], QPen(rgb_color(darker(rgb, 0.7)), 1.5), QBrush(QColor("white")), 4.0))
    lines = np.zeros((0, 4))
    if lay.points:
        idx = np.fromiter(lay.points.keys(), dtype=np.int64, count=len(lay.points))
        lines = np.concatenate([z[idx], pos[idx]], axis=1)
    return segs, marks, lines, labels


# ---------------------------------------------------------------------------------------------- handles, rings


class ClassMarkers:
    """A handle at each class centre and a ring of its spread, as items of one plot (built once per class set)."""

    def __init__(self, plot: pg.PlotWidget) -> None:
        self.plot = plot
        self.handles: list[pg.ScatterPlotItem] = []
        self.rings: list[QGraphicsEllipseItem] = []
        self._colors: list[tuple[int, int, int]] = []

    def build(self, colors: list[tuple[int, int, int]]) -> None:
        for it in self.handles + self.rings:
            self.plot.removeItem(it)
        self.handles, self.rings, self._colors = [], [], list(colors)
        for rgb in colors:
            h = pg.ScatterPlotItem(
                pxMode=True, symbol="o", size=HANDLE_SIZE, brush=pg.mkBrush(*rgb), pen=pg.mkPen("#1e1e1e", width=1.6)
            )
            h.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            h.setZValue(30)
            self.plot.addItem(h, ignoreBounds=True)
            self.handles.append(h)
            ring = QGraphicsEllipseItem()
            pen = QPen(rgb_color(darker(rgb, 0.8), 230), 1.5)
            pen.setCosmetic(True)
            ring.setPen(pen)
            ring.setBrush(QBrush(Qt.BrushStyle.NoBrush))  # filled only while hovered or dragged (fills cost)
            ring.setZValue(15)
            ring.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            self.plot.addItem(ring, ignoreBounds=True)
            self.rings.append(ring)

    def place(self, c: int, center: np.ndarray, spread: float, present: bool) -> None:
        self.handles[c].setVisible(present)
        self.rings[c].setVisible(present)
        x, y = float(center[0]), float(center[1])
        self.handles[c].setData([x], [y])
        self.rings[c].setRect(QRectF(x - spread, y - spread, 2 * spread, 2 * spread))

    def highlight_handle(self, c: int, on: bool) -> None:
        if 0 <= c < len(self.handles):
            self.handles[c].setSize(HANDLE_SIZE + 5 if on else HANDLE_SIZE)

    def highlight_ring(self, c: int, on: bool) -> None:
        if 0 <= c < len(self.rings):
            ring = self.rings[c]
            pen = QPen(ring.pen())
            pen.setWidthF(3.0 if on else 1.5)
            ring.setPen(pen)
            ring.setBrush(QBrush(rgb_color(self._colors[c], 28)) if on else QBrush(Qt.BrushStyle.NoBrush))


# ---------------------------------------------------------------------------------------------- legend


class Legend(QWidget):
    """Class names and colours in a compact box in the plot's top-right corner (a widget over the viewport,
    so it never pans away and never takes part in hit-testing)."""

    ROW = 17

    def __init__(self, viewport: QWidget) -> None:
        super().__init__(viewport)
        self._entries: list[tuple[str, tuple[int, int, int], str]] = []
        f = QFont(self.font())
        f.setPointSizeF(8.5)
        self.setFont(f)
        self.setCursor(Qt.CursorShape.ArrowCursor)
        self.hide()  # an empty box until a snapshot names the classes
        viewport.installEventFilter(self)

    def set_entries(self, entries: list[tuple[str, tuple[int, int, int], str]]) -> None:
        """entries: (kind, rgb, text) with kind 'class', 'miss' (a cross) or 'ghost' (a dashed ring)."""
        self._entries = list(entries)
        fm = self.fontMetrics()
        w = max([fm.horizontalAdvance(t) for _, _, t in self._entries] or [0]) + 34
        self.resize(w, self.ROW * len(self._entries) + 10)
        self.setVisible(bool(self._entries))
        self._place()
        self.update()

    def texts(self) -> list[str]:
        return [t for _, _, t in self._entries]

    def _place(self) -> None:
        vp = self.parentWidget()
        if vp is not None:
            self.move(vp.width() - self.width() - 10, 10)

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802
        if ev.type() == QEvent.Type.Resize:
            self._place()
        return False

    def paintEvent(self, ev: Any) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor(205, 205, 205), 1))
        p.setBrush(QBrush(QColor(255, 255, 255, 232)))
        p.drawRoundedRect(QRectF(0.5, 0.5, self.width() - 1, self.height() - 1), 4, 4)
        fm = self.fontMetrics()
        for j, (kind, rgb, text) in enumerate(self._entries):
            cy = 5 + self.ROW * j + self.ROW / 2
            c = QPointF(14, cy)
            if kind == "class":
                p.setPen(QPen(rgb_color(darker(rgb, 0.62)), 1))
                p.setBrush(QBrush(rgb_color(rgb)))
                p.drawEllipse(c, 5, 5)
            elif kind == "miss":
                p.setPen(QPen(QColor(30, 30, 30), 2.2, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
                p.drawLine(QPointF(c.x() - 4, cy - 4), QPointF(c.x() + 4, cy + 4))
                p.drawLine(QPointF(c.x() - 4, cy + 4), QPointF(c.x() + 4, cy - 4))
            else:
                p.setPen(QPen(QColor(110, 110, 110), 1.5, Qt.PenStyle.DashLine))
                p.setBrush(QBrush(QColor(150, 150, 150, 50)))
                p.drawEllipse(c, 6, 6)
            p.setPen(QColor(45, 45, 45))
            p.drawText(QPointF(26, cy + (fm.ascent() - fm.descent()) / 2), text)
        p.end()
