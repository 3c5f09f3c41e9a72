"""Edits a participant could make at a pause, computed from what the window shows: the scatter of the view
set (positions, true labels, predictions) and the validation confusion matrix.

The same functions are the scripted participants of ``hill-app compare`` (studies/compare.py), so the
effect shown next to a suggestion is the effect of exactly this code, measured paired by seed against the
no-edit baseline (``MEASURED`` below; "not measured" until a measurement is recorded there). numpy only.

A strategy spec is ``NAME[:STRENGTH]``; several joined by ``+`` or ``,`` make a mixture (their edits are
concatenated in order). ``"default"`` is ``DEFAULT``. See docs/measuring-edits.md for what each one does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


class SuggestError(ValueError):
    """A strategy spec or a snapshot is malformed; the message names the value and what was expected."""


@dataclass(frozen=True)
class Geometry:
    """What the scatter shows: per-class centre and RMS spread of the view set, in view coordinates."""

    z: np.ndarray  # (N, 2)
    labels: np.ndarray  # (N,)
    preds: np.ndarray | None
    centers: np.ndarray  # (K, 2); NaN for a class with no view points
    spreads: np.ndarray  # (K,)
    counts: np.ndarray  # (K,)

    @property
    def k(self) -> int:
        return len(self.centers)

    def distances(self) -> np.ndarray:
        """(K, K) centre distances, inf where a class has no points and on the diagonal."""
        d = np.linalg.norm(self.centers[:, None] - self.centers[None], axis=2)
        d[~np.isfinite(d)] = np.inf
        np.fill_diagonal(d, np.inf)
        return d


def geometry(snapshot: dict[str, Any], num_classes: int | None = None) -> Geometry:
    """Centres and spreads as ``layout_from_points`` computes them (so edits land where the engine expects)."""
    if not isinstance(snapshot, dict) or "z" not in snapshot or "labels" not in snapshot:
        raise SuggestError("snapshot: expected a dict with 'z' (N x 2 view positions) and 'labels' (N)")
    z = np.asarray(snapshot["z"], dtype=np.float64)
    labels = np.asarray(snapshot["labels"]).astype(np.int64).reshape(-1)
    if z.ndim != 2 or z.shape[1] != 2 or len(z) != len(labels):
        raise SuggestError(f"snapshot: 'z' has shape {z.shape} for {len(labels)} labels; expected (N, 2)")
    if not np.isfinite(z).all():
        raise SuggestError("snapshot: 'z' holds NaN or inf; no edits can be suggested on a non-finite view")
    preds = snapshot.get("preds")
    preds = None if preds is None else np.asarray(preds).astype(np.int64).reshape(-1)
    if preds is not None and len(preds) != len(labels):
        raise SuggestError(f"snapshot: {len(preds)} predictions for {len(labels)} labels")
    k = int(num_classes if num_classes is not None else (labels.max() + 1 if len(labels) else 0))
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise SuggestError(
            f"snapshot: labels span {labels.min()}..{labels.max()}, but there are {k} classes "
            "(from the confusion matrix or the snapshot)"
        )
    centers = np.full((k, 2), np.nan)
    spreads = np.zeros(k)
    counts = np.bincount(labels, minlength=k)[:k]
    for c in range(k):
        zc = z[labels == c]
        if len(zc):
            centers[c] = zc.mean(axis=0)
            spreads[c] = math.sqrt(((zc - centers[c]) ** 2).sum(axis=1).mean())
    return Geometry(z, labels, preds, centers, spreads, counts)


def _confusion(confusion: Any, g: Geometry) -> np.ndarray:
    """The validation confusion (rows: true class); without one, the view set's own (labels vs predictions)."""
    if confusion is not None:
        c = np.asarray(confusion, dtype=np.float64)
        if c.ndim != 2 or c.shape != (g.k, g.k) or not np.isfinite(c).all() or (c < 0).any():
            raise SuggestError(f"confusion: expected a {g.k} x {g.k} matrix of counts, got shape {c.shape}")
        return c
    if g.preds is None:
        raise SuggestError("confusion: none given and the snapshot has no 'preds' to build one from")
    c = np.zeros((g.k, g.k))
    np.add.at(c, (g.labels, np.clip(g.preds, 0, g.k - 1)), 1.0)
    return c


def confused_pairs(confusion: np.ndarray, top: int) -> list[tuple[int, int, float]]:
    """The ``top`` class pairs by symmetric confusion rate (a->b plus b->a over both classes' counts), > 0."""
    k = len(confusion)
    rows = confusion.sum(axis=1)
    out = []
    for a in range(k):
        for b in range(a + 1, k):
            n = rows[a] + rows[b]
            r = (confusion[a, b] + confusion[b, a]) / n if n > 0 else 0.0
            if r > 0:
                out.append((a, b, float(r)))
    out.sort(key=lambda t: (-t[2], t[0], t[1]))
    return out[:top]


