"""Report figures: classes in the window's colours, and every edited target inside its panel."""

import os

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from hill_app.gui.palette import class_colors  # noqa: E402
from hill_app.studies import figures  # noqa: E402


def test_class_colours_are_the_apps():
    for k in (10, 12, 20):
        cols = class_colors(k)
        for c in range(k):
            assert figures.class_color(c, k) == "#{:02x}{:02x}{:02x}".format(*cols[c])
    assert figures.class_color(3, 10) == "#f0e442"  # class 3 is yellow in the window, so in the report


def test_targets_far_out_stay_inside_the_panels():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    z = rng.normal(size=(120, 2)) * 0.3 + np.array([[0, 0], [1, 0], [0, 1]])[y]
    far_centre = np.array([[0.0, 0.0], [6.0, -4.0], [0.0, 1.0]])
    panels = [
        {
            "z": z,
            "labels": y,
            "centers_to": far_centre,
            "spreads_to": np.array([np.nan, 1.5, np.nan]),
            "points_from": z[:1],
            "points_to": np.array([[-5.0, 3.0]]),
        }
    ]
    (x0, x1), (y0, y1) = figures.layout_limits(panels)
    assert x0 <= -5.0 and x1 >= 6.0 + 1.5 and y0 <= -4.0 - 1.5 and y1 >= 3.0
    # the points keep their robust range when there are no targets: one stray point does not zoom out
    stray = np.vstack([z, [[100.0, 100.0]]])
    (a0, a1), _ = figures.layout_limits([{"z": stray, "labels": np.append(y, 0)}])
    assert a1 < 10


def test_a_far_target_is_drawn_in_its_class_colour(tmp_path):
    from PySide6.QtGui import QColor, QImage

    y = np.repeat(np.arange(4), 30)
    rng = np.random.default_rng(1)
    z = rng.normal(size=(120, 2)) * 0.2 + np.array([[0, 0], [1, 0], [0, 1], [1, 1]])[y]
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [8.0, 8.0]])  # class 3 (yellow) dragged far out
    path = figures.layout_figure(
        tmp_path / "f.png",
        [{"title": "edited", "z": z, "labels": y, "faded": True, "centers_to": centres}],
        4,
        title="t",
    )
    img = QImage(str(path))
    yellow = QColor("#f0e442")
    # the target disc of class 3 lies in the panel's upper-right corner, inside its frame (x < 30 + 420)
    hits = [(x, yy) for x in range(30, 450) for yy in range(58, 478) if QColor(img.pixel(x, yy)).rgb() == yellow.rgb()]
    assert hits and min(x for x, _ in hits) > 330 and max(yy for _, yy in hits) < 200
