"""EditStack: the edits of one pause with undo/redo over a base layout (Qt-free)."""

import json

import numpy as np
import pytest

from hill_app.gui.edit_stack import EditStack
from hill_app.losses import EditError, apply_edits, layout_from_points


def _base(k=4, n=80, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    z = rng.normal(size=(k, 2))[y] * 3 + rng.normal(size=(n, 2)) * 0.4
    return layout_from_points(z, y, k), n


def _stack():
    base, n = _base()
    return EditStack(base, view_size=n)


MOVE = {"op": "move_center", "class": 1, "to": [2.0, -1.0]}
SCALE = {"op": "scale_spread", "class": 0, "factor": 0.5}
POINTS = {"op": "move_points", "indices": [3, 7], "to": [[0.0, 1.0], [1.0, 0.0]]}
MERGE = {"op": "merge", "classes": [2, 3]}
SEP = {"op": "separate", "classes": [0, 1], "min_distance": 4.0}


def test_push_undo_redo_round_trip():
    s = _stack()
    assert not s.can_undo() and not s.can_redo() and s.edits == []
    for e in (MOVE, SCALE, POINTS, MERGE, SEP):
        s.push(e)
    assert len(s) == 5 and s.can_undo() and not s.can_redo()
    assert s.undo() and s.undo()
    assert [e["op"] for e in s.edits] == ["move_center", "scale_spread", "move_points"]
    assert s.can_redo()
    assert s.redo()
    assert [e["op"] for e in s.edits][-1] == "merge"
    while s.undo():
        pass
    assert s.edits == [] and not s.can_undo() and s.can_redo()
    assert not s.undo()
    while s.redo():
        pass
    assert len(s) == 5 and not s.redo()


def test_push_clears_redo():
    s = _stack()
    s.push(MOVE)
    s.push(SCALE)
    s.undo()
    assert s.can_redo()
    s.push(MERGE)
    assert not s.can_redo()
    assert [e["op"] for e in s.edits] == ["move_center", "merge"]


def test_invalid_edit_is_rejected_and_changes_nothing():
    s = _stack()
    s.push(MOVE)
    for bad in (
        {"op": "move_center", "class": 9, "to": [0, 0]},
        {"op": "scale_spread", "class": 0, "factor": 0},
        {"op": "move_points", "indices": [999], "to": [0, 0]},
        {"op": "nope"},
        {"op": "merge", "classes": [1, 1]},
        "not a dict",
    ):
        with pytest.raises(EditError):
            s.push(bad)
    assert s.edits == [dict(MOVE)] and s.can_undo() and not s.can_redo()


def test_no_base_refuses_edits():
    s = EditStack()
    with pytest.raises(ValueError):
        s.push(MOVE)
    with pytest.raises(ValueError):
        _ = s.layout


def test_layout_is_apply_edits_and_cached():
    s = _stack()
    base = s.base
    assert np.allclose(s.layout.centers, base.centers)
    for e in (MOVE, SCALE, POINTS, MERGE, SEP):
        s.push(e)
        want = apply_edits(base, s.edits)
        got = s.layout
        assert got is s.layout  # cached until the edits change
        np.testing.assert_allclose(got.centers, want.centers)
        np.testing.assert_allclose(got.spreads, want.spreads)
        np.testing.assert_allclose(got.sep_min, want.sep_min)
        np.testing.assert_array_equal(got.group, want.group)
        assert got.points == want.points
    s.undo()
    np.testing.assert_allclose(s.layout.centers, apply_edits(base, s.edits).centers)
    assert s.layout.centers[1].tolist() != base.centers[1].tolist()  # the move is still there
    # the base itself never changes
    np.testing.assert_allclose(s.base.centers, base.centers)


def test_layout_values_follow_the_edit():
    s = _stack()
    base = s.base
    s.push(MOVE)
    assert s.layout.centers[1].tolist() == [2.0, -1.0]
    s.push(SCALE)
    assert s.layout.spreads[0] == pytest.approx(base.spreads[0] * 0.5)
    s.push(POINTS)
    assert s.layout.points == {3: (0.0, 1.0), 7: (1.0, 0.0)}


def test_clear_is_undoable_and_noop_when_empty():
    s = _stack()
    s.clear()
    assert not s.can_undo()  # nothing to clear: no history entry
    s.push(MOVE)
    s.push(SCALE)
    s.clear()
    assert s.edits == [] and s.can_undo()
    np.testing.assert_allclose(s.layout.centers, s.base.centers)
    s.undo()
    assert [e["op"] for e in s.edits] == ["move_center", "scale_spread"]
    s.redo()
    assert s.edits == []


def test_replace_is_one_undoable_step():
    s = _stack()
    s.push(MOVE)
    s.push(MERGE)
    s.replace([MOVE])
    assert [e["op"] for e in s.edits] == ["move_center"]
    s.undo()
    assert [e["op"] for e in s.edits] == ["move_center", "merge"]
    with pytest.raises(EditError):
        s.replace([{"op": "merge", "classes": [0, 0]}])


def test_reset_base_drops_or_keeps_edits():
    s = _stack()
    s.push(MOVE)
    s.push(SCALE)
    s.undo()
    new, n = _base(seed=5)
    s.reset_base(new, view_size=n, keep_edits=True)
    assert [e["op"] for e in s.edits] == ["move_center"] and s.can_redo()
    np.testing.assert_allclose(s.base.centers, new.centers)
    assert s.layout.centers[1].tolist() == [2.0, -1.0]
    s.reset_base(new)
    assert s.edits == [] and not s.can_undo() and not s.can_redo()
    # kept edits that no longer fit the new view set are dropped, not kept broken
    s.push(POINTS)
    small, _ = _base(n=5 * 4)
    s.reset_base(small, view_size=5, keep_edits=True)
    assert s.edits == []


def test_edits_are_copies_and_json_stable():
    s = _stack()
    s.push(POINTS)
    s.push({"op": "move_points", "indices": [1, 2], "to": [5.0, 5.0]})  # one point for all: expanded
    e = s.edits
    e[0]["indices"].append(99)
    assert s.edits[0]["indices"] == [3, 7]
    assert s.edits[1]["to"] == [[5.0, 5.0], [5.0, 5.0]]
    assert json.loads(json.dumps(s.edits)) == s.edits


def test_history_is_bounded():
    base, n = _base()
    s = EditStack(base, view_size=n, max_history=10)
    for i in range(30):
        s.push({"op": "move_center", "class": 0, "to": [float(i), 0.0]})
    undone = 0
    while s.undo():
        undone += 1
    assert undone == 10 and len(s) == 20


def test_push_many_is_one_undoable_step_and_all_or_nothing():
    """A drop that merges two classes where it was dropped is two ops and one gesture: one undo takes both."""
    s = _stack()
    s.push(MOVE)
    got = s.push_many([MERGE, {"op": "move_center", "class": 2, "to": (1.0, 1.0)}])
    assert [e["op"] for e in got] == ["merge", "move_center"] and got[1]["to"] == [1.0, 1.0]
    assert [e["op"] for e in s.edits] == ["move_center", "merge", "move_center"]
    lay = s.layout
    np.testing.assert_allclose(lay.centers[2], [1.0, 1.0])
    np.testing.assert_allclose(lay.centers[3], [1.0, 1.0])
    assert lay.group[2] == lay.group[3]
    fresh = apply_edits(s.base, s.edits)  # the incremental cache matches a full replay
    np.testing.assert_allclose(lay.centers, fresh.centers)
    assert s.undo() and s.edits == [MOVE]
    assert s.redo() and len(s) == 3
    before = s.edits
    with pytest.raises(EditError):
        s.push_many([SCALE, {"op": "scale_spread", "class": 99, "factor": 2.0}])
    assert s.edits == before and len(s) == 3  # nothing of the refused batch went in ...
    assert s.push_many([]) == [] and s.edits == before
    assert s.undo() and s.edits == [MOVE]  # ... and it left no history entry
