"""Edits -> teacher layout: every op on a known layout, validation of malformed edits, serialisation."""

import json

import numpy as np
import pytest
import torch

from hill_app.losses import (
    EDIT_OPS,
    EditError,
    TargetLayout,
    apply_edit,
    apply_edits,
    layout_from_points,
    validate_edit,
)

K = 5
VIEW = 20


def base_layout() -> TargetLayout:
    """Five classes: 0, 1, 2 close together near the origin, 3 and 4 far away."""
    centers = np.array([[0.0, 0.0], [0.2, 0.0], [0.0, 0.4], [5.0, 0.0], [0.0, -6.0]])
    return TargetLayout(
        centers=centers,
        spreads=np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
        sep_min=np.zeros((K, K)),
        group=np.arange(K),
        edited=np.zeros(K, dtype=bool),
        ref_radius=1.0,
    )


def edit(e):
    return validate_edit(e, K, VIEW)


def apply(layout, e):
    return apply_edit(layout, edit(e))


# ---------------------------------------------------------------- single ops


def test_move_center_moves_exactly_that_class():
    lay = base_layout()
    out = apply(lay, {"op": "move_center", "class": 3, "to": [1.5, -2.0]})
    np.testing.assert_array_equal(out.centers[3], [1.5, -2.0])
    others = [0, 1, 2, 4]
    np.testing.assert_array_equal(out.centers[others], lay.centers[others])
    np.testing.assert_array_equal(out.spreads, lay.spreads)
    assert out.edited.tolist() == [False, False, False, True, False]


def test_move_center_moves_merged_partners_too():
    lay = apply(base_layout(), {"op": "merge", "classes": [1, 3]})
    out = apply(lay, {"op": "move_center", "class": 3, "to": [-1.0, 1.0]})
    np.testing.assert_array_equal(out.centers[3], [-1.0, 1.0])
    np.testing.assert_array_equal(out.centers[1], [-1.0, 1.0])
    np.testing.assert_array_equal(out.centers[[0, 2, 4]], lay.centers[[0, 2, 4]])
    assert out.edited[1] and out.edited[3]


def test_scale_spread_multiplies():
    lay = base_layout()
    out = apply(lay, {"op": "scale_spread", "class": 2, "factor": 0.6})
    assert out.spreads[2] == pytest.approx(3.0 * 0.6)
    np.testing.assert_array_equal(out.spreads[[0, 1, 3, 4]], lay.spreads[[0, 1, 3, 4]])
    np.testing.assert_array_equal(out.centers, lay.centers)
    out2 = apply(out, {"op": "scale_spread", "class": 2, "factor": 2.5})
    assert out2.spreads[2] == pytest.approx(3.0 * 0.6 * 2.5)


def test_move_points_one_target_for_all_indices():
    out = apply(base_layout(), {"op": "move_points", "indices": [12, 4], "to": [0.5, -0.25]})
    assert out.points == {12: (0.5, -0.25), 4: (0.5, -0.25)}


def test_move_points_single_point():
    out = apply(base_layout(), {"op": "move_points", "indices": [7], "to": [1.0, 2.0]})
    assert out.points == {7: (1.0, 2.0)}


def test_move_points_per_index_positions_and_later_move_wins():
    lay = apply(base_layout(), {"op": "move_points", "indices": [1, 2, 3], "to": [[1, 1], [2, 2], [3, -3]]})
    assert lay.points == {1: (1.0, 1.0), 2: (2.0, 2.0), 3: (3.0, -3.0)}
    lay = apply(lay, {"op": "move_points", "indices": [2], "to": [[9, 9]]})
    assert lay.points == {1: (1.0, 1.0), 2: (9.0, 9.0), 3: (3.0, -3.0)}
    # moving points does not change class targets
    np.testing.assert_array_equal(lay.centers, base_layout().centers)


