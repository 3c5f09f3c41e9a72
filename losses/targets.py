"""Edits -> teacher layout: turn the user's moves on the frozen 2D view into per-class targets.

When edits are committed every class gets targets: edited classes where the user put them, the others
where they stand now, so the whole edited scatter is the teacher. The layout lives on the CPU as numpy
(small, editable, JSON-serialisable) and becomes :class:`LatentTargets` tensors for the loss.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .hill_loss import LatentTargets, LossWeights

EDIT_OPS = ("move_center", "scale_spread", "move_points", "merge", "separate", "strategy")
STRATEGIES = ("compactness", "separation", "merge_similar")


class EditError(ValueError):
    """An edit is malformed or names something that does not exist; the message says which and why."""


@dataclass
class TargetLayout:
    """The teacher layout: per-class centre and spread, pair separations, merges and moved points."""

    centers: np.ndarray  # (K, 2) float64
    spreads: np.ndarray  # (K,)
    sep_min: np.ndarray  # (K, K) symmetric, 0 = no separation target
    group: np.ndarray  # (K,) int: classes with the same id are merged
    points: dict[int, tuple[float, float]] = field(default_factory=dict)  # view index -> drop position
    edited: np.ndarray | None = None  # (K,) bool: classes the user touched (display only)
    ref_radius: float = 1.0  # RMS radius of the view set when the layout was taken
    # loss space (see with_metric): u = z @ metric.T; None = z in units of ref_radius
    metric: np.ndarray | None = None  # (2, 2)
    spread_gain: np.ndarray | None = None  # (K,) class spread in loss space / in view space
    metric_radius: float | None = None  # RMS radius of the view set in loss space

    @property
    def num_classes(self) -> int:
        return int(self.centers.shape[0])

    def copy(self) -> TargetLayout:
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "centers": self.centers.tolist(),
            "spreads": self.spreads.tolist(),
            "sep_min": self.sep_min.tolist(),
            "group": self.group.tolist(),
            "points": {str(k): list(v) for k, v in sorted(self.points.items())},
            "edited": None if self.edited is None else self.edited.tolist(),
            "ref_radius": self.ref_radius,
            "metric": None if self.metric is None else self.metric.tolist(),
            "spread_gain": None if self.spread_gain is None else self.spread_gain.tolist(),
            "metric_radius": self.metric_radius,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TargetLayout:
        return cls(
            centers=np.asarray(d["centers"], dtype=np.float64),
            spreads=np.asarray(d["spreads"], dtype=np.float64),
            sep_min=np.asarray(d["sep_min"], dtype=np.float64),
            group=np.asarray(d["group"], dtype=np.int64),
            points={int(k): (float(v[0]), float(v[1])) for k, v in d.get("points", {}).items()},
            edited=None if d.get("edited") is None else np.asarray(d["edited"], dtype=bool),
            ref_radius=float(d.get("ref_radius", 1.0)),
            metric=None if d.get("metric") is None else np.asarray(d["metric"], dtype=np.float64),
            spread_gain=None if d.get("spread_gain") is None else np.asarray(d["spread_gain"], dtype=np.float64),
            metric_radius=None if d.get("metric_radius") is None else float(d["metric_radius"]),
        )

    def loss_space(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(metric A, per-class spread gains, loss-space radius): without a metric, z in units of ref_radius."""
        if self.metric is None:
            r = self.ref_radius if self.ref_radius > 1e-12 else 1.0
            return np.eye(2) / r, np.full(self.num_classes, 1.0 / r), 1.0
        gain = (
            self.spread_gain
            if self.spread_gain is not None
            else np.full(self.num_classes, float(np.sqrt((self.metric**2).sum() / 2)))
        )
        return self.metric, gain, float(self.metric_radius or 1.0)

    def to_tensors(
        self,
        view_to_train: np.ndarray,
        n_train: int,
        device: torch.device | str = "cpu",
        weights: LossWeights | None = None,
    ) -> LatentTargets:
        """Tensors for the loss, in loss space; point targets are scattered to training-sample indices."""
        k = self.num_classes
        a, gain, radius = self.loss_space()
        centers = self.centers @ a.T
        spreads = self.spreads * gain
        # a separation along a pair's direction d is |A d^| times longer in loss space
        d = self.centers[:, None, :] - self.centers[None, :, :]
        n = np.linalg.norm(d, axis=2, keepdims=True)
        unit = np.where(n > 1e-12, d / np.maximum(n, 1e-12), 0.0)
        along = np.linalg.norm(unit @ a.T, axis=2)
        along = np.where(n[..., 0] > 1e-12, along, float(np.sqrt((a**2).sum() / 2)))
        sep = self.sep_min * along
        point_pos = torch.zeros(n_train, 2)
        point_mask = torch.zeros(n_train)
        if self.points:
            vi = np.fromiter(self.points.keys(), dtype=np.int64)
            pos = np.array(list(self.points.values()), dtype=np.float64) @ a.T
            ti = torch.from_numpy(view_to_train[vi])
            point_pos[ti] = torch.tensor(pos, dtype=torch.float32)
            point_mask[ti] = 1.0
        return LatentTargets(
            centers=torch.tensor(centers, dtype=torch.float32),
            spreads=torch.tensor(spreads, dtype=torch.float32),
            class_mask=torch.ones(k),
            sep_min=torch.tensor(sep, dtype=torch.float32),
            point_pos=point_pos,
            point_mask=point_mask,
            ref_radius=torch.tensor(float(radius)),
            metric=torch.tensor(a, dtype=torch.float32),
            weights=weights or LossWeights(),
        ).to(device)


