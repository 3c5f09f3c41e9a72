"""The latent view: the frozen 2D projection of the view set, and the hand edits that become HILL's teacher.

One :class:`LatentView` shows the points of one snapshot coloured by class (misclassified ones as a
dark-outlined cross), a draggable handle at each class centre, a ring per class whose radius is the
class's RMS spread (drag its edge to grow or shrink the cluster), and, when edits were committed
before, ghost markers at the committed targets with arrows from where each class stands now.

Edits are the ops of :mod:`hill_app.losses.targets`; they live in an :class:`EditStack` over the layout
of the current snapshot, and what is drawn is always ``edit_stack.layout`` (``apply_edits``), so the
picture is the teacher that a commit would send. A drag redraws live but pushes exactly one edit when
it finishes. Hit-testing (hover, clicks, rubber band) is our own numpy search in pixel units, never
``ScatterPlotItem.pointsAt`` (which builds a Python object per point).

Speed (10,000 points): styles are fixed per snapshot, so the points' pens, brushes and atlas cells are
computed once per class and style and written into the scatter's record array in one go; during a drag
only the positions change, and they are written in place (no restyling), one update per frame.
"""
from __future__ import annotations

import ctypes
import math
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QLineF, QObject, QPoint, QPointF, QRect, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QGuiApplication,
    QIcon,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
    QPolygonF,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsEllipseItem,
    QHBoxLayout,
    QLabel,
    QMenu,
    QRubberBand,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from hill_app.losses import EditError, TargetLayout, layout_from_points

from .edit_stack import EditStack
from .palette import class_colors, darker

SampleRenderer = Callable[[int], "QImage | QPixmap | None"]


def guard_none_refcount() -> bool:
    """Work around a PySide6 6.12.0 bug on CPython < 3.12 that would crash a long session.

    There, every binding of a C++ ``void`` method returns ``None`` without taking a reference, so each
    call (``QPainter.setPen``, ``QWidget.update``, ...) drops None's reference count by one; after some
    10^5 calls (a minute of dragging) Python aborts with "Fatal Python error: none_dealloc". From 3.12
    None is immortal and the bug is harmless. When the leak is detected, give None a reference-count
    headroom no session can use up. Returns whether the guard was applied. Idempotent.
    """
    global _NONE_GUARDED
    if _NONE_GUARDED or sys.version_info >= (3, 12) or hasattr(sys, "gettotalrefcount"):  # debug build: skip
        return _NONE_GUARDED
    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(16):
        probe.setObjectName("")
    if sys.getrefcount(None) >= before:
        return False
    ctypes.c_ssize_t.from_address(id(None)).value += 1 << 40   # ob_refcnt is a PyObject's first field
    _NONE_GUARDED = True
    return True


_NONE_GUARDED = False
guard_none_refcount()

# Pixel sizes of the interaction (device-independent pixels of the viewport).
HANDLE_SIZE = 16          # handle diameter
HANDLE_HIT = 11           # a press this close to a handle's centre grabs it
RING_HIT = 5              # ... this close to a ring's edge grabs the ring
POINT_HIT = 7             # ... this close to a point picks it (hover and click)
MERGE_SNAP = 14           # dropping a handle this close to another class's handle merges them
DRAG_START = 3            # a press that moves less than this is a click, not a drag
HOVER_MS = 30             # hover hit-tests are coalesced to one per this many ms
POINT_SIZE = 6.0
MISS_SIZE = 8.5
MAX_POINT_LINES = 3000    # moved-point guide lines drawn at most


def _rgb_color(rgb: tuple[int, int, int], alpha: int = 255) -> QColor:
    return QColor(rgb[0], rgb[1], rgb[2], alpha)


# ---------------------------------------------------------------------------------------------- overlay


class _OverlayLayer(pg.GraphicsObject):
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

    def set_content(self, segments: list, markers: list, lines: np.ndarray,
                    labels: list[tuple[float, float, str, bool]] | None = None) -> None:
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
        self._pad_px = max([16.0, 36.0 if self._labels else 0.0] + [self._text_w[lab[2]] / 2 + 8 for lab in self._labels])
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
            poly = QPolygonF([tip, QPointF(base.x() - uy * hw, base.y() + ux * hw),
                              QPointF(base.x() + uy * hw, base.y() - ux * hw)])
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


# ---------------------------------------------------------------------------------------------- legend


class _Legend(QWidget):
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
                p.setPen(QPen(_rgb_color(darker(rgb, 0.62)), 1))
                p.setBrush(QBrush(_rgb_color(rgb)))
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


# ---------------------------------------------------------------------------------------------- hover popup


