"""The post-session questionnaire form, driven with real mouse events (offscreen Qt).

Issue 13.11: a NASA-TLX rating is the value under the participant's click. The clicks here land on the
scale away from the handle (a click on the handle would not show a page step added after the click), and
where each value lies is read from where the slider draws its handle for that value (the style's own
geometry), not from the slider's click-to-value code under test.
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("pytestqt")
from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QStyle, QStyleOptionSlider  # noqa: E402

from hill_app.gui.questionnaire_dialog import QuestionnaireForm, TlxSlider  # noqa: E402
from hill_app.studies.questionnaires import TLX_SCALES  # noqa: E402

LEFT = Qt.MouseButton.LeftButton
NOMOD = Qt.KeyboardModifier.NoModifier


def sub_rect(slider: TlxSlider, part: QStyle.SubControl):
    opt = QStyleOptionSlider()
    slider.initStyleOption(opt)
    return slider.style().subControlRect(QStyle.ComplexControl.CC_Slider, opt, part, slider)


def handle_rect(slider: TlxSlider):
    return sub_rect(slider, QStyle.SubControl.SC_SliderHandle)


def rows(slider: TlxSlider) -> list[int]:
    """The heights a participant clicks at: the drawn line (the groove) and the middle of the widget."""
    return sorted({sub_rect(slider, QStyle.SubControl.SC_SliderGroove).center().y(), slider.height() // 2})


def drawn_at(slider: TlxSlider, value: int) -> int:
    """The x where the slider draws its handle's centre when it holds ``value`` (the style's geometry)."""
    probe = TlxSlider()
    probe.resize(slider.size())
    probe.setValue(value)
    return handle_rect(probe).center().x()


@pytest.fixture
def form(qtbot):
    f = QuestionnaireForm()
    qtbot.addWidget(f)
    f.resize(900, 900)
    f.show()
    qtbot.waitExposed(f)
    for group in f.umux_groups:
        qtbot.mouseClick(group.button(4), LEFT)
    qtbot.mouseClick(f.next_button, LEFT)
    assert f.step == "tlx"
    QApplication.processEvents()
    return f


# Per scale, a sequence of ratings to click, each far from the handle the previous click left (never on it).
SEQUENCES = {
    "mental": [25, 80, 5, 50, 95, 35],
    "physical": [0, 60, 15, 100, 40],
    "temporal": [75, 20, 65, 10, 45],
    "performance": [90, 30, 70, 5, 55],
    "effort": [10, 85, 35, 100, 60],
    "frustration": [100, 0, 50, 25, 80],
}


def test_a_click_on_a_tlx_scale_records_the_value_under_it(form):
    """On the drawn line and beside it, on a mark and up to 0.4 of a mark's spacing off it (where the handle,
    once moved there, does not cover the click): the nearest mark is recorded, never a page step more."""
    assert set(SEQUENCES) == set(TLX_SCALES)
    for s, values in SEQUENCES.items():
        sl = form.tlx_sliders[s]
        spacing = (drawn_at(sl, 100) - drawn_at(sl, 0)) / 20
        assert spacing > 10, "the scale is too short to click between its marks"
        for y in rows(sl):
            for off in (0.0, 0.4, -0.4):
                for v in values:
                    x = round(drawn_at(sl, v) + off * spacing)
                    if not 0 <= x < sl.width():
                        continue
                    assert not handle_rect(sl).contains(QPoint(x, y)), (s, v, "the click must land off the handle")
                    QTest.mouseClick(sl, LEFT, NOMOD, QPoint(x, y))
                    assert sl.value() == v, (s, v, off, y, sl.value())
                    assert form.tlx_values[s].text() == str(v)
    answers = form.answers()["nasa_tlx"]
    assert answers == {s: float(vals[-1]) for s, vals in SEQUENCES.items()}


def test_a_click_between_marks_records_the_nearest_mark(form):
    sl = form.tlx_sliders["effort"]
    y = rows(sl)[0]
    for between, want in ((37, 35), (62, 60), (68, 70), (13, 15)):
        lo, hi = drawn_at(sl, between - between % 5), drawn_at(sl, between - between % 5 + 5)
        x = round(lo + (hi - lo) * (between % 5) / 5)
        QTest.mouseClick(sl, LEFT, NOMOD, QPoint(x, y))
        assert sl.value() == want, (between, sl.value())
    assert form.answers().get("nasa_tlx") is None  # the other five scales are still unset


def test_pressing_then_dragging_follows_the_cursor_and_keys_step_by_five(form, qtbot):
    sl = form.tlx_sliders["temporal"]
    y = rows(sl)[0]
    a, b = QPoint(drawn_at(sl, 20), y), QPoint(drawn_at(sl, 70), y)
    QTest.mousePress(sl, LEFT, NOMOD, a)
    assert sl.value() == 20
    for i in range(1, 6):
        QTest.mouseMove(sl, a + (b - a) * (i / 5), -1)
    QTest.mouseRelease(sl, LEFT, NOMOD, b)
    assert sl.value() == 70 and sl.is_set
    sl.setFocus()
    QTest.keyClick(sl, Qt.Key.Key_Right)
    assert sl.value() == 75
    QTest.keyClick(sl, Qt.Key.Key_Left)
    QTest.keyClick(sl, Qt.Key.Key_Left)
    assert sl.value() == 65
    assert form.tlx_values["temporal"].text() == "65"


def test_an_untouched_scale_is_not_an_answer(form):
    """The handle starts in the middle; the middle counts only once the participant clicked there."""
    sl = form.tlx_sliders["mental"]
    assert sl.value() == 50 and not sl.is_set and form.tlx_values["mental"].text() == "not set"
    QTest.mouseClick(sl, LEFT, NOMOD, QPoint(drawn_at(sl, 50), rows(sl)[0]))
    assert sl.is_set and sl.value() == 50 and form.tlx_values["mental"].text() == "50"
