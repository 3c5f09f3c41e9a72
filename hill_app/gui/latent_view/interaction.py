"""What a press, a move and a release in the latent view mean: hit-testing and drag logic, Qt-free.

Everything here is a plain function of a :class:`Scene` (what is drawn, in view units, and the pixel
scale) and a :class:`Pointer` (where the mouse is, in pixels and in view units), so it is unit-tested
without a window. The Qt view turns mouse events into pointers and draws what a :class:`Drag` says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Pixel sizes of the interaction (device-independent pixels of the viewport).
HANDLE_SIZE = 16  # handle diameter
HANDLE_HIT = 11  # a press this close to a handle's centre grabs it
RING_HIT = 5  # ... this close to a ring's edge grabs the ring
POINT_HIT = 7  # ... this close to a point picks it (hover and click)
MERGE_SNAP = 14  # dropping a handle this close to another class's handle merges them
DRAG_START = 3  # a press that moves less than this is a click, not a drag
MIN_RING_PX = HANDLE_HIT  # a ring drawn smaller than this cannot be grabbed (the handle covers it)
MIN_FACTOR = 0.05  # one ring drag scales a spread by at least this ...
MAX_FACTOR = 10.0  # ... and at most this (the edit's own limit)


@dataclass(frozen=True)
class Pointer:
    """One mouse position: viewport pixels, the latent (view) coordinates under them, and modifiers."""

    px: tuple[float, float]
    view: tuple[float, float]
    shift: bool = False
    ctrl: bool = False


@dataclass(frozen=True)
class Scene:
    """What is on screen, as hit-testing and drags need it (arrays are read, never written).

    ``points`` are the display positions (N, 2); ``moved`` marks points placed individually by an edit
    (they stay where dropped when their class moves); ``scale`` is pixels per view unit along x and y.
    """

    centers: np.ndarray
    spreads: np.ndarray
    group: np.ndarray
    present: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    moved: np.ndarray
    selection: np.ndarray
    scale: tuple[float, float]


@dataclass(frozen=True)
class Hit:
    """What a pixel is over: ``kind`` is 'handle' or 'ring' (``index`` a class) or 'point' (a view index)."""

    kind: str
    index: int

    def as_tuple(self) -> tuple[str, int]:
        return (self.kind, self.index)


@dataclass
class Drag:
    """A press that may become a drag; ``value`` is its live result (a centre, a factor, a delta)."""

    kind: str  # 'center' | 'ring' | 'points' | 'rubber'
    press: Pointer
    cls: int = -1
    members: list[int] = field(default_factory=list)
    idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    base_pos: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    start_center: np.ndarray = field(default_factory=lambda: np.zeros(2))
    start_centers: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    r0: float = 1.0  # the ring's spread at the press (view units)
    r_press: float = 1.0  # the press's distance to the centre (view units)
    moved: bool = False
    merge_target: int = -1
    value: Any = None
    toggle_off: int = -1  # shift-click on a selected point: unselect it on a click release
    point_under: int = -1  # the point under a ring press: a click there selects it
    add: bool = False  # rubber band with shift: add to the selection
    last: Pointer | None = None

    # -------------------------------------------------------------- live geometry

    def live_center(self) -> np.ndarray:
        """Where the dragged handle is drawn now (the press-time centre until the first move)."""
        return self.start_center if self.value is None or self.kind != "center" else self.value

    def live_points(self) -> np.ndarray:
        """Display positions of ``idx`` as the drag stands (the points that follow it)."""
        if self.value is None or not len(self.idx):
            return self.base_pos
        if self.kind == "center":
            return self.base_pos + (self.value - self.start_center)
        if self.kind == "ring":
            return self.start_center + (self.base_pos - self.start_center) * self.value
        if self.kind == "points":
            return self.base_pos + self.value
        return self.base_pos


@dataclass(frozen=True)
class Outcome:
    """What a release does: the edits to push as one undoable step, and the new selection (None: unchanged)."""

    edits: list[dict]
    selection: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------- hit-testing


def _px_dist(scene: Scene, a: np.ndarray, at: np.ndarray) -> np.ndarray:
    kx, ky = scene.scale
    return np.hypot((a[..., 0] - at[0]) * kx, (a[..., 1] - at[1]) * ky)


def nearest_point(
    scene: Scene, at: tuple[float, float] | np.ndarray, among: np.ndarray | None = None, radius: float = POINT_HIT
) -> int:
    """The view index nearest to ``at`` within ``radius`` pixels (``among``: only these indices), or -1."""
    pts = scene.points
    idx = None
    if among is not None:
        idx = np.asarray(among, dtype=np.int64)
        if not len(idx):
            return -1
        pts = pts[idx]
    if not len(pts):
        return -1
    kx, ky = scene.scale
    at = np.asarray(at, dtype=np.float64)
    dx = (pts[:, 0] - at[0]) * kx
    dy = (pts[:, 1] - at[1]) * ky
    d2 = dx * dx + dy * dy
    j = int(np.argmin(d2))
    if d2[j] > radius * radius:
        return -1
    return int(idx[j]) if idx is not None else j


def hit_test(scene: Scene, at: tuple[float, float] | np.ndarray, points: bool = True) -> Hit | None:
    """What is under ``at`` (view units), in the order a user means it: a handle, a *selected* point, a
    ring edge, any point; None for empty space. ``points=False`` looks at handles and rings only.

    A selected point wins over a ring: the user selected it to move it, and rings of dense classes cover
    much of the plot. It does not win over a handle, which is drawn on top of it.
    """
    at = np.asarray(at, dtype=np.float64)
    if not len(scene.centers):
        return None
    d = _px_dist(scene, scene.centers, at)
    d[~scene.present] = np.inf
    c = int(np.argmin(d))
    if d[c] <= HANDLE_HIT:
        return Hit("handle", c)
    if points and len(scene.selection):
        i = nearest_point(scene, at, among=scene.selection)
        if i >= 0:
            return Hit("point", i)
    ring = ring_under(scene, at, d)
    if ring >= 0:
        return Hit("ring", ring)
    if points:
        i = nearest_point(scene, at)
        if i >= 0:
            return Hit("point", i)
    return None


def ring_under(scene: Scene, at: np.ndarray, d: np.ndarray | None = None) -> int:
    """The class whose ring edge is within RING_HIT pixels of ``at`` (the closest edge), or -1."""
    if d is None:
        d = _px_dist(scene, scene.centers, np.asarray(at, dtype=np.float64))
        d[~scene.present] = np.inf
    r_px = scene.spreads * scene.scale[0]
    gap = np.abs(d - r_px)
    gap[(r_px <= MIN_RING_PX) | ~scene.present] = np.inf
    c = int(np.argmin(gap))
    return c if gap[c] <= RING_HIT else -1


# ---------------------------------------------------------------------------------------------- drags


def _free_points(scene: Scene, classes: list[int]) -> np.ndarray:
    """Points of these classes that follow the class (individually moved points stay where dropped)."""
    if not classes:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.isin(scene.labels, classes) & ~scene.moved)


def ring_factor(drag: Drag, at: tuple[float, float] | np.ndarray) -> float:
    """The spread factor of a ring drag with the mouse at ``at``: r_now / r_press, clamped.

    The edge point that was pressed follows the mouse radially, so the spread changes in proportion to
    the distance dragged (a press a few pixels off the edge does not jump on the first move).
    """
    r = float(np.hypot(*(np.asarray(at, dtype=np.float64) - drag.start_center)))
    if drag.r_press <= 0:
        return 1.0
    return float(min(MAX_FACTOR, max(MIN_FACTOR, r / drag.r_press)))


def begin(scene: Scene, ptr: Pointer, select_mode: bool = False) -> tuple[Drag | None, np.ndarray]:
    """A left press: the drag it starts (None: empty space, left to pan and zoom) and the selection after it."""
    hit = hit_test(scene, ptr.view)
    sel = scene.selection
    v = np.asarray(ptr.view, dtype=np.float64)
    if hit is not None and hit.kind == "handle":
        c = hit.index
        members = [int(m) for m in np.flatnonzero(scene.group == scene.group[c])]
        idx = _free_points(scene, members)
        return Drag(
            "center",
            ptr,
            cls=c,
            members=members,
            idx=idx,
            base_pos=scene.points[idx].copy(),
            start_center=scene.centers[c].copy(),
            start_centers=scene.centers[members].copy(),
            last=ptr,
        ), sel
    if hit is not None and hit.kind == "ring":
        c = hit.index
        idx = _free_points(scene, [c])
        ctr = scene.centers[c].copy()
        r_press = float(np.hypot(*(v - ctr)))
        return Drag(
            "ring",
            ptr,
            cls=c,
            idx=idx,
            base_pos=scene.points[idx].copy(),
            start_center=ctr,
            start_centers=ctr[None].copy(),
            r0=float(scene.spreads[c]),
            r_press=r_press,
            point_under=nearest_point(scene, v),
            last=ptr,
        ), sel
    if hit is not None and hit.kind == "point":
        i = hit.index
        in_sel = bool(np.isin(i, sel))
        toggle_off = -1
        if ptr.shift:
            if in_sel:
                toggle_off = i  # unselect on release if it was a click, keep it if a drag follows
            else:
                sel = np.union1d(sel, [i]).astype(np.int64)
        elif not in_sel:
            sel = np.array([i], dtype=np.int64)
        idx = np.asarray(sel, dtype=np.int64).copy()
        return Drag("points", ptr, idx=idx, base_pos=scene.points[idx].copy(), toggle_off=toggle_off, last=ptr), sel
    if ptr.ctrl or select_mode:
        return Drag("rubber", ptr, add=ptr.shift, last=ptr), sel
    return None, sel


def move(drag: Drag, scene: Scene, ptr: Pointer) -> bool:
    """The mouse moved with the button held: update the drag's live value. False while still a click."""
    if not drag.moved and math.hypot(ptr.px[0] - drag.press.px[0], ptr.px[1] - drag.press.px[1]) < DRAG_START:
        return False
    drag.moved = True
    drag.last = ptr
    v = np.asarray(ptr.view, dtype=np.float64)
    p0 = np.asarray(drag.press.view, dtype=np.float64)
    if drag.kind == "center":
        drag.value = drag.start_center + (v - p0)
        drag.merge_target = merge_target(scene, drag.members, drag.value)
    elif drag.kind == "ring":
        drag.value = ring_factor(drag, v)
    elif drag.kind == "points":
        drag.value = v - p0
    return True


