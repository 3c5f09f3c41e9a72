"""The post-session questionnaires of a study: UMUX-Lite (2 items, 7-point) and NASA-TLX (6 subscales, 0-100,
with the optional 15 pairwise comparisons for the weighted score).

:class:`QuestionnaireForm` is a widget in three steps (UMUX-Lite, TLX ratings, TLX pairwise) that emits
``submitted(dict)`` with the answers in the answers-file format of :mod:`hill_app.studies.questionnaires`
(``{"umux_lite": [a, b], "nasa_tlx": {subscale: rating}, "nasa_tlx_pairwise": [15 winners]}``; the last
key only when the participant answered the comparisons rather than skipping them). Nothing is pre-filled:
every UMUX-Lite item must be chosen and every TLX slider set (a click anywhere on a scale puts the rating
there) before the participant can go on, so an untouched default never passes for an answer.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QStackedWidget,
    QStyle,
    QStyleOptionSlider,
    QVBoxLayout,
    QWidget,
)

from hill_app.studies.questionnaires import PAIRS, TLX_ITEMS, TLX_RANGE, TLX_SCALES, UMUX_LITE_ITEMS, UMUX_LITE_SCALE

TLX_STEP = 5  # the paper scale has 21 marks: 0, 5, ..., 100
STEPS = ("umux", "tlx", "pairwise")

TLX_ENDS = {s: ("Very low", "Very high") for s in TLX_SCALES}
TLX_ENDS["performance"] = ("Perfect", "Failure")


def _heading(text: str) -> QLabel:
    lab = QLabel(text)
    lab.setStyleSheet("font-size: 14pt; font-weight: 700; color: #1a202c;")
    return lab


def _note(text: str) -> QLabel:
    lab = QLabel(text)
    lab.setWordWrap(True)
    lab.setStyleSheet("color: #4a5568;")
    return lab


class TlxSlider(QSlider):
    """A 0-100 slider in steps of 5 that jumps to where it is clicked and remembers whether it was ever set."""

    touched = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        lo, hi = TLX_RANGE
        self.setRange(int(lo), int(hi))
        self.setSingleStep(TLX_STEP)
        self.setPageStep(TLX_STEP * 2)
        self.setTickInterval(TLX_STEP)
        self.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.setValue(int((lo + hi) / 2))
        self.setMinimumWidth(360)
        self.is_set = False
        self.valueChanged.connect(self._snap)

    def _snap(self, v: int) -> None:
        snapped = int(round(v / TLX_STEP) * TLX_STEP)
        if snapped != v:
            self.setValue(snapped)
            return
        self._mark()

    def _mark(self) -> None:
        self.is_set = True
        self.touched.emit()

    def _geometry(self) -> tuple[int, int, int]:
        """(left edge of the handle's travel, its length, the handle's width) in widget pixels."""
        opt = QStyleOptionSlider()
        self.initStyleOption(opt)
        groove = self.style().subControlRect(
            QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderGroove, self
        )
        handle = self.style().subControlRect(
            QStyle.ComplexControl.CC_Slider, opt, QStyle.SubControl.SC_SliderHandle, self
        )
        return groove.x(), max(1, groove.width() - handle.width()), handle.width()

    def value_at(self, x: float) -> int:
        """The rating a click at widget x would set (snapped to the scale's marks)."""
        left, span, hw = self._geometry()
        pos = int(round(x - left - hw / 2))
        v = QStyle.sliderValueFromPosition(self.minimum(), self.maximum(), max(0, min(span, pos)), span)
        return int(round(v / TLX_STEP) * TLX_STEP)

    def pos_for(self, value: int) -> QPoint:
        """Where on the scale a click sets ``value`` (for scripts and tests driving the real mouse)."""
        left, span, hw = self._geometry()
        x = left + hw / 2 + QStyle.sliderPositionFromValue(self.minimum(), self.maximum(), int(value), span)
        return QPoint(int(round(x)), self.height() // 2)

    def _set_from(self, x: float) -> None:
        v = self.value_at(x)
        if v != self.value():
            self.setValue(v)  # _snap marks it
        else:
            self._mark()

    # The left button is handled here, not by QSlider: QSlider treats a press on the groove beside the handle
    # as a page step toward the click, which after the value was set to the click added (or took) 10 points.
    def mousePressEvent(self, ev: QMouseEvent) -> None:  # noqa: N802 (Qt name)
        if ev.button() != Qt.MouseButton.LeftButton:
            super().mousePressEvent(ev)
            return
        ev.accept()
        self.setSliderDown(True)
        self._set_from(ev.position().x())

    def mouseMoveEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        if self.isSliderDown() and ev.buttons() & Qt.MouseButton.LeftButton:
            ev.accept()
            self._set_from(ev.position().x())
            return
        super().mouseMoveEvent(ev)

    def mouseReleaseEvent(self, ev: QMouseEvent) -> None:  # noqa: N802
        if ev.button() == Qt.MouseButton.LeftButton and self.isSliderDown():
            ev.accept()
            self.setSliderDown(False)
            return
        super().mouseReleaseEvent(ev)


class QuestionnaireForm(QWidget):
    """UMUX-Lite, then the NASA-TLX ratings, then the optional TLX pairwise comparisons."""

    submitted = Signal(dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(24, 16, 24, 16)
        lay.setSpacing(10)
        self.header = QLabel("")
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setStyleSheet("color: #2d3748;")
        self.header.hide()
        lay.addWidget(self.header)
        self.step_label = QLabel("")
        self.step_label.setStyleSheet("color: #718096;")
        lay.addWidget(self.step_label)
        self.pages = QStackedWidget()
        self.pages.addWidget(self._scroll(self._build_umux()))
        self.pages.addWidget(self._scroll(self._build_tlx()))
        self.pages.addWidget(self._scroll(self._build_pairwise()))
        lay.addWidget(self.pages, 1)

        nav = QHBoxLayout()
        self.hint = QLabel("")
        self.hint.setStyleSheet("color: #b7791f;")
        self.back_button = QPushButton("Back")
        self.back_button.clicked.connect(self.back)
        self.skip_button = QPushButton("Skip the comparisons and submit")
        self.skip_button.setToolTip("the weighted TLX score needs them; the raw score does not")
        self.skip_button.clicked.connect(lambda: self._submit(with_pairwise=False))
        self.next_button = QPushButton("Next")
        self.next_button.setObjectName("primary")
        self.next_button.clicked.connect(self.next)
        nav.addWidget(self.hint, 1)
        nav.addWidget(self.back_button)
        nav.addWidget(self.skip_button)
        nav.addWidget(self.next_button)
        lay.addLayout(nav)
        self._done = False
        self._show_step(0)

    # ------------------------------------------------------------------ building

    @staticmethod
    def _scroll(inner: QWidget) -> QScrollArea:
        sa = QScrollArea()
        sa.setWidgetResizable(True)
        sa.setFrameShape(QFrame.Shape.NoFrame)
        sa.setStyleSheet("QScrollArea, QScrollArea > QWidget > QWidget { background: transparent; }")
        sa.setWidget(inner)
        return sa

    def _build_umux(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(_heading("Usability (UMUX-Lite)"))
        lay.addWidget(
            _note(
                "How much do you agree with each statement about the tool you just used? "
                "1 = strongly disagree, 7 = strongly agree."
            )
        )
        lo, hi = UMUX_LITE_SCALE
        self.umux_groups: list[QButtonGroup] = []
        self.umux_buttons: list[list[QRadioButton]] = []
        for i, text in enumerate(UMUX_LITE_ITEMS):
            box = QFrame()
            box.setObjectName("item")
            box.setStyleSheet("QFrame#item { background: #ffffff; border: 1px solid #dfe3ea; border-radius: 6px; }")
            g = QGridLayout(box)
            q = QLabel(f"{i + 1}. {text}")
            q.setWordWrap(True)
            q.setStyleSheet("font-weight: 600;")
            g.addWidget(q, 0, 0, 1, hi - lo + 3)
            g.addWidget(QLabel("Strongly disagree"), 1, 0, Qt.AlignmentFlag.AlignRight)
            group = QButtonGroup(self)
            buttons = []
            for k, v in enumerate(range(lo, hi + 1)):
                b = QRadioButton(str(v))
                group.addButton(b, v)
                g.addWidget(b, 1, k + 1, Qt.AlignmentFlag.AlignCenter)
                buttons.append(b)
            g.addWidget(QLabel("Strongly agree"), 1, hi - lo + 2)
            group.idClicked.connect(lambda _v: self._update_nav())
            self.umux_groups.append(group)
            self.umux_buttons.append(buttons)
            lay.addWidget(box)
        lay.addStretch(1)
        return w

    def _build_tlx(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(_heading("Workload (NASA-TLX)"))
        lay.addWidget(
            _note(
                "Rate the task you just did on each scale: click on the scale where your rating lies "
                "(or drag the handle). Every scale must be set."
            )
        )
        self.tlx_sliders: dict[str, TlxSlider] = {}
        self.tlx_values: dict[str, QLabel] = {}
        ends = [QLabel(t) for pair in TLX_ENDS.values() for t in pair]
        end_w = max(lab.sizeHint().width() for lab in ends) + 4  # the same width, so the scales line up
        for s in TLX_SCALES:
            title, question = TLX_ITEMS[s]
            box = QFrame()
            box.setObjectName("item")
            box.setStyleSheet("QFrame#item { background: #ffffff; border: 1px solid #dfe3ea; border-radius: 6px; }")
            g = QGridLayout(box)
            t = QLabel(f"<b>{title}</b> &nbsp; <span style='color:#4a5568'>{question}</span>")
            t.setWordWrap(True)
            g.addWidget(t, 0, 0, 1, 4)
            lo_text, hi_text = TLX_ENDS[s]
            slider = TlxSlider()
            value = QLabel("not set")
            value.setMinimumWidth(64)
            value.setStyleSheet("color: #b7791f;")
            slider.touched.connect(lambda s=s: self._tlx_changed(s))
            lo_lab, hi_lab = QLabel(lo_text), QLabel(hi_text)
            lo_lab.setFixedWidth(end_w)
            lo_lab.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            hi_lab.setFixedWidth(end_w)
            g.addWidget(lo_lab, 1, 0)
            g.addWidget(slider, 1, 1)
            g.addWidget(hi_lab, 1, 2)
            g.addWidget(value, 1, 3)
            g.setColumnStretch(1, 1)
            self.tlx_sliders[s] = slider
            self.tlx_values[s] = value
            lay.addWidget(box)
        lay.addStretch(1)
        return w

    def _build_pairwise(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(_heading("Workload: which mattered more? (optional)"))
        lay.addWidget(
            _note(
                "For each pair, choose the factor that contributed more to the workload of the task. "
                "These 15 choices weight the scales in the weighted TLX score; you may skip them."
            )
        )
        grid = QGridLayout()
        self.pair_groups: list[QButtonGroup] = []
        self.pair_buttons: list[tuple[QPushButton, QPushButton]] = []
        for i, (a, b) in enumerate(PAIRS):
            group = QButtonGroup(self)
            group.setExclusive(True)
            btns = []
            for k, s in enumerate((a, b)):
                btn = QPushButton(TLX_ITEMS[s][0])
                btn.setCheckable(True)
                btn.setStyleSheet("QPushButton:checked { background: #2563eb; color: white; border-color: #1d4ed8; }")
                btn.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
                group.addButton(btn, k)
                grid.addWidget(btn, i, 2 * k + 1)
                btns.append(btn)
            grid.addWidget(QLabel(f"{i + 1}."), i, 0)
            grid.addWidget(QLabel("or"), i, 2, Qt.AlignmentFlag.AlignCenter)
            group.idClicked.connect(lambda _k: self._update_nav())
            self.pair_groups.append(group)
            self.pair_buttons.append((btns[0], btns[1]))
        lay.addLayout(grid)
        lay.addStretch(1)
        return w

    # ------------------------------------------------------------------ state

    def set_header(self, html_text: str) -> None:
        self.header.setText(html_text)
        self.header.setVisible(bool(html_text))

    @property
    def step(self) -> str:
        return STEPS[self.pages.currentIndex()]

    def umux_answers(self) -> list[int] | None:
        vals = [g.checkedId() for g in self.umux_groups]
        return None if any(v < 0 for v in vals) else vals

    def tlx_answers(self) -> dict[str, float] | None:
        if not all(s.is_set for s in self.tlx_sliders.values()):
            return None
        return {k: float(s.value()) for k, s in self.tlx_sliders.items()}

    def pairwise_answers(self) -> list[str] | None:
        out = []
        for (a, b), g in zip(PAIRS, self.pair_groups):
            k = g.checkedId()
            if k < 0:
                return None
            out.append((a, b)[k])
        return out

    def answers(self, with_pairwise: bool = True) -> dict[str, Any]:
        """The answer sheet so far (the keys that are complete)."""
        out: dict[str, Any] = {}
        u, t = self.umux_answers(), self.tlx_answers()
        if u is not None:
            out["umux_lite"] = u
        if t is not None:
            out["nasa_tlx"] = t
            p = self.pairwise_answers() if with_pairwise else None
            if p is not None:
                out["nasa_tlx_pairwise"] = p
        return out

    def _tlx_changed(self, s: str) -> None:
        sl = self.tlx_sliders[s]
        self.tlx_values[s].setText(str(sl.value()))
        self.tlx_values[s].setStyleSheet("color: #2d3748; font-weight: 600;")
        self._update_nav()

    def _show_step(self, i: int) -> None:
        self.pages.setCurrentIndex(i)
        self.step_label.setText(f"Step {i + 1} of {len(STEPS)}")
        self._update_nav()

    def _update_nav(self) -> None:
        step = self.step
        self.back_button.setVisible(step != "umux")
        self.skip_button.setVisible(step == "pairwise")
        self.next_button.setText("Submit" if step == "pairwise" else "Next")
        if step == "umux":
            ok = self.umux_answers() is not None
            hint = "" if ok else "choose a rating for both statements"
        elif step == "tlx":
            missing = [TLX_ITEMS[k][0] for k, s in self.tlx_sliders.items() if not s.is_set]
            ok = not missing
            hint = "" if ok else f"not set yet: {', '.join(missing)}"
        else:
            left = sum(g.checkedId() < 0 for g in self.pair_groups)
            ok = left == 0
            hint = "" if ok else f"{left} of {len(PAIRS)} pairs left (or skip them)"
        self.next_button.setEnabled(ok and not self._done)
        self.skip_button.setEnabled(not self._done)
        self.back_button.setEnabled(not self._done)
        self.hint.setText(hint)

    def next(self) -> None:
        i = self.pages.currentIndex()
        if not self.next_button.isEnabled():
            return
        if i + 1 < len(STEPS):
            self._show_step(i + 1)
        else:
            self._submit(with_pairwise=True)

    def back(self) -> None:
        i = self.pages.currentIndex()
        if i > 0:
            self._show_step(i - 1)

    def _submit(self, with_pairwise: bool) -> None:
        if self._done:
            return
        ans = self.answers(with_pairwise=with_pairwise)
        if "umux_lite" not in ans or "nasa_tlx" not in ans:
            return
        self._done = True
        self._update_nav()
        self.submitted.emit(ans)
