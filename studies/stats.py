"""Paired confidence intervals for "did the edits help": gains of an arm over its own no-edit baseline.

Every comparison in hill-app is paired: the same seed (and so the same initial weights, data order and
augmentation) with and without edits. The interval is on the mean of the per-pair differences. Two methods:

- ``t``: the paired t interval, mean +- t(n-1) * sd / sqrt(n); exact for normal differences, the usual
  report in the HILL literature, and fine from about 5 pairs on.
- ``bootstrap``: the percentile bootstrap of the mean (seeded, so a report is reproducible); it assumes no
  shape but is too narrow for very few pairs (it never reaches beyond the observed range).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

METHODS = ("t", "bootstrap")
BOOTSTRAP_RESAMPLES = 10000


@dataclass(frozen=True)
class PairedInterval:
    """Mean of paired differences with a two-sided interval; ``lo``/``hi`` are None for fewer than 2 pairs."""

    n: int
    mean: float | None
    sd: float | None
    lo: float | None
    hi: float | None
    level: float
    method: str  # "paired t" or "percentile bootstrap (B resamples, seed S)"
    wins: int = 0  # pairs with a positive difference
    losses: int = 0  # pairs with a negative difference

    @property
    def includes_zero(self) -> bool | None:
        if self.lo is None or self.hi is None:
            return None
        return self.lo <= 0.0 <= self.hi

    @property
    def verdict(self) -> str:
        """'above zero', 'below zero', 'includes zero' or 'no interval'."""
        if self.lo is None or self.hi is None:
            return "no interval"
        if self.lo > 0:
            return "above zero"
        if self.hi < 0:
            return "below zero"
        return "includes zero"

    def note(self, unit: str = "") -> str:
        """One sentence a report can print under the number."""
        if self.n == 0:
            return "no complete pairs"
        if self.lo is None:
            return f"{self.n} pair: too few for an interval"
        v = self.verdict
        pct = f"{self.level * 100:g}%"
        if v == "includes zero":
            return f"the {pct} interval includes zero: not distinguishable from no effect with {self.n} pairs"
        if v == "above zero":
            return f"the {pct} interval lies above zero: a gain"
        return f"the {pct} interval lies below zero: a loss"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(includes_zero=self.includes_zero, verdict=self.verdict)
        return d


def _clean(diffs: Sequence[float] | np.ndarray) -> np.ndarray:
    d = np.asarray(list(diffs), dtype=np.float64).reshape(-1)
    if not np.isfinite(d).all():
        raise ValueError(f"paired differences must be finite, got {d[~np.isfinite(d)][:3].tolist()}")
    return d


def _t_quantile(p: float, df: int) -> float:
    from scipy.stats import t  # scipy comes with scikit-learn, a dependency of hill-app

    return float(t.ppf(p, df))


def paired_t(diffs: Sequence[float] | np.ndarray, level: float = 0.95) -> PairedInterval:
    """The paired t interval of the mean difference."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    d = _clean(diffs)
    n = len(d)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    if n == 0:
        return PairedInterval(0, None, None, None, None, level, "paired t")
    mean = float(d.mean())
    if n < 2:
        return PairedInterval(n, mean, None, None, None, level, "paired t", wins, losses)
    sd = float(d.std(ddof=1))
    half = _t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return PairedInterval(n, mean, sd, mean - half, mean + half, level, "paired t", wins, losses)


def bootstrap(
    diffs: Sequence[float] | np.ndarray, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> PairedInterval:
    """The percentile bootstrap interval of the mean difference (resampling pairs, seeded)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    d = _clean(diffs)
    n = len(d)
    method = f"percentile bootstrap ({resamples} resamples, seed {seed})"
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    if n == 0:
        return PairedInterval(0, None, None, None, None, level, method)
    mean = float(d.mean())
    if n < 2:
        return PairedInterval(n, mean, None, None, None, level, method, wins, losses)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return PairedInterval(n, mean, float(d.std(ddof=1)), float(lo), float(hi), level, method, wins, losses)


def paired_interval(
    treated: Sequence[float], control: Sequence[float], method: str = "t", level: float = 0.95
) -> PairedInterval:
    """Interval of mean(treated - control) over pairs given in the same order."""
    if len(treated) != len(control):
        raise ValueError(f"paired data need equal lengths, got {len(treated)} and {len(control)}")
    diffs = np.asarray(treated, dtype=np.float64) - np.asarray(control, dtype=np.float64)
    if method == "t":
        return paired_t(diffs, level)
    if method == "bootstrap":
        return bootstrap(diffs, level)
    raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")


def fmt_interval(iv: PairedInterval, scale: float = 100.0, digits: int = 2) -> str:
    """'+0.45 [-0.12, +1.02]' in percentage points (scale 100) for accuracies given as fractions."""
    if iv.mean is None:
        return "n/a"
    m = f"{iv.mean * scale:+.{digits}f}"
    if iv.lo is None or iv.hi is None:
        return m
    return f"{m} [{iv.lo * scale:+.{digits}f}, {iv.hi * scale:+.{digits}f}]"
