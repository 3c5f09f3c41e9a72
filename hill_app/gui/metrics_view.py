"""Feedback plots, updated once per epoch event: did the edits land, and what did they cost?

Five pyqtgraph plots share one look (white background, the class colours of the latent view, a fixed
colour per loss term): loss terms, train/val accuracy, each class's distance to its target, per-class
validation accuracy (horizontal bars, so long CIFAR-10 names stay readable) and the confusion matrix as a
heat map. Curves are updated with one ``setData`` each; nothing is rebuilt per epoch.

Branches: every branch (``main``, and each fork made by loading a checkpoint) has its own train and val
accuracy curve and its own total-loss curve, in the metric's colour family with a line style, marker and
shade of its own ("val main", "val retry-1" in the legend). A fork's curves start at the epoch of the
checkpoint it was loaded from, at the parent's value there, so a fork reads as a curve leaving another.
The loss terms, target distances, per-class bars and confusion matrix follow the current branch's lineage
(its ancestors up to the fork, then the branch). Curves and legend entries are made once per branch, when it
appears; an epoch costs a ``setData`` on the curves of the branch that changed.

What the plots say: the loss plot's scale line is the *penalty* lambda * |1 - scale| that enters the loss (not
the ratio, which sits near 1 and would flatten every other term); the distance plot names its lines on
hover, draws the edited classes thick and the others thin, zooms to the epochs since the first commit, and
for a class whose points were moved but whose centre was not it shows the mean distance of the moved points
to where they were dropped (what was asked), not the centre's. Every line plot zooms and pans with the mouse,
resets on a double click (or Reset zoom), shows the values under the cursor, and can be smoothed (EMA, as
TensorBoard does); losses can be drawn on a log axis; the figure exports as PNG and the data as CSV.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

FOREGROUND = "#404040"
GRID_ALPHA = 0.18

# One colour per loss term, kept apart from the class colours (those belong to the classes).
LOSS_TERMS: list[tuple[str, str, str]] = [
    ("train_loss", "total", "#222222"),
    ("train_ce", "cross-entropy", "#4c72b0"),
    ("train_center", "centre", "#dd8452"),
    ("train_spread", "spread", "#55a868"),
    ("train_sep", "separation", "#c44e52"),
    ("train_point", "points", "#8172b3"),
    ("scale_penalty", "scale penalty \u03bb|1\u2212scale|", "#937860"),
]
TRAIN_COLOUR, VAL_COLOUR = "#4c72b0", "#dd8452"
TOTAL_COLOUR = "#222222"
# Per branch, in the order branches appear: a line style and a marker (the colour stays the metric's family).
BRANCH_STYLES = (
    Qt.PenStyle.SolidLine,
    Qt.PenStyle.DashLine,
    Qt.PenStyle.DotLine,
    Qt.PenStyle.DashDotLine,
    Qt.PenStyle.DashDotDotLine,
)
BRANCH_SYMBOLS = ("o", "t", "s", "d", "star", "p")
CURRENT_WIDTH, OTHER_WIDTH = 2.2, 1.5
EDIT_LINE_COLOUR = "#b0b0b0"
LEFT_AXIS_PX = 46
CLASS_AXIS_PX = 46
PLOT_MIN_W, PLOT_MIN_H = 150, 120
TITLE_PT = 9.5  # plot titles: "Distance to target" fits a 185 px plot
COLUMN_W = 185  # below this many pixels a plot wraps to the next row (five in a row at 1366 px)
EDITED_WIDTH, UNEDITED_WIDTH = 2.6, 1.0
LEGEND_CHARS = 14  # a branch name longer than this is shortened in the legends (the legend covers curves)


def class_colours(n: int) -> list[QColor]:
    """The class colours of the latent view (palette.py), so a class is the same colour in every plot."""
    from .palette import class_colors

    return [QColor(*rgb) for rgb in class_colors(n)]


def branch_shade(colour: str, i: int) -> QColor:
    """Branch ``i``'s shade of a metric colour: the colour itself for the first branch, then alternately darker
    and lighter, further each round (dark colours such as the total's near-black only get lighter)."""
    c = QColor(colour)
    if i <= 0:
        return c
    step = min(0.6, 0.28 * ((i + 1) // 2))
    dark_base = c.lightnessF() < 0.3
    if i % 2 and not dark_base:  # darker: scale toward black
        return QColor.fromRgbF(c.redF() * (1 - step), c.greenF() * (1 - step), c.blueF() * (1 - step))
    t = step if not dark_base else min(0.7, 0.22 * i)  # lighter: mix toward white
    return QColor.fromRgbF(
        c.redF() + (1 - c.redF()) * t, c.greenF() + (1 - c.greenF()) * t, c.blueF() + (1 - c.blueF()) * t
    )


class _Branch:
    """One branch's epoch records, where it forked from, and its three curves."""

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.index = index
        self.parent: str | None = None
        self.fork_epoch: int | None = None
        self.records: list[dict[str, Any]] = []
        self.curves: dict[str, pg.PlotDataItem] = {}  # "train", "val" (accuracy plot), "total" (loss plot)
        self.dirty = True


def configure_pyqtgraph() -> None:
    """One look for every plot in the app: white background, dark grey text, antialiased lines."""
    pg.setConfigOptions(antialias=True, background="w", foreground=FOREGROUND)


def _style_plot(p: pg.PlotItem, title: str, left: str, bottom: str) -> None:
    p.setTitle(f"<span style='font-size:{TITLE_PT}pt; font-weight:600; color:{FOREGROUND}'>{title}</span>")
    p.setLabel("left", left, **{"font-size": "9pt"})
    p.setLabel("bottom", bottom, **{"font-size": "9pt"})
    p.showGrid(x=True, y=True, alpha=GRID_ALPHA)
    font = QFont()
    font.setPointSizeF(8.5)
    for ax in ("left", "bottom"):
        a = p.getAxis(ax)
        a.enableAutoSIPrefix(False)  # "(x0.001)" on a distance axis reads as noise
        # Major ticks (and grid lines) only: the minor grid made each repaint of the five plots cost ~20 ms of
        # CPU instead of ~7 ms (measured), and these small plots read better with fewer labels anyway.
        a.setStyle(maxTickLevel=0)
        a.setTickFont(font)
        a.setPen(pg.mkPen("#9a9a9a"))
        a.setTextPen(pg.mkPen(FOREGROUND))
    # A fixed axis width: otherwise every new tick label ("0.8" -> "0.75") re-lays-out the plot, and a
    # layout pass of pyqtgraph (hundreds of Qt calls, each handing the GIL to the training thread) can
    # stall the GUI for 100 ms on a busy 2-core machine.
    p.getAxis("left").setWidth(LEFT_AXIS_PX)
    p.setMenuEnabled(False)
    p.hideButtons()


class _MatrixLabels(pg.GraphicsObject):
    """The counts of a k x k matrix drawn in one paint call at a fixed pixel size (100 TextItems cost ~70 ms
    to build and ~10 ms to update; this costs nothing until it is painted)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = np.zeros((0, 0), dtype=np.int64)
        self.light = np.zeros((0, 0), dtype=bool)
        self.font = QFont()
        self.font.setPointSizeF(7.5)

    def set_counts(self, counts: np.ndarray, light: np.ndarray) -> None:
        self.prepareGeometryChange()
        self.counts = np.asarray(counts, dtype=np.int64)
        self.light = np.asarray(light, dtype=bool)
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt name)
        k = self.counts.shape[0]
        return QRectF(0, 0, k, k)

    def paint(self, p: QPainter, *args: Any) -> None:
        k = self.counts.shape[0]
        if not k:
            return
        tr = p.transform()
        cell = tr.map(QPointF(1, 1)) - tr.map(QPointF(0, 0))
        if min(abs(cell.x()), abs(cell.y())) < 12:  # too small to read: leave the colours alone
            return
        p.save()
        p.resetTransform()
        p.setFont(self.font)
        dark, white = QColor("#333333"), QColor("#ffffff")
        w, h = abs(cell.x()), abs(cell.y())
        for i in range(k):
            for j in range(k):
                n = int(self.counts[i, j])
                if not n:
                    continue
                c = tr.map(QPointF(j + 0.5, i + 0.5))
                p.setPen(white if self.light[i, j] else dark)
                p.drawText(QRectF(c.x() - w / 2, c.y() - h / 2, w, h), Qt.AlignmentFlag.AlignCenter, str(n))
        p.restore()


class MetricsView(QWidget):
    """The feedback plots of one run. ``add_epoch`` stores an epoch event; ``refresh`` draws (once per poll)."""

    def __init__(self, parent: QWidget | None = None, columns: int = 5) -> None:
        super().__init__(parent)
        configure_pyqtgraph()
        self.class_names: list[str] = []
        self.colours: list[QColor] = []
        self.epochs: list[dict[str, Any]] = []
        self.commit_epochs: list[float] = []
        self._dirty = False
        self._last_eval: dict[str, Any] | None = None
        self._conf_split = "val"
        self._dist_shown = False
        self.max_columns = columns
        self.columns = 0
        self.smoothing = 0.0
        self.log_losses = False
        self.edited: list[bool] = []  # classes whose centre, spread or pairs were edited
        self.point_classes: list[bool] = []  # classes with moved points and no other edit
        self._asked: dict[tuple[str, int], list[float]] = {}  # (branch, epoch) -> distance of what was asked
        self._dist_zoomed = False
        self._tick_names: dict[tuple[Any, str], tuple[float, list[str]]] = {}  # class-named axes, see _thin_ticks
        self._tick_every: dict[tuple[Any, str], int] = {}

        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 2, 4, 4)
        outer.setSpacing(2)
        bar = QHBoxLayout()
        bar.setSpacing(6)
        self.smooth_spin = QDoubleSpinBox()
        self.smooth_spin.setRange(0.0, 0.95)
        self.smooth_spin.setSingleStep(0.1)
        self.smooth_spin.setDecimals(2)
        self.smooth_spin.setToolTip("exponential moving average of the loss and accuracy curves (0: raw values)")
        self.smooth_spin.valueChanged.connect(self.set_smoothing)
        self.log_check = QCheckBox("log loss")
        self.log_check.setToolTip("draw the loss terms on a logarithmic axis")
        self.log_check.toggled.connect(self.set_log_losses)
        self.reset_btn = QPushButton("Reset zoom")
        self.reset_btn.setToolTip("show all data in every plot (a double click on a plot does the same)")
        self.reset_btn.clicked.connect(self.reset_zoom)
        self.png_btn = QPushButton("Export PNG\u2026")
        self.png_btn.clicked.connect(lambda: self.export_png())
        self.csv_btn = QPushButton("Export CSV\u2026")
        self.csv_btn.setToolTip("every branch's epoch records (losses, accuracies, per-class values, distances)")
        self.csv_btn.clicked.connect(lambda: self.export_csv())
        hint = QLabel("hover: names and values \u00b7 drag: pan \u00b7 wheel: zoom")
        hint.setStyleSheet("color:#9a9a9a; font-size:8.5pt")
        hint.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(QLabel("smoothing"))
        bar.addWidget(self.smooth_spin)
        bar.addWidget(self.log_check)
        bar.addWidget(hint, 1)
        for b in (self.reset_btn, self.png_btn, self.csv_btn):
            b.setStyleSheet("padding: 2px 8px")
            bar.addWidget(b)
        outer.addLayout(bar)
        self.grid = grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        outer.addLayout(grid, 1)
        self.loss_plot = self._plot("Loss terms", "loss", "epoch")
        self.acc_plot = self._plot("Accuracy", "%", "epoch")
        self.dist_plot = self._plot("Distance to target", "distance (view units)", "epoch")
        self.class_plot = self._plot("Class accuracy", "", "val accuracy %")
        self.conf_plot = self._plot("Confusion (val)", "true", "predicted")
        self.plots = [self.loss_plot, self.acc_plot, self.dist_plot, self.class_plot, self.conf_plot]
        for w in self.plots:
            w.setMinimumSize(PLOT_MIN_W, PLOT_MIN_H)
            w.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._reflow(columns)
        self.hovers = {
            name: _Hover(self, w)
            for name, w in (("loss", self.loss_plot), ("accuracy", self.acc_plot), ("distance", self.dist_plot))
        }

        lp = self.loss_plot.getPlotItem()
        self.loss_legend = lp.addLegend(offset=(-4, 4), labelTextSize="8pt", verSpacing=-6)
        # The terms of the current branch's lineage; the total is a curve per branch (see _Branch).
        self.loss_curves = {}
        self.loss_labels = {key: label for key, label, _ in LOSS_TERMS}
        self._in_legend: set[str] = set()
        for key, _label, col in LOSS_TERMS:
            if key == "train_loss":
                continue
            # Not named: a term joins the legend only once it is non-zero (the human terms after a commit).
            self.loss_curves[key] = lp.plot([], [], pen=pg.mkPen(col, width=1.6), connect="finite")

        ap = self.acc_plot.getPlotItem()
        self.acc_legend = ap.addLegend(offset=(-4, -4), labelTextSize="8pt", verSpacing=-6)
        ap.setYRange(0, 100, padding=0.02)
        self.branches: dict[str, _Branch] = {}
        self.current_branch = "main"
        self._pens_dirty = False

        self.dist_curves: list[pg.PlotDataItem] = []
        self.dist_hint = pg.TextItem(
            html="<div style='text-align:center; color:#9a9a9a'>no targets yet:<br>commit edits<br>at a pause</div>",
            anchor=(0.5, 0.5),
        )
        self.dist_plot.getPlotItem().addItem(self.dist_hint, ignoreBounds=True)
        self.dist_hint.setPos(0.5, 0.5)
        self.dist_plot.getPlotItem().getViewBox().setRange(xRange=(0, 1), yRange=(0, 1), padding=0)

        cp = self.class_plot.getPlotItem()
        self.bars: pg.BarGraphItem | None = None
        cp.setXRange(0, 100, padding=0.02)
        cp.invertY(True)
        cp.getAxis("left").setWidth(CLASS_AXIS_PX)
        # The mean as a dashed line with its value: inside the plot, so updating it never re-lays-out the plot.
        self.mean_line = pg.InfiniteLine(
            pos=0,
            angle=90,
            pen=pg.mkPen("#555555", width=1, style=Qt.PenStyle.DashLine),
            label="",
            labelOpts={
                "position": 0.04,
                "color": "#333333",
                "fill": pg.mkBrush(255, 255, 255, 220),
                "anchors": [(1, 0), (1, 0)],
            },
        )
        self.mean_line.setZValue(10)
        self.mean_line.setVisible(False)
        cp.addItem(self.mean_line, ignoreBounds=True)

        fp = self.conf_plot.getPlotItem()
        self.conf_image = pg.ImageItem()
        self.conf_image.setColorMap(
            pg.ColorMap([0.0, 0.5, 1.0], [QColor("#f7fbff"), QColor("#6baed6"), QColor("#08306b")])
        )
        fp.addItem(self.conf_image)
        fp.invertY(True)
        fp.setAspectLocked(True)
        self.conf_labels = _MatrixLabels()
        fp.addItem(self.conf_labels)
        for plot in (self.class_plot, self.conf_plot):
            vb = plot.getPlotItem().getViewBox()
            vb.sigResized.connect(self._thin_ticks)
            vb.sigRangeChanged.connect(self._thin_ticks)
        for plot in (self.loss_plot, self.acc_plot):
            plot.getPlotItem().getViewBox().sigResized.connect(self._fit_legends)
        self.edit_lines: list[pg.InfiniteLine] = []

    # ------------------------------------------------------------------ building

    def _plot(self, title: str, left: str, bottom: str) -> pg.PlotWidget:
        w = pg.PlotWidget(background="w")
        _style_plot(w.getPlotItem(), title, left, bottom)
        return w

    def _reflow(self, columns: int) -> None:
        """Lay the plots out in ``columns`` columns (wrapping to more rows when the dock is narrow)."""
        columns = max(1, min(self.max_columns, columns))
        if columns == self.columns:
            return
        self.columns = columns
        for w in self.plots:
            self.grid.removeWidget(w)
        for i, w in enumerate(self.plots):
            self.grid.addWidget(w, i // columns, i % columns)
        for c in range(self.max_columns):
            self.grid.setColumnStretch(c, 1 if c < columns else 0)

    def resizeEvent(self, ev: Any) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(ev)
        self._reflow(max(2, self.width() // COLUMN_W))

    def set_class_names(self, names: Sequence[str]) -> None:
        """A new run: reset every plot and build the per-class items (curves, bars, matrix labels)."""
        self.clear()
        self.class_names = list(names)
        k = len(self.class_names)
        self.colours = class_colours(k)
        dp = self.dist_plot.getPlotItem()
        for c in self.dist_curves:
            dp.removeItem(c)
        self.dist_curves = [
            dp.plot(
                [],
                [],
                pen=pg.mkPen(self.colours[c], width=1.8),
                connect="finite",
                symbol="o",
                symbolSize=4,
                symbolBrush=self.colours[c],
                symbolPen=None,
                name=self.class_names[c],
            )
            for c in range(k)
        ]
        cp = self.class_plot.getPlotItem()
        ax = cp.getAxis("left")
        ax.setWidth(_label_width(ax, self.class_names))
        cp.setYRange(-0.6, k - 0.4, padding=0)
        fp = self.conf_plot.getPlotItem()
        # Rows get names (shortened); columns get names only when they are as short as digits' "0".."9",
        # else their class index, so a dozen columns never print over each other.
        short = [n if len(n) <= 9 else n[:8] + "." for n in self.class_names]
        cols_named = all(len(n) <= 2 for n in self.class_names)
        fp.getAxis("left").setWidth(_label_width(fp.getAxis("left"), short, extra=28))
        self._tick_names = {
            (self.class_plot, "left"): (0.0, list(self.class_names)),
            (self.conf_plot, "left"): (0.5, short),
            (self.conf_plot, "bottom"): (0.5, [n if cols_named else str(i) for i, n in enumerate(short)]),
        }
        self._tick_every = {}
        fp.setLabel("bottom", "predicted" if cols_named else "predicted (class index)", **{"font-size": "9pt"})
        self.conf_labels.set_counts(np.zeros((k, k)), np.zeros((k, k)))
        self.conf_image.setImage(np.zeros((k, k)), levels=(0, 1))
        fp.setRange(xRange=(0, k), yRange=(0, k), padding=0.02)
        self._thin_ticks()

    def _fit_legends(self, *_: Any) -> None:
        """A legend is shown only where it fits inside its plot: in a small plot it would cover the curves and
        run out over the axis. The values under the cursor name every curve either way."""
        for plot, legend in ((self.loss_plot, self.loss_legend), (self.acc_plot, self.acc_legend)):
            vb = plot.getPlotItem().getViewBox()
            legend.updateSize()
            fits = legend.width() + 8 <= vb.width() * 0.75 and legend.height() + 8 <= vb.height()
            if legend.isVisible() != fits:
                legend.setVisible(fits)

    def legend_shown(self, which: str) -> bool:
        """Whether the "loss" or "accuracy" legend is on screen."""
        return {"loss": self.loss_legend, "accuracy": self.acc_legend}[which].isVisible()

    def _thin_ticks(self, *_: Any) -> None:
        """Name every class on the per-class and confusion axes when there is room, else every n-th one, so
        the labels never print over each other in a small plot (they are set again only when n changes)."""
        for (plot, side), (offset, names) in self._tick_names.items():
            if not names:
                continue
            vb = plot.getPlotItem().getViewBox()
            a, b = vb.mapViewToScene(QPointF(0, 0)), vb.mapViewToScene(QPointF(1, 1))
            ax = plot.getPlotItem().getAxis(side)
            fm = QFontMetrics(ax.style.get("tickFont") or QFont())
            if side == "left":
                step_px, need = abs(b.y() - a.y()), fm.height()
            else:
                step_px, need = abs(b.x() - a.x()), max(fm.horizontalAdvance(n) for n in names) + 6
            every = max(1, math.ceil(need / step_px)) if step_px > 0 else 1
            if self._tick_every.get((plot, side)) == every:
                continue
            self._tick_every[(plot, side)] = every
            ax.setTicks([[(i + offset, n) for i, n in enumerate(names) if i % every == 0]])

    def clear(self) -> None:
        """Forget the run's history (a new run starts)."""
        for key in list(self._in_legend):
            self.loss_legend.removeItem(self.loss_curves[key])
        self._in_legend.clear()
        for br in self.branches.values():
            for kind, c in br.curves.items():
                (self.loss_legend if kind == "total" else self.acc_legend).removeItem(c)
                (self.loss_plot if kind == "total" else self.acc_plot).getPlotItem().removeItem(c)
        self.branches = {}
        self.current_branch = "main"
        self.epochs = []
        self.commit_epochs = []
        self._last_eval = None
        for c in [*self.loss_curves.values(), *self.dist_curves]:
            c.setData([], [])
        for line in self.edit_lines:
            for p in (self.loss_plot, self.acc_plot, self.dist_plot):
                p.getPlotItem().removeItem(line)
        self.edit_lines = []
        self.dist_hint.setVisible(True)
        self._dist_shown = False
        self._dist_zoomed = False
        self.edited = []
        self.point_classes = []
        self._asked = {}
        if self.bars is not None:
            self.class_plot.getPlotItem().removeItem(self.bars)
            self.bars = None

    # ------------------------------------------------------------------ data in

    def add_epoch(self, m: dict[str, Any]) -> None:
        """Store one epoch event of its branch (``m["branch"]``, else main). Within a branch, an epoch at or
        before one already stored (a run resumed after a crash) replaces the later history."""
        e = m.get("epoch")
        if not isinstance(e, (int, float)):
            return
        name = str(m.get("branch") or "main")
        br = self._branch(name)
        br.records = [r for r in br.records if r["epoch"] < e]
        br.records.append(m)
        br.dirty = True
        for other in self.branches.values():  # forks anchored on this branch at or after e move with it
            if other.parent == name and other.fork_epoch is not None and other.fork_epoch >= e:
                other.dirty = True
        if name == self.current_branch:
            self.epochs = [r for r in self.epochs if r["epoch"] < e]
            self.epochs.append(m)
        else:
            self.set_current_branch(name)
        self._last_eval = None
        self._dirty = True

    def add_branch(self, name: str, parent: str | None, fork_epoch: int | None) -> None:
        """A branch forked from ``parent``'s checkpoint at ``fork_epoch`` (completed epochs): its curves start
        there, at the parent's value. Calling it again for a known branch only fills in a missing origin."""
        br = self._branch(name)
        if br.parent is None and parent is not None and parent != name:
            br.parent = parent
            br.fork_epoch = int(fork_epoch) if isinstance(fork_epoch, (int, float)) else None
            br.dirty = True
            if name == self.current_branch:
                self.epochs = self._lineage(name)
            self._dirty = True

    def set_current_branch(self, name: str) -> None:
        """Training continues on ``name`` (a checkpoint was loaded): the per-lineage plots follow it, and its
        curves are drawn a little thicker than the others."""
        name = str(name or "main")
        if name == self.current_branch and name in self.branches:
            return
        self._branch(name)
        self.current_branch = name
        self.epochs = self._lineage(name)
        self._pens_dirty = True
        self._last_eval = None
        self._dirty = True

    def branch_names(self) -> list[str]:
        return list(self.branches)

    def branch_series(self, name: str, key: str = "val_accuracy") -> tuple[np.ndarray, np.ndarray]:
        """The epochs and values a branch's curve shows for ``key``: the fork point (the parent's record at the
        fork epoch), then the branch's own epochs."""
        br = self.branches[name]
        rows = list(br.records)
        anchor = self._anchor(br)
        if anchor is not None and (not rows or rows[0]["epoch"] > anchor["epoch"]):
            rows.insert(0, anchor)
        x = np.array([r["epoch"] for r in rows], dtype=float)
        y = np.array([_num(r.get(key)) for r in rows], dtype=float)
        return x, y

    @property
    def train_acc(self) -> pg.PlotDataItem:
        """The current branch's train accuracy curve."""
        return self._branch(self.current_branch).curves["train"]

    @property
    def val_acc(self) -> pg.PlotDataItem:
        """The current branch's val accuracy curve."""
        return self._branch(self.current_branch).curves["val"]

    # ------------------------------------------------------------------ branches

    def _branch(self, name: str) -> _Branch:
        """The branch's record, creating its three curves and legend entries the first time (never per epoch)."""
        br = self.branches.get(name)
        if br is not None:
            return br
        br = _Branch(name, len(self.branches))
        self.branches[name] = br
        i = br.index
        style, symbol = BRANCH_STYLES[i % len(BRANCH_STYLES)], BRANCH_SYMBOLS[i % len(BRANCH_SYMBOLS)]
        ap, lp = self.acc_plot.getPlotItem(), self.loss_plot.getPlotItem()
        for kind, colour, plot in (("train", TRAIN_COLOUR, ap), ("val", VAL_COLOUR, ap), ("total", TOTAL_COLOUR, lp)):
            shade = branch_shade(colour, i)
            width = CURRENT_WIDTH if name == self.current_branch else OTHER_WIDTH
            c = plot.plot(
                [],
                [],
                pen=pg.mkPen(shade, width=width, style=style),
                connect="finite",
                symbol=symbol if kind != "total" else None,
                symbolSize=5 if i else 4,
                symbolBrush=shade,
                symbolPen=None,
            )
            c.setZValue(2 if name == self.current_branch else 1)
            br.curves[kind] = c
        self.acc_legend.addItem(br.curves["train"], "train")
        self.acc_legend.addItem(br.curves["val"], "val")
        self.loss_legend.addItem(br.curves["total"], "total")
        self._relabel_branches()
        self._fit_legends()
        return br

    def _relabel_branches(self) -> None:
        """One branch: "train", "val", "total". Several: "train main", "val retry-1", ... (one column: two
        would be wider than a small plot)."""
        many = len(self.branches) > 1
        for br in self.branches.values():
            for kind, c in br.curves.items():
                legend = self.loss_legend if kind == "total" else self.acc_legend
                label = legend.getLabel(c)
                if label is not None:  # the legend sits over the curves: long names are shortened there
                    label.setText(f"{kind} {_short(br.name)}" if many else kind)

    def _lineage(self, name: str, _seen: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """The records the current-branch plots show: the parent's lineage up to the fork epoch, then the
        branch's own."""
        br = self.branches.get(name)
        if br is None:
            return []
        own = list(br.records)
        if br.parent is None or br.fork_epoch is None or br.parent in _seen or br.parent not in self.branches:
            return own
        first = own[0]["epoch"] if own else math.inf
        base = [
            r for r in self._lineage(br.parent, _seen | {name}) if r["epoch"] <= br.fork_epoch and r["epoch"] < first
        ]
        return base + own

    def _anchor(self, br: _Branch) -> dict[str, Any] | None:
        if br.parent is None or br.fork_epoch is None or br.parent not in self.branches:
            return None
        for r in reversed(self._lineage(br.parent, frozenset({br.name}))):
            if r["epoch"] == br.fork_epoch:
                return r
        return None

    def _draw_branches(self) -> None:
        """setData on the curves of branches that changed; pens only when the current branch changed."""
        for br in self.branches.values():
            if self._pens_dirty:
                current = br.name == self.current_branch
                for c in br.curves.values():
                    pen = pg.mkPen(c.opts["pen"])
                    pen.setWidthF(CURRENT_WIDTH if current else OTHER_WIDTH)
                    c.setPen(pen)
                    c.setZValue(2 if current else 1)
            if not br.dirty:
                continue
            br.dirty = False
            x, train = self.branch_series(br.name, "train_accuracy")
            _, val = self.branch_series(br.name, "val_accuracy")
            _, total = self.branch_series(br.name, "train_loss")
            br.curves["train"].setData(x, 100 * self._smooth(train))
            br.curves["val"].setData(x, 100 * self._smooth(val))
            br.curves["total"].setData(x, self._loss_values(self._smooth(total)))
        self._pens_dirty = False

    def add_commit(self, after_epoch: int) -> None:
        """Edits were committed after ``after_epoch`` epochs: a dashed line between that epoch and the next."""
        x = after_epoch + 0.5
        if x in self.commit_epochs:
            return
        self.commit_epochs.append(x)
        for p in (self.loss_plot, self.acc_plot, self.dist_plot):
            line = pg.InfiniteLine(
                pos=x,
                angle=90,
                pen=pg.mkPen(EDIT_LINE_COLOUR, width=1, style=Qt.PenStyle.DashLine),
                label="edit",
                labelOpts={"position": 0.93, "color": "#8a8a8a"},
            )
            p.getPlotItem().addItem(line, ignoreBounds=True)
            self.edit_lines.append(line)

    def show_evaluation(self, m: dict[str, Any]) -> None:
        """An on-demand evaluation (val or test): show its per-class accuracy and confusion at once."""
        split = m.get("split", "val")
        self._last_eval = {
            "per_class": m.get(f"{split}_per_class_accuracy"),
            "confusion": m.get(f"{split}_confusion"),
            "split": split,
        }
        self._dirty = True

    # ------------------------------------------------------------------ drawing

    def refresh(self) -> bool:
        """Redraw from the stored epochs (a handful of setData calls) if something changed; True if it drew."""
        if not self._dirty:
            return False
        self._dirty = False
        ep = np.array([r["epoch"] for r in self.epochs], dtype=float)

        def col(key: str) -> np.ndarray:
            return np.array([_num(r.get(key)) for r in self.epochs], dtype=float)

        self._draw_branches()
        for key, curve in self.loss_curves.items():
            y = scale_penalty(self.epochs) if key == "scale_penalty" else col(key)
            # Terms that never left zero (no edits yet) stay out of the plot and the legend.
            shown = bool(np.nanmax(np.abs(y)) > 0) if len(y) and np.isfinite(y).any() else False
            if shown:
                curve.setData(ep, self._loss_values(self._smooth(y)))
            elif key in self._in_legend:
                curve.setData([], [])
            if shown and key not in self._in_legend:
                self.loss_legend.addItem(curve, self.loss_labels[key])
                self._in_legend.add(key)
            elif not shown and key in self._in_legend:
                self.loss_legend.removeItem(curve)
                self._in_legend.discard(key)
        self._fit_legends()
        self._draw_distances(ep)

        k = len(self.class_names)
        per_class = conf = None
        title_split = "val"
        if self._last_eval is not None:
            per_class, conf, title_split = (
                self._last_eval["per_class"],
                self._last_eval["confusion"],
                self._last_eval["split"],
            )
        elif self.epochs:
            per_class = self.epochs[-1].get("val_per_class_accuracy")
            conf = self.epochs[-1].get("val_confusion")
        if isinstance(per_class, list) and len(per_class) == k:
            self._draw_bars(np.array([_num(v) for v in per_class]) * 100)
        if isinstance(conf, list) and len(conf) == k:
            self._draw_confusion(np.asarray(conf, dtype=float), title_split)
        return True

    # ------------------------------------------------------------------ distances to the targets

    def add_snapshot(self, snap: dict[str, Any]) -> None:
        """A snapshot with a committed layout: which classes were edited, and how far the moved points are from
        where they were dropped (stored for the epoch record of the same branch and epoch)."""
        lay = snap.get("layout")
        if not isinstance(lay, dict):
            return
        k = len(self.class_names)
        edited = [bool(v) for v in (lay.get("edited") or [])]
        asked, point_only = asked_distances(snap, k)
        if len(edited) == k and (edited != self.edited or point_only != self.point_classes):
            self.edited, self.point_classes = edited, point_only
            self._restyle_distances()
        if asked is not None and isinstance(snap.get("epoch"), int):
            self._asked[(str(snap.get("branch") or "main"), int(snap["epoch"]))] = asked
            self._dirty = True

    def _restyle_distances(self) -> None:
        for c, curve in enumerate(self.dist_curves):
            strong = (c < len(self.edited) and self.edited[c]) or (
                c < len(self.point_classes) and self.point_classes[c]
            )
            col = QColor(self.colours[c])
            if not strong and any(self.edited):
                col.setAlpha(110)
            curve.setPen(
                pg.mkPen(
                    col,
                    width=EDITED_WIDTH if strong else UNEDITED_WIDTH,
                    style=Qt.PenStyle.DashLine
                    if c < len(self.point_classes) and self.point_classes[c]
                    else Qt.PenStyle.SolidLine,
                )
            )
            curve.setSymbolBrush(col)
            curve.setZValue(3 if strong else 1)

    def distance_matrix(self) -> np.ndarray:
        """(epochs, K) distances as plotted: the centre's, or for a point-edited class the moved points'."""
        k = len(self.class_names)
        d = np.full((len(self.epochs), k), np.nan)
        for i, r in enumerate(self.epochs):
            td = r.get("target_distance")
            if isinstance(td, list) and len(td) == k:
                d[i] = [_num(v) for v in td]
            asked = self._asked.get((str(r.get("branch") or "main"), int(r["epoch"])))
            if asked is not None and isinstance(td, list):
                for c in range(k):
                    if c < len(self.point_classes) and self.point_classes[c] and math.isfinite(asked[c]):
                        d[i, c] = asked[c]
        return d

    def _draw_distances(self, ep: np.ndarray) -> None:
        k = len(self.class_names)
        if not (k and self.dist_curves):
            return
        d = self.distance_matrix()
        have = bool(np.isfinite(d).any())
        if not (have or self._dist_shown):  # nothing to clear before the first commit: skip 10 setData calls
            return
        self.dist_hint.setVisible(not have)
        for c, curve in enumerate(self.dist_curves):
            curve.setData(ep, d[:, c]) if have else curve.setData([], [])
        if have and not self._dist_zoomed:
            self._zoom_distances(ep, d)
        self._dist_shown = have

    def _zoom_distances(self, ep: np.ndarray, d: np.ndarray) -> None:
        """The epochs since the first commit, and the distances there (not the whole run's empty start)."""
        rows = np.isfinite(d).any(axis=1)
        first = min(self.commit_epochs) if self.commit_epochs else float(ep[rows][0]) - 0.5
        x1 = float(ep[rows][-1]) + 0.5
        vals = d[rows][np.isfinite(d[rows])]
        vb = self.dist_plot.getPlotItem().getViewBox()
        vb.setRange(xRange=(first, max(x1, first + 1)), yRange=(0, float(vals.max()) * 1.08 or 1.0), padding=0)

    # ------------------------------------------------------------------ habits: smoothing, log axis, zoom, export

    def set_smoothing(self, weight: float) -> None:
        """EMA weight for the loss and accuracy curves (0 = raw)."""
        self.smoothing = float(weight)
        if abs(self.smooth_spin.value() - self.smoothing) > 1e-9:
            self.smooth_spin.setValue(self.smoothing)
        for br in self.branches.values():
            br.dirty = True
        self._dirty = True
        self.refresh()

    def set_log_losses(self, on: bool) -> None:
        self.log_losses = bool(on)
        if self.log_check.isChecked() != self.log_losses:
            self.log_check.setChecked(self.log_losses)
        self.loss_plot.getPlotItem().setLogMode(y=self.log_losses)
        for br in self.branches.values():
            br.dirty = True
        self._dirty = True
        self.refresh()
        self.loss_plot.getPlotItem().enableAutoRange()

    def _smooth(self, y: np.ndarray) -> np.ndarray:
        return ema(y, self.smoothing) if self.smoothing > 0 else y

    def _loss_values(self, y: np.ndarray) -> np.ndarray:
        """On a log axis, values <= 0 are gaps (pyqtgraph would warn on log10 of them)."""
        if not self.log_losses:
            return y
        y = np.array(y, dtype=float)
        y[~(y > 0)] = np.nan
        return y

    def reset_zoom(self) -> None:
        """Every plot shows all its data again (the distance plot: the epochs since the first commit)."""
        for w in (self.loss_plot, self.acc_plot, self.class_plot, self.conf_plot):
            w.getPlotItem().getViewBox().enableAutoRange()
        self.acc_plot.getPlotItem().setYRange(0, 100, padding=0.02)
        self._dist_zoomed = False
        ep = np.array([r["epoch"] for r in self.epochs], dtype=float)
        d = self.distance_matrix() if self.class_names else np.zeros((0, 0))
        if d.size and np.isfinite(d).any():
            self._zoom_distances(ep, d)

    def note_user_zoom(self, plot: pg.PlotWidget) -> None:
        if plot is self.dist_plot:
            self._dist_zoomed = True

    def curve_label(self, curve: Any) -> str | None:
        """The name a hovered curve goes by (None: not a named series)."""
        for key, c in self.loss_curves.items():
            if c is curve:
                return self.loss_labels[key]
        for c, dc in enumerate(self.dist_curves):
            if dc is curve:
                what = " (moved points)" if c < len(self.point_classes) and self.point_classes[c] else ""
                star = " \u2605" if c < len(self.edited) and self.edited[c] else ""
                return f"{self.class_names[c]}{what}{star}"
        many = len(self.branches) > 1
        for br in self.branches.values():
            for kind, bc in br.curves.items():
                if bc is curve:
                    return f"{kind} {br.name}" if many else kind
        return None

    def csv_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Every branch's epoch records, flattened: per-class lists become one column per class."""
        k = len(self.class_names)
        scalar: dict[str, None] = {}
        lists: dict[str, None] = {}
        for br in self.branches.values():
            for r in br.records:
                for key, v in r.items():
                    if isinstance(v, list) and len(v) == k and key != "val_confusion":
                        lists.setdefault(key)
                    elif isinstance(v, (int, float, str, bool)) and key not in ("branch", "seq", "type"):
                        scalar.setdefault(key)
        first = [c for c in ("epoch", "step") if c in scalar]
        cols = ["branch", *first, *[c for c in scalar if c not in first], "scale_penalty"]
        names = [n.replace(",", " ") for n in self.class_names]
        list_cols = [(key, c) for key in lists for c in range(k)]
        header = cols + [f"{key}[{names[c]}]" for key, c in list_cols] + [f"asked_distance[{n}]" for n in names]
        rows: list[list[Any]] = []
        for br in self.branches.values():
            pen = scale_penalty(br.records)
            for i, r in enumerate(br.records):
                row: list[Any] = [br.name] + [r.get(c, "") for c in cols[1:-1]]
                row.append("" if not math.isfinite(pen[i]) else float(pen[i]))
                for key, c in list_cols:
                    v = r.get(key)
                    row.append(v[c] if isinstance(v, list) and len(v) == k else "")
                asked = self._asked.get((br.name, int(r["epoch"])))
                row += [asked[c] if asked is not None and math.isfinite(asked[c]) else "" for c in range(k)]
                rows.append(row)
        return header, rows

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export the plotted data", "metrics.csv", "CSV (*.csv)")
            if not path:
                return None
        header, rows = self.csv_rows()
        p = Path(path)
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        return p

    def export_png(self, path: str | Path | None = None) -> Path | None:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export the figure", "feedback.png", "PNG (*.png)")
            if not path:
                return None
        p = Path(path)
        if not self.grab().save(str(p), "PNG"):
            raise OSError(f"{p}: cannot write the PNG file")
        return p

    def _draw_bars(self, acc: np.ndarray) -> None:
        cp = self.class_plot.getPlotItem()
        k = len(acc)
        brushes = [pg.mkBrush(c) for c in self.colours]
        if self.bars is None:
            self.bars = pg.BarGraphItem(
                x0=np.zeros(k),
                y=np.arange(k),
                height=0.7,
                width=np.nan_to_num(acc),
                brushes=brushes,
                pen=pg.mkPen(None),
            )
            cp.addItem(self.bars)
        else:
            self.bars.setOpts(width=np.nan_to_num(acc))
        mean = float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")
        self.mean_line.setVisible(math.isfinite(mean))
        if math.isfinite(mean):
            self.mean_line.setValue(mean)
            self.mean_line.label.setFormat(f"mean {mean:.1f}")

    def _draw_confusion(self, conf: np.ndarray, split: str) -> None:
        rows = conf.sum(axis=1, keepdims=True)
        norm = conf / np.maximum(rows, 1)
        # ImageItem is column-major (image[x, y]); x = predicted, y = true.
        self.conf_image.setImage(norm.T, levels=(0, 1), autoLevels=False)
        self.conf_labels.set_counts(conf, norm > 0.55)
        if split != self._conf_split:  # a title change re-lays-out the plot: only when it changes
            self._conf_split = split
            self.conf_plot.getPlotItem().setTitle(
                f"<span style='font-size:{TITLE_PT}pt; font-weight:600; color:{FOREGROUND}'>Confusion ({split})</span>"
            )


def ema(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: s_t = w s_{t-1} + (1 - w) y_t, debiased, skipping NaN gaps."""
    y = np.asarray(y, dtype=float)
    out = np.full_like(y, np.nan)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(y):
        if not math.isfinite(v):
            continue
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


def scale_penalty(records: Sequence[dict[str, Any]]) -> np.ndarray:
    """lambda * |1 - scale| per epoch, the term that enters the loss; NaN where the scale term was off.

    Uses the engine's ``train_scale_penalty`` when the record has it, else the epoch's mean scale and lambda
    (exact when the batches' scales sit on one side of 1, which they do in practice)."""
    out = np.full(len(records), np.nan)
    for i, r in enumerate(records):
        pen = r.get("train_scale_penalty")
        if isinstance(pen, (int, float)) and not isinstance(pen, bool):
            out[i] = float(pen)
            continue
        sc, lam = _num(r.get("train_scale")), _num(r.get("lam"))
        if math.isfinite(sc) and sc > 0 and math.isfinite(lam):  # scale 0: no targets, the term was off
            out[i] = lam * abs(1.0 - sc)
    return out


def asked_distances(snap: dict[str, Any], k: int) -> tuple[list[float] | None, list[bool]]:
    """Per class, the mean distance of its moved points to where they were dropped (NaN for classes without
    moved points), and which classes have moved points but no centre, spread or pair edit."""
    lay = snap.get("layout")
    pts = lay.get("points") if isinstance(lay, dict) else None
    edited = [bool(v) for v in (lay.get("edited") or [])] if isinstance(lay, dict) else []
    if not pts or k == 0:
        return None, [False] * k
    z = np.asarray(snap["z"], dtype=float)
    labels = np.asarray(snap["labels"]).astype(int)
    idx = np.array([int(i) for i in pts], dtype=int)
    to = np.array([pts[i] for i in pts], dtype=float).reshape(-1, 2)
    ok = (idx >= 0) & (idx < len(z))
    idx, to = idx[ok], to[ok]
    dist = np.linalg.norm(z[idx] - to, axis=1)
    cls = labels[idx]
    sums = np.bincount(cls, weights=dist, minlength=k)[:k]
    counts = np.bincount(cls, minlength=k)[:k]
    asked = [float(sums[c] / counts[c]) if counts[c] else float("nan") for c in range(k)]
    point_only = [bool(counts[c]) and not (c < len(edited) and edited[c]) for c in range(k)]
    return asked, point_only


class _Hover:
    """Values under the cursor: the nearest epoch of every named curve of one plot, in a box by the cursor."""

    def __init__(self, view: MetricsView, plot: pg.PlotWidget) -> None:
        self.view, self.plot = view, plot
        self.text = pg.TextItem(anchor=(0, 1), fill=pg.mkBrush(255, 255, 255, 230), border=pg.mkPen("#c0c0c0"))
        self.text.setZValue(100)
        self.text.setVisible(False)
        plot.getPlotItem().addItem(self.text, ignoreBounds=True)
        self.last = ""
        plot.scene().sigMouseMoved.connect(self.moved)
        vb = plot.getPlotItem().getViewBox()
        vb.sigRangeChangedManually.connect(lambda *_: view.note_user_zoom(plot))
        plot.scene().sigMouseClicked.connect(self.clicked)

    def clicked(self, ev: Any) -> None:
        """A double click on the plot resets its zoom."""
        if not ev.double() or not self.plot.getPlotItem().sceneBoundingRect().contains(ev.scenePos()):
            return
        if self.plot is self.view.dist_plot:
            self.view.reset_zoom()
        else:
            self.plot.getPlotItem().getViewBox().enableAutoRange()

    def values_at(self, x: float) -> tuple[float | None, list[tuple[str, float]]]:
        """The epoch nearest to ``x`` that some curve has, and (label, value) of every curve there."""
        best = None
        rows: list[tuple[str, float]] = []
        items = [c for c in self.plot.getPlotItem().listDataItems() if c.isVisible()]
        xs = [c.getData()[0] for c in items]
        cand = [float(a[np.nanargmin(np.abs(a - x))]) for a in xs if a is not None and len(a)]
        if not cand:
            return None, []
        best = min(cand, key=lambda v: abs(v - x))
        log = self.view.log_losses and self.plot is self.view.loss_plot
        for c, cx in zip(items, xs):
            label = self.view.curve_label(c)
            if label is None or cx is None or not len(cx):
                continue
            j = np.nonzero(cx == best)[0]
            if not len(j):
                continue
            y = c.getData()[1][j[0]]
            if y is not None and math.isfinite(y):
                rows.append((label, float(10**y if log else y)))
        return best, rows

    def moved(self, pos: Any) -> None:
        pi = self.plot.getPlotItem()
        if not pi.sceneBoundingRect().contains(pos):
            self.text.setVisible(False)
            return
        p = pi.getViewBox().mapSceneToView(pos)
        epoch, rows = self.values_at(p.x())
        if epoch is None or not rows:
            self.text.setVisible(False)
            return
        rows.sort(key=lambda r: -r[1])
        body = "<br>".join(f"{r[0]}: {r[1]:.4g}" for r in rows[:12])
        more = f"<br>\u2026 {len(rows) - 12} more" if len(rows) > 12 else ""
        self.last = f"epoch {epoch:g}: " + ", ".join(f"{r[0]} {r[1]:.4g}" for r in rows)
        self.text.setHtml(f"<div style='font-size:8pt; color:#222'><b>epoch {epoch:g}</b><br>{body}{more}</div>")
        self.text.setPos(p.x(), p.y())
        self.text.setVisible(True)


def _label_width(axis: pg.AxisItem, labels: Sequence[str], extra: int = 14) -> int:
    """A left axis wide enough for its longest tick label (plus its title), fixed so it never re-lays-out."""
    fm = QFontMetrics(axis.style.get("tickFont") or QFont())
    longest = max((fm.horizontalAdvance(n) for n in labels), default=0)
    return int(min(150, max(LEFT_AXIS_PX, longest + extra)))


def _short(name: str, n: int = LEGEND_CHARS) -> str:
    """A branch name as the legends show it: at most ``n`` characters (the hover box names it in full)."""
    return name if len(name) <= n else name[: n - 1] + "\u2026"


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")
