"""PNG figures for the study report, drawn with QPainter onto a QImage (Qt's offscreen platform; no window).

This is the only module of ``hill_app.studies`` that imports Qt, and only when a figure is drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Line colours for series that are not classes (participants' curves): tab10, then the lighter tab20 shades.
# Class colours come from the app's own palette (hill_app/gui/palette.py), so a class is the same colour in
# the window and in the report.
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
]

_APP: Any = None


def _qt() -> Any:
    """Import QtGui, with an application object (fonts need one); offscreen unless a platform was chosen.

    It is a QApplication, not a bare QGuiApplication: a report made inside a process that later opens a
    window (the study window, a test session) would otherwise leave an application that cannot hold widgets.
    """
    global _APP
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtGui, QtWidgets

    if QtGui.QGuiApplication.instance() is None:
        _APP = QtWidgets.QApplication(["hill-app-report"])
    return QtGui


def class_color(c: int, num_classes: int) -> str:
    """Class ``c``'s colour as the window draws it among ``num_classes`` classes (hill_app.palette)."""
    from hill_app.palette import class_colors

    r, g, b = class_colors(max(num_classes, c + 1))[c]
    return f"#{r:02x}{g:02x}{b:02x}"


def layout_limits(panels: Sequence[dict[str, Any]]) -> tuple[tuple[float, float], tuple[float, float]]:
    """One square data range for all panels: the points' 1st..99th percentiles (a stray point does not
    shrink the rest to a dot), widened to hold every target completely: centres, dropped points and the
    target spread circles."""
    pts = [np.asarray(pn["z"], dtype=np.float64).reshape(-1, 2) for pn in panels if pn.get("z") is not None]
    pts = np.concatenate(pts) if pts else np.zeros((0, 2))
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts):
        lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
    else:
        lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for pn in panels:
        for key in ("centers_to", "centers_from", "points_to", "points_from"):
            if pn.get(key) is None:
                continue
            t = np.asarray(pn[key], dtype=np.float64).reshape(-1, 2)
            r = np.zeros(len(t))
            if key == "centers_to" and pn.get("spreads_to") is not None:
                sp = np.asarray(pn["spreads_to"], dtype=np.float64).reshape(-1)[: len(t)]
                r[: len(sp)] = np.where(np.isfinite(sp), sp, 0.0)
            ok = np.isfinite(t).all(axis=1)
            if ok.any():
                lo = np.minimum(lo, (t[ok] - r[ok, None]).min(axis=0))
                hi = np.maximum(hi, (t[ok] + r[ok, None]).max(axis=0))
    if not np.isfinite(lo).all() or not np.isfinite(hi).all():
        lo, hi = np.zeros(2), np.zeros(2)
    c, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2 * 1.08, 1e-6)
    return (c[0] - half, c[0] + half), (c[1] - half, c[1] + half)


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    start = math.ceil(lo / step - 1e-9) * step
    out = []
    v = start
    while v <= hi + 1e-9 * step:
        out.append(round(v, 12))
        v += step
    return out


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


