"""Which strategy a participant used at a pause, classified from the logged edits (rule-based): compactness,
separation, merge, points, a mixture, other or none. The rules: studies/README.md ("Strategies").

Edits are replayed one by one on the layout at the pause (``before``) with the same function the engine
uses, so each edit is judged on the layout it was made on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hill_app.losses import EditError, TargetLayout, apply_edit, validate_edit

LABELS = ("compactness", "separation", "merge", "points")
MIXTURE_SHARE = 0.3
MERGE_RATIO = 0.5
_EPS = 1e-9


@dataclass
class PauseStrategy:
    label: str  # one of LABELS, "mixture", "other" or "none"
    counts: dict[str, int] = field(default_factory=dict)  # per LABELS + "other"
    shares: dict[str, float] = field(default_factory=dict)
    per_edit: list[str] = field(default_factory=list)
    mixture_of: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        if self.label == "mixture":
            return "mixture (" + " + ".join(self.mixture_of) + ")"
        return self.label

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "text": self.text,
            "counts": self.counts,
            "shares": self.shares,
            "per_edit": self.per_edit,
            "mixture_of": self.mixture_of,
        }


def _nearest_distance(layout: TargetLayout, c: int) -> float:
    """Distance from class c's centre to the nearest centre of a class not merged with it."""
    others = layout.group != layout.group[c]
    if not others.any():
        return float("inf")
    return float(np.linalg.norm(layout.centers[others] - layout.centers[c], axis=1).min())


def classify_edit(edit: dict[str, Any], before: TargetLayout | None = None, after: TargetLayout | None = None) -> str:
    """One edit's strategy; ``before``/``after`` are the layouts just before and after it (may be None)."""
    op = edit.get("op")
    if op == "scale_spread":
        return "compactness" if edit.get("factor", 1.0) < 1.0 else "other"
    if op == "separate":
        return "separation"
    if op == "merge":
        return "merge"
    if op == "move_points":
        return "points"
    if op == "strategy":
        name = edit.get("name")
        if name == "compactness":
            return "compactness"
        if name == "separation":
            return "separation"
        if name == "merge_similar":
            if before is not None and after is not None:
                merged = len(np.unique(after.group)) < len(np.unique(before.group))
                return "merge" if merged else "other"
            return "merge"
        return "other"
    if op == "move_center":
        if before is None or after is None:
            return "other"
        c = edit["class"]
        d0, d1 = _nearest_distance(before, c), _nearest_distance(after, c)
        if not np.isfinite(d0) or not np.isfinite(d1):
            return "other"
        if d1 > d0 + _EPS:
            return "separation"
        if d1 < MERGE_RATIO * d0:
            return "merge"
        return "other"
    return "other"


def label_from_counts(counts: dict[str, int]) -> PauseStrategy:
    total = sum(counts.values())
    full = {k: int(counts.get(k, 0)) for k in LABELS + ("other",)}
    if total == 0:
        return PauseStrategy("none", full, {k: 0.0 for k in full})
    shares = {k: v / total for k, v in full.items()}
    substantial = [k for k in LABELS if shares[k] >= MIXTURE_SHARE]
    if len(substantial) >= 2:
        return PauseStrategy("mixture", full, shares, mixture_of=substantial)
    if len(substantial) == 1:
        return PauseStrategy(substantial[0], full, shares)
    named = [k for k in LABELS if full[k] > 0]
    if named:
        return PauseStrategy(max(named, key=lambda k: (full[k], -LABELS.index(k))), full, shares)
    return PauseStrategy("other", full, shares)


def classify_pause(
    edits: list[dict[str, Any]], before: TargetLayout | None = None, view_size: int | None = None
) -> PauseStrategy:
    """Classify a pause's committed edits. ``before`` is the layout at the pause (from its snapshot)."""
    per_edit: list[str] = []
    layout = before
    k = before.num_classes if before is not None else None
    for e in edits:
        if layout is not None:
            try:
                clean = validate_edit(e, k, view_size if view_size is not None else 10**12)
                nxt = apply_edit(layout, clean)
            except EditError:
                clean, nxt = e, None
            per_edit.append(classify_edit(clean, layout, nxt))
            layout = nxt
        else:
            per_edit.append(classify_edit(e))
    counts = {k_: per_edit.count(k_) for k_ in LABELS + ("other",)}
    out = label_from_counts(counts)
    out.per_edit = per_edit
    return out


def combine(strategies: list[PauseStrategy]) -> PauseStrategy:
    """A participant's overall strategy: the same rule over all their pauses' edits together."""
    counts = {k: sum(s.counts.get(k, 0) for s in strategies) for k in LABELS + ("other",)}
    out = label_from_counts(counts)
    out.per_edit = [p for s in strategies for p in s.per_edit]
    return out