def merge_target(scene: Scene, members: list[int], at: np.ndarray) -> int:
    """The other class whose handle is within MERGE_SNAP pixels of ``at`` (the closest), or -1."""
    d = _px_dist(scene, scene.centers, np.asarray(at, dtype=np.float64))
    d[~scene.present] = np.inf
    d[members] = np.inf
    c = int(np.argmin(d)) if len(d) else -1
    return c if c >= 0 and d[c] <= MERGE_SNAP else -1


def rubber_rect(drag: Drag, ptr: Pointer) -> tuple[np.ndarray, np.ndarray]:
    """The rubber band's corners (lo, hi) in view units."""
    a = np.asarray(drag.press.view, dtype=np.float64)
    b = np.asarray(ptr.view, dtype=np.float64)
    return np.minimum(a, b), np.maximum(a, b)


def finish(drag: Drag, scene: Scene, ptr: Pointer) -> Outcome:
    """The left button was released: the edits the drag made (one undoable step) and the selection."""
    if drag.kind == "center":
        if not drag.moved:
            return Outcome([])
        to = drag.live_center()
        drop = [float(to[0]), float(to[1])]
        if drag.merge_target >= 0:
            # Merged where it was dropped: merge alone would put the pair at the midpoint of the two centres.
            return Outcome(
                [
                    {"op": "merge", "classes": [int(drag.cls), int(drag.merge_target)]},
                    {"op": "move_center", "class": int(drag.cls), "to": drop},
                ]
            )
        return Outcome([{"op": "move_center", "class": int(drag.cls), "to": drop}])
    if drag.kind == "ring":
        if drag.moved and drag.value is not None and abs(drag.value - 1.0) > 1e-4:
            return Outcome([{"op": "scale_spread", "class": int(drag.cls), "factor": float(drag.value)}])
        if not drag.moved and drag.point_under >= 0:
            i = drag.point_under
            sel = np.union1d(scene.selection, [i]) if ptr.shift else np.array([i])
            return Outcome([], sel.astype(np.int64))
        return Outcome([])
    if drag.kind == "points":
        if drag.moved and len(drag.idx):
            to = drag.live_points()
            return Outcome(
                [
                    {
                        "op": "move_points",
                        "indices": [int(i) for i in drag.idx],
                        "to": [[float(x), float(y)] for x, y in to],
                    }
                ]
            )
        if drag.toggle_off >= 0:
            return Outcome([], scene.selection[scene.selection != drag.toggle_off])
        return Outcome([])
    if drag.kind == "rubber":
        lo, hi = rubber_rect(drag, ptr)
        inside = np.flatnonzero(((scene.points >= lo) & (scene.points <= hi)).all(axis=1))
        return Outcome([], np.union1d(scene.selection, inside).astype(np.int64) if drag.add else inside)
    return Outcome([])
