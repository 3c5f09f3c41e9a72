"""The view set's points as one pyqtgraph scatter, restyled once per snapshot and moved in place per frame.

Styles are fixed per snapshot, so pens, brushes and atlas cells are computed once per class and style
(2K of them) and spread to the points with numpy indexing, instead of ``setData``'s Python loop per
point (~50 ms at 10,000 points). During a drag only the positions change, written in place.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from ..palette import darker

POINT_SIZE = 6.0
MISS_SIZE = 8.5


class PointScatter:
    """One ``ScatterPlotItem`` (``item``) with a per-class style table; misclassified points drawn last."""

    def __init__(self) -> None:
        self.item = pg.ScatterPlotItem(pxMode=True, useCache=True, antialias=False)
        self.item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.item.setAcceptHoverEvents(False)
        self.item.setZValue(10)
        self.tables: dict[str, Any] = {}
        self.style_id = np.zeros(0, dtype=np.int64)
        self.order = np.zeros(0, dtype=np.int64)
        self.fast = True  # write the record array directly (falls back to setData for good if that fails)

    def set_styles(
        self, labels: np.ndarray, miss: np.ndarray, colors: list[tuple[int, int, int]], classes_changed: bool
    ) -> None:
        """A new snapshot: draw order (misclassified last, so never buried) and per-point style ids."""
        k = len(colors)
        self.order = np.argsort(miss, kind="stable")
        if classes_changed or "pens" not in self.tables:
            brushes = [pg.mkBrush(*rgb, 215) for rgb in colors]
            pens = [pg.mkPen(*darker(rgb, 0.62), 190, width=0.8) for rgb in colors]
            miss_pen = pg.mkPen(25, 25, 25, 210, width=0.9)
            miss_brushes = [pg.mkBrush(*rgb, 255) for rgb in colors]
            # style s = 2 * class + misclassified
            sym = np.array(["o", "x"] * k, dtype=object)
            size = np.array([POINT_SIZE, MISS_SIZE] * k, dtype=np.float64)
            pen = np.empty(2 * k, dtype=object)
            brush = np.empty(2 * k, dtype=object)
            for c in range(k):
                pen[2 * c], pen[2 * c + 1] = pens[c], miss_pen
                brush[2 * c], brush[2 * c + 1] = brushes[c], miss_brushes[c]
            self.tables = {"sym": sym, "size": size, "pens": pen, "brushes": brush}
        self.style_id = (2 * labels + miss.astype(np.int64))[self.order]

    def clear(self) -> None:
        """No points (a new run is loading); the next ``show`` restyles."""
        self.item.clear()
        self.style_id = np.zeros(0, dtype=np.int64)
        self.order = np.zeros(0, dtype=np.int64)

    def show(self, pos: np.ndarray, restyle: bool = False) -> None:
        """Draw ``pos`` (N, 2, view order): in place when only positions changed, else with the styles."""
        sc = self.item
        xy = pos[self.order]
        if not restyle and len(sc.data) == len(xy):
            d = sc.data
            d["x"] = xy[:, 0]
            d["y"] = xy[:, 1]
            sc.bounds = [None, None]
            sc.prepareGeometryChange()
            sc.informViewBoundsChanged()
            sc.invalidate()
            return
        if self.fast:
            try:
                self._fill(xy)
                return
            except Exception:  # pyqtgraph internals changed: use the public (slower) path from now on
                self.fast = False
        t, sid = self.tables, self.style_id
        sc.setData(
            x=xy[:, 0],
            y=xy[:, 1],
            symbol=t["sym"][sid],
            size=t["size"][sid],
            pen=t["pens"][sid],
            brush=t["brushes"][sid],
        )

    def _fill(self, xy: np.ndarray) -> None:
        """What ``setData(x, y, symbol=, size=, pen=, brush=)`` does, with the per-style work done once."""
        sc = self.item
        t, sid = self.tables, self.style_id
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
        for j, name in enumerate(sr.dtype.names):  # atlas cells are (y, x, h, w) tuples stored positionally
            sr[name] = coords[sid, j]
        sc.data = data
        sc.prepareGeometryChange()
        sc.informViewBoundsChanged()
        sc.bounds = [None, None]
        sc._updateMaxSpotSizes(data=data)
        sc.invalidate()
        sc.sigPlotChanged.emit(sc)