# ---------------------------------------------------------------- strategies
# Each takes (geometry, confusion or None, strength) and returns [(edit, reason)].

Edit = tuple[dict[str, Any], str]


def _engine(name: str) -> Callable[[Geometry, Any, float], list[Edit]]:
    def fn(g: Geometry, confusion: Any, s: float) -> list[Edit]:
        return [({"op": "strategy", "name": name, "strength": s}, f"the engine's '{name}' on every class")]

    return fn


def _confused_pairs_simple(g: Geometry, confusion: Any, s: float) -> list[Edit]:
    """The issue-12 form: the 3 most-confused pairs pushed to (1 + s) times their distance."""
    out = []
    d = g.distances()
    for a, b, r in confused_pairs(_confusion(confusion, g), 3):
        if not np.isfinite(d[a, b]):
            continue
        out.append(
            (
                {"op": "separate", "classes": [a, b], "min_distance": float(d[a, b] * (1 + s))},
                f"classes {a} and {b}: {r:.1%} confused; pushed to {1 + s:g}x their distance",
            )
        )
    return out


def _confusion_separation(g: Geometry, confusion: Any, s: float) -> list[Edit]:
    """Push apart the most-confused pairs whose clusters overlap in the view, by s times the overlap.

    Overlap of a pair = spread_a + spread_b - distance (how far the two clusters' RMS discs intersect).
    The new distance is distance + s * overlap, at most (1 + s/2) times the distance: a pair that barely
    overlaps moves little, and no pair is asked to jump across the view.
    """
    out = []
    d = g.distances()
    for a, b, r in confused_pairs(_confusion(confusion, g), 3):
        dist = d[a, b]
        if not np.isfinite(dist) or dist <= 1e-9:
            continue
        overlap = g.spreads[a] + g.spreads[b] - dist
        if overlap <= 0.02 * dist:
            continue
        target = min(dist + s * overlap, dist * (1 + s / 2))
        out.append(
            (
                {"op": "separate", "classes": [a, b], "min_distance": float(target)},
                f"classes {a} and {b}: {r:.1%} confused, clusters overlap by {overlap / dist:.0%} of their "
                f"distance; distance {dist:.3g} -> {target:.3g}",
            )
        )
    return out


def _misclassified_to_centre(g: Geometry, confusion: Any, s: float) -> list[Edit]:
    """The issue-12 form: every view point the model gets wrong moved s of the way to its class centre."""
    if g.preds is None:
        raise SuggestError("misclassified_to_centre needs the snapshot's 'preds'")
    out = []
    for c in range(g.k):
        idx = np.nonzero((g.labels == c) & (g.preds != c))[0]
        if not len(idx) or not np.isfinite(g.centers[c]).all():
            continue
        to = g.z[idx] + s * (g.centers[c] - g.z[idx])
        out.append(
            (
                {"op": "move_points", "indices": idx.tolist(), "to": to.tolist()},
                f"{len(idx)} misclassified point(s) of class {c} moved {s:.0%} of the way to its centre",
            )
        )
    return out


def _misplaced(g: Geometry, s: float, only_correct: bool, max_share: float = 0.02) -> list[Edit]:
    """View points sitting inside another class's cluster, moved s of the way toward their own centre.

    A point of class c is misplaced when the nearest centre is another class o's, it lies within o's
    spread and outside c's own. Only the deepest ``max_share`` of the view set are moved (the ones whose
    distance to their own centre, in own spreads, most exceeds their distance to o's, in o's spreads), so
    a few clear cases are asked for rather than every hard image.
    """
    ok = np.isfinite(g.centers).all(axis=1)
    if ok.sum() < 2:
        return []
    cen = np.where(ok[:, None], g.centers, np.inf)
    dist = np.linalg.norm(g.z[:, None, :] - cen[None], axis=2)  # (N, K)
    own = dist[np.arange(len(g.z)), g.labels]
    other = dist.copy()
    other[np.arange(len(g.z)), g.labels] = np.inf
    o = other.argmin(axis=1)
    d_o = other[np.arange(len(g.z)), o]
    sp = np.maximum(g.spreads, 1e-12)
    mis = (d_o < own) & (d_o < sp[o]) & (own > sp[g.labels])
    if only_correct:
        if g.preds is None:
            raise SuggestError("misplaced_correct needs the snapshot's 'preds'")
        mis &= g.preds == g.labels
    idx = np.nonzero(mis)[0]
    if not len(idx):
        return []
    depth = (own[idx] / sp[g.labels[idx]]) / np.maximum(d_o[idx] / sp[o[idx]], 1e-12)
    cap = max(1, int(round(max_share * len(g.z))))
    idx = idx[np.argsort(-depth, kind="stable")[:cap]]
    out = []
    for c in range(g.k):
        sel = np.sort(idx[g.labels[idx] == c])
        if not len(sel):
            continue
        to = g.z[sel] + s * (g.centers[c] - g.z[sel])
        which = "correctly classified " if only_correct else ""
        out.append(
            (
                {"op": "move_points", "indices": sel.tolist(), "to": to.tolist()},
                f"{len(sel)} {which}point(s) of class {c} inside another class's cluster moved {s:.0%} of "
                "the way to their own centre",
            )
        )
    return out