def test_merge_shares_mean_centre_zero_sep_same_group():
    lay = base_layout()
    lay.sep_min[0, 3] = lay.sep_min[3, 0] = 2.0
    lay.sep_min[0, 4] = lay.sep_min[4, 0] = 3.0
    out = apply(lay, {"op": "merge", "classes": [0, 3]})
    mean = (lay.centers[0] + lay.centers[3]) / 2
    np.testing.assert_allclose(out.centers[0], mean)
    np.testing.assert_allclose(out.centers[3], mean)
    assert out.sep_min[0, 3] == 0.0 and out.sep_min[3, 0] == 0.0
    assert out.sep_min[0, 4] == 3.0  # other pairs keep theirs
    assert out.group[0] == out.group[3]
    assert len(set(out.group.tolist())) == K - 1
    np.testing.assert_array_equal(out.centers[[1, 2, 4]], lay.centers[[1, 2, 4]])


def test_merge_of_merged_groups_joins_all_members():
    lay = apply(base_layout(), {"op": "merge", "classes": [0, 1]})
    out = apply(lay, {"op": "merge", "classes": [1, 3]})
    assert out.group[0] == out.group[1] == out.group[3]
    # the new centre is the mean of all three members' (current) centres
    expected = np.mean([lay.centers[0], lay.centers[1], lay.centers[3]], axis=0)
    for c in (0, 1, 3):
        np.testing.assert_allclose(out.centers[c], expected)
    assert out.sep_min[np.ix_([0, 1, 3], [0, 1, 3])].sum() == 0.0


def test_separate_pushes_close_pair_to_exactly_min_distance_symmetric():
    lay = base_layout()
    out = apply(lay, {"op": "separate", "classes": [0, 2], "min_distance": 1.5})
    mid_before = (lay.centers[0] + lay.centers[2]) / 2
    mid_after = (out.centers[0] + out.centers[2]) / 2
    np.testing.assert_allclose(mid_after, mid_before, atol=1e-12)
    assert np.linalg.norm(out.centers[2] - out.centers[0]) == pytest.approx(1.5, abs=1e-12)
    # along the original direction (0 -> 2 points along +y)
    np.testing.assert_allclose(out.centers[0], [0.0, 0.2 - 0.75], atol=1e-12)
    np.testing.assert_allclose(out.centers[2], [0.0, 0.2 + 0.75], atol=1e-12)
    assert out.sep_min[0, 2] == out.sep_min[2, 0] == 1.5
    np.testing.assert_array_equal(out.centers[[1, 3, 4]], lay.centers[[1, 3, 4]])


def test_separate_leaves_far_pair_where_it_is():
    lay = base_layout()
    out = apply(lay, {"op": "separate", "classes": [3, 4], "min_distance": 2.0})
    np.testing.assert_array_equal(out.centers, lay.centers)
    assert out.sep_min[3, 4] == out.sep_min[4, 3] == 2.0


def test_separate_coincident_centres_gets_a_direction():
    lay = apply(base_layout(), {"op": "merge", "classes": [0, 1]})  # same centre now
    out = apply(lay, {"op": "separate", "classes": [0, 1], "min_distance": 1.0})
    assert np.all(np.isfinite(out.centers))
    assert np.linalg.norm(out.centers[0] - out.centers[1]) == pytest.approx(1.0)


def test_separate_on_merged_classes_unmerges():
    lay = apply(base_layout(), {"op": "merge", "classes": [1, 2]})
    assert lay.group[1] == lay.group[2]
    out = apply(lay, {"op": "separate", "classes": [1, 2], "min_distance": 1.0})
    assert out.group[1] != out.group[2]
    assert len(set(out.group.tolist())) == K
    assert out.sep_min[1, 2] == 1.0


def test_separate_moves_merged_partners_with_the_class():
    lay = apply(base_layout(), {"op": "merge", "classes": [0, 1]})  # 0 and 1 share a centre
    out = apply(lay, {"op": "separate", "classes": [0, 2], "min_distance": 3.0})
    assert out.group[0] == out.group[1]
    np.testing.assert_allclose(out.centers[1], out.centers[0])


