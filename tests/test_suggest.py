"""Suggested edits from what the window shows: each strategy does what it says, in bounded amounts, and
every edit it makes is one the engine accepts and applies."""

import numpy as np
import pytest

from hill_app.losses import apply_edit, layout_from_points, validate_edit
from hill_app.studies import suggest
from hill_app.studies.suggest import SuggestError, parse_spec, suggest_edits


def scatter(seed=0):
    """Four classes: 0 and 1 overlap heavily, 2 is wide, 3 is tight and far. Predictions: class 1 points
    nearest class 0's centre are 'predicted' 0."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [0.8, 0.0], [0.0, 4.0], [5.0, 5.0]])
    scales = np.array([0.5, 0.5, 1.2, 0.2])
    y = np.repeat(np.arange(4), 50)
    z = centres[y] + rng.normal(size=(200, 2)) * scales[y, None]
    preds = y.copy()
    preds[(y == 1) & (z[:, 0] < 0.2)] = 0
    conf = np.zeros((4, 4), dtype=int)
    np.add.at(conf, (y, preds), 1)
    conf[2, 3] += 1  # a pair that is confused but far apart in the view
    return {"z": z, "labels": y, "preds": preds}, conf.tolist()


def engine_layout(snap, edits):
    """Apply the suggested edits with the engine's own functions (as set_latent_targets does)."""
    lay = layout_from_points(snap["z"], snap["labels"], 4)
    for e in edits:
        clean = validate_edit(e, 4, len(snap["z"]))  # "origin" included: the engine journals it
        lay = apply_edit(lay, clean)
    return lay


def test_every_strategy_gives_edits_the_engine_applies():
    snap, conf = scatter()
    for name in suggest.STRATEGIES:
        out = suggest_edits(snap, conf, strategies=name)
        for item in out:
            assert item["strategy"] == name
            assert item["edit"]["origin"] == f"suggested:{name}"
            assert item["measured"] == suggest.MEASURED.get(f"{name}:{item['strength']:g}", "not measured")
            assert item["reason"]
        engine_layout(snap, [i["edit"] for i in out])


def test_confusion_separation_pushes_the_overlapping_confused_pair_by_a_bounded_amount():
    snap, conf = scatter()
    before = layout_from_points(snap["z"], snap["labels"], 4)
    out = suggest_edits(snap, conf, strategies="confusion_separation:0.5")
    pairs = [tuple(i["edit"]["classes"]) for i in out]
    assert pairs == [(0, 1)]  # 2-3 is confused but does not overlap in the view: nothing asked
    d0 = np.linalg.norm(before.centers[0] - before.centers[1])
    overlap = before.spreads[0] + before.spreads[1] - d0
    target = out[0]["edit"]["min_distance"]
    assert target == pytest.approx(min(d0 + 0.5 * overlap, d0 * 1.25))
    after = engine_layout(snap, [out[0]["edit"]])
    assert np.linalg.norm(after.centers[0] - after.centers[1]) == pytest.approx(target)
    # the simple form asks for 1.5x whatever the overlap, and also for the far pair
    simple = suggest_edits(snap, conf, strategies="confused_pairs")
    assert {tuple(i["edit"]["classes"]) for i in simple} == {(0, 1), (2, 3)}
    assert all(i["edit"]["min_distance"] > 0 for i in simple)


def test_misplaced_points_move_toward_their_own_centre_and_are_few():
    snap, conf = scatter()
    z, y = snap["z"], snap["labels"]
    before = layout_from_points(z, y, 4)
    out = suggest_edits(snap, conf, strategies="misplaced_points:0.5")
    assert out
    moved = [(i, np.asarray(t)) for item in out for i, t in zip(item["edit"]["indices"], item["edit"]["to"])]
    assert 1 <= len(moved) <= round(0.02 * len(z))
    for i, to in moved:
        c = y[i]
        other = np.delete(np.arange(4), c)
        # it sat nearer another class's centre than its own ...
        assert np.linalg.norm(z[i] - before.centers[other], axis=1).min() < np.linalg.norm(z[i] - before.centers[c])
        # ... and is asked halfway to its own centre
        assert np.allclose(to, z[i] + 0.5 * (before.centers[c] - z[i]))
    # only correctly classified ones: a subset of the candidates, none of them misclassified
    corr = suggest_edits(snap, conf, strategies="misplaced_correct:0.5")
    assert all(snap["preds"][i] == y[i] for item in corr for i in item["edit"]["indices"])


def test_misclassified_to_centre_moves_exactly_the_wrong_predictions():
    snap, conf = scatter()
    out = suggest_edits(snap, conf, strategies="misclassified_to_centre")
    idx = sorted(i for item in out for i in item["edit"]["indices"])
    assert idx == sorted(np.nonzero(snap["preds"] != snap["labels"])[0].tolist())


def test_selective_compactness_shrinks_only_crowded_classes_by_at_most_the_strength():
    snap, conf = scatter()
    before = layout_from_points(snap["z"], snap["labels"], 4)
    out = suggest_edits(snap, conf, strategies="selective_compactness:0.3")
    classes = {i["edit"]["class"]: i["edit"]["factor"] for i in out}
    assert classes and 3 not in classes  # the tight, far class is left alone
    assert all(0.7 <= f < 1 for f in classes.values())
    d = np.linalg.norm(before.centers[:, None] - before.centers[None], axis=2)
    np.fill_diagonal(d, np.inf)
    ratio = before.spreads / d.min(axis=1)
    assert set(classes) == set(np.nonzero(ratio > np.median(ratio))[0].tolist())


def test_mixtures_concatenate_with_their_own_strengths():
    snap, conf = scatter()
    out = suggest_edits(snap, conf, strategies="selective_compactness:0.3+confusion_separation:0.2")
    names = [i["strategy"] for i in out]
    assert names == sorted(names, key=lambda n: n != "selective_compactness")
    assert {i["strength"] for i in out if i["strategy"] == "confusion_separation"} == {0.2}
    assert parse_spec("compactness, separation:0.1") == [("compactness", 0.5), ("separation", 0.1)]
    assert parse_spec("default") == parse_spec(suggest.DEFAULT)


def test_without_a_confusion_matrix_the_view_sets_own_is_used():
    snap, conf = scatter()
    own = suggest_edits(snap, None, strategies="confused_pairs")
    assert [tuple(i["edit"]["classes"]) for i in own][0] == (0, 1)


def test_bad_specs_and_snapshots_say_what_is_wrong():
    snap, conf = scatter()
    with pytest.raises(SuggestError, match="unknown 'tighten'"):
        suggest_edits(snap, conf, strategies="tighten")
    with pytest.raises(SuggestError, match=r"must lie in \(0, 1\]"):
        suggest_edits(snap, conf, strategies="compactness:1.5")
    with pytest.raises(SuggestError, match="labels span 0..3, but there are 2 classes"):
        suggest_edits(snap, [[1, 2], [3, 4]], strategies="confused_pairs")
    with pytest.raises(SuggestError, match="4 x 4"):
        suggest_edits(snap, [[1, 2, 3]] * 4, strategies="confused_pairs")
    with pytest.raises(SuggestError, match="NaN"):
        suggest_edits({"z": [[np.nan, 0.0]], "labels": [0]}, None, strategies="compactness")
    with pytest.raises(SuggestError, match="'z'"):
        suggest_edits({"labels": [0]}, None)
