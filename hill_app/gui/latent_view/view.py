"""The latent view widget: the frozen 2D projection of the view set, and the hand edits that become HILL's teacher.

What is drawn is always ``edit_stack.layout`` (the edits applied to the snapshot's layout), so the picture is
the teacher a commit would send. Mouse events become :mod:`.interaction` pointers; a drag redraws live and
pushes its edits as one undoable step when it finishes. Hit-testing is numpy in pixel units, never
``ScatterPlotItem.pointsAt`` (a Python object per point).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QEvent,
    QObject,
    QPoint,
    QPointF,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QBrush,
    QIcon,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QPixmap,
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

from ..edit_stack import EditStack
from ..palette import class_colors, darker
from . import interaction as ix
from .interaction import DRAG_START, Drag, Pointer, Scene
from .overlays import ClassMarkers, Legend, OverlayLayer, overlay_content, rgb_color
from .popup import HoverPopup
from .scatter import PointScatter

SampleRenderer = Callable[[int], "QImage | QPixmap | None"]

HOVER_MS = 30  # hover hit-tests are coalesced to one per this many ms
AXIS_LABELS = ("latent axis 1", "latent axis 2")


class _ElidedLabel(QLabel):
    """A one-line label that elides instead of asking for room: its text never changes the layout."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt name)
        self._full = text
        self.setToolTip(text)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, ev: Any) -> None:  # noqa: N802
        super().resizeEvent(ev)
        self._elide()

    def _elide(self) -> None:
        super().setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideLeft, max(0, self.width())))


