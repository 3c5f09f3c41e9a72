"""Render one sample of the view set as a small picture for the latent view's hover tooltip.

The pixels are copied off the data bundle once, when a run starts (in the worker thread), so the GUI never
reads a tensor the training thread might touch. Images (digits 8x8 grey, CIFAR-10 32x32 RGB) are upscaled
with nearest-neighbour so single pixels stay visible; signal windows (PAMAP2) become a small line plot of
a few channels drawn with QPainter.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPolygonF

IMAGE_SIZE = 112
SIGNAL_SIZE = (220, 132)
AXIS_COLOURS = (QColor("#d62728"), QColor("#2ca02c"), QColor("#1f77b4"))  # x, y, z


def _signal_lanes(channel_names: Sequence[str] | None, n_channels: int) -> list[tuple[str, list[int]]]:
    """Which channels to draw: for PAMAP2 the +-16g accelerometer of hand, chest and ankle, one lane each."""
    if channel_names:
        names = list(channel_names)
        lanes = []
        for imu in ("hand", "chest", "ankle"):
            idx = [names.index(f"{imu}_acc16_{a}") for a in "xyz" if f"{imu}_acc16_{a}" in names]
            if idx:
                lanes.append((f"{imu} acc", idx))
        if lanes:
            return lanes
    return [(f"ch {c}", [c]) for c in range(min(3, n_channels))]


class SampleSource:
    """The view set's raw inputs in a compact, Qt-free copy, and a cached renderer over it."""

    def __init__(
        self, kind: str, x: np.ndarray, lanes: list[tuple[str, list[int]]] | None = None, cache_size: int = 256
    ) -> None:
        self.kind = kind
        self.x = x
        self.lanes = lanes or []
        self._cache: OrderedDict[int, QImage] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_bundle(cls, bundle: Any, view_idx: np.ndarray) -> SampleSource:
        """Copy only what the renderer needs (for signals: the plotted channels), so memory stays small."""
        idx = np.asarray(view_idx, dtype=np.int64)
        x = bundle.train_x[idx]
        if bundle.kind == "signal":
            lanes = _signal_lanes(bundle.meta.get("channel_names"), int(x.shape[1]))
            chans = [c for _, cs in lanes for c in cs]
            data = x[:, chans].float().numpy().copy()
            # Re-index lanes to the compact channel order.
            pos, compact = 0, []
            for name, cs in lanes:
                compact.append((name, list(range(pos, pos + len(cs)))))
                pos += len(cs)
            return cls("signal", data, compact)
        return cls("image", x.numpy().copy())

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def render(self, i: int) -> QImage | None:
        """The picture of view sample ``i`` (None when out of range); cached, since hovering revisits points."""
        if not 0 <= i < len(self):
            return None
        img = self._cache.get(i)
        if img is None:
            img = render_image(self.x[i]) if self.kind == "image" else render_signal(self.x[i], self.lanes)
            self._cache[i] = img
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return img

    __call__ = render


def render_image(x: np.ndarray, size: int = IMAGE_SIZE) -> QImage:
    """(C, H, W) uint8 -> an upscaled QImage; grey images are drawn dark-on-light, like ink on paper."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        lo, hi = float(x.min()), float(x.max())
        x = ((x - lo) / max(hi - lo, 1e-9) * 255).astype(np.uint8)
    c, h, w = x.shape
    if c == 1:
        buf = np.ascontiguousarray(255 - x[0])
        img = QImage(buf.data, w, h, w, QImage.Format.Format_Grayscale8)
    else:
        buf = np.ascontiguousarray(np.transpose(x[:3], (1, 2, 0)))
        img = QImage(buf.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    scale = max(1, size // max(h, w))
    # .scaled() makes a copy that owns its pixels, so ``buf`` may go away.
    return img.scaled(
        w * scale, h * scale, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation
    )


def render_signal(x: np.ndarray, lanes: list[tuple[str, list[int]]], size: tuple[int, int] = SIGNAL_SIZE) -> QImage:
    """(C, T) float -> a small multi-lane line plot: one lane per sensor, x/y/z in red/green/blue."""
    w, h = size
    img = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(QColor("#ffffff"))
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    font = QFont()
    font.setPixelSize(10)
    p.setFont(font)
    n = max(1, len(lanes))
    lane_h = h / n
    label_w = 0.0
    t = x.shape[1]
    xs = np.linspace(4.0, w - 4.0, t)
    for k, (name, chans) in enumerate(lanes):
        top = k * lane_h
        if k:
            p.setPen(QPen(QColor("#e0e0e0"), 1))
            p.drawLine(QPointF(0, top), QPointF(w, top))
        seg = x[chans]
        lo, hi = float(np.nanmin(seg)), float(np.nanmax(seg))
        span = max(hi - lo, 1e-6)
        for j, ch in enumerate(chans):
            ys = top + 3 + (1.0 - (np.nan_to_num(x[ch]) - lo) / span) * (lane_h - 6)
            poly = QPolygonF([QPointF(float(a), float(b)) for a, b in zip(xs, ys)])
            p.setPen(QPen(AXIS_COLOURS[j % 3] if len(chans) > 1 else QColor("#333333"), 1.2))
            p.drawPolyline(poly)
        p.setPen(QColor("#555555"))
        p.drawText(QRectF(4 + label_w, top + 1, w - 8, 12), Qt.AlignmentFlag.AlignLeft, name)
    p.setPen(QPen(QColor("#bbbbbb"), 1))
    p.drawRect(QRectF(0.5, 0.5, w - 1, h - 1))
    p.end()
    return img