class _Frame:
    """A plot area inside an image: data coordinates -> pixels, axes, ticks, labels."""

    def __init__(
        self,
        p: Any,
        QtCore: Any,
        rect: tuple[float, float, float, float],
        xlim: tuple[float, float],
        ylim: tuple[float, float],
    ):
        self.p, self.QtCore = p, QtCore
        self.x0, self.y0, self.w, self.h = rect
        self.xlim, self.ylim = xlim, ylim
        self.integer_x = False

    def px(self, x: Any, y: Any) -> tuple[Any, Any]:
        (a, b), (c, d) = self.xlim, self.ylim
        return (
            self.x0 + (np.asarray(x) - a) / (b - a) * self.w,
            self.y0 + self.h - (np.asarray(y) - c) / (d - c) * self.h,
        )

    def axes(self, QtGui: Any, xlabel: str = "", ylabel: str = "", title: str = "", ticks: bool = True) -> None:
        p, QC = self.p, self.QtCore
        p.setPen(QtGui.QPen(QtGui.QColor("#333333"), 1))
        p.setBrush(QC.Qt.NoBrush)
        p.drawRect(QC.QRectF(self.x0, self.y0, self.w, self.h))
        f = p.font()
        f.setPointSizeF(9)
        p.setFont(f)
        if ticks:
            for v in nice_ticks(*self.xlim, integer=self.integer_x):
                x, _ = self.px(v, self.ylim[0])
                p.setPen(QtGui.QPen(QtGui.QColor("#e6e6e6"), 1))
                p.drawLine(QC.QPointF(x, self.y0), QC.QPointF(x, self.y0 + self.h))
                p.setPen(QtGui.QColor("#333333"))
                p.drawText(QC.QRectF(x - 40, self.y0 + self.h + 3, 80, 16), QC.Qt.AlignHCenter, _fmt(v))
            for v in nice_ticks(*self.ylim):
                _, y = self.px(self.xlim[0], v)
                p.setPen(QtGui.QPen(QtGui.QColor("#e6e6e6"), 1))
                p.drawLine(QC.QPointF(self.x0, y), QC.QPointF(self.x0 + self.w, y))
                p.setPen(QtGui.QColor("#333333"))
                p.drawText(QC.QRectF(self.x0 - 64, y - 8, 60, 16), QC.Qt.AlignRight | QC.Qt.AlignVCenter, _fmt(v))
            p.setPen(QtGui.QPen(QtGui.QColor("#333333"), 1))
            p.setBrush(QC.Qt.NoBrush)
            p.drawRect(QC.QRectF(self.x0, self.y0, self.w, self.h))
        if xlabel:
            p.drawText(QC.QRectF(self.x0, self.y0 + self.h + 20, self.w, 18), QC.Qt.AlignHCenter, xlabel)
        if ylabel:
            p.save()
            p.translate(self.x0 - 52, self.y0 + self.h / 2)
            p.rotate(-90)
            p.drawText(QC.QRectF(-self.h / 2, -18, self.h, 18), QC.Qt.AlignHCenter, ylabel)
            p.restore()
        if title:
            f.setPointSizeF(10.5)
            f.setBold(True)
            p.setFont(f)
            p.drawText(QC.QRectF(self.x0, self.y0 - 24, self.w, 20), QC.Qt.AlignHCenter, title)
            f.setBold(False)
            f.setPointSizeF(9)
            p.setFont(f)