def with_metric(
    layout: TargetLayout, z: np.ndarray, y: np.ndarray, projection_weight: np.ndarray, feature_radius: float
) -> TargetLayout:
    """Attach the loss space of a linear view ``z = g @ W.T + b`` to a layout taken on points ``z``.

    A displacement dz on screen takes at least the feature change W^+ dz, of length |(W W^T)^(-1/2) dz|.
    The loss measures that length in units of the features' RMS radius, ``A = (W W^T)^(-1/2) / R``: then
    its curvature with respect to the features is the same in every direction. Measured in view units
    instead, an LDA view (which magnifies low-variance feature directions) made a 1-unit drag demand a
    tiny feature change with huge gradients, and training diverged within a few steps on digits.
    """
    w = np.asarray(projection_weight, dtype=np.float64)
    evals, evecs = np.linalg.eigh(w @ w.T)
    a = (evecs @ np.diag(1.0 / np.sqrt(np.maximum(evals, 1e-300))) @ evecs.T) / max(feature_radius, 1e-12)
    z = np.asarray(z, dtype=np.float64)
    u = z @ a.T
    gain = np.full(layout.num_classes, float(np.sqrt((a**2).sum() / 2)))
    for c in range(layout.num_classes):
        m = y == c
        if m.sum() > 1:
            zs = np.sqrt(((z[m] - z[m].mean(0)) ** 2).sum(1).mean())
            us = np.sqrt(((u[m] - u[m].mean(0)) ** 2).sum(1).mean())
            if zs > 1e-12:
                gain[c] = us / zs
    out = layout.copy()
    out.metric, out.spread_gain = a, gain
    out.metric_radius = float(np.sqrt((u**2).sum(1).mean())) or 1.0
    return out


def layout_from_points(z: np.ndarray, y: np.ndarray, num_classes: int) -> TargetLayout:
    """The layout as it stands now: each class's centroid and RMS spread on the view set."""
    z = np.asarray(z, dtype=np.float64)
    centers = np.zeros((num_classes, 2))
    spreads = np.zeros(num_classes)
    for c in range(num_classes):
        zc = z[y == c]
        if len(zc):
            centers[c] = zc.mean(axis=0)
            spreads[c] = math.sqrt(((zc - centers[c]) ** 2).sum(axis=1).mean())
    radius = float(np.sqrt((z**2).sum(axis=1).mean())) if len(z) else 1.0
    return TargetLayout(
        centers=centers,
        spreads=spreads,
        sep_min=np.zeros((num_classes, num_classes)),
        group=np.arange(num_classes),
        edited=np.zeros(num_classes, dtype=bool),
        ref_radius=radius if radius > 1e-9 else 1.0,
    )


# ---------------------------------------------------------------- validation