# ---------------------------------------------------------------- strategies


def test_strategy_compactness_scales_all_spreads():
    lay = base_layout()
    out = apply(lay, {"op": "strategy", "name": "compactness", "strength": 0.4})
    np.testing.assert_allclose(out.spreads, lay.spreads * 0.6)
    np.testing.assert_array_equal(out.centers, lay.centers)
    assert out.edited.all()


def test_strategy_compactness_default_strength_is_half():
    out = apply(base_layout(), {"op": "strategy", "name": "compactness"})
    np.testing.assert_allclose(out.spreads, base_layout().spreads * 0.5)


def test_strategy_separation_expands_about_the_mean_and_sets_separations():
    lay = base_layout()
    lay = apply(lay, {"op": "merge", "classes": [0, 1]})
    out = apply(lay, {"op": "strategy", "name": "separation", "strength": 0.5})
    g = lay.centers.mean(axis=0)
    np.testing.assert_allclose(out.centers, g + (lay.centers - g) * 1.5)
    d = np.linalg.norm(out.centers[:, None] - out.centers[None], axis=2)
    for a in range(K):
        for b in range(K):
            if a == b or (a, b) in ((0, 1), (1, 0)):
                assert out.sep_min[a, b] == 0.0
            else:
                assert out.sep_min[a, b] == pytest.approx(d[a, b])
    np.testing.assert_array_equal(out.spreads, lay.spreads)


def test_strategy_merge_similar_merges_only_the_close_pairs():
    centers = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.2, 0.0], [20.0, 0.0]])
    lay = TargetLayout(
        centers=centers,
        spreads=np.ones(5),
        sep_min=np.zeros((5, 5)),
        group=np.arange(5),
        edited=np.zeros(5, dtype=bool),
    )
    # pair distances sorted: .1 .2 4.9 5 5.1 5.2 14.8 15 19.9 20 -> median 5.05; threshold 0.5*5.05
    out = apply_edit(lay, validate_edit({"op": "strategy", "name": "merge_similar", "strength": 0.5}, 5, 10))
    g = out.group
    assert g[0] == g[1] and g[2] == g[3]
    assert len({g[0], g[2], g[4]}) == 3
    np.testing.assert_allclose(out.centers[0], [0.05, 0.0])
    np.testing.assert_allclose(out.centers[1], [0.05, 0.0])
    np.testing.assert_allclose(out.centers[2], [5.1, 0.0])
    np.testing.assert_allclose(out.centers[3], [5.1, 0.0])
    np.testing.assert_array_equal(out.centers[4], [20.0, 0.0])
    assert out.edited.all()


def test_strategy_merge_similar_low_strength_merges_nothing():
    centers = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.2, 0.0], [20.0, 0.0]])
    lay = TargetLayout(
        centers=centers,
        spreads=np.ones(5),
        sep_min=np.zeros((5, 5)),
        group=np.arange(5),
        edited=np.zeros(5, dtype=bool),
    )
    # threshold 0.01 * 5.05 < 0.1: no pair is close enough
    out = apply_edit(lay, validate_edit({"op": "strategy", "name": "merge_similar", "strength": 0.01}, 5, 10))
    assert out.group.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(out.centers, centers)


# ---------------------------------------------------------------- undo relies on immutability

ALL_EDITS = [
    {"op": "move_center", "class": 3, "to": [1.2, -0.4]},
    {"op": "scale_spread", "class": 3, "factor": 0.6},
    {"op": "move_points", "indices": [12, 4], "to": [0.5, 0.5]},
    {"op": "merge", "classes": [3, 1]},
    {"op": "separate", "classes": [3, 1], "min_distance": 1.5},
    {"op": "strategy", "name": "compactness", "strength": 0.5},
    {"op": "strategy", "name": "separation", "strength": 0.3},
    {"op": "strategy", "name": "merge_similar", "strength": 0.9},
]


