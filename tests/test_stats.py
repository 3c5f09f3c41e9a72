"""Paired intervals: the numbers a compare page or study report prints under a gain."""

import math

import numpy as np
import pytest

from hill_app.studies.stats import bootstrap, fmt_interval, paired_interval, paired_t


def test_paired_t_matches_the_textbook_formula():
    d = [0.01, -0.005, 0.02, 0.0, 0.015]
    iv = paired_t(d)
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    # t_{0.975, 4} = 2.776445 (tables)
    assert iv.mean == pytest.approx(mean)
    assert iv.sd == pytest.approx(sd)
    assert iv.lo == pytest.approx(mean - 2.776445 * sd / math.sqrt(5), rel=1e-6)
    assert iv.hi == pytest.approx(mean + 2.776445 * sd / math.sqrt(5), rel=1e-6)
    assert (iv.wins, iv.losses) == (3, 1)
    assert iv.method == "paired t"


def test_verdicts_and_notes():
    assert paired_t([0.01, 0.012, 0.011, 0.009]).verdict == "above zero"
    assert paired_t([-0.01, -0.012, -0.011, -0.009]).verdict == "below zero"
    iv = paired_t([0.01, -0.01, 0.02, -0.015])
    assert iv.includes_zero and "includes zero" in iv.note()
    one = paired_t([0.01])
    assert one.lo is None and one.includes_zero is None and "too few" in one.note()
    assert paired_t([]).note() == "no complete pairs"


def test_identical_pairs_give_a_zero_width_interval_at_zero():
    iv = paired_interval([0.8, 0.7, 0.75], [0.8, 0.7, 0.75])
    assert (iv.mean, iv.lo, iv.hi) == (0.0, 0.0, 0.0) and iv.includes_zero


def test_bootstrap_is_seeded_and_close_to_t_for_normal_data():
    rng = np.random.default_rng(3)
    d = rng.normal(0.01, 0.01, size=40)
    a, b = bootstrap(d), bootstrap(d)
    assert (a.lo, a.hi) == (b.lo, b.hi)
    t = paired_t(d)
    assert a.lo == pytest.approx(t.lo, abs=0.002) and a.hi == pytest.approx(t.hi, abs=0.002)
    assert "bootstrap" in a.method


def test_pairing_is_checked():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_interval([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        paired_t([0.1, float("nan")])
    with pytest.raises(ValueError, match="method"):
        paired_interval([1.0], [1.0], method="anova")


def test_format_in_percentage_points():
    iv = paired_t([0.01, 0.02, 0.03])
    assert fmt_interval(iv).startswith("+2.00 [")
    assert fmt_interval(paired_t([0.005])) == "+0.50"