def _misplaced_points(g: Geometry, confusion: Any, s: float) -> list[Edit]:
    return _misplaced(g, s, only_correct=False)


def _misplaced_correct(g: Geometry, confusion: Any, s: float) -> list[Edit]:
    return _misplaced(g, s, only_correct=True)


def _selective_compactness(g: Geometry, confusion: Any, s: float) -> list[Edit]:
    """Tighten only the classes whose spread is large relative to their distance to the nearest other class.

    ratio_c = spread_c / nearest-centre distance_c. Classes above the median ratio are shrunk toward the
    median ratio, by at most the fraction s: factor = max(1 - s, median / ratio_c).
    """
    d = g.distances()
    nn = d.min(axis=1)
    ok = np.isfinite(nn) & (nn > 1e-12) & (g.counts > 1)
    if ok.sum() < 2:
        return []
    ratio = np.where(ok, g.spreads / np.where(ok, nn, 1.0), np.nan)
    med = float(np.nanmedian(ratio))
    out = []
    for c in np.nonzero(ok & (ratio > med))[0]:
        f = max(1.0 - s, med / ratio[c])
        if f >= 0.999:
            continue
        out.append(
            (
                {"op": "scale_spread", "class": int(c), "factor": float(f)},
                f"class {c}: spread {ratio[c]:.2f}x its nearest-class distance (median {med:.2f}); spread x{f:.2f}",
            )
        )
    return out


@dataclass(frozen=True)
class Strategy:
    fn: Callable[[Geometry, Any, float], list[Edit]]
    strength: float  # default strength
    doc: str


STRATEGIES: dict[str, Strategy] = {
    "compactness": Strategy(_engine("compactness"), 0.5, "every class's spread x (1 - s) (engine strategy)"),
    "separation": Strategy(_engine("separation"), 0.5, "every centre pushed out from the middle by s (engine)"),
    "merge_similar": Strategy(_engine("merge_similar"), 0.5, "merge pairs closer than s x median distance (engine)"),
    "confused_pairs": Strategy(
        _confused_pairs_simple, 0.5, "the 3 most-confused pairs (validation) pushed to (1 + s) x their distance"
    ),
    "misclassified_to_centre": Strategy(
        _misclassified_to_centre, 1.0, "misclassified view points moved s of the way to their class centre"
    ),
    "confusion_separation": Strategy(
        _confusion_separation, 0.5, "most-confused overlapping pairs pushed apart by s x their overlap"
    ),
    "misplaced_points": Strategy(
        _misplaced_points, 0.5, "points inside another class's cluster moved s toward their centre (2% at most)"
    ),
    "misplaced_correct": Strategy(
        _misplaced_correct, 0.5, "as misplaced_points, only points the model already classifies right"
    ),
    "selective_compactness": Strategy(
        _selective_compactness, 0.5, "shrink only classes whose spread / nearest distance is above the median"
    ),
}

DEFAULT = "selective_compactness:0.5"