@pytest.mark.parametrize("e", ALL_EDITS, ids=lambda e: e["op"] + ("-" + e["name"] if "name" in e else ""))
def test_apply_edit_does_not_mutate_its_input(e):
    lay = apply(base_layout(), {"op": "move_points", "indices": [1], "to": [0, 0]})
    before = json.dumps(lay.to_json())
    out = apply(lay, e)
    assert json.dumps(lay.to_json()) == before
    assert out is not lay
    assert json.dumps(out.to_json()) != before


def test_apply_edit_fills_missing_edited_mask_without_touching_input():
    lay = base_layout()
    lay.edited = None
    out = apply(lay, {"op": "scale_spread", "class": 0, "factor": 2})
    assert lay.edited is None
    assert out.edited.tolist() == [True, False, False, False, False]


def test_apply_edits_is_the_fold_of_apply_edit():
    edits = [edit(e) for e in ALL_EDITS[:6]]
    a = apply_edits(base_layout(), edits)
    b = base_layout()
    for e in edits:
        b = apply_edit(b, e)
    assert a.to_json() == b.to_json()


# ---------------------------------------------------------------- validation

BAD = [
    ("not-a-dict", ["op"], "must be an object"),
    ({"op": "rotate", "class": 1}, ["unknown op", "'rotate'"], None),
    ({"class": 1, "to": [0, 0]}, ["unknown op", "None"], None),
    ({"op": "move_center", "to": [0, 0]}, ["needs 'class'"], None),
    ({"op": "move_center", "class": 1}, ["needs 'to'"], None),
    ({"op": "scale_spread", "class": 1}, ["needs 'factor'"], None),
    ({"op": "move_points", "to": [0, 0]}, ["needs 'indices'"], None),
    ({"op": "merge"}, ["needs 'classes'"], None),
    ({"op": "separate", "classes": [0, 1]}, ["needs 'min_distance'"], None),
    ({"op": "strategy"}, ["needs 'name'"], None),
    ({"op": "move_center", "class": 5, "to": [0, 0]}, ["class 5 does not exist", "0..4"], None),
    ({"op": "move_center", "class": -1, "to": [0, 0]}, ["class -1 does not exist"], None),
    ({"op": "move_center", "class": True, "to": [0, 0]}, ["'class'", "True"], None),
    ({"op": "move_center", "class": 1.0, "to": [0, 0]}, ["'class'", "integer"], None),
    ({"op": "move_center", "class": "1", "to": [0, 0]}, ["'class'"], None),
    ({"op": "move_center", "class": 1, "to": [float("nan"), 0]}, ["'to'", "finite", "nan"], None),
    ({"op": "move_center", "class": 1, "to": [0, float("inf")]}, ["'to'", "finite"], None),
    ({"op": "move_center", "class": 1, "to": [0, 0, 0]}, ["'to'", "point"], None),
    ({"op": "move_center", "class": 1, "to": [True, 0]}, ["'to'", "finite number"], None),
    ({"op": "scale_spread", "class": 1, "factor": 0}, ["'factor'", "> 0"], None),
    ({"op": "scale_spread", "class": 1, "factor": -0.5}, ["'factor'", "> 0"], None),
    ({"op": "scale_spread", "class": 1, "factor": float("nan")}, ["'factor'", "finite"], None),
    ({"op": "scale_spread", "class": 1, "factor": True}, ["'factor'"], None),
    ({"op": "move_points", "indices": [0, VIEW], "to": [0, 0]}, ["index 20", "not in the view set", "0..19"], None),
    ({"op": "move_points", "indices": [-1], "to": [0, 0]}, ["index -1", "not in the view set"], None),
    ({"op": "move_points", "indices": [True], "to": [0, 0]}, ["index True"], None),
    ({"op": "move_points", "indices": [], "to": [0, 0]}, ["'indices'", "non-empty"], None),
    ({"op": "move_points", "indices": 3, "to": [0, 0]}, ["'indices'"], None),
    ({"op": "move_points", "indices": [1, 2, 3], "to": [[0, 0], [1, 1]]}, ["'to' has 2 points for 3 indices"], None),
    ({"op": "move_points", "indices": [1], "to": [[0, float("nan")]]}, ["'to'", "finite"], None),
    ({"op": "merge", "classes": [2, 2]}, ["two different classes", "2 twice"], None),
    ({"op": "merge", "classes": [1]}, ["'classes'", "two class indices"], None),
    ({"op": "merge", "classes": [1, 7]}, ["class 7 does not exist"], None),
    ({"op": "separate", "classes": [3, 3], "min_distance": 1}, ["two different classes"], None),
    ({"op": "separate", "classes": [0, 1], "min_distance": 0}, ["'min_distance'", "> 0"], None),
    ({"op": "separate", "classes": [0, 1], "min_distance": float("nan")}, ["'min_distance'", "finite"], None),
    ({"op": "strategy", "name": "chaos"}, ["unknown strategy", "'chaos'", "compactness"], None),
    ({"op": "strategy", "name": "compactness", "strength": 0}, ["'strength'", "> 0"], None),
    ({"op": "strategy", "name": "compactness", "strength": 1.5}, ["'strength'", "<= 1"], None),
    ({"op": "move_center", "class": 1, "to": [0, 0], "colour": "red"}, ["unexpected key", "colour"], None),
]


