"""UMUX-Lite and NASA-TLX: the standard formulas, pinned on known answers; bad answers are refused."""

import itertools

import pytest

from hill_app.studies.questionnaires import (
    PAIRS,
    TLX_SCALES,
    AnswerError,
    score_answers,
    tlx_raw,
    tlx_weighted,
    tlx_weights,
    umux_lite_score,
    umux_lite_sus,
)


@pytest.mark.parametrize(
    "answers,score",
    [([7, 7], 100.0), ([1, 1], 0.0), ([5, 6], 75.0), ([4, 4], 50.0), ([7, 1], 50.0), ([6, 7], 1100 / 12)],
)
def test_umux_lite_score(answers, score):
    assert umux_lite_score(answers) == pytest.approx(score, abs=1e-12)


def test_umux_lite_sus_regression():
    assert umux_lite_sus([7, 7]) == pytest.approx(0.65 * 100 + 22.9)  # 87.9
    assert umux_lite_sus([1, 1]) == pytest.approx(22.9)
    assert umux_lite_sus([5, 6]) == pytest.approx(0.65 * 75 + 22.9)  # 71.65


@pytest.mark.parametrize(
    "bad,match",
    [
        ([7], "expected 2 ratings"),
        ([1, 2, 3], "expected 2 ratings"),
        ([0, 4], "item 1: 0 is outside"),
        ([4, 8], "item 2: 8 is outside"),
        ([4.5, 4], "whole number"),
        ([True, 4], "whole number"),
        ("77", "expected a list"),
    ],
)
def test_umux_lite_refuses_bad_answers(bad, match):
    with pytest.raises(AnswerError, match=match):
        umux_lite_score(bad)


def test_tlx_raw():
    assert tlx_raw([50, 60, 70, 80, 90, 100]) == 75.0
    assert tlx_raw(dict(zip(TLX_SCALES, [0] * 6))) == 0.0
    assert tlx_raw(dict(zip(TLX_SCALES, [100] * 6))) == 100.0
    assert tlx_raw(
        {"mental": 55, "physical": 10, "temporal": 40, "performance": 25, "effort": 50, "frustration": 20}
    ) == pytest.approx(200 / 6)


def test_tlx_weighted():
    ratings = [50, 60, 70, 80, 90, 100]
    # always choose the first of each pair: weights 5,4,3,2,1,0
    first = [a for a, _ in PAIRS]
    assert tlx_weights(first) == dict(zip(TLX_SCALES, [5, 4, 3, 2, 1, 0]))
    assert tlx_weighted(ratings, first) == pytest.approx((5 * 50 + 4 * 60 + 3 * 70 + 2 * 80 + 1 * 90) / 15)
    second = [b for _, b in PAIRS]
    assert tlx_weighted(ratings, second) == pytest.approx((1 * 60 + 2 * 70 + 3 * 80 + 4 * 90 + 5 * 100) / 15)
    # equal ratings: weighting changes nothing
    assert tlx_weighted([40] * 6, first) == pytest.approx(40.0)
    assert len(PAIRS) == 15 and set(PAIRS) == set(itertools.combinations(TLX_SCALES, 2))


@pytest.mark.parametrize(
    "bad,match",
    [
        ([50] * 5, "expected 6 ratings"),
        ([50] * 5 + [101], "frustration: 101"),
        ([-1] + [50] * 5, "mental: -1"),
        ([50] * 5 + ["x"], "expected a number"),
        ({"mental": 1}, "missing physical"),
        ({**dict(zip(TLX_SCALES, [1] * 6)), "fun": 3}, "unknown 'fun'"),
    ],
)
def test_tlx_refuses_bad_ratings(bad, match):
    with pytest.raises(AnswerError, match=match):
        tlx_raw(bad)


def test_tlx_refuses_bad_pairwise():
    with pytest.raises(AnswerError, match="expected 15 choices"):
        tlx_weights(["mental"] * 14)
    wrong = [a for a, _ in PAIRS]
    wrong[0] = "effort"  # pair 0 is mental vs physical
    with pytest.raises(AnswerError, match=r"nasa_tlx_pairwise\[0\]: the pair is mental vs physical"):
        tlx_weights(wrong)


def test_score_answers_sheet():
    s = score_answers(
        {"umux_lite": [5, 6], "nasa_tlx": [50, 60, 70, 80, 90, 100], "nasa_tlx_pairwise": [a for a, _ in PAIRS]}
    )
    assert s["umux_lite"]["score"] == 75.0 and s["umux_lite"]["sus_score"] == pytest.approx(71.65)
    assert s["nasa_tlx"]["raw"] == 75.0 and s["nasa_tlx"]["weights"]["mental"] == 5
    assert score_answers({"umux_lite": [7, 7]}) == {
        "umux_lite": {"answers": [7, 7], "score": 100.0, "sus_score": pytest.approx(87.9)}
    }
    with pytest.raises(AnswerError, match="answers.json: umux_lite item 2"):
        score_answers({"umux_lite": [5, 9]}, source="answers.json")
    with pytest.raises(AnswerError, match="unexpected key"):
        score_answers({"sus": [1] * 10})
    with pytest.raises(AnswerError, match="no answers"):
        score_answers({})
    with pytest.raises(AnswerError, match="pairwise without nasa_tlx"):
        score_answers({"umux_lite": [1, 1], "nasa_tlx_pairwise": []})
