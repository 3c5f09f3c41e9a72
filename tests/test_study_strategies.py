"""Strategy classification of a pause's edits: the four HILL strategies, mixtures, other and none."""

import numpy as np
import pytest

from hill_app.losses import layout_from_points
from hill_app.studies.strategies import (
    MIXTURE_SHARE,
    classify_edit,
    classify_pause,
    combine,
    label_from_counts,
)


@pytest.fixture
def before():
    """Four classes of 20 points around (0,0), (1,0), (0,4), (4,4): classes 0 and 1 are close."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [1, 0], [0, 4], [4, 4]], dtype=float)
    y = np.repeat(np.arange(4), 20)
    z = centres[y] + rng.normal(scale=0.3, size=(80, 2))
    return layout_from_points(z, y, 4)


def label(edits, before):
    return classify_pause(edits, before, view_size=80).label


def test_single_strategies(before):
    assert label([{"op": "scale_spread", "class": 2, "factor": 0.5}], before) == "compactness"
    assert label([{"op": "strategy", "name": "compactness", "strength": 0.4}], before) == "compactness"
    assert label([{"op": "separate", "classes": [0, 1], "min_distance": 2.0}], before) == "separation"
    assert label([{"op": "strategy", "name": "separation", "strength": 0.3}], before) == "separation"
    assert label([{"op": "merge", "classes": [0, 1]}], before) == "merge"
    assert label([{"op": "move_points", "indices": [3, 4], "to": [2.0, 2.0]}], before) == "points"
    assert label([], before) == "none"


def test_move_center_is_judged_on_the_layout(before):
    # class 1 pushed away from class 0 (its nearest): separation
    assert label([{"op": "move_center", "class": 1, "to": [2.0, -1.0]}], before) == "separation"
    # class 3 dropped onto class 2: merge-like
    assert label([{"op": "move_center", "class": 3, "to": [0.2, 4.0]}], before) == "merge"
    # class 3 moved a little closer to class 2, not onto it: other
    assert label([{"op": "move_center", "class": 3, "to": [3.0, 4.0]}], before) == "other"
    # without the layout a centre move cannot be judged
    assert classify_edit({"op": "move_center", "class": 1, "to": [2.0, -1.0]}) == "other"


def test_merge_similar_counts_only_when_it_merged(before):
    assert label([{"op": "strategy", "name": "merge_similar", "strength": 1.0}], before) == "merge"
    # a threshold of 1% of the median distance merges nothing
    assert label([{"op": "strategy", "name": "merge_similar", "strength": 0.01}], before) == "other"


def test_growing_a_spread_is_not_compactness(before):
    assert label([{"op": "scale_spread", "class": 2, "factor": 1.5}], before) == "other"


def test_mixtures_and_shares(before):
    s = classify_pause(
        [{"op": "scale_spread", "class": 0, "factor": 0.5}, {"op": "separate", "classes": [0, 1], "min_distance": 2.0}],
        before,
        view_size=80,
    )
    assert s.label == "mixture" and s.mixture_of == ["compactness", "separation"]
    assert s.text == "mixture (compactness + separation)"
    assert s.shares["compactness"] == 0.5 and s.per_edit == ["compactness", "separation"]
    # three separations and one compaction: the compaction's share (0.25) is below the mixture threshold
    s = classify_pause(
        [
            {"op": "separate", "classes": [0, 1], "min_distance": 2.0},
            {"op": "separate", "classes": [0, 2], "min_distance": 5.0},
            {"op": "separate", "classes": [1, 3], "min_distance": 5.0},
            {"op": "scale_spread", "class": 3, "factor": 0.6},
        ],
        before,
        view_size=80,
    )
    assert 0.25 < MIXTURE_SHARE and s.label == "separation"
    # the shipped example's pause 30: three separations and one compaction
    assert label_from_counts({"separation": 3, "compactness": 1}).label == "separation"
    assert label_from_counts({"separation": 2, "points": 1}).label == "mixture"
    assert label_from_counts({"other": 3, "points": 1}).label == "points"
    assert label_from_counts({"other": 2}).label == "other"


def test_classification_without_layout_uses_the_ops():
    s = classify_pause(
        [
            {"op": "strategy", "name": "compactness", "strength": 0.3},
            {"op": "move_points", "indices": [1], "to": [0, 0]},
        ]
    )
    assert s.label == "mixture" and s.mixture_of == ["compactness", "points"]


def test_combine_over_pauses(before):
    a = classify_pause([{"op": "scale_spread", "class": 0, "factor": 0.5}], before, view_size=80)
    b = classify_pause([{"op": "scale_spread", "class": 1, "factor": 0.5}], before, view_size=80)
    c = classify_pause([], before, view_size=80)
    assert combine([a, b, c]).label == "compactness"
    d = classify_pause([{"op": "merge", "classes": [0, 1]}, {"op": "merge", "classes": [2, 3]}], before, view_size=80)
    assert combine([a, b, d]).label == "mixture"