@pytest.mark.parametrize("bad,needles,_", BAD, ids=[str(i) for i in range(len(BAD))])
def test_validate_edit_rejects_malformed_naming_the_problem(bad, needles, _):
    with pytest.raises(EditError) as ei:
        validate_edit(bad, K, VIEW, where="interventions[0].edits[2]")
    msg = str(ei.value)
    assert msg.startswith("interventions[0].edits[2]")
    for n in needles:
        assert n in msg, (n, msg)


def test_validate_edit_rejects_keys_of_another_op():
    with pytest.raises(EditError, match="factor"):
        validate_edit({"op": "move_center", "class": 1, "to": [0, 0], "factor": 0.5}, K, VIEW)


def test_validate_edit_accepts_every_op_and_normalises():
    assert set(e["op"] for e in ALL_EDITS) == set(EDIT_OPS)
    out = validate_edit({"op": "move_points", "indices": [1, 2], "to": [0.5, 1]}, K, VIEW)
    assert out == {"op": "move_points", "indices": [1, 2], "to": [(0.5, 1.0), (0.5, 1.0)]}
    out = validate_edit({"op": "merge", "classes": [4, 0]}, K, VIEW)
    assert out["classes"] == (4, 0)
    out = validate_edit({"op": "strategy", "name": "separation"}, K, VIEW)
    assert out == {"op": "strategy", "name": "separation", "strength": 0.5}
    # an edit validated twice is unchanged (the session re-validates edits read from a file)
    for e in ALL_EDITS:
        once = validate_edit(e, K, VIEW)
        assert validate_edit(once, K, VIEW) == once


# ---------------------------------------------------------------- serialisation and tensors


def test_target_layout_json_round_trip():
    lay = apply_edits(base_layout(), [edit(e) for e in ALL_EDITS[:5]])
    lay.ref_radius = 1.7
    text = json.dumps(lay.to_json())
    back = TargetLayout.from_json(json.loads(text))
    np.testing.assert_array_equal(back.centers, lay.centers)
    np.testing.assert_array_equal(back.spreads, lay.spreads)
    np.testing.assert_array_equal(back.sep_min, lay.sep_min)
    np.testing.assert_array_equal(back.group, lay.group)
    np.testing.assert_array_equal(back.edited, lay.edited)
    assert back.points == lay.points and all(isinstance(k, int) for k in back.points)
    assert back.ref_radius == 1.7
    assert back.group.dtype == np.int64 and back.edited.dtype == bool
    assert back.to_json() == lay.to_json()


