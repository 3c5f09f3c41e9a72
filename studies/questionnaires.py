"""The two post-session questionnaires, their items and their standard scores: UMUX-Lite (Lewis, Utesch
and Maher, CHI 2013; two 7-point items, 0..100 and its SUS regression) and NASA-TLX (Hart and Staveland 1988;
Hart 2006; six 0..100 subscales, raw and weighted by the 15 pairwise comparisons). The formulas and the
answers' JSON: studies/README.md ("Scores", "A scripted participant").
"""

from __future__ import annotations

import itertools
import math
from typing import Any


class AnswerError(ValueError):
    """A questionnaire answer is missing, malformed or out of range; the message says which."""


UMUX_LITE_ITEMS = (
    "This system's capabilities meet my requirements.",
    "This system is easy to use.",
)
UMUX_LITE_SCALE = (1, 7)  # 1 = strongly disagree, 7 = strongly agree

TLX_SCALES = ("mental", "physical", "temporal", "performance", "effort", "frustration")
TLX_ITEMS = {
    "mental": ("Mental demand", "How mentally demanding was the task?"),
    "physical": ("Physical demand", "How physically demanding was the task?"),
    "temporal": ("Temporal demand", "How hurried or rushed was the pace of the task?"),
    "performance": (
        "Performance",
        ("How successful were you in accomplishing what you were asked to do? (0 = perfect, 100 = failure)"),
    ),
    "effort": ("Effort", "How hard did you have to work to accomplish your level of performance?"),
    "frustration": ("Frustration", "How insecure, discouraged, irritated, stressed and annoyed were you?"),
}
TLX_RANGE = (0.0, 100.0)
PAIRS: tuple[tuple[str, str], ...] = tuple(itertools.combinations(TLX_SCALES, 2))  # the 15 comparisons


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


# ---------------------------------------------------------------- UMUX-Lite


def check_umux_lite(answers: Any) -> list[int]:
    if not isinstance(answers, (list, tuple)):
        raise AnswerError(f"umux_lite: expected a list of 2 ratings, got {answers!r}")
    if len(answers) != 2:
        raise AnswerError(f"umux_lite: expected 2 ratings, got {len(answers)}")
    lo, hi = UMUX_LITE_SCALE
    out = []
    for i, v in enumerate(answers, 1):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise AnswerError(f"umux_lite item {i}: expected a whole number {lo}..{hi}, got {v!r}")
        if not lo <= v <= hi:
            raise AnswerError(f"umux_lite item {i}: {v} is outside the {lo}..{hi} scale")
        out.append(v)
    return out


def umux_lite_score(answers: Any) -> float:
    """The standard UMUX-Lite score, 0..100."""
    a, b = check_umux_lite(answers)
    return ((a - 1) + (b - 1)) / 12 * 100


def umux_lite_sus(answers: Any) -> float:
    """UMUX-Lite regressed onto the SUS scale (Lewis et al. 2013): 0.65 * score + 22.9."""
    return 0.65 * umux_lite_score(answers) + 22.9


# ---------------------------------------------------------------- NASA-TLX


def check_tlx(ratings: Any) -> dict[str, float]:
    if isinstance(ratings, (list, tuple)):
        if len(ratings) != len(TLX_SCALES):
            raise AnswerError(
                f"nasa_tlx: expected {len(TLX_SCALES)} ratings ({', '.join(TLX_SCALES)}), got {len(ratings)}"
            )
        ratings = dict(zip(TLX_SCALES, ratings))
    if not isinstance(ratings, dict):
        raise AnswerError(f"nasa_tlx: expected an object {{subscale: rating}} or a list of 6, got {ratings!r}")
    missing = [s for s in TLX_SCALES if s not in ratings]
    extra = [s for s in ratings if s not in TLX_SCALES]
    if missing or extra:
        raise AnswerError(
            "nasa_tlx: "
            + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + ([f"unknown {', '.join(map(repr, extra))}"] if extra else [])
            )
            + f" (subscales: {', '.join(TLX_SCALES)})"
        )
    lo, hi = TLX_RANGE
    out = {}
    for s in TLX_SCALES:
        v = ratings[s]
        if not _is_number(v):
            raise AnswerError(f"nasa_tlx {s}: expected a number {lo:g}..{hi:g}, got {v!r}")
        if not lo <= v <= hi:
            raise AnswerError(f"nasa_tlx {s}: {v} is outside {lo:g}..{hi:g}")
        out[s] = float(v)
    return out


def tlx_weights(choices: Any) -> dict[str, int]:
    """Weights (0..5, sum 15) from the 15 pairwise choices, given in PAIRS order."""
    if not isinstance(choices, (list, tuple)) or len(choices) != len(PAIRS):
        n = len(choices) if isinstance(choices, (list, tuple)) else type(choices).__name__
        raise AnswerError(f"nasa_tlx_pairwise: expected {len(PAIRS)} choices (one per pair), got {n}")
    w = {s: 0 for s in TLX_SCALES}
    for i, (c, pair) in enumerate(zip(choices, PAIRS)):
        if c not in pair:
            raise AnswerError(f"nasa_tlx_pairwise[{i}]: the pair is {pair[0]} vs {pair[1]}, got {c!r}")
        w[c] += 1
    return w


def tlx_raw(ratings: Any) -> float:
    r = check_tlx(ratings)
    return sum(r.values()) / len(r)


def tlx_weighted(ratings: Any, choices: Any) -> float:
    r = check_tlx(ratings)
    w = tlx_weights(choices)
    return sum(w[s] * r[s] for s in TLX_SCALES) / len(PAIRS)


# ---------------------------------------------------------------- a whole answer sheet

ANSWER_KEYS = ("umux_lite", "nasa_tlx", "nasa_tlx_pairwise")


def score_answers(answers: Any, source: str = "answers") -> dict[str, Any]:
    """Check an answer sheet and score it: {"umux_lite": {answers, score, sus_score}, "nasa_tlx": {...}}.

    Either questionnaire may be left out; a sheet with neither is an error.
    """
    if not isinstance(answers, dict):
        raise AnswerError(f"{source}: expected an object with umux_lite and/or nasa_tlx")
    extra = set(answers) - set(ANSWER_KEYS)
    if extra:
        raise AnswerError(f"{source}: unexpected key(s) {sorted(extra)}; expected {', '.join(ANSWER_KEYS)}")
    if "umux_lite" not in answers and "nasa_tlx" not in answers:
        raise AnswerError(f"{source}: no answers (expected umux_lite and/or nasa_tlx)")
    if "nasa_tlx_pairwise" in answers and "nasa_tlx" not in answers:
        raise AnswerError(f"{source}: nasa_tlx_pairwise without nasa_tlx ratings")
    out: dict[str, Any] = {}
    try:
        if "umux_lite" in answers:
            a = check_umux_lite(answers["umux_lite"])
            out["umux_lite"] = {"answers": a, "score": umux_lite_score(a), "sus_score": umux_lite_sus(a)}
        if "nasa_tlx" in answers:
            r = check_tlx(answers["nasa_tlx"])
            t: dict[str, Any] = {"ratings": r, "raw": tlx_raw(r)}
            if "nasa_tlx_pairwise" in answers:
                t["pairwise"] = list(answers["nasa_tlx_pairwise"])
                t["weights"] = tlx_weights(t["pairwise"])
                t["weighted"] = tlx_weighted(r, t["pairwise"])
            out["nasa_tlx"] = t
    except AnswerError as e:
        raise AnswerError(f"{source}: {e}") from None
    return out