class LatentView(QWidget):
    """Scatter of the view set's 2D latent points with handles, spread rings and the edit stack.

    Emits ``editsChanged(list)`` with the current edits after every push, undo, redo and reset,
    ``hovered(int)`` with the view index under the cursor (-1 when none), and ``dragActive(bool)`` when a
    drag of a handle, ring, points or rubber band starts and ends (a window should not re-lay-out around
    the view while one is under way: the drop targets would move under the cursor).
    """

    editsChanged = Signal(list)
    hovered = Signal(int)
    dragActive = Signal(bool)

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
        self._present = np.zeros(0, dtype=bool)
        self._selection = np.zeros(0, dtype=np.int64)
        self._drag: Drag | None = None
        self._empty_press: QPointF | None = None
        self._right_press: QPointF | None = None
        self._hover_idx = -1
        self._hover_px: QPointF | None = None
        self._hover_ring = -1
        self._fitted = False
        self._user_ranged = False  # the user panned or zoomed since the last fit: leave the range alone
        self._menu: QMenu | None = None

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self._build_toolbar())

        self.plot = pg.PlotWidget(background="w")
        self.plot.setAntialiasing(True)
        pi = self.plot.getPlotItem()
        pi.hideButtons()
        pi.setMenuEnabled(False)  # our own menus: pyqtgraph's could switch auto-range on behind our back
        # No grid: pyqtgraph draws it inside the axis items, and replaying it costs more than the 10k points.
        for name in ("left", "bottom"):
            ax = pi.getAxis(name)
            ax.setPen(pg.mkPen("#9a9a9a"))
            ax.setTextPen(pg.mkPen("#6a6a6a"))
        self.set_axis_labels(*AXIS_LABELS)
        self.vb: pg.ViewBox = pi.getViewBox()
        self.vb.setAspectLocked(True)
        self.vb.disableAutoRange()
        self.vb.sigRangeChangedManually.connect(self._on_manual_range)
        lay.addWidget(self.plot, 1)

        self.points = PointScatter()
        self.scatter = self.points.item
        self.plot.addItem(self.scatter)

        self.selection_item = pg.ScatterPlotItem(
            pxMode=True, symbol="o", size=11, brush=None, pen=pg.mkPen("#111111", width=1.6)
        )
        self.hover_item = pg.ScatterPlotItem(
            pxMode=True, symbol="o", size=13, brush=None, pen=pg.mkPen("#111111", width=2.0)
        )
        for z, it in ((25, self.selection_item), (26, self.hover_item)):
            it.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            it.setZValue(z)
            self.plot.addItem(it, ignoreBounds=True)

        self.overlay = OverlayLayer()
        self.overlay.setZValue(20)
        self.plot.addItem(self.overlay, ignoreBounds=True)
        self.markers = ClassMarkers(self.plot)

        self.legend = Legend(self.plot.viewport())

        self._band = QRubberBand(QRubberBand.Shape.Rectangle, self.plot.viewport())
        self._popup = HoverPopup(self)
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
        bar.setStyleSheet(
            "#latentToolbar { background: #f6f6f6; border-bottom: 1px solid #dddddd; }"
            " QToolButton { padding: 2px 8px; border: 1px solid transparent; border-radius: 3px; }"
            " QToolButton:hover { border-color: #c8c8c8; background: #ffffff; }"
            " QToolButton:checked { border-color: #9ab; background: #e3ecf5; }"
        )
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

        self.select_button = button(
            "Select",
            "Rubber-band select points by dragging on empty space (or hold Ctrl while dragging)",
            lambda: self.set_select_mode(self.select_button.isChecked()),
            checkable=True,
        )
        self.undo_button = button("Undo", "Undo the last edit (Ctrl+Z)", self._user_undo)
        self.redo_button = button("Redo", "Redo (Ctrl+Shift+Z or Ctrl+Y)", self._user_redo)
        self.reset_button = button("Reset edits", "Drop all edits made at this pause (undoable)", self._user_reset)
        self.fit_button = button("Fit view", "Zoom to show every point", self.fit)
        self.status_label = _ElidedLabel(bar)
        self.status_label.setStyleSheet("color: #555555;")
        h.addWidget(self.status_label, 1)
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
    def dragging(self) -> bool:
        """Whether a press on a handle, ring, points or rubber band is under way (until its release)."""
        return self._drag is not None

    @property
    def class_names(self) -> list[str]:
        return list(self._names)

    @property
    def colors(self) -> list[tuple[int, int, int]]:
        return list(self._colors)

    @property
    def num_points(self) -> int:
        return 0 if self._z is None else len(self._z)

    @property
    def handle_items(self) -> list[pg.ScatterPlotItem]:
        return self.markers.handles

    @property
    def ring_items(self) -> list[QGraphicsEllipseItem]:
        return self.markers.rings

    def set_axis_labels(self, x: str, y: str) -> None:
        """Name the axes (e.g. "PCA 1" / "PCA 2" when the window knows the projection)."""
        pi = self.plot.getPlotItem()
        style = {"color": "#5a5a5a", "font-size": "8pt"}
        pi.setLabel("bottom", x, **style)
        pi.setLabel("left", y, **style)

    def axis_labels(self) -> tuple[str, str]:
        pi = self.plot.getPlotItem()
        return pi.getAxis("bottom").labelText, pi.getAxis("left").labelText

    def set_snapshot(
        self,
        z: np.ndarray,
        labels: np.ndarray,
        preds: np.ndarray,
        class_names: list[str],
        committed_layout: dict | None = None,
        *,
        keep_edits: bool = False,
    ) -> None:
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
        # A class with no point in the view set has no centre to drag: no handle, ring or label for it.
        self._present = np.bincount(labels, minlength=k)[:k] > 0
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
        self.points.set_styles(labels, self._mis, self._colors, classes_changed)
        if classes_changed or not self.markers.handles:
            self.markers.build(self._colors)
        self._build_legend()
        self._refresh(restyle=True)
        # The range is ours only until the user pans or zooms: the first snapshot is fitted, and a later one
        # only if it no longer fits (features often grow as training goes on). Never during a drag: a
        # snapshot cancels any drag first, and drags never change the range.
        if not self._fitted or (not self._user_ranged and self._escapes_view()):
            self.fit()
            self._fitted = True
        # Repaint the whole plot: after a load or a fork the points, handles and labels can all be somewhere
        # else, and the scene's own dirty regions left pieces of the old picture on screen (seen under X11).
        self.plot.viewport().update()
        self.editsChanged.emit(self._stack.edits)

    def clear(self) -> None:
        """Show nothing: no points, handles, rings, labels, legend or edits (a new run is loading). The next
        snapshot is fitted, as the first one is."""
        self._cancel_drag()
        self._z = None
        self._labels = np.zeros(0, dtype=np.int64)
        self._preds = np.zeros(0, dtype=np.int64)
        self._mis = np.zeros(0, dtype=bool)
        self._names = []
        self._base = self._committed = None
        self._pos = np.zeros((0, 2))
        self._present = np.zeros(0, dtype=bool)
        self._selection = np.zeros(0, dtype=np.int64)
        self._stack = EditStack()
        self._image_cache.clear()
        if self._hover_idx != -1:
            self._hover_idx = -1
            self._popup.hide()
            self.hovered.emit(-1)
        self.points.clear()
        for it in self.markers.handles + self.markers.rings:
            it.setVisible(False)
        self.overlay.set_content([], [], np.zeros((0, 4)), [])
        self.selection_item.setData(x=[], y=[])
        self.hover_item.setData(x=[], y=[])
        self.legend.set_entries([])
        self._fitted = self._user_ranged = False
        self._update_toolbar()
        self.plot.viewport().update()
        self.editsChanged.emit([])

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
        self._push([{"op": "separate", "classes": [int(a), int(b)], "min_distance": md}])

    def merge(self, a: int, b: int) -> None:
        """Merge a and b at the midpoint of their centres (the menu's merge; a drop merges where dropped)."""
        self._push([{"op": "merge", "classes": [int(a), int(b)]}])

    def push_edit(self, edit: dict) -> bool:
        """Push an edit made elsewhere (a script, a strategy button); False (nothing changes) if it is invalid."""
        return self._push([edit])

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
        self.vb.setRange(
            xRange=(lo[0], lo[0] + span[0]), yRange=(lo[1], lo[1] + span[1]), padding=0.05, disableAutoRange=True
        )

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
        d = self._drag
        if d is not None and d.kind == "center" and c in d.members:
            j = d.members.index(c)
            v = d.start_centers[j] + (d.live_center() - d.start_center)
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

    def ring_radius_px(self, c: int) -> float:
        """Class ``c``'s ring radius as drawn, in viewport pixels."""
        return float(self._stack.layout.spreads[c]) * self._px_per_unit()[0]

    def view_to_widget(self, xy: Any) -> QPoint:
        """View (latent) coordinates -> plot viewport pixel (rounded)."""
        return self._view_to_px(float(xy[0]), float(xy[1])).toPoint()

    def widget_to_view(self, pos: QPoint | QPointF) -> tuple[float, float]:
        """Plot viewport pixel -> view (latent) coordinates."""
        inv, _ = self.plot.viewportTransform().inverted()
        scene = inv.map(QPointF(pos))
        v = self.vb.mapSceneToView(scene)
        return float(v.x()), float(v.y())

    def hit_at(self, pos: QPoint | QPointF, points: bool = True) -> tuple[str, int] | None:
        """What a press at viewport pixel ``pos`` would grab: ('handle' | 'ring', class), ('point', index) or None."""
        return self._hit(QPointF(pos), points)

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
        touched = bool(lay.edited is not None and lay.edited[c]) or any(self._labels[i] == c for i in lay.points)
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
        for text, slot, ok in (
            ("Undo", self._user_undo, self._stack.can_undo()),
            ("Redo", self._user_redo, self._stack.can_redo()),
            ("Reset edits", self._user_reset, len(self._stack) > 0),
        ):
            a = menu.addAction(text, slot)
            a.setEnabled(self._editable and ok)
        return menu

    # ------------------------------------------------------------------------------------------ items

    def _icon(self, c: int) -> QIcon:
        pm = QPixmap(12, 12)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(rgb_color(darker(self._colors[c])), 1))
        p.setBrush(QBrush(rgb_color(self._colors[c])))
        p.drawEllipse(1, 1, 10, 10)
        p.end()
        return QIcon(pm)

    def _build_legend(self) -> None:
        entries: list[tuple[str, tuple[int, int, int], str]] = [
            ("class", rgb, self._names[c]) for c, rgb in enumerate(self._colors)
        ]
        if self._mis.any():
            entries.append(("miss", (150, 150, 150), "misclassified"))
        if self._committed is not None:
            entries.append(("ghost", (120, 120, 120), "committed target"))
        self.legend.set_entries(entries)

    # ------------------------------------------------------------------------------------------ drawing

    def _display_positions(self, lay: TargetLayout) -> np.ndarray:
        """Each point's class moved to the edited centre and scaled by the edited spread; moved points where dropped."""
        b = self._base
        assert b is not None and self._z is not None
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
        self.points.show(self._pos, restyle=restyle)
        for c in range(len(self._names)):
            self.markers.place(c, lay.centers[c], float(lay.spreads[c]), bool(self._present[c]))
        self._update_overlay(lay)
        self._update_selection_item()
        self._update_toolbar()

    def _update_overlay(self, lay: TargetLayout, live: np.ndarray | None = None) -> None:
        """Labels, pending-edit arrows, committed ghosts and moved-point lines; ``live``: the class centres as
        drawn during a drag (default: the layout's)."""
        assert self._base is not None and self._z is not None
        content = overlay_content(
            self._base,
            lay,
            lay.centers if live is None else live,
            self._present,
            self._committed,
            self._names,
            self._colors,
            self._z,
            self._pos,
        )
        self.overlay.set_content(*content)

    def _update_selection_item(self) -> None:
        if len(self._selection):
            p = self._pos[self._selection]
            self.selection_item.setData(x=p[:, 0], y=p[:, 1])
        else:
            self.selection_item.setData(x=[], y=[])
        if 0 <= self._hover_idx < len(self._pos):
            p = self._pos[self._hover_idx]
            self.hover_item.setData(x=[p[0]], y=[p[1]])
        else:
            self.hover_item.setData(x=[], y=[])

    # ------------------------------------------------------------------------------------------ geometry

    def _view_to_px(self, x: float, y: float) -> QPointF:
        scene = self.vb.mapViewToScene(QPointF(x, y))
        return self.plot.viewportTransform().map(scene)

    def _px_per_unit(self) -> tuple[float, float]:
        sx, sy = self.vb.viewPixelSize()
        return (1.0 / sx if sx else 1.0), (1.0 / sy if sy else 1.0)

    def _scene(self) -> Scene | None:
        """What the interaction needs of the picture as it stands now (views of the arrays, no copies)."""
        if self._z is None or self._base is None:
            return None
        lay = self._stack.layout
        moved = np.zeros(len(self._pos), dtype=bool)
        if lay.points:
            moved[np.fromiter(lay.points.keys(), dtype=np.int64, count=len(lay.points))] = True
        return Scene(
            centers=lay.centers,
            spreads=lay.spreads,
            group=lay.group,
            present=self._present,
            points=self._pos,
            labels=self._labels,
            moved=moved,
            selection=self._selection,
            scale=self._px_per_unit(),
        )

    def _pointer(self, ev: QMouseEvent) -> Pointer:
        pos = ev.position()
        mods = ev.modifiers()
        return Pointer(
            (pos.x(), pos.y()),
            self.widget_to_view(pos),
            shift=bool(mods & Qt.KeyboardModifier.ShiftModifier),
            ctrl=bool(mods & Qt.KeyboardModifier.ControlModifier),
        )

    def _hit(self, pos: QPointF, points: bool = True) -> tuple[str, int] | None:
        """What is under a viewport pixel, as :func:`interaction.hit_test` orders it, or None."""
        scene = self._scene()
        if scene is None:
            return None
        hit = ix.hit_test(scene, self.widget_to_view(pos), points=points)
        return None if hit is None else hit.as_tuple()

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
        mods = ev.modifiers() & (
            Qt.KeyboardModifier.ControlModifier
            | Qt.KeyboardModifier.ShiftModifier
            | Qt.KeyboardModifier.AltModifier
            | Qt.KeyboardModifier.MetaModifier
        )
        ctrl = Qt.KeyboardModifier.ControlModifier
        shift = Qt.KeyboardModifier.ShiftModifier
        key = ev.key()
        if key == Qt.Key.Key_Z and mods == ctrl:
            return self._user_undo
        if (key == Qt.Key.Key_Z and mods == (ctrl | shift)) or (key == Qt.Key.Key_Y and mods == ctrl):
            return self._user_redo
        if (
            key == Qt.Key.Key_Escape
            and mods == Qt.KeyboardModifier.NoModifier
            and (self._drag is not None or len(self._selection))
        ):
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
        scene = self._scene()
        if scene is None:
            return False
        if ev.button() == Qt.MouseButton.RightButton:
            hit = self._hit(pos, points=False)
            if hit is not None and hit[0] == "handle":
                self._menu = self.build_handle_menu(hit[1])
                self._menu.popup(self.plot.viewport().mapToGlobal(pos.toPoint()))
                return True
            self._right_press = QPointF(pos)
            return False  # a right drag still zooms
        if ev.button() != Qt.MouseButton.LeftButton:
            return False
        self.plot.setFocus(Qt.FocusReason.MouseFocusReason)
        if not self._editable:
            self._update_cursor(pos)
            # Grabbing a handle or ring while training does nothing (the forbidden cursor says why); the
            # background still pans.
            hit = self._hit(pos, points=False)
            return hit is not None
        drag, sel = ix.begin(scene, self._pointer(ev), select_mode=self._select_mode)
        if drag is None:
            self._empty_press = QPointF(pos)
            return False  # pan / zoom stay pyqtgraph's
        self._drag = drag
        if drag.kind == "center":
            self.markers.highlight_handle(drag.cls, True)
        elif drag.kind == "ring":
            self.markers.highlight_ring(drag.cls, True)
        elif drag.kind == "points":
            self._selection = sel
            self._update_selection_item()
            self._update_toolbar()
        elif drag.kind == "rubber":
            self._band.setGeometry(QRect(pos.toPoint(), QSize()))
            self._band.show()
        self.plot.viewport().setCursor(
            Qt.CursorShape.ClosedHandCursor if drag.kind != "rubber" else Qt.CursorShape.CrossCursor
        )
        self.dragActive.emit(True)
        return True

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
        scene = self._scene()
        prev_target = d.merge_target
        ptr = self._pointer(ev)
        if scene is None or not ix.move(d, scene, ptr):
            return True
        if d.kind == "rubber":
            self._band.setGeometry(QRect(QPointF(*d.press.px).toPoint(), pos.toPoint()).normalized())
            return True
        if len(d.idx):
            self._pos[d.idx] = d.live_points()
        lay = self._stack.layout
        if d.kind == "center":
            live = lay.centers.copy()
            delta = d.live_center() - d.start_center
            for j, m in enumerate(d.members):
                live[m] = d.start_centers[j] + delta
                self.markers.place(m, live[m], float(lay.spreads[m]), bool(self._present[m]))
            self._update_overlay(lay, live)
            if d.merge_target != prev_target:
                self.markers.highlight_handle(prev_target, False)
                self.markers.highlight_handle(d.merge_target, True)
        elif d.kind == "ring":
            self.markers.place(d.cls, d.start_center, d.r0 * float(d.value), True)
        self.points.show(self._pos)
        self._update_selection_item()
        return True

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
                if (
                    math.hypot(p.x() - self._empty_press.x(), p.y() - self._empty_press.y()) < DRAG_START
                    and not (ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
                    and len(self._selection)
                ):
                    self.set_selection([])
            self._empty_press = None
            return False
        if ev.button() != Qt.MouseButton.LeftButton:
            return True
        scene = self._scene()
        self._drag = None
        self._unhighlight(d)
        if d.kind == "rubber":
            self._band.hide()
        out = ix.finish(d, scene, self._pointer(ev)) if scene is not None else ix.Outcome([])
        if out.selection is not None:
            self._selection = np.asarray(out.selection, dtype=np.int64)
        pushed = self._push(out.edits) if out.edits else False
        if not pushed:
            self._refresh()
        self._update_cursor(ev.position())
        self.dragActive.emit(False)
        return True

    def _unhighlight(self, d: Drag) -> None:
        self.markers.highlight_handle(d.cls, False)
        self.markers.highlight_handle(d.merge_target, False)
        if d.kind == "ring":
            self.markers.highlight_ring(d.cls, False)

    def _cancel_drag(self) -> None:
        d = self._drag
        if d is None:
            return
        self._drag = None
        self._band.hide()
        self._unhighlight(d)
        self.markers.highlight_ring(d.cls, False)
        self._refresh()
        self.dragActive.emit(False)

    def _update_cursor(self, pos: QPointF | None) -> None:
        vp = self.plot.viewport()
        hit = None if pos is None else self._hit(pos, points=False)
        ring = hit[1] if hit is not None and hit[0] == "ring" else -1
        if ring != self._hover_ring and self._drag is None:
            self.markers.highlight_ring(self._hover_ring, False)
            if self._editable:
                self.markers.highlight_ring(ring, True)
            self._hover_ring = ring
        if hit is None:
            vp.setCursor(
                Qt.CursorShape.CrossCursor if self._select_mode and self._editable else Qt.CursorShape.ArrowCursor
            )
            vp.setToolTip("")
        elif not self._editable:
            vp.setCursor(Qt.CursorShape.ForbiddenCursor)
            vp.setToolTip("Editing is locked while training runs: pause to edit")
        elif hit[0] == "handle":
            vp.setCursor(Qt.CursorShape.OpenHandCursor)
            vp.setToolTip(
                f"{self._names[hit[1]]}: drag to move the class, drop on another centre to merge there, "
                "right-click for more"
            )
        else:
            vp.setCursor(Qt.CursorShape.SizeFDiagCursor)
            vp.setToolTip(f"{self._names[hit[1]]}: drag the ring to grow or shrink the class's spread")

    # ------------------------------------------------------------------------------------------ hover

    def _do_hover(self) -> None:
        if self._hover_px is None or self._drag is not None:
            return
        scene = self._scene()
        if scene is None:
            return
        v = self.widget_to_view(self._hover_px)
        i = ix.nearest_point(scene, v)
        if ix.hit_test(scene, v, points=False) is not None:
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
        except Exception:  # a broken renderer must not break hovering
            img = None
        pm: QPixmap | None = None
        if isinstance(img, QImage) and not img.isNull():
            pm = QPixmap.fromImage(img)
        elif isinstance(img, QPixmap) and not img.isNull():
            pm = img
        if pm is not None:
            w, h = pm.width(), pm.height()
            if max(w, h) < 96:  # small images (8x8 digits, 32x32 CIFAR): crisp nearest-neighbour upscale
                s = max(1, 96 // max(w, h))
                pm = pm.scaled(
                    w * s, h * s, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
                )
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
        return (
            f"<b>{self._names[lab]}</b> <span style='color:#777'>#{i}</span><br>"
            f"predicted: <span style='color:{pc}'><b>{self._names[pred]}</b>{mark}</span>"
        )

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

    def _push(self, edits: list[dict]) -> bool:
        """Push edits as one undoable step; False (and nothing changes) if any is invalid."""
        try:
            self._stack.push_many(edits)
        except (EditError, ValueError):
            self._refresh()
            return False
        self._after_change()
        return True

    def _after_change(self) -> None:
        self._refresh()
        self.editsChanged.emit(self._stack.edits)
