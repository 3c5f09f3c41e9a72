"""The latent view's interaction state machine (hit-testing, drags) as plain functions: no Qt, no window."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hill_app.gui.latent_view import interaction as ix
from hill_app.gui.latent_view.interaction import Pointer, Scene

ROOT = Path(__file__).resolve().parents[1]
K = 10.0  # pixels per view unit in these scenes


def scene(
    points=None,
    labels=None,
    selection=(),
    centers=((0.0, 0.0), (10.0, 0.0), (0.0, 10.0)),
    spreads=(3.0, 2.0, 2.0),
    present=None,
    moved=None,
    scale=(K, K),
):
    centers = np.asarray(centers, dtype=float)
    k = len(centers)
    points = np.zeros((0, 2)) if points is None else np.asarray(points, dtype=float)
    labels = np.zeros(len(points), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    return Scene(
        centers=centers,
        spreads=np.asarray(spreads, dtype=float),
        group=np.arange(k),
        present=np.ones(k, bool) if present is None else np.asarray(present, bool),
        points=points,
        labels=labels,
        moved=np.zeros(len(points), bool) if moved is None else np.asarray(moved, bool),
        selection=np.asarray(selection, dtype=np.int64),
        scale=scale,
    )


def at(x, y, **mods):
    """A pointer at view (x, y); pixels are view * K with y down, as a viewport would give them."""
    return Pointer((x * K, -y * K), (x, y), **mods)


# ------------------------------------------------------------------ hit-testing


def test_handle_then_selected_point_then_ring_then_point():
    # a point of class 0 sitting exactly on class 0's ring edge (radius 3 = 30 px)
    s = scene(points=[[3.0, 0.0], [0.5, 0.0]], labels=[0, 0])
    assert ix.hit_test(s, (3.0, 0.0)) == ix.Hit("ring", 0)  # unselected: the ring wins
    sel = scene(points=[[3.0, 0.0], [0.5, 0.0]], labels=[0, 0], selection=[0])
    assert ix.hit_test(sel, (3.0, 0.0)) == ix.Hit("point", 0)  # selected: the point wins
    assert ix.hit_test(sel, (3.4, 0.2)) == ix.Hit("point", 0)  # off its centre, still within POINT_HIT
    assert ix.hit_test(sel, (3.0, 0.0), points=False) == ix.Hit("ring", 0)
    # the handle (drawn on top) wins over a selected point under it
    sel2 = scene(points=[[3.0, 0.0], [0.5, 0.0]], labels=[0, 0], selection=[1])
    assert ix.hit_test(sel2, (0.5, 0.0)) == ix.Hit("handle", 0)
    # plain points away from handles and rings
    s3 = scene(points=[[5.0, 5.0]], labels=[0])
    assert ix.hit_test(s3, (5.2, 5.3)) == ix.Hit("point", 0)
    assert ix.hit_test(s3, (6.0, 6.0)) is None


def test_handle_press_off_its_centre_and_nearest_handle_wins():
    s = scene()
    assert ix.hit_test(s, (0.7, -0.7)) == ix.Hit("handle", 0)  # ~9.9 px off the centre: still the handle
    assert ix.hit_test(s, (1.2, 0.0)) != ix.Hit("handle", 0)  # 12 px: not the handle any more
    near = scene(centers=((0.0, 0.0), (1.5, 0.0)), spreads=(3.0, 3.0))
    assert ix.hit_test(near, (1.0, 0.0)) == ix.Hit("handle", 1)


def test_ring_hit_zone_and_tiny_rings():
    s = scene()
    for x in (2.6, 3.0, 3.45):  # within RING_HIT (5 px) of the 30 px edge
        assert ix.hit_test(s, (x, 0.0), points=False) == ix.Hit("ring", 0)
    assert ix.hit_test(s, (2.2, 0.0), points=False) is None
    tiny = scene(spreads=(1.0, 2.0, 2.0))  # a 10 px ring: the handle covers it
    assert ix.hit_test(tiny, (1.0, 0.0), points=False) == ix.Hit("handle", 0)
    assert ix.ring_under(tiny, np.array([1.3, 0.0])) == -1
    absent = scene(present=[False, True, True])
    assert ix.hit_test(absent, (0.0, 0.0), points=False) is None
    assert ix.hit_test(absent, (3.0, 0.0), points=False) is None


# ------------------------------------------------------------------ drags


def drag(s, a, b, steps=5):
    """Press at a, move in steps to b with the button held, release at b (a's modifiers throughout)."""
    d, sel = ix.begin(s, a)
    assert d is not None
    s = Scene(**{**s.__dict__, "selection": sel})
    for t in np.linspace(0, 1, steps + 1)[1:]:
        p = Pointer(
            tuple(np.add(a.px, np.multiply(np.subtract(b.px, a.px), t))),
            tuple(np.add(a.view, np.multiply(np.subtract(b.view, a.view), t))),
            a.shift,
            a.ctrl,
        )
        ix.move(d, s, p)
    return d, ix.finish(d, s, b), sel


def test_ring_drag_factor_is_release_over_press_distance():
    s = scene(points=[[0.5, 0.5], [-1.0, 0.2]], labels=[0, 0])
    # pressed 0.4 units (4 px) outside the edge, released 4 units (40 px) further out
    d, out, _ = drag(s, at(3.4, 0.0), at(7.4, 0.0))
    assert d.kind == "ring" and d.r_press == pytest.approx(3.4)
    (e,) = out.edits
    assert e == {"op": "scale_spread", "class": 0, "factor": pytest.approx(7.4 / 3.4)}
    # live: the points follow the factor about the centre
    np.testing.assert_allclose(d.live_points(), np.array([[0.5, 0.5], [-1.0, 0.2]]) * (7.4 / 3.4))
    # tangential moves leave the spread alone; no edit for a factor of 1
    d, out, _ = drag(s, at(3.0, 0.0), at(0.0, 3.0), steps=40)
    assert d.value == pytest.approx(1.0, abs=2e-3)
    # inward, pressed inside the edge
    d, out, _ = drag(s, at(2.7, 0.0), at(1.35, 0.0))
    assert out.edits[0]["factor"] == pytest.approx(0.5)


def test_ring_factor_is_clamped():
    s = scene()
    d, out, _ = drag(s, at(3.0, 0.0), at(0.01, 0.0))
    assert out.edits[0]["factor"] == ix.MIN_FACTOR
    _, out, _ = drag(s, at(3.0, 0.0), at(300.0, 0.0))
    assert out.edits[0]["factor"] == ix.MAX_FACTOR


def test_center_drag_keeps_the_grab_offset_and_moves_free_points_only():
    s = scene(points=[[0.5, 0.5], [1.0, -1.0], [10.2, 0.1]], labels=[0, 0, 1], moved=[False, True, False])
    d, out, _ = drag(s, at(0.5, -0.3), at(4.5, 1.7))  # pressed 5.8 px off the handle's centre
    assert d.kind == "center" and d.idx.tolist() == [0]  # the moved point stays where it was dropped
    assert out.edits == [{"op": "move_center", "class": 0, "to": [pytest.approx(4.0), pytest.approx(2.0)]}]
    np.testing.assert_allclose(d.live_points(), [[4.5, 2.5]])


def test_drop_on_another_centre_merges_there():
    s = scene()
    d, out, _ = drag(s, at(0.0, 0.0), at(9.0, 0.8))  # ends 12 px from class 1's handle
    assert d.merge_target == 1
    assert out.edits == [
        {"op": "merge", "classes": [0, 1]},
        {"op": "move_center", "class": 0, "to": [pytest.approx(9.0), pytest.approx(0.8)]},
    ]
    d, out, _ = drag(s, at(0.0, 0.0), at(8.4, 0.0))  # 16 px away: a move, not a merge
    assert d.merge_target == -1 and [e["op"] for e in out.edits] == ["move_center"]
    # the live target follows the handle, not the cursor, and clears when the handle leaves it
    d, _ = ix.begin(s, at(0.5, 0.0))
    ix.move(d, s, at(10.5, 0.0))
    assert d.merge_target == 1
    ix.move(d, s, at(5.0, 0.0))
    assert d.merge_target == -1


def test_click_is_not_a_drag():
    s = scene(points=[[5.0, 5.0]], labels=[0])
    for start in (at(0.0, 0.0), at(3.0, 0.0)):
        d, out, _ = drag(s, start, Pointer((start.px[0] + 2, start.px[1]), (start.view[0] + 0.2, start.view[1])))
        assert not d.moved and out.edits == []


def test_click_on_a_ring_selects_the_point_under_it_then_the_point_drags():
    s = scene(points=[[3.0, 0.0], [5.0, 5.0]], labels=[0, 0])
    d, out, _ = drag(s, at(3.0, 0.0), at(3.0, 0.0))
    assert d.kind == "ring" and out.edits == [] and out.selection.tolist() == [0]
    s = Scene(**{**s.__dict__, "selection": out.selection})
    d, out, _ = drag(s, at(3.0, 0.0), at(3.0, 2.0))
    assert d.kind == "points"
    assert out.edits == [{"op": "move_points", "indices": [0], "to": [[3.0, 2.0]]}]


def test_point_selection_rules():
    s = scene(points=[[5.0, 5.0], [7.0, 5.0], [-6.0, -6.0]], labels=[0, 0, 1])
    d, out, sel = drag(s, at(5.0, 5.0), at(5.0, 5.0))
    assert sel.tolist() == [0] and out.edits == []
    s = Scene(**{**s.__dict__, "selection": sel})
    d, out, sel = drag(s, at(7.0, 5.0, shift=True), at(7.0, 5.0, shift=True))
    assert sel.tolist() == [0, 1]
    s = Scene(**{**s.__dict__, "selection": sel})
    d, out, _ = drag(s, at(7.0, 5.0), at(8.0, 4.0))  # dragging one selected point moves all of them
    (e,) = out.edits
    assert e["indices"] == [0, 1] and e["to"] == [[6.0, 4.0], [8.0, 4.0]]
    # shift-click on a selected point unselects it
    _, out, _ = drag(s, at(7.0, 5.0, shift=True), at(7.0, 5.0, shift=True))
    assert out.selection.tolist() == [0]
    _, _, sel = drag(s, at(-6.0, -6.0), at(-6.0, -6.0))  # a plain click replaces the selection
    assert sel.tolist() == [2]


def test_rubber_band_with_ctrl_or_select_mode_only():
    s = scene(points=[[5.0, 5.0], [6.0, 6.0], [-6.0, -6.0]], labels=[0, 0, 1], selection=[2])
    assert ix.begin(s, at(4.0, 7.0))[0] is None  # empty space: pan and zoom, no drag
    d, out, _ = drag(s, at(4.0, 7.0, ctrl=True), at(6.5, 4.5, ctrl=True))
    assert d.kind == "rubber" and out.selection.tolist() == [0, 1]
    d, out, _ = drag(s, at(4.0, 7.0, ctrl=True, shift=True), at(6.5, 4.5, ctrl=True, shift=True))
    assert out.selection.tolist() == [0, 1, 2]
    d, _ = ix.begin(s, at(4.0, 7.0), select_mode=True)
    assert d is not None and d.kind == "rubber"


def test_merged_group_drags_together():
    s = Scene(**{**scene(points=[[0.2, 0.2], [10.2, 0.2]], labels=[0, 1]).__dict__, "group": np.array([0, 0, 2])})
    d, _, _ = drag(s, at(0.0, 0.0), at(0.0, 5.0))
    assert d.members == [0, 1] and sorted(d.idx.tolist()) == [0, 1]
    np.testing.assert_allclose(d.live_points(), [[0.2, 5.2], [10.2, 5.2]])


def test_interaction_module_needs_no_qt():
    """Loaded on its own (not through hill_app.gui, which applies the Qt compat guard), it imports no Qt."""
    path = ROOT / "hill_app" / "gui" / "latent_view" / "interaction.py"
    code = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('interaction', {str(path)!r}); "
        "m = importlib.util.module_from_spec(spec); sys.modules['interaction'] = m; spec.loader.exec_module(m); "
        "import numpy as np; "
        "s = m.Scene(np.zeros((1, 2)), np.ones(1), np.zeros(1, int), np.ones(1, bool), np.zeros((0, 2)), "
        "np.zeros(0, int), np.zeros(0, bool), np.zeros(0, int), (10.0, 10.0)); "
        "assert m.hit_test(s, (0.0, 0.0)) == m.Hit('handle', 0); "
        "bad = [k for k in sys.modules if k.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