def _req(edit: dict, key: str, where: str) -> Any:
    if key not in edit:
        raise EditError(f"{where}: '{edit.get('op')}' needs '{key}'")
    return edit[key]


def _class(v: Any, k: int, where: str, key: str = "class") -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise EditError(f"{where}: '{key}' must be a class index (integer), got {v!r}")
    if not 0 <= v < k:
        raise EditError(f"{where}: class {v} does not exist (classes are 0..{k - 1})")
    return v


def _number(
    v: Any, where: str, key: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise EditError(f"{where}: '{key}' must be a finite number, got {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise EditError(f"{where}: '{key}' must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise EditError(f"{where}: '{key}' must be <= {hi}, got {v}")
    return float(v)


def _point(v: Any, where: str, key: str = "to") -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise EditError(f"{where}: '{key}' must be a point [x, y], got {v!r}")
    return (_number(v[0], where, key), _number(v[1], where, key))


def _pair(v: Any, k: int, where: str) -> tuple[int, int]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise EditError(f"{where}: 'classes' must be two class indices, got {v!r}")
    a, b = _class(v[0], k, where, "classes"), _class(v[1], k, where, "classes")
    if a == b:
        raise EditError(f"{where}: 'classes' must name two different classes, got {a} twice")
    return a, b


def validate_edit(edit: Any, num_classes: int, view_size: int, where: str = "edit") -> dict:
    """Check one edit against its op's schema; return it normalised (points as tuples)."""
    if not isinstance(edit, dict):
        raise EditError(f"{where}: an edit must be an object with an 'op', got {type(edit).__name__}")
    op = edit.get("op")
    if op not in EDIT_OPS:
        raise EditError(f"{where}: unknown op {op!r}; expected one of {', '.join(EDIT_OPS)}")
    allowed = {
        "move_center": {"class", "to"},
        "scale_spread": {"class", "factor"},
        "move_points": {"indices", "to"},
        "merge": {"classes"},
        "separate": {"classes", "min_distance"},
        "strategy": {"name", "strength"},
    }
    extra = set(edit) - allowed[op] - {"op", "origin"}
    if extra:
        raise EditError(f"{where}: unexpected key(s) {sorted(extra)} for op '{op}'")
    out: dict[str, Any] = {"op": op}
    if "origin" in edit:  # who proposed it ("hand", "suggested:NAME"): journaled, no effect on the loss
        origin = edit["origin"]
        if not isinstance(origin, str) or not 0 < len(origin) <= 100:
            raise EditError(f"{where}: 'origin' must be a short string such as 'hand' or 'suggested:compactness'")
        out["origin"] = origin
    if op == "move_center":
        out["class"] = _class(_req(edit, "class", where), num_classes, where)
        out["to"] = _point(_req(edit, "to", where), where)
    elif op == "scale_spread":
        out["class"] = _class(_req(edit, "class", where), num_classes, where)
        out["factor"] = _number(_req(edit, "factor", where), where, "factor", lo=0.0, hi=10.0, lo_open=True)
    elif op == "move_points":
        idx = _req(edit, "indices", where)
        if not isinstance(idx, list) or not idx:
            raise EditError(f"{where}: 'indices' must be a non-empty list of view-set indices")
        for i in idx:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < view_size:
                raise EditError(f"{where}: index {i!r} is not in the view set (0..{view_size - 1})")
        to = _req(edit, "to", where)
        if isinstance(to, (list, tuple)) and to and isinstance(to[0], (list, tuple)):
            if len(to) != len(idx):
                raise EditError(f"{where}: 'to' has {len(to)} points for {len(idx)} indices")
            out["to"] = [_point(p, where) for p in to]
        else:
            out["to"] = [_point(to, where)] * len(idx)
        out["indices"] = list(idx)
    elif op == "merge":
        out["classes"] = _pair(_req(edit, "classes", where), num_classes, where)
    elif op == "separate":
        out["classes"] = _pair(_req(edit, "classes", where), num_classes, where)
        out["min_distance"] = _number(
            _req(edit, "min_distance", where), where, "min_distance", lo=0.0, hi=100.0, lo_open=True
        )
    elif op == "strategy":
        name = _req(edit, "name", where)
        if name not in STRATEGIES:
            raise EditError(f"{where}: unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
        out["name"] = name
        out["strength"] = _number(edit.get("strength", 0.5), where, "strength", lo=0.0, hi=1.0, lo_open=True)
    return out


# ---------------------------------------------------------------- application


def _members(layout: TargetLayout, c: int) -> np.ndarray:
    return np.nonzero(layout.group == layout.group[c])[0]


def _set_center(layout: TargetLayout, c: int, to: np.ndarray) -> None:
    """Move a class; merged classes share one centre, so they move together."""
    assert layout.edited is not None  # apply_edit makes it before any edit
    for m in _members(layout, c):
        layout.centers[m] = to
        layout.edited[m] = True


def _push_apart(layout: TargetLayout, a: int, b: int, dist: float) -> None:
    """Move a and b symmetrically to ``dist`` apart; merged partners move with them (one shared centre)."""
    ca, cb = layout.centers[a].copy(), layout.centers[b].copy()
    d = cb - ca
    n = float(np.linalg.norm(d))
    if n >= dist:
        return
    u = d / n if n > 1e-9 else np.array([1.0, 0.0])
    mid = (ca + cb) / 2
    _set_center(layout, a, mid - u * dist / 2)
    _set_center(layout, b, mid + u * dist / 2)


def apply_edit(layout: TargetLayout, edit: dict) -> TargetLayout:
    """Apply one validated edit; returns a new layout (the input is left as it was, for undo)."""
    out = layout.copy()
    if out.edited is None:
        out.edited = np.zeros(out.num_classes, dtype=bool)
    op = edit["op"]
    if op == "move_center":
        _set_center(out, edit["class"], np.asarray(edit["to"], dtype=np.float64))
    elif op == "scale_spread":
        c = edit["class"]
        out.spreads[c] *= edit["factor"]
        out.edited[c] = True
    elif op == "move_points":
        for i, p in zip(edit["indices"], edit["to"]):
            out.points[int(i)] = (float(p[0]), float(p[1]))
    elif op == "merge":
        a, b = edit["classes"]
        ma, mb = _members(out, a), _members(out, b)
        both = np.concatenate([ma, mb])
        centre = out.centers[both].mean(axis=0)
        out.group[mb] = out.group[a]
        out.centers[both] = centre
        out.sep_min[np.ix_(both, both)] = 0.0
        out.edited[both] = True
    elif op == "separate":
        a, b = edit["classes"]
        d = edit["min_distance"]
        if out.group[a] == out.group[b]:  # separating merged classes un-merges them
            out.group[b] = int(out.group.max()) + 1
        out.sep_min[a, b] = out.sep_min[b, a] = d
        _push_apart(out, a, b, d)
        out.edited[[a, b]] = True
    elif op == "strategy":
        out = _apply_strategy(out, edit["name"], edit["strength"])
    return out


def _apply_strategy(layout: TargetLayout, name: str, s: float) -> TargetLayout:
    """The strategies HILL's participants were seen to use, applied to every class (a scripted participant)."""
    k = layout.num_classes
    if name == "compactness":
        layout.spreads *= 1.0 - s
    elif name == "separation":
        g = layout.centers.mean(axis=0)
        layout.centers = g + (layout.centers - g) * (1.0 + s)
        d = np.linalg.norm(layout.centers[:, None] - layout.centers[None], axis=2)
        same = layout.group[:, None] == layout.group[None]
        layout.sep_min = np.where(same, 0.0, d)
    elif name == "merge_similar":
        d = np.linalg.norm(layout.centers[:, None] - layout.centers[None], axis=2)
        iu = np.triu_indices(k, 1)
        thresh = s * float(np.median(d[iu]))
        order = np.argsort(d[iu], kind="stable")
        used: set[int] = set()
        for j in order:
            a, b = int(iu[0][j]), int(iu[1][j])
            if d[a, b] >= thresh:
                break
            if a in used or b in used:
                continue
            used.update((a, b))
            layout = apply_edit(layout, {"op": "merge", "classes": (a, b)})
    assert layout.edited is not None  # apply_edit made it
    layout.edited[:] = True
    return layout


def apply_edits(layout: TargetLayout, edits: list[dict]) -> TargetLayout:
    for e in edits:
        layout = apply_edit(layout, e)
    return layout