# Measured effects: `hill-app compare` results, paired by seed against the no-edit baseline. Keys are
# canonical specs (name:strength, every pause); see bench/results/ for the runs behind each line.
# Mean paired gain in test accuracy with its 95% paired-t interval: no interval lies above zero (every one
# includes zero); bench/results/compare_cifar10_real_h200 and bench/results/compare_digits_train300.
MEASURED: dict[str, str] = {
    "compactness:0.5": (
        "CIFAR-10 real subset, H200: +0.38 pp [-0.44, +1.21] over 9 seeds; "
        "digits train_size=300, CPU: -0.05 pp [-0.70, +0.61] over 6 seeds"
    ),
    "merge_similar:0.5": "CIFAR-10 real subset, H200: +0.21 pp [-0.54, +0.95] over 9 seeds",
    "separation:0.5": "CIFAR-10 real subset, H200: -0.42 pp [-1.40, +0.57] over 9 seeds",
    "confused_pairs:0.5": (
        "CIFAR-10 real subset, H200: -0.27 pp [-1.19, +0.65] over 9 seeds; "
        "digits train_size=300, CPU: -0.32 pp [-1.00, +0.35] over 6 seeds"
    ),
    "misclassified_to_centre:1": (
        "CIFAR-10 real subset, H200: -0.93 pp [-2.86, +1.00] over 9 seeds; "
        "digits train_size=300, CPU: +0.32 pp [-0.68, +1.33] over 6 seeds"
    ),
    "confusion_separation:0.5": (
        "CIFAR-10 real subset, H200: +0.12 pp [-0.83, +1.07] over 8 seeds; "
        "digits train_size=300, CPU: +0.19 pp [-0.33, +0.70] over 6 seeds"
    ),
    "misplaced_correct:0.5": (
        "CIFAR-10 real subset, H200: -0.29 pp [-1.15, +0.56] over 8 seeds; "
        "digits train_size=300, CPU: -0.51 pp [-1.19, +0.17] over 6 seeds"
    ),
    "misplaced_points:0.5": "CIFAR-10 real subset, H200: +0.09 pp [-0.73, +0.91] over 8 seeds",
    "selective_compactness:0.5": (
        "CIFAR-10 real subset, H200: +0.12 pp [-0.85, +1.10] over 8 seeds; "
        "digits train_size=300, CPU: +0.09 pp [-0.68, +0.87] over 6 seeds"
    ),
}

_SPEC = re.compile(r"^\s*([a-z_]+)\s*(?::\s*([0-9.eE+-]+))?\s*$")


def parse_spec(text: str) -> list[tuple[str, float]]:
    """'a:0.3+b' -> [('a', 0.3), ('b', default)]; 'default' -> DEFAULT."""
    if not isinstance(text, str) or not text.strip():
        raise SuggestError(f"strategies: expected NAME[:STRENGTH] joined by '+', got {text!r}")
    if text.strip() == "default":
        text = DEFAULT
    out = []
    for part in re.split(r"[+,]", text):
        m = _SPEC.match(part)
        if not m:
            raise SuggestError(f"strategies: {part!r} is not NAME[:STRENGTH] (names: {', '.join(STRATEGIES)})")
        name, strength = m.group(1), m.group(2)
        if name not in STRATEGIES:
            raise SuggestError(f"strategies: unknown {name!r}; expected one of {', '.join(STRATEGIES)}")
        if strength is None:
            s = STRATEGIES[name].strength
        else:
            try:
                s = float(strength)
            except ValueError:
                raise SuggestError(f"strategies: strength {strength!r} of {name} is not a number") from None
            if not 0 < s <= 1:
                raise SuggestError(f"strategies: strength of {name} must lie in (0, 1], got {s:g}")
        out.append((name, s))
    return out


def canonical(parts: list[tuple[str, float]]) -> str:
    return "+".join(f"{n}:{s:g}" for n, s in parts)


def measured_effect(name: str, strength: float) -> str:
    return MEASURED.get(f"{name}:{strength:g}", "not measured")


def _num_classes(snapshot: dict[str, Any], confusion: Any) -> int | None:
    """K from the confusion matrix, the snapshot's num_classes or its committed layout; else from the labels."""
    if confusion is not None:
        return len(confusion)
    if isinstance(snapshot, dict):
        if isinstance(snapshot.get("num_classes"), int):
            return int(snapshot["num_classes"])
        lay = snapshot.get("layout")
        if isinstance(lay, dict) and lay.get("centers") is not None:
            return len(lay["centers"])
    return None


def suggest_edits(
    snapshot: dict[str, Any], confusion: list[list[int]] | None, *, strategies: str = "default"
) -> list[dict[str, Any]]:
    """Edits for the current pause: ``[{"edit", "strategy", "measured", "reason"}]``.

    ``snapshot`` holds the view set as the window shows it: ``z`` (N x 2), ``labels`` and ``preds``.
    ``confusion`` is the validation confusion matrix (rows: true class); None uses the view set's own.
    Each edit carries ``"origin": "suggested:NAME"`` so the journal tells suggested from hand-made edits.
    """
    parts = parse_spec(strategies)
    g = geometry(snapshot, _num_classes(snapshot, confusion))
    out = []
    for name, s in parts:
        for edit, reason in STRATEGIES[name].fn(g, confusion, s):
            out.append(
                {
                    "edit": {**edit, "origin": f"suggested:{name}"},
                    "strategy": name,
                    "strength": s,
                    "measured": measured_effect(name, s),
                    "reason": reason,
                }
            )
    return out
