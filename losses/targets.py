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

    centers: np.ndarray                      # (K, 2) float64
    spreads: np.ndarray                      # (K,)
    sep_min: np.ndarray                      # (K, K) symmetric, 0 = no separation target
    group: np.ndarray                        # (K,) int: classes with the same id are merged
    points: dict[int, tuple[float, float]] = field(default_factory=dict)  # view index -> drop position
    edited: np.ndarray | None = None         # (K,) bool: classes the user touched (display only)
    ref_radius: float = 1.0                  # RMS radius of the view set when the layout was taken

    @property
    def num_classes(self) -> int:
        return int(self.centers.shape[0])

    def copy(self) -> "TargetLayout":
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "centers": self.centers.tolist(), "spreads": self.spreads.tolist(), "sep_min": self.sep_min.tolist(),
            "group": self.group.tolist(), "points": {str(k): list(v) for k, v in sorted(self.points.items())},
            "edited": None if self.edited is None else self.edited.tolist(), "ref_radius": self.ref_radius,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TargetLayout":
        return cls(
            centers=np.asarray(d["centers"], dtype=np.float64), spreads=np.asarray(d["spreads"], dtype=np.float64),
            sep_min=np.asarray(d["sep_min"], dtype=np.float64), group=np.asarray(d["group"], dtype=np.int64),
            points={int(k): (float(v[0]), float(v[1])) for k, v in d.get("points", {}).items()},
            edited=None if d.get("edited") is None else np.asarray(d["edited"], dtype=bool),
            ref_radius=float(d.get("ref_radius", 1.0)),
        )

    def to_tensors(self, view_to_train: np.ndarray, n_train: int, device: torch.device | str = "cpu",
                   weights: LossWeights | None = None) -> LatentTargets:
        """Tensors for the loss; point targets are scattered to training-sample indices."""
        k = self.num_classes
        point_pos = torch.zeros(n_train, 2)
        point_mask = torch.zeros(n_train)
        if self.points:
            vi = np.fromiter(self.points.keys(), dtype=np.int64)
            pos = torch.tensor(np.array(list(self.points.values())), dtype=torch.float32)
            ti = torch.from_numpy(view_to_train[vi])
            point_pos[ti] = pos
            point_mask[ti] = 1.0
        return LatentTargets(
            centers=torch.tensor(self.centers, dtype=torch.float32),
            spreads=torch.tensor(self.spreads, dtype=torch.float32),
            class_mask=torch.ones(k),
            sep_min=torch.tensor(self.sep_min, dtype=torch.float32),
            point_pos=point_pos, point_mask=point_mask, ref_radius=torch.tensor(float(self.ref_radius)),
            weights=weights or LossWeights(),
        ).to(device)


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
    radius = float(np.sqrt((z ** 2).sum(axis=1).mean())) if len(z) else 1.0
    return TargetLayout(centers=centers, spreads=spreads, sep_min=np.zeros((num_classes, num_classes)),
                        group=np.arange(num_classes), edited=np.zeros(num_classes, dtype=bool),
                        ref_radius=radius if radius > 1e-9 else 1.0)


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


def _number(v: Any, where: str, key: str, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False) -> float:
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
    known = {"op", "class", "to", "factor", "indices", "classes", "min_distance", "name", "strength"}
    extra = set(edit) - known
    if extra:
        raise EditError(f"{where}: unexpected key(s) {sorted(extra)} for op '{op}'")
    out: dict[str, Any] = {"op": op}
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
        out["min_distance"] = _number(_req(edit, "min_distance", where), where, "min_distance", lo=0.0,
                                      hi=100.0, lo_open=True)
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
    for m in _members(layout, c):
        layout.centers[m] = to
        layout.edited[m] = True


def _push_apart(layout: TargetLayout, a: int, b: int, dist: float) -> None:
    ca, cb = layout.centers[a], layout.centers[b]
    d = cb - ca
    n = float(np.linalg.norm(d))
    if n >= dist:
        return
    u = d / n if n > 1e-9 else np.array([1.0, 0.0])
    mid = (ca + cb) / 2
    layout.centers[a] = mid - u * dist / 2
    layout.centers[b] = mid + u * dist / 2


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
        layout.spreads *= (1.0 - s)
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
    layout.edited[:] = True
    return layout


def apply_edits(layout: TargetLayout, edits: list[dict]) -> TargetLayout:
    for e in edits:
        layout = apply_edit(layout, e)
    return layout