def test_target_layout_json_round_trip_without_edited():
    lay = base_layout()
    lay.edited = None
    back = TargetLayout.from_json(json.loads(json.dumps(lay.to_json())))
    assert back.edited is None
    assert back.points == {}


def test_to_tensors_scatters_point_targets_to_training_indices():
    lay = apply(base_layout(), {"op": "move_points", "indices": [0, 3], "to": [[1.0, 2.0], [-3.0, 4.0]]})
    view_to_train = np.array([10, 11, 12, 17, 2] + list(range(20, 35)))  # view index -> training index
    t = lay.to_tensors(view_to_train, n_train=40)
    assert t.point_pos.shape == (40, 2) and t.point_mask.shape == (40,)
    assert torch.nonzero(t.point_mask).flatten().tolist() == [10, 17]
    assert t.point_pos[10].tolist() == [1.0, 2.0]
    assert t.point_pos[17].tolist() == [-3.0, 4.0]
    assert t.point_pos[[i for i in range(40) if i not in (10, 17)]].abs().sum() == 0
    torch.testing.assert_close(t.centers, torch.tensor(lay.centers, dtype=torch.float32))
    torch.testing.assert_close(t.spreads, torch.tensor(lay.spreads, dtype=torch.float32))
    assert t.class_mask.tolist() == [1.0] * K
    assert float(t.ref_radius) == 1.0


def test_to_tensors_without_points_has_empty_mask():
    t = base_layout().to_tensors(np.arange(VIEW), n_train=VIEW)
    assert t.point_mask.sum() == 0


def test_layout_from_points_known_geometry():
    # class 0: square around (1, 1) at distance sqrt(2) from the centre; class 1: two points around (-2, 0)
    z = np.array([[0, 0], [2, 0], [0, 2], [2, 2], [-3, 0], [-1, 0]], dtype=np.float64)
    y = np.array([0, 0, 0, 0, 1, 1])
    lay = layout_from_points(z, y, 3)
    np.testing.assert_allclose(lay.centers, [[1, 1], [-2, 0], [0, 0]])
    np.testing.assert_allclose(lay.spreads, [np.sqrt(2), 1.0, 0.0])
    assert lay.ref_radius == pytest.approx(np.sqrt((z**2).sum(axis=1).mean()))
    assert lay.group.tolist() == [0, 1, 2]
    assert lay.sep_min.shape == (3, 3) and not lay.sep_min.any()
    assert not lay.edited.any() and lay.points == {}


def test_layout_from_points_all_at_origin_keeps_radius_one():
    lay = layout_from_points(np.zeros((4, 2)), np.array([0, 0, 1, 1]), 2)
    assert lay.ref_radius == 1.0


# ---------------------------------------------------------------- the loss space (with_metric)