class _HoverPopup(QFrame):
    """A tooltip-like window with the sample's image, its label and the model's prediction."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent, Qt.WindowType.ToolTip | Qt.WindowType.FramelessWindowHint)
        self.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating, True)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, True)
        self.setObjectName("latentHoverPopup")
        self.setStyleSheet("QLabel { color: #202020; background: transparent; }")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(4)
        self.image = QLabel(self)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel(self)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.image)
        lay.addWidget(self.text)

    def paintEvent(self, ev: Any) -> None:  # noqa: N802
        p = QPainter(self)
        p.setPen(QPen(QColor(184, 184, 184), 1))
        p.setBrush(QBrush(QColor(255, 255, 255)))
        p.drawRect(QRectF(0.5, 0.5, self.width() - 1, self.height() - 1))
        p.end()

    def show_sample(self, pixmap: QPixmap | None, html: str, global_pos: QPoint) -> None:
        if pixmap is not None and not pixmap.isNull():
            self.image.setPixmap(pixmap)
            self.image.show()
        else:
            self.image.clear()
            self.image.hide()
        self.text.setText(html)
        self.adjustSize()
        pos = global_pos + QPoint(16, 18)
        screen = QGuiApplication.screenAt(global_pos) or QGuiApplication.primaryScreen()
        if screen is not None:
            g = screen.availableGeometry()
            if pos.x() + self.width() > g.right():
                pos.setX(global_pos.x() - self.width() - 12)
            if pos.y() + self.height() > g.bottom():
                pos.setY(global_pos.y() - self.height() - 12)
        self.move(pos)
        self.show()
        self.raise_()


# ---------------------------------------------------------------------------------------------- the view


@dataclass
class _Drag:
    kind: str                                   # 'center' | 'ring' | 'points' | 'rubber'
    press_px: QPointF
    press_view: np.ndarray
    cls: int = -1
    members: list[int] = field(default_factory=list)
    idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    base_pos: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    start_centers: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    r0: float = 1.0
    moved: bool = False
    merge_target: int = -1
    value: Any = None                            # the live result: new centre, factor or delta
    toggle_off: int = -1                         # shift-click on a selected point: unselect on click release
    add: bool = False


class LatentView(QWidget):
    """Scatter of the view set's 2D latent points with handles, spread rings and the edit stack.

    Emits ``editsChanged(list)`` with the current edits after every push, undo, redo and reset, and
    ``hovered(int)`` with the view index under the cursor (-1 when none).
    """

    editsChanged = Signal(list)
    hovered = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._stack = EditStack()
        self._editable = False
        self._select_mode = False
        self._renderer: SampleRenderer | None = None
        self._image_cache: OrderedDict[int, QPixmap | None] = OrderedDict()
        self._z: np.ndarray | None = None
        self._labels = np.zeros(0, dtype=np.int64)
        self._preds = np.zeros(0, dtype=np.int64)
        self._mis = np.zeros(0, dtype=bool)
        self._names: list[str] = []
        self._colors: list[tuple[int, int, int]] = []
        self._base: TargetLayout | None = None
        self._committed: TargetLayout | None = None
        self._pos = np.zeros((0, 2))
        self._order = np.zeros(0, dtype=np.int64)
        self._class_idx: list[np.ndarray] = []
        self._present = np.zeros(0, dtype=bool)
        self._selection = np.zeros(0, dtype=np.int64)
        self._drag: _Drag | None = None
        self._empty_press: QPointF | None = None
        self._right_press: QPointF | None = None
        self._hover_idx = -1
        self._hover_px: QPointF | None = None
        self._hover_handle = -1
        self._hover_ring = -1
        self._fitted = False
        self._user_ranged = False     # the user panned or zoomed since the last fit: leave the range alone
        self._fast_scatter = True     # write the scatter's record array directly (falls back to setData)
        self._style_tables: dict[str, Any] = {}
        self.handle_items: list[pg.ScatterPlotItem] = []
        self.ring_items: list[QGraphicsEllipseItem] = []
        self._menu: QMenu | None = None

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self._build_toolbar())

        self.plot = pg.PlotWidget(background="w")
        self.plot.setAntialiasing(True)
        pi = self.plot.getPlotItem()
        pi.hideButtons()
        pi.setMenuEnabled(False)    # our own menus: pyqtgraph's could switch auto-range on behind our back
        # No grid: pyqtgraph draws it inside the axis items, and replaying it costs more than the 10k points.
        for name in ("left", "bottom"):
            ax = pi.getAxis(name)
            ax.setPen(pg.mkPen("#9a9a9a"))
            ax.setTextPen(pg.mkPen("#6a6a6a"))
        self.vb: pg.ViewBox = pi.getViewBox()
        self.vb.setAspectLocked(True)
        self.vb.disableAutoRange()
        self.vb.sigRangeChangedManually.connect(self._on_manual_range)
        lay.addWidget(self.plot, 1)

        self.scatter = pg.ScatterPlotItem(pxMode=True, useCache=True, antialias=False)
        self.scatter.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.scatter.setAcceptHoverEvents(False)
        self.scatter.setZValue(10)
        self.plot.addItem(self.scatter)

        self.selection_item = pg.ScatterPlotItem(pxMode=True, symbol="o", size=11, brush=None,
                                                 pen=pg.mkPen("#111111", width=1.6))
        self.hover_item = pg.ScatterPlotItem(pxMode=True, symbol="o", size=13, brush=None,
                                             pen=pg.mkPen("#111111", width=2.0))
        for z, it in ((25, self.selection_item), (26, self.hover_item)):
            it.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            it.setZValue(z)
            self.plot.addItem(it, ignoreBounds=True)

        self.overlay = _OverlayLayer()
        self.overlay.setZValue(20)
        self.plot.addItem(self.overlay, ignoreBounds=True)

        self.legend = _Legend(self.plot.viewport())

        self._band = QRubberBand(QRubberBand.Shape.Rectangle, self.plot.viewport())
        self._popup = _HoverPopup(self)
        self._hover_timer = QTimer(self)
        self._hover_timer.setSingleShot(True)
        self._hover_timer.setInterval(HOVER_MS)
        self._hover_timer.timeout.connect(self._do_hover)

        vp = self.plot.viewport()
        vp.setMouseTracking(True)
        vp.installEventFilter(self)
        self.plot.installEventFilter(self)
        self.installEventFilter(self)
        self.plot.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setFocusProxy(self.plot)
        self._update_toolbar()

    # ------------------------------------------------------------------------------------------ toolbar

    def _build_toolbar(self) -> QWidget:
        bar = QWidget(self)
        bar.setObjectName("latentToolbar")
        bar.setStyleSheet("#latentToolbar { background: #f6f6f6; border-bottom: 1px solid #dddddd; }"
                          " QToolButton { padding: 2px 8px; border: 1px solid transparent; border-radius: 3px; }"
                          " QToolButton:hover { border-color: #c8c8c8; background: #ffffff; }"
                          " QToolButton:checked { border-color: #9ab; background: #e3ecf5; }")
        h = QHBoxLayout(bar)
        h.setContentsMargins(6, 3, 6, 3)
        h.setSpacing(2)

        def button(text: str, tip: str, slot: Callable[[], Any], checkable: bool = False) -> QToolButton:
            b = QToolButton(bar)
            b.setText(text)
            b.setToolTip(tip)
            b.setCheckable(checkable)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(slot)
            h.addWidget(b)
            return b

        self.select_button = button("Select", "Rubber-band select points by dragging on empty space "
                                              "(or hold Ctrl while dragging)",
                                    lambda: self.set_select_mode(self.select_button.isChecked()), checkable=True)
        self.undo_button = button("Undo", "Undo the last edit (Ctrl+Z)", self._user_undo)
        self.redo_button = button("Redo", "Redo (Ctrl+Shift+Z or Ctrl+Y)", self._user_redo)
        self.reset_button = button("Reset edits", "Drop all edits made at this pause (undoable)", self._user_reset)
        self.fit_button = button("Fit view", "Zoom to show every point", self.fit)
        h.addStretch(1)
        self.status_label = QLabel(bar)
        self.status_label.setStyleSheet("color: #555555;")
        h.addWidget(self.status_label)
        bar.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        return bar

    def _update_toolbar(self) -> None:
        n = len(self._stack)
        has = self._base is not None
        self.undo_button.setEnabled(self._editable and self._stack.can_undo())
        self.redo_button.setEnabled(self._editable and self._stack.can_redo())
        self.reset_button.setEnabled(self._editable and n > 0)
        self.select_button.setEnabled(self._editable and has)
        self.fit_button.setEnabled(has)
        sel = f" · {len(self._selection)} selected" if len(self._selection) else ""
        if not has:
            text = "No snapshot yet"
        elif self._editable:
            text = f"Paused · drag a centre, a ring or points · {n} edit{'s' if n != 1 else ''}{sel}"
        else:
            text = "Editing is locked while training runs · pause to edit"
        self.status_label.setText(text)

    # ------------------------------------------------------------------------------------------ public API

    @property
    def edit_stack(self) -> EditStack:
        """The edits made at this pause; its ``layout`` is what is drawn."""
        return self._stack

    def edits(self) -> list[dict]:
        """The current edit ops (copies), ready for the session's ``set_latent_targets``."""
        return self._stack.edits

    @property
    def editable(self) -> bool:
        return self._editable

    @property
    def class_names(self) -> list[str]:
        return list(self._names)

    @property
    def colors(self) -> list[tuple[int, int, int]]:
        return list(self._colors)

    @property
    def num_points(self) -> int:
        return 0 if self._z is None else len(self._z)

    def set_snapshot(self, z: np.ndarray, labels: np.ndarray, preds: np.ndarray, class_names: list[str],
                     committed_layout: dict | None = None, *, keep_edits: bool = False) -> None:
        """Show a new snapshot (a pause or an epoch). The edit stack's base becomes this snapshot's layout;
        uncommitted edits are dropped unless ``keep_edits``. The view auto-ranges on the first snapshot only."""
        z = np.asarray(z, dtype=np.float64)
        labels = np.asarray(labels).astype(np.int64, copy=False).reshape(-1)
        preds = np.asarray(preds).astype(np.int64, copy=False).reshape(-1)
        k = len(class_names)
        if z.ndim != 2 or z.shape[1] != 2:
            raise ValueError(f"set_snapshot: z must be (N, 2), got {z.shape}")
        if len(labels) != len(z) or len(preds) != len(z):
            raise ValueError(f"set_snapshot: {len(z)} points but {len(labels)} labels and {len(preds)} predictions")
        if k == 0:
            raise ValueError("set_snapshot: class_names is empty")
        if len(labels) and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"set_snapshot: labels must be in 0..{k - 1} (one per class name)")
        self._cancel_drag()
        classes_changed = k != len(self._names) or list(class_names) != self._names
        self._z, self._labels, self._preds = z, labels, preds
        self._mis = preds != labels
        self._names = [str(n) for n in class_names]
        if classes_changed or not self._colors:
            self._colors = class_colors(k)
        self._class_idx = [np.flatnonzero(labels == c) for c in range(k)]
        # A class with no point in the view set has no centre to drag: no handle, ring or label for it.
        self._present = np.array([len(ix) > 0 for ix in self._class_idx], dtype=bool)
        self._base = layout_from_points(z, labels, k)
        keep = keep_edits and self._stack.base is not None and self._stack.base.num_classes == k
        self._stack.reset_base(self._base, view_size=len(z), keep_edits=keep)
        self._committed = TargetLayout.from_json(committed_layout) if committed_layout else None
        if self._committed is not None and self._committed.num_classes != k:
            self._committed = None
        if not keep or (len(self._selection) and self._selection.max() >= len(z)):
            self._selection = np.zeros(0, dtype=np.int64)
        self._image_cache.clear()
        if self._hover_idx != -1:
            self._hover_idx = -1
            self._popup.hide()
            self.hovered.emit(-1)
        # Misclassified points are drawn last so they are never buried under a dense cluster.
        self._order = np.argsort(self._mis, kind="stable")
        self._build_styles(classes_changed)
        if classes_changed or not self.handle_items:
            self._build_class_items()
        self._build_legend()
        self._refresh(restyle=True)
        # The range is ours only until the user pans or zooms: the first snapshot is fitted, and a later one
        # only if it no longer fits (features often grow as training goes on). Never during a drag: a
        # snapshot cancels any drag first, and drags never change the range.
        if not self._fitted or (not self._user_ranged and self._escapes_view()):
            self.fit()
            self._fitted = True
        self.editsChanged.emit(self._stack.edits)

    def set_editable(self, editable: bool) -> None:
        """Edits only while paused: when not editable, drags and keys do nothing and the cursor says so."""
        self._editable = bool(editable)
        if not self._editable:
            self._cancel_drag()
            if self._select_mode:
                self.set_select_mode(False)
        self._update_toolbar()
        self._update_cursor(self._hover_px)

    def set_select_mode(self, on: bool) -> None:
        """In select mode a left drag on empty space draws a rubber band (as Ctrl+drag does always)."""
        self._select_mode = bool(on)
        self.select_button.setChecked(self._select_mode)

    def set_sample_renderer(self, fn: SampleRenderer | None) -> None:
        """``fn(view_index)`` gives the image shown when hovering a point (a digit, a CIFAR image, a signal plot)."""
        self._renderer = fn
        self._image_cache.clear()

    def undo(self) -> bool:
        """Undo one edit step (also a reset or a class reset). Returns whether anything changed."""
        if self._stack.undo():
            self._after_change()
            return True
        return False

    def redo(self) -> bool:
        if self._stack.redo():
            self._after_change()
            return True
        return False

    def reset_edits(self) -> None:
        """Drop every edit made at this pause (undoable); e.g. after a commit or from a menu."""
        had = len(self._stack) > 0
        self._cancel_drag()
        self._stack.clear()
        if had:
            self._after_change()
        else:
            self.editsChanged.emit([])

    def reset_class(self, c: int) -> None:
        """Drop the edits that name class ``c`` (its moves, spread, merges, separations, moved points)."""
        new: list[dict] = []
        for e in self._stack.edits:
            op = e["op"]
            if op in ("move_center", "scale_spread") and e["class"] == c:
                continue
            if op in ("merge", "separate") and c in e["classes"]:
                continue
            if op == "move_points":
                keep = [(i, t) for i, t in zip(e["indices"], e["to"]) if self._labels[i] != c]
                if not keep:
                    continue
                e = {"op": "move_points", "indices": [i for i, _ in keep], "to": [t for _, t in keep]}
            new.append(e)
        if new != self._stack.edits:
            self._stack.replace(new)
            self._after_change()

    def push_apart(self, a: int, b: int) -> None:
        """``separate`` a and b: at least 1.5x their current target distance, and half the layout radius."""
        lay = self._stack.layout
        d = float(np.linalg.norm(lay.centers[a] - lay.centers[b]))
        md = min(100.0, max(1.5 * d, 0.5 * float(lay.ref_radius)))
        self._push({"op": "separate", "classes": [int(a), int(b)], "min_distance": md})

    def merge(self, a: int, b: int) -> None:
        self._push({"op": "merge", "classes": [int(a), int(b)]})

    def push_edit(self, edit: dict) -> bool:
        """Push an edit made elsewhere (a script, a strategy button); False (nothing changes) if it is invalid."""
        return self._push(edit)

    def fit(self) -> None:
        """Zoom to show every point, ring and target; the view then follows new snapshots again until the user
        pans or zooms."""
        if self._z is None or self._base is None:
            return
        self._user_ranged = False
        lay = self._stack.layout
        pts = [self._pos] if len(self._pos) else []
        pts.append(lay.centers + lay.spreads[:, None])
        pts.append(lay.centers - lay.spreads[:, None])
        if self._committed is not None:
            pts.append(self._committed.centers)
        allp = np.concatenate(pts)
        allp = allp[np.isfinite(allp).all(axis=1)]
        if not len(allp):
            return
        lo, hi = allp.min(axis=0), allp.max(axis=0)
        span = np.maximum(hi - lo, 1e-6)
        self.vb.setRange(xRange=(lo[0], lo[0] + span[0]), yRange=(lo[1], lo[1] + span[1]), padding=0.05,
                         disableAutoRange=True)

    def _on_manual_range(self, *_: Any) -> None:
        self._user_ranged = True

    def _escapes_view(self) -> bool:
        """Whether the shown layout has left the visible range: a class centre, or more than 1% of the points."""
        r = self.vb.viewRect()
        lo, hi = np.array([r.left(), r.top()]), np.array([r.right(), r.bottom()])
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        centers = self._stack.layout.centers[self._present]
        if len(centers) and not ((centers >= lo) & (centers <= hi)).all():
            return True
        if not len(self._pos):
            return False
        outside = ~((self._pos >= lo) & (self._pos <= hi)).all(axis=1)
        return float(outside.mean()) > 0.01

    def selected_indices(self) -> list[int]:
        return [int(i) for i in self._selection]

    def set_selection(self, indices: list[int] | np.ndarray) -> None:
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        self._selection = idx[(idx >= 0) & (idx < self.num_points)]
        self._update_selection_item()
        self._update_toolbar()

    def display_positions(self) -> np.ndarray:
        """Where each view point is drawn now (N, 2): the snapshot moved by the edits (a copy)."""
        return self._pos.copy()

    def display_center(self, c: int) -> tuple[float, float]:
        """The class centre as drawn (the edited target, or the live position during a drag)."""
        if self._drag is not None and self._drag.kind == "center" and c in self._drag.members:
            v = self._drag.value if self._drag.value is not None else self._drag.start_centers[0]
            return float(v[0]), float(v[1])
        cc = self._stack.layout.centers[c]
        return float(cc[0]), float(cc[1])

    def class_center_scene_pos(self, c: int) -> QPointF:
        """Where class ``c``'s handle is, in the plot viewport's pixel coordinates (for real mouse events)."""
        x, y = self.display_center(c)
        return self._view_to_px(x, y)

    def ring_edge_pos(self, c: int, angle_deg: float = 0.0) -> QPointF:
        """A point on class ``c``'s spread ring, in viewport pixels (angle 0 = right of the centre)."""
        x, y = self.display_center(c)
        r = float(self._stack.layout.spreads[c])
        a = math.radians(angle_deg)
        return self._view_to_px(x + r * math.cos(a), y + r * math.sin(a))

    def view_to_widget(self, xy: Any) -> QPoint:
        """View (latent) coordinates -> plot viewport pixel (rounded)."""
        return self._view_to_px(float(xy[0]), float(xy[1])).toPoint()

    def widget_to_view(self, pos: QPoint | QPointF) -> tuple[float, float]:
        """Plot viewport pixel -> view (latent) coordinates."""
        inv, _ = self.plot.viewportTransform().inverted()
        scene = inv.map(QPointF(pos))
        v = self.vb.mapSceneToView(scene)
        return float(v.x()), float(v.y())

    def build_handle_menu(self, c: int) -> QMenu:
        """The context menu of class ``c``'s handle: merge with, push apart from, reset this class."""
        menu = QMenu(self)
        lay = self._stack.layout
        title = menu.addAction(self._icon(c), self._names[c])
        title.setEnabled(False)
        menu.addSeparator()
        merge = menu.addMenu("Merge with")
        apart = menu.addMenu("Push apart from")
        for o in range(len(self._names)):
            if o == c or not self._present[o]:
                continue
            if lay.group[o] != lay.group[c]:
                a = merge.addAction(self._icon(o), self._names[o])
                a.triggered.connect(lambda _=False, o=o: self.merge(c, o))
            a = apart.addAction(self._icon(o), self._names[o])
            a.triggered.connect(lambda _=False, o=o: self.push_apart(c, o))
        merge.setEnabled(self._editable and not merge.isEmpty())
        apart.setEnabled(self._editable)
        menu.addSeparator()
        reset = menu.addAction("Reset this class")
        touched = bool(lay.edited is not None and lay.edited[c]) or \
            any(self._labels[i] == c for i in lay.points)
        reset.setEnabled(self._editable and touched)
        reset.triggered.connect(lambda _=False: self.reset_class(c))
        return menu

    def build_view_menu(self) -> QMenu:
        """The context menu of the empty plot: fit, select mode, undo/redo, reset, clear selection."""
        menu = QMenu(self)
        menu.addAction("Fit view", self.fit)
        sel = menu.addAction("Select mode (drag to select points)")
        sel.setCheckable(True)
        sel.setChecked(self._select_mode)
        sel.setEnabled(self._editable)
        sel.toggled.connect(self.set_select_mode)
        clear = menu.addAction("Clear selection", lambda: self.set_selection([]))
        clear.setEnabled(len(self._selection) > 0)
        menu.addSeparator()
        for text, slot, ok in (("Undo", self._user_undo, self._stack.can_undo()),
                               ("Redo", self._user_redo, self._stack.can_redo()),
                               ("Reset edits", self._user_reset, len(self._stack) > 0)):
            a = menu.addAction(text, slot)
            a.setEnabled(self._editable and ok)
        return menu

    # ------------------------------------------------------------------------------------------ styles and items

    def _build_styles(self, classes_changed: bool) -> None:
        """Pens and brushes once per class; per-point styles are indices into a (2K) style table."""
        k = len(self._names)
        if classes_changed or "pens" not in self._style_tables:
            brushes = [pg.mkBrush(*rgb, 215) for rgb in self._colors]
            pens = [pg.mkPen(*darker(rgb, 0.62), 190, width=0.8) for rgb in self._colors]
            miss_pen = pg.mkPen(25, 25, 25, 210, width=0.9)
            miss_brushes = [pg.mkBrush(*rgb, 255) for rgb in self._colors]
            # style s = 2 * class + misclassified
            sym = np.array(["o", "x"] * k, dtype=object)
            size = np.array([POINT_SIZE, MISS_SIZE] * k, dtype=np.float64)
            pen = np.empty(2 * k, dtype=object)
            brush = np.empty(2 * k, dtype=object)
            for c in range(k):
                pen[2 * c], pen[2 * c + 1] = pens[c], miss_pen
                brush[2 * c], brush[2 * c + 1] = brushes[c], miss_brushes[c]
            self._style_tables = {"sym": sym, "size": size, "pens": pen, "brushes": brush}
        self._style_id = (2 * self._labels + self._mis.astype(np.int64))[self._order]

    def _icon(self, c: int) -> QIcon:
        pm = QPixmap(12, 12)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(_rgb_color(darker(self._colors[c])), 1))
        p.setBrush(QBrush(_rgb_color(self._colors[c])))
        p.drawEllipse(1, 1, 10, 10)
        p.end()
        return QIcon(pm)

    def _build_class_items(self) -> None:
        for it in self.handle_items + self.ring_items:
            self.plot.removeItem(it)
        self.handle_items, self.ring_items = [], []
        for c, rgb in enumerate(self._colors):
            h = pg.ScatterPlotItem(pxMode=True, symbol="o", size=HANDLE_SIZE, brush=pg.mkBrush(*rgb),
                                   pen=pg.mkPen("#1e1e1e", width=1.6))
            h.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            h.setZValue(30)
            self.plot.addItem(h, ignoreBounds=True)
            self.handle_items.append(h)
            ring = QGraphicsEllipseItem()
            pen = QPen(_rgb_color(darker(rgb, 0.8), 230), 1.5)
            pen.setCosmetic(True)
            ring.setPen(pen)
            ring.setBrush(QBrush(Qt.BrushStyle.NoBrush))   # filled only while hovered or dragged (fills cost)
            ring.setZValue(15)
            ring.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            self.plot.addItem(ring, ignoreBounds=True)
            self.ring_items.append(ring)

    def _build_legend(self) -> None:
        entries: list[tuple[str, tuple[int, int, int], str]] = [("class", rgb, self._names[c])
                                                                 for c, rgb in enumerate(self._colors)]
        if self._mis.any():
            entries.append(("miss", (150, 150, 150), "misclassified"))
        if self._committed is not None:
            entries.append(("ghost", (120, 120, 120), "committed target"))
        self.legend.set_entries(entries)

    # ------------------------------------------------------------------------------------------ drawing

    def _display_positions(self, lay: TargetLayout) -> np.ndarray:
        """Each point's class moved to the edited centre and scaled by the edited spread; moved points where dropped."""
        b = self._base
        lab = self._labels
        s = np.where(b.spreads > 1e-12, lay.spreads / np.maximum(b.spreads, 1e-12), 1.0)
        pos = lay.centers[lab] + s[lab, None] * (self._z - b.centers[lab])
        if lay.points:
            idx = np.fromiter(lay.points.keys(), dtype=np.int64, count=len(lay.points))
            pos[idx] = np.array(list(lay.points.values()), dtype=np.float64)
        return pos

    def _refresh(self, restyle: bool = False) -> None:
        """Redraw everything from ``edit_stack.layout`` (after a snapshot, a push, an undo...)."""
        if self._z is None:
            return
        lay = self._stack.layout
        self._pos = self._display_positions(lay)
        self._push_scatter(restyle=restyle)
        for c in range(len(self._names)):
            self._place_class(c, lay.centers[c], float(lay.spreads[c]))
        self._update_overlay(lay)
        self._update_selection_item()
        self._update_toolbar()

    def _place_class(self, c: int, center: np.ndarray, spread: float) -> None:
        present = bool(self._present[c])
        self.handle_items[c].setVisible(present)
        self.ring_items[c].setVisible(present)
        x, y = float(center[0]), float(center[1])
        self.handle_items[c].setData([x], [y])
        self.ring_items[c].setRect(QRectF(x - spread, y - spread, 2 * spread, 2 * spread))

    def _push_scatter(self, restyle: bool = False) -> None:
        """One scatter update per frame: positions in place during drags; styles only on a new snapshot."""
        sc = self.scatter
        xy = self._pos[self._order]
        n = len(xy)
        if not restyle and len(sc.data) == n:
            d = sc.data
            d["x"] = xy[:, 0]
            d["y"] = xy[:, 1]
            sc.bounds = [None, None]
            sc.prepareGeometryChange()
            sc.informViewBoundsChanged()
            sc.invalidate()
            return
        t = self._style_tables
        sid = self._style_id
        if self._fast_scatter:
            try:
                self._scatter_fill(xy, sid)
                return
            except Exception:  # pyqtgraph internals changed: use the public (slower) path from now on
                self._fast_scatter = False
        sc.setData(x=xy[:, 0], y=xy[:, 1], symbol=t["sym"][sid], size=t["size"][sid], pen=t["pens"][sid],
                   brush=t["brushes"][sid])

    def _scatter_fill(self, xy: np.ndarray, sid: np.ndarray) -> None:
        """What ``setData(x, y, symbol=, size=, pen=, brush=)`` does, with the per-point style work (a Python
        loop per point, ~50 ms at 10k) done once per *style* (2K of them) and spread with numpy indexing."""
        sc = self.scatter
        t = self._style_tables
        styles = list(zip(t["sym"], t["size"], t["pens"], t["brushes"]))
        coords = np.asarray(sc.fragmentAtlas[styles], dtype=np.int64).reshape(-1, 4)
        data = np.empty(len(xy), dtype=sc.data.dtype)
        data["x"] = xy[:, 0]
        data["y"] = xy[:, 1]
        data["size"] = t["size"][sid]
        data["symbol"] = t["sym"][sid]
        data["pen"] = t["pens"][sid]
        data["brush"] = t["brushes"][sid]
        data["visible"] = True
        data["hovered"] = False
        sr = data["sourceRect"]
        for j, name in enumerate(sr.dtype.names):   # atlas cells are (y, x, h, w) tuples stored positionally
            sr[name] = coords[sid, j]
        sc.data = data
        sc.prepareGeometryChange()
        sc.informViewBoundsChanged()
        sc.bounds = [None, None]
        sc._updateMaxSpotSizes(data=data)
        sc.invalidate()
        sc.sigPlotChanged.emit(sc)

    def _update_overlay(self, lay: TargetLayout, live: np.ndarray | None = None) -> None:
        """Labels, pending-edit arrows (current -> edited), committed ghosts and moved-point lines.
        ``live``: the class centres as drawn during a drag (default: the layout's)."""
        b = self._base
        centers = lay.centers if live is None else live
        segs: list = []
        marks: list = []
        labels: list[tuple[float, float, str, bool]] = []
        seen: set[int] = set()

        def from_above(v: np.ndarray) -> bool:   # an arrow along v (away from the handle) runs up through the label
            return bool(v[1] > 1e-12 and v[1] > 0.35 * abs(v[0]))

        for c in range(len(self._names)):            # merged classes share a centre: one label "a + b"
            g = int(lay.group[c])
            if g in seen or not self._present[c]:
                continue
            seen.add(g)
            members = np.flatnonzero((lay.group == g) & self._present)
            below = False
            for m in members:
                moved = float(np.hypot(*(centers[m] - b.centers[m]))) > 1e-9
                below |= moved and from_above(b.centers[m] - centers[m])
                if self._committed is not None and not moved:
                    below |= from_above(self._committed.centers[m] - b.centers[m])
            labels.append((float(centers[c][0]), float(centers[c][1]),
                           " + ".join(self._names[m] for m in members), below))
        for c, rgb in enumerate(self._colors):
            if not self._present[c]:
                continue
            cur = b.centers[c]
            if self._committed is not None:
                tgt = self._committed.centers[c]
                pen = QPen(_rgb_color(darker(rgb, 0.6), 200), 1.5, Qt.PenStyle.DashLine)
                pen.setCosmetic(True)
                segs.append((cur[0], cur[1], tgt[0], tgt[1], pen, True, 9.0))
                gpen = QPen(_rgb_color(darker(rgb, 0.8), 200), 1.6, Qt.PenStyle.DashLine)
                marks.append((tgt[0], tgt[1], gpen, QBrush(_rgb_color(rgb, 60)), 7.0))
            new = centers[c]
            if float(np.hypot(*(new - cur))) > 1e-9:
                pen = QPen(_rgb_color(darker(rgb, 0.6), 255), 2.0)
                segs.append((cur[0], cur[1], new[0], new[1], pen, True, HANDLE_SIZE / 2 + 2))
                marks.append((cur[0], cur[1], QPen(_rgb_color(darker(rgb, 0.7)), 1.5), QBrush(QColor("white")), 4.0))
        lines = np.zeros((0, 4))
        if lay.points:
            idx = np.fromiter(lay.points.keys(), dtype=np.int64, count=len(lay.points))
            lines = np.concatenate([self._z[idx], self._pos[idx]], axis=1)
        self.overlay.set_content(segs, marks, lines, labels)

    def _update_selection_item(self) -> None:
        if len(self._selection):
            p = self._pos[self._selection]
            self.selection_item.setData(x=p[:, 0], y=p[:, 1])
        else:
            self.selection_item.setData(x=[], y=[])
        if self._hover_idx >= 0 and self._hover_idx < len(self._pos):
            p = self._pos[self._hover_idx]
            self.hover_item.setData(x=[p[0]], y=[p[1]])
        else:
            self.hover_item.setData(x=[], y=[])

    def _highlight_handle(self, c: int, on: bool) -> None:
        if 0 <= c < len(self.handle_items):
            self.handle_items[c].setSize(HANDLE_SIZE + 5 if on else HANDLE_SIZE)

    def _highlight_ring(self, c: int, on: bool) -> None:
        if 0 <= c < len(self.ring_items):
            ring = self.ring_items[c]
            pen = QPen(ring.pen())
            pen.setWidthF(3.0 if on else 1.5)
            ring.setPen(pen)
            ring.setBrush(QBrush(_rgb_color(self._colors[c], 28)) if on else QBrush(Qt.BrushStyle.NoBrush))

    # ------------------------------------------------------------------------------------------ geometry

    def _view_to_px(self, x: float, y: float) -> QPointF:
        scene = self.vb.mapViewToScene(QPointF(x, y))
        return self.plot.viewportTransform().map(scene)

    def _px_per_unit(self) -> tuple[float, float]:
        sx, sy = self.vb.viewPixelSize()
        return (1.0 / sx if sx else 1.0), (1.0 / sy if sy else 1.0)

    def _hit(self, pos: QPointF, points: bool = True) -> tuple[str, int] | None:
        """What is under a viewport pixel: a handle, a ring edge, a point (in that order), or nothing."""
        if self._z is None or self._base is None:
            return None
        v = np.array(self.widget_to_view(pos))
        kx, ky = self._px_per_unit()
        lay = self._stack.layout
        d = np.hypot((lay.centers[:, 0] - v[0]) * kx, (lay.centers[:, 1] - v[1]) * ky)
        d[~self._present] = np.inf
        c = int(np.argmin(d))
        if d[c] <= HANDLE_HIT:
            return ("handle", c)
        gap = np.abs(d - lay.spreads * kx)
        c = int(np.argmin(gap))
        if gap[c] <= RING_HIT and lay.spreads[c] * kx > HANDLE_HIT:
            return ("ring", c)
        if points:
            i = self._nearest_point(v, kx, ky)
            if i >= 0:
                return ("point", i)
        return None

    def _nearest_point(self, v: np.ndarray, kx: float, ky: float) -> int:
        if not len(self._pos):
            return -1
        dx = (self._pos[:, 0] - v[0]) * kx
        dy = (self._pos[:, 1] - v[1]) * ky
        d2 = dx * dx + dy * dy
        i = int(np.argmin(d2))
        return i if d2[i] <= POINT_HIT * POINT_HIT else -1

    # ------------------------------------------------------------------------------------------ events

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:  # noqa: N802 (Qt name)
        t = ev.type()
        vp = self.plot.viewport()
        if obj is vp:
            if t == QEvent.Type.MouseButtonPress:
                return self._on_press(ev)
            if t == QEvent.Type.MouseMove:
                return self._on_move(ev)
            if t == QEvent.Type.MouseButtonRelease:
                return self._on_release(ev)
            if t == QEvent.Type.MouseButtonDblClick:
                return self._drag is not None or self._hit(ev.position(), points=False) is not None
            if t == QEvent.Type.ContextMenu:
                return self._hit(QPointF(ev.pos()), points=False) is not None
            if t == QEvent.Type.Leave:
                self._hover_timer.stop()
                self._hover_px = None
                self._set_hover(-1)
        elif obj is self.plot or obj is self:
            if t == QEvent.Type.ShortcutOverride and self._key_action(ev) is not None:
                ev.accept()
                return True
            if t == QEvent.Type.KeyPress:
                act = self._key_action(ev)
                if act is not None:
                    act()
                    return True
            if t == QEvent.Type.Hide and obj is self:
                self._popup.hide()
        return super().eventFilter(obj, ev)

    def _key_action(self, ev: QKeyEvent) -> Callable[[], Any] | None:
        mods = ev.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier |
                                 Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier)
        ctrl = Qt.KeyboardModifier.ControlModifier
        shift = Qt.KeyboardModifier.ShiftModifier
        key = ev.key()
        if key == Qt.Key.Key_Z and mods == ctrl:
            return self._user_undo
        if (key == Qt.Key.Key_Z and mods == (ctrl | shift)) or (key == Qt.Key.Key_Y and mods == ctrl):
            return self._user_redo
        if key == Qt.Key.Key_Escape and mods == Qt.KeyboardModifier.NoModifier and \
                (self._drag is not None or len(self._selection)):
            return self._escape
        return None

    def _user_undo(self) -> None:
        if self._editable and self._drag is None:
            self.undo()

    def _user_redo(self) -> None:
        if self._editable and self._drag is None:
            self.redo()

    def _user_reset(self) -> None:
        if self._editable:
            self.reset_edits()

    def _escape(self) -> None:
        if self._drag is not None:
            self._cancel_drag()
        else:
            self.set_selection([])

    def _on_press(self, ev: QMouseEvent) -> bool:
        pos = ev.position()
        self._popup.hide()
        self._hover_timer.stop()
        if self._z is None:
            return False
        mods = ev.modifiers()
        if ev.button() == Qt.MouseButton.RightButton:
            hit = self._hit(pos, points=False)
            if hit is not None and hit[0] == "handle":
                self._menu = self.build_handle_menu(hit[1])
                self._menu.popup(self.plot.viewport().mapToGlobal(pos.toPoint()))
                return True
            self._right_press = QPointF(pos)
            return False            # a right drag still zooms
        if ev.button() != Qt.MouseButton.LeftButton:
            return False
        self.plot.setFocus(Qt.FocusReason.MouseFocusReason)
        hit = self._hit(pos)
        if not self._editable:
            self._update_cursor(pos)
            # Grabbing a handle or ring while training does nothing (the forbidden cursor says why); the
            # background still pans.
            return hit is not None and hit[0] in ("handle", "ring")
        v = np.array(self.widget_to_view(pos))
        lay = self._stack.layout
        if hit is not None and hit[0] == "handle":
            c = hit[1]
            members = [int(m) for m in np.flatnonzero(lay.group == lay.group[c])]
            idx = self._free_points(members, lay)
            self._drag = _Drag("center", pos, v, cls=c, members=members, idx=idx, base_pos=self._pos[idx].copy(),
                               start_centers=lay.centers[members].copy())
            self._highlight_handle(c, True)
        elif hit is not None and hit[0] == "ring":
            c = hit[1]
            idx = self._free_points([c], lay)
            self._drag = _Drag("ring", pos, v, cls=c, idx=idx, base_pos=self._pos[idx].copy(),
                               start_centers=lay.centers[[c]].copy(), r0=float(lay.spreads[c]))
            self._highlight_ring(c, True)
        elif hit is not None and hit[0] == "point":
            i = hit[1]
            shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
            in_sel = bool(np.isin(i, self._selection))
            toggle_off = -1
            if shift:
                if in_sel:
                    toggle_off = i      # unselect on release if it was a click, keep it if a drag follows
                else:
                    self._selection = np.union1d(self._selection, [i])
            elif not in_sel:
                self._selection = np.array([i], dtype=np.int64)
            idx = self._selection.copy()
            self._drag = _Drag("points", pos, v, idx=idx, base_pos=self._pos[idx].copy(), toggle_off=toggle_off)
            self._update_selection_item()
            self._update_toolbar()
        elif (mods & Qt.KeyboardModifier.ControlModifier) or self._select_mode:
            self._drag = _Drag("rubber", pos, v, add=bool(mods & Qt.KeyboardModifier.ShiftModifier))
            self._band.setGeometry(QRect(pos.toPoint(), QSize()))
            self._band.show()
        else:
            self._empty_press = QPointF(pos)
            return False            # pan / zoom stay pyqtgraph's
        self.plot.viewport().setCursor(Qt.CursorShape.ClosedHandCursor if self._drag.kind != "rubber"
                                       else Qt.CursorShape.CrossCursor)
        return True

    def _free_points(self, classes: list[int], lay: TargetLayout) -> np.ndarray:
        """Points of these classes that follow the class (individually moved points stay where dropped)."""
        idx = np.concatenate([self._class_idx[c] for c in classes]) if classes else np.zeros(0, dtype=np.int64)
        if lay.points and len(idx):
            moved = np.fromiter(lay.points.keys(), dtype=np.int64, count=len(lay.points))
            idx = idx[~np.isin(idx, moved)]
        return idx

    def _on_move(self, ev: QMouseEvent) -> bool:
        pos = ev.position()
        d = self._drag
        if d is None:
            if ev.buttons() == Qt.MouseButton.NoButton:
                self._hover_px = QPointF(pos)
                self._update_cursor(pos)
                if not self._hover_timer.isActive():
                    self._hover_timer.start()
            return False
        if not (ev.buttons() & Qt.MouseButton.LeftButton):
            return True
        if not d.moved and math.hypot(pos.x() - d.press_px.x(), pos.y() - d.press_px.y()) < DRAG_START:
            return True
        d.moved = True
        v = np.array(self.widget_to_view(pos))
        if d.kind == "center":
            delta = v - d.press_view
            new = d.start_centers[0] + delta
            d.value = new
            if len(d.idx):
                self._pos[d.idx] = d.base_pos + delta
            lay = self._stack.layout
            live = lay.centers.copy()
            for j, m in enumerate(d.members):
                live[m] = d.start_centers[j] + delta
                self._place_class(m, live[m], float(lay.spreads[m]))
            self._update_overlay(lay, live)
            target = self._merge_target(d, self._view_to_px(float(new[0]), float(new[1])))
            if target != d.merge_target:
                self._highlight_handle(d.merge_target, False)
                self._highlight_handle(target, True)
                d.merge_target = target
            self._push_scatter()
            self._update_selection_item()
        elif d.kind == "ring":
            c = d.cls
            ctr = d.start_centers[0]
            r = max(float(np.hypot(*(v - ctr))), 1e-6)
            factor = min(10.0, max(0.02, r / d.r0)) if d.r0 > 0 else 1.0
            d.value = factor
            if len(d.idx):
                self._pos[d.idx] = ctr + (d.base_pos - ctr) * factor
            self._place_class(c, ctr, d.r0 * factor)
            self._push_scatter()
            self._update_selection_item()
        elif d.kind == "points":
            delta = v - d.press_view
            d.value = delta
            self._pos[d.idx] = d.base_pos + delta
            self._push_scatter()
            self._update_selection_item()
        elif d.kind == "rubber":
            self._band.setGeometry(QRect(d.press_px.toPoint(), pos.toPoint()).normalized())
        return True

    def _merge_target(self, d: _Drag, pos: QPointF) -> int:
        """The other class whose handle the dragged handle (at ``pos``, px) is over (within MERGE_SNAP), or -1."""
        lay = self._stack.layout
        best, best_d = -1, float(MERGE_SNAP)
        for o in range(len(self._names)):
            if o in d.members or not self._present[o]:
                continue
            p = self._view_to_px(*lay.centers[o])
            dist = math.hypot(p.x() - pos.x(), p.y() - pos.y())
            if dist <= best_d:
                best, best_d = o, dist
        return best

    def _on_release(self, ev: QMouseEvent) -> bool:
        d = self._drag
        if d is None and ev.button() == Qt.MouseButton.RightButton:
            p, rp = ev.position(), self._right_press
            self._right_press = None
            if rp is not None and math.hypot(p.x() - rp.x(), p.y() - rp.y()) < DRAG_START:
                self._menu = self.build_view_menu()
                self._menu.popup(self.plot.viewport().mapToGlobal(p.toPoint()))
            return False
        if d is None:
            if self._empty_press is not None and ev.button() == Qt.MouseButton.LeftButton:
                p = ev.position()
                if math.hypot(p.x() - self._empty_press.x(), p.y() - self._empty_press.y()) < DRAG_START and \
                        not (ev.modifiers() & Qt.KeyboardModifier.ShiftModifier) and len(self._selection):
                    self.set_selection([])
            self._empty_press = None
            return False
        if ev.button() != Qt.MouseButton.LeftButton:
            return True
        self._drag = None
        self._highlight_handle(d.cls, False)
        self._highlight_handle(d.merge_target, False)
        if d.kind == "ring":
            self._highlight_ring(d.cls, False)
        pushed = False
        if d.kind == "center" and d.moved:
            if d.merge_target >= 0:
                pushed = self._push({"op": "merge", "classes": [int(d.cls), int(d.merge_target)]})
            else:
                to = d.value
                pushed = self._push({"op": "move_center", "class": int(d.cls), "to": [float(to[0]), float(to[1])]})
        elif d.kind == "ring" and d.moved and d.value is not None and abs(d.value - 1.0) > 1e-4:
            pushed = self._push({"op": "scale_spread", "class": int(d.cls), "factor": float(d.value)})
        elif d.kind == "points":
            if d.moved and len(d.idx):
                to = self._pos[d.idx]
                pushed = self._push({"op": "move_points", "indices": [int(i) for i in d.idx],
                                     "to": [[float(x), float(y)] for x, y in to]})
            elif d.toggle_off >= 0:
                self._selection = self._selection[self._selection != d.toggle_off]
        elif d.kind == "rubber":
            self._band.hide()
            a = np.array(self.widget_to_view(d.press_px))
            b = np.array(self.widget_to_view(ev.position()))
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            inside = np.flatnonzero(((self._pos >= lo) & (self._pos <= hi)).all(axis=1))
            self.set_selection(np.union1d(self._selection, inside) if d.add else inside)
        if not pushed:
            self._refresh()
        self._update_cursor(ev.position())
        return True

    def _cancel_drag(self) -> None:
        d = self._drag
        if d is None:
            return
        self._drag = None
        self._band.hide()
        self._highlight_handle(d.cls, False)
        self._highlight_handle(d.merge_target, False)
        self._highlight_ring(d.cls, False)
        self._refresh()

    def _update_cursor(self, pos: QPointF | None) -> None:
        vp = self.plot.viewport()
        hit = None if pos is None else self._hit(pos, points=False)
        ring = hit[1] if hit is not None and hit[0] == "ring" else -1
        if ring != self._hover_ring and self._drag is None:
            self._highlight_ring(self._hover_ring, False)
            if self._editable:
                self._highlight_ring(ring, True)
            self._hover_ring = ring
        if hit is None:
            vp.setCursor(Qt.CursorShape.CrossCursor if self._select_mode and self._editable
                         else Qt.CursorShape.ArrowCursor)
            vp.setToolTip("")
        elif not self._editable:
            vp.setCursor(Qt.CursorShape.ForbiddenCursor)
            vp.setToolTip("Editing is locked while training runs: pause to edit")
        elif hit[0] == "handle":
            vp.setCursor(Qt.CursorShape.OpenHandCursor)
            vp.setToolTip(f"{self._names[hit[1]]}: drag to move the class, drop on another centre to merge, "
                          "right-click for more")
        else:
            vp.setCursor(Qt.CursorShape.SizeFDiagCursor)
            vp.setToolTip(f"{self._names[hit[1]]}: drag the ring to grow or shrink the class's spread")

    # ------------------------------------------------------------------------------------------ hover

    def _do_hover(self) -> None:
        if self._hover_px is None or self._drag is not None or self._z is None:
            return
        v = np.array(self.widget_to_view(self._hover_px))
        kx, ky = self._px_per_unit()
        i = self._nearest_point(v, kx, ky)
        if self._hit(self._hover_px, points=False) is not None:
            i = -1
        self._set_hover(i)

    def _set_hover(self, i: int) -> None:
        if i == self._hover_idx:
            if i >= 0 and self._hover_px is not None and self._popup.isVisible():
                self._show_popup(i)
            return
        self._hover_idx = i
        self._update_selection_item()
        if i < 0:
            self._popup.hide()
        else:
            self._show_popup(i)
        self.hovered.emit(i)

    def _sample_pixmap(self, i: int) -> QPixmap | None:
        if self._renderer is None:
            return None
        if i in self._image_cache:
            self._image_cache.move_to_end(i)
            return self._image_cache[i]
        try:
            img = self._renderer(i)
        except Exception:   # a broken renderer must not break hovering
            img = None
        pm: QPixmap | None = None
        if isinstance(img, QImage) and not img.isNull():
            pm = QPixmap.fromImage(img)
        elif isinstance(img, QPixmap) and not img.isNull():
            pm = img
        if pm is not None:
            w, h = pm.width(), pm.height()
            if max(w, h) < 96:          # small images (8x8 digits, 32x32 CIFAR): crisp nearest-neighbour upscale
                s = max(1, 96 // max(w, h))
                pm = pm.scaled(w * s, h * s, Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.FastTransformation)
            elif max(w, h) > 220:
                pm = pm.scaled(220, 220, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self._image_cache[i] = pm
        if len(self._image_cache) > 128:
            self._image_cache.popitem(last=False)
        return pm

    def popup_text(self, i: int) -> str:
        """The hover text for view point ``i``: its label, the model's prediction, its index."""
        lab, pred = int(self._labels[i]), int(self._preds[i])
        ok = lab == pred
        pc = "#1a7f37" if ok else "#c0392b"
        mark = "" if ok else " (wrong)"
        return (f"<b>{self._names[lab]}</b> <span style='color:#777'>#{i}</span><br>"
                f"predicted: <span style='color:{pc}'><b>{self._names[pred]}</b>{mark}</span>")

    def _show_popup(self, i: int) -> None:
        if self._hover_px is None:
            return
        gp = self.plot.viewport().mapToGlobal(self._hover_px.toPoint())
        self._popup.show_sample(self._sample_pixmap(i), self.popup_text(i), gp)

    @property
    def hover_popup(self) -> QFrame:
        return self._popup

    @property
    def hovered_index(self) -> int:
        return self._hover_idx

    # ------------------------------------------------------------------------------------------ edits

    def _push(self, edit: dict) -> bool:
        try:
            self._stack.push(edit)
        except (EditError, ValueError):
            self._refresh()
            return False
        self._after_change()
        return True

    def _after_change(self) -> None:
        self._refresh()
        self.editsChanged.emit(self._stack.edits)