def _save(img: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not img.save(str(path), "PNG"):
        raise OSError(f"{path}: could not write the PNG")
    return path


def _start(width: int, height: int) -> tuple[Any, Any, Any, Any]:
    QtGui = _qt()
    from PySide6 import QtCore

    img = QtGui.QImage(width, height, QtGui.QImage.Format_ARGB32)
    img.fill(QtGui.QColor("white"))
    p = QtGui.QPainter(img)
    p.setRenderHint(QtGui.QPainter.Antialiasing, True)
    p.setRenderHint(QtGui.QPainter.TextAntialiasing, True)
    return QtGui, QtCore, img, p


def _legend(QtGui: Any, QC: Any, p: Any, x: float, y: float, items: Sequence[tuple[str, str, bool]]) -> None:
    """Boxed legend at (x, y): (label, colour, dashed)."""
    if not items:
        return
    fm = QtGui.QFontMetrics(p.font())
    w = max(fm.horizontalAdvance(t) for t, _, _ in items) + 44
    h = 18 * len(items) + 8
    p.setPen(QtGui.QPen(QtGui.QColor("#999999"), 1))
    p.setBrush(QtGui.QColor(255, 255, 255, 230))
    p.drawRect(QC.QRectF(x, y, w, h))
    for i, (text, color, dashed) in enumerate(items):
        yy = y + 13 + 18 * i
        pen = QtGui.QPen(QtGui.QColor(color), 2.2)
        if dashed:
            pen.setStyle(QC.Qt.DashLine)
        p.setPen(pen)
        p.drawLine(QC.QPointF(x + 6, yy), QC.QPointF(x + 32, yy))
        p.setPen(QtGui.QColor("#222222"))
        p.drawText(QC.QPointF(x + 38, yy + 4), text)


# ---------------------------------------------------------------- accuracy over epochs


def accuracy_figure(
    path: Path,
    series: Sequence[dict[str, Any]],
    pause_at: Sequence[int] = (),
    title: str = "",
    ylabel: str = "validation accuracy",
    width: int = 900,
    height: int = 440,
) -> Path:
    """Line chart; each series: {label, x, y, color?, dashed?}. Pauses are drawn as grey dashed lines."""
    QtGui, QC, img, p = _start(width, height)
    try:
        xs = [float(v) for s in series for v in s["x"]]
        ys = [float(v) for s in series for v in s["y"] if v is not None and math.isfinite(v)]
        xlim = (min(xs + [1.0]), max(xs + [2.0]))
        lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        pad = max((hi - lo) * 0.08, 0.005)
        ylim = (max(lo - pad, 0.0) if lo >= 0 else lo - pad, min(hi + pad, 1.0) if hi <= 1 else hi + pad)
        if ylim[1] <= ylim[0]:
            ylim = (ylim[0] - 0.01, ylim[1] + 0.01)
        fm = QtGui.QFontMetrics(p.font())
        legend_w = max([fm.horizontalAdvance(str(s["label"])) for s in series] + [60]) + 60
        fr = _Frame(p, QC, (76, 40, width - 100 - legend_w, height - 96), xlim, ylim)
        fr.integer_x = True
        fr.axes(QtGui, "epoch", ylabel, title)
        pen = QtGui.QPen(QtGui.QColor("#888888"), 1.2)
        pen.setStyle(QC.Qt.DashLine)
        for e in pause_at:  # a pause "before epoch e" sits between epochs e-1 and e
            x, _ = fr.px(e - 0.5, 0)
            if fr.x0 <= x <= fr.x0 + fr.w:
                p.setPen(pen)
                p.drawLine(QC.QPointF(x, fr.y0), QC.QPointF(x, fr.y0 + fr.h))
                p.setPen(QtGui.QColor("#666666"))
                p.drawText(QC.QPointF(x + 3, fr.y0 + fr.h - 5), f"pause {e}")
        legend = []
        p.setClipRect(QC.QRectF(fr.x0, fr.y0, fr.w, fr.h))
        # dashed (reference) lines last: where a participant's line equals the baseline both stay visible
        order = sorted(range(len(series)), key=lambda i: bool(series[i].get("dashed")))
        for i in order:
            s = series[i]
            color = s.get("color") or PALETTE[i % len(PALETTE)]
            pen = QtGui.QPen(QtGui.QColor(color), s.get("width", 2.2))
            if s.get("dashed"):
                pen.setStyle(QC.Qt.DashLine)
            p.setPen(pen)
            pts = [(float(x), float(y)) for x, y in zip(s["x"], s["y"]) if y is not None and math.isfinite(y)]
            if pts:
                px, py = fr.px([a for a, _ in pts], [b for _, b in pts])
                poly = QtGui.QPolygonF([QC.QPointF(float(a), float(b)) for a, b in zip(px, py)])
                p.drawPolyline(poly)
                p.setBrush(QtGui.QColor(color))
                for a, b in zip(px, py):
                    p.drawEllipse(QC.QPointF(float(a), float(b)), 2.5, 2.5)
                p.setBrush(QC.Qt.NoBrush)
        for i, s in enumerate(series):
            color = s.get("color") or PALETTE[i % len(PALETTE)]
            legend.append((s["label"], color, bool(s.get("dashed"))))
        p.setClipping(False)
        _legend(QtGui, QC, p, fr.x0 + fr.w + 14, fr.y0, legend)
    finally:
        p.end()
    return _save(img, path)


# ---------------------------------------------------------------- latent layouts


def layout_figure(
    path: Path,
    panels: Sequence[dict[str, Any]],
    num_classes: int,
    class_names: Sequence[str] | None = None,
    title: str = "",
    panel_size: int = 420,
) -> Path:
    """Side-by-side scatters of view-set points, coloured by class, on one shared scale.

    Each panel: {title, z (N,2), labels (N,), faded?: bool, centers_from?: (K,2), centers_to?: (K,2),
    spreads_to?: (K,), points_from?: (M,2), points_to?: (M,2)}. Arrows go from centers_from to centers_to
    (and points_from to points_to); circles of radius spreads_to (NaN: none) are drawn around centers_to.
    """
    n = len(panels)
    legend_w = 110
    width = 30 + n * (panel_size + 30) + legend_w
    height = panel_size + 90
    QtGui, QC, img, p = _start(width, height)
    try:
        xlim, ylim = layout_limits(panels)
        if title:
            f = p.font()
            f.setPointSizeF(11)
            f.setBold(True)
            p.setFont(f)
            p.setPen(QtGui.QColor("#222222"))
            p.drawText(QC.QRectF(0, 4, width - legend_w, 22), QC.Qt.AlignHCenter, title)
        for i, pn in enumerate(panels):
            fr = _Frame(p, QC, (30 + i * (panel_size + 30), 58, panel_size, panel_size), xlim, ylim)
            fr.axes(QtGui, title=pn.get("title", ""), ticks=False)
            p.setClipRect(QC.QRectF(fr.x0, fr.y0, fr.w, fr.h))
            z, y = pn.get("z"), pn.get("labels")
            if z is not None:
                z = np.asarray(z, dtype=np.float64).reshape(-1, 2)
                y = np.asarray(y)
                alpha = 70 if pn.get("faded") else 190
                for k in range(num_classes):
                    sel = z[y == k]
                    if not len(sel):
                        continue
                    col = QtGui.QColor(class_color(k, num_classes))
                    col.setAlpha(alpha)
                    pen = QtGui.QPen(col, 4.0)
                    pen.setCapStyle(QC.Qt.RoundCap)
                    p.setPen(pen)
                    px, py = fr.px(sel[:, 0], sel[:, 1])
                    p.drawPoints(QtGui.QPolygonF([QC.QPointF(float(a), float(b)) for a, b in zip(px, py)]))
            cf, ct, st = pn.get("centers_from"), pn.get("centers_to"), pn.get("spreads_to")
            if ct is not None:
                ct = np.asarray(ct, dtype=np.float64)
                for k in range(min(num_classes, len(ct))):
                    col = QtGui.QColor(class_color(k, num_classes))
                    tx, ty = fr.px(ct[k, 0], ct[k, 1])
                    if st is not None and math.isfinite(float(st[k])):
                        r = float(st[k]) / (xlim[1] - xlim[0]) * fr.w
                        pen = QtGui.QPen(col, 1.6)
                        pen.setStyle(QC.Qt.DashLine)
                        p.setPen(pen)
                        p.setBrush(QC.Qt.NoBrush)
                        p.drawEllipse(QC.QPointF(float(tx), float(ty)), r, r)
                    if cf is not None:
                        fx, fy = fr.px(cf[k][0], cf[k][1])
                        if math.hypot(float(tx - fx), float(ty - fy)) > 2:
                            _arrow(QtGui, QC, p, (float(fx), float(fy)), (float(tx), float(ty)), "#222222")
                    p.setPen(QtGui.QPen(QtGui.QColor("#111111"), 1.2))
                    p.setBrush(col)
                    p.drawEllipse(QC.QPointF(float(tx), float(ty)), 6, 6)
            pf, pt = pn.get("points_from"), pn.get("points_to")
            if pf is not None and pt is not None:
                for a, b in zip(np.asarray(pf).reshape(-1, 2), np.asarray(pt).reshape(-1, 2)):
                    fx, fy = fr.px(a[0], a[1])
                    tx, ty = fr.px(b[0], b[1])
                    _arrow(QtGui, QC, p, (float(fx), float(fy)), (float(tx), float(ty)), "#d62728")
            p.setClipping(False)
        # class legend
        f = p.font()
        f.setPointSizeF(9)
        f.setBold(False)
        p.setFont(f)
        x0 = width - legend_w + 6
        for k in range(num_classes):
            yy = 70 + 17 * k
            p.setPen(QC.Qt.NoPen)
            p.setBrush(QtGui.QColor(class_color(k, num_classes)))
            p.drawEllipse(QC.QPointF(x0 + 6, yy), 5, 5)
            p.setPen(QtGui.QColor("#222222"))
            name = class_names[k] if class_names is not None and k < len(class_names) else str(k)
            p.drawText(QC.QPointF(x0 + 16, yy + 4), name[:14])
    finally:
        p.end()
    return _save(img, path)


def _arrow(QtGui: Any, QC: Any, p: Any, a: tuple[float, float], b: tuple[float, float], color: str) -> None:
    p.setPen(QtGui.QPen(QtGui.QColor(color), 1.5))
    p.drawLine(QC.QPointF(*a), QC.QPointF(*b))
    ang = math.atan2(b[1] - a[1], b[0] - a[0])
    for d in (2.6, -2.6):
        p.drawLine(QC.QPointF(*b), QC.QPointF(b[0] - 9 * math.cos(ang + d / 6), b[1] - 9 * math.sin(ang + d / 6)))