def metric_layout():
    """A view z = g W^T with W = [[2, 0, 0], [0, 0.5, 0]] on 3-d features of RMS radius 2.

    (W W^T)^(-1/2) = diag(0.5, 2), so A = diag(0.25, 1.0): a drag along x costs a quarter of one along y.
    Class 0 spreads only along x, class 1 only along y.
    """
    from hill_app.losses import with_metric

    z = np.array([[-1.0, 0.0], [1.0, 0.0], [4.0, -1.0], [4.0, 1.0]])
    y = np.array([0, 0, 1, 1])
    lay = layout_from_points(z, y, 2)
    w = np.array([[2.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    return with_metric(lay, z, y, w, feature_radius=2.0), z


def test_with_metric_on_a_known_projection():
    lay, z = metric_layout()
    np.testing.assert_allclose(lay.metric, np.diag([0.25, 1.0]), atol=1e-12)
    np.testing.assert_allclose(lay.spread_gain, [0.25, 1.0], atol=1e-12)
    u = z @ np.diag([0.25, 1.0])
    assert lay.metric_radius == pytest.approx(np.sqrt((u**2).sum(1).mean()))
    # the view-space layout itself is unchanged
    np.testing.assert_allclose(lay.centers, [[0.0, 0.0], [4.0, 0.0]])
    np.testing.assert_allclose(lay.spreads, [1.0, 1.0])


def test_to_tensors_maps_targets_into_the_loss_space():
    lay, _ = metric_layout()
    lay = apply_edits(
        lay,
        [
            validate_edit(e, 2, 4)
            for e in (
                {"op": "separate", "classes": [0, 1], "min_distance": 6.0},  # pair lies along x
                {"op": "move_points", "indices": [3], "to": [2.0, 2.0]},
            )
        ],
    )
    t = lay.to_tensors(np.arange(4), n_train=4)
    a = np.diag([0.25, 1.0])
    torch.testing.assert_close(t.centers, torch.tensor(lay.centers @ a.T, dtype=torch.float32))
    torch.testing.assert_close(t.spreads, torch.tensor([0.25, 1.0]))
    assert float(t.sep_min[0, 1]) == pytest.approx(6.0 * 0.25)  # a separation along x costs 0.25 per unit
    assert float(t.sep_min[1, 0]) == pytest.approx(6.0 * 0.25)
    assert t.point_pos[3].tolist() == [0.5, 2.0] and t.point_mask.tolist() == [0, 0, 0, 1]
    torch.testing.assert_close(t.metric, torch.tensor(a, dtype=torch.float32))
    assert float(t.ref_radius) == pytest.approx(lay.metric_radius)


def test_without_metric_the_loss_space_is_view_units_over_ref_radius():
    lay = base_layout()
    lay.ref_radius = 2.0
    t = lay.to_tensors(np.arange(VIEW), n_train=VIEW)
    torch.testing.assert_close(t.centers, torch.tensor(lay.centers / 2, dtype=torch.float32))
    torch.testing.assert_close(t.spreads, torch.tensor(lay.spreads / 2, dtype=torch.float32))
    assert float(t.ref_radius) == 1.0
    torch.testing.assert_close(t.metric, torch.eye(2) / 2)


def test_json_round_trip_keeps_the_loss_space():
    lay, _ = metric_layout()
    back = TargetLayout.from_json(json.loads(json.dumps(lay.to_json())))
    np.testing.assert_array_equal(back.metric, lay.metric)
    np.testing.assert_array_equal(back.spread_gain, lay.spread_gain)
    assert back.metric_radius == lay.metric_radius
    a, b = lay.to_tensors(np.arange(4), 4), back.to_tensors(np.arange(4), 4)
    for f in ("centers", "spreads", "sep_min", "point_pos", "metric", "ref_radius"):
        torch.testing.assert_close(getattr(a, f), getattr(b, f), rtol=0, atol=0)


def test_edits_keep_the_loss_space():
    lay, _ = metric_layout()
    out = apply_edits(lay, [validate_edit(e, 2, 4) for e in ALL_EDITS_2])
    np.testing.assert_array_equal(out.metric, lay.metric)
    np.testing.assert_array_equal(out.spread_gain, lay.spread_gain)
    assert out.metric_radius == lay.metric_radius


ALL_EDITS_2 = [
    {"op": "move_center", "class": 1, "to": [3.0, 1.0]},
    {"op": "scale_spread", "class": 0, "factor": 0.5},
    {"op": "merge", "classes": [0, 1]},
    {"op": "separate", "classes": [0, 1], "min_distance": 2.0},
    {"op": "strategy", "name": "compactness", "strength": 0.3},
    {"op": "strategy", "name": "separation", "strength": 0.3},
]
