"""Command panels and the log console: every control sends one engine command and shows what became of it.

A panel never changes training state itself: it calls ``submit(command, args)`` (the session's thread-safe
queue) and remembers the command's uuid. The window routes every "command" event to every panel; the one
that sent it shows the status (pending, running, success with the result, failed with the reason), so the
status a user sees is the status that happened in the training thread.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .command_log import LEVEL_COLOURS, LogConsole
from .results import STATUS_COLOURS, describe_result
from .widgets import WrapLabel

SubmitFn = Callable[[str, dict], "str | None"]  # the command's uuid, or None when no run can take it


class _ResultLabel(WrapLabel):
    """The line under a panel that says what happened to the panel's last command (wraps, never widens)."""

    def __init__(self) -> None:
        super().__init__("")
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setStyleSheet("color: #718096; font-size: 9pt;")
        self.setMinimumHeight(16)

    def show_status(self, rec: dict[str, Any]) -> None:
        st = rec.get("status", "")
        col = STATUS_COLOURS.get(st, "#4a5568")
        detail = describe_result(rec) if st in ("success", "failed") else ""
        text = f"<b style='color:{col}'>{html.escape(st)}</b>"
        if detail:
            text += f" &nbsp;{html.escape(detail)}"
        self.setText(text)
        self.setToolTip(detail)

    def show_text(self, text: str, colour: str = "#718096") -> None:
        self.setText(f"<span style='color:{colour}'>{html.escape(text)}</span>")
        self.setToolTip(text)


class CommandPanel(QGroupBox):
    """A titled group of controls that submits commands and shows their outcome."""

    def __init__(self, title: str, submit: SubmitFn, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self._submit = submit
        self._mine: set[str] = set()
        self.result = _ResultLabel()

    def send(self, command: str, args: dict[str, Any]) -> str | None:
        """Submit through the run's client; the status (a refusal too) arrives as a command event."""
        uid = self._submit(command, args)
        if uid is None:
            self.result.show_text("no run in progress", "#c53030")
            return None
        self._mine.add(uid)
        self.result.show_status({"status": "requested"})
        return uid

    def reset(self) -> None:
        """A new run: forget what the last one said."""
        self._mine.clear()
        self.result.setText("")
        self.result.setToolTip("")

    def on_command(self, rec: dict[str, Any]) -> bool:
        """A command event from the channel; True if this panel sent it (and now shows it)."""
        if rec.get("uuid") not in self._mine:
            return False
        self.result.show_status(rec)
        if rec.get("status") in ("success", "failed"):
            self._mine.discard(rec["uuid"])
            self.command_done(rec)
        return True

    def command_done(self, rec: dict[str, Any]) -> None:
        """Hook: a command this panel sent finished."""


def _spin(lo: float, hi: float, decimals: int, step: float, value: float) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSingleStep(step)
    s.setValue(value)
    s.setKeyboardTracking(False)
    s.setAlignment(Qt.AlignmentFlag.AlignRight)
    s.setMinimumWidth(96)
    return s


def compact_combo(combo: QComboBox, chars: int = 12) -> None:
    """A combo box that asks for ``chars`` characters of width, not its longest item's (it may grow)."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)


class RunPanel(CommandPanel):
    """Evaluate now (val or test) and stop the run. Checkpoints are saved in the Checkpoints panel."""

    def __init__(self, submit: SubmitFn, parent: QWidget | None = None) -> None:
        super().__init__("Run", submit, parent)
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.split = QComboBox()
        self.split.addItems(["val", "test"])
        self.split.setToolTip("the split to evaluate on")
        self.eval_btn = QPushButton("Evaluate now")
        self.eval_btn.clicked.connect(self.evaluate)
        self.stop_btn = QPushButton("Stop run")
        self.stop_btn.setObjectName("danger")
        self.stop_btn.setToolTip("stop at the next step and save a final checkpoint")
        self.stop_btn.clicked.connect(self.stop)
        row.addWidget(self.split)
        row.addWidget(self.eval_btn)
        row.addStretch(1)
        row.addWidget(self.stop_btn)
        lay.addLayout(row)
        lay.addWidget(self.result)

    def evaluate(self) -> None:
        self.send("do_evaluate", {"split": self.split.currentText()})

    def stop(self) -> None:
        self.send("stop_training", {})


class OptimizerPanel(CommandPanel):
    """Learning rate, momentum and weight decay -> update_optimizer (momentum only for SGD)."""

    def __init__(self, submit: SubmitFn, parent: QWidget | None = None) -> None:
        super().__init__("Optimiser", submit, parent)
        form = QFormLayout(self)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.kind = "sgd"
        self.lr = _spin(1e-6, 10.0, 6, 0.001, 0.05)
        self.momentum = _spin(0.0, 0.999, 3, 0.01, 0.9)
        self.weight_decay = _spin(0.0, 0.1, 6, 1e-4, 5e-4)
        self.apply_btn = QPushButton("Apply")
        self.apply_btn.clicked.connect(self.apply)
        form.addRow("learning rate", self.lr)
        form.addRow("momentum", self.momentum)
        form.addRow("weight decay", self.weight_decay)
        form.addRow("", self.apply_btn)
        form.addRow(self.result)

    def set_values(self, optimizer: str, lr: float, momentum: float, weight_decay: float) -> None:
        self.kind = optimizer
        self.setTitle(f"Optimiser ({optimizer})")
        self.lr.setValue(lr)
        self.momentum.setValue(momentum)
        self.weight_decay.setValue(weight_decay)
        sgd = optimizer == "sgd"
        self.momentum.setEnabled(sgd)
        self.momentum.setToolTip("" if sgd else f"{optimizer} has no momentum hyperparameter (it uses betas)")

    def args(self) -> dict[str, Any]:
        a: dict[str, Any] = {"lr": self.lr.value(), "weight_decay": self.weight_decay.value()}
        if self.momentum.isEnabled():
            a["momentum"] = self.momentum.value()
        return a

    def apply(self) -> None:
        self.send("update_optimizer", self.args())


class GradClipPanel(CommandPanel):
    """Clip the gradient norm (checkbox on) or not at all (off) -> set_grad_clip."""

    def __init__(self, submit: SubmitFn, parent: QWidget | None = None) -> None:
        super().__init__("Gradient clipping", submit, parent)
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.enabled = QCheckBox("clip norm at")
        self.max_norm = _spin(1e-4, 1e4, 4, 0.1, 1.0)
        self.max_norm.setEnabled(False)
        self.enabled.toggled.connect(self.max_norm.setEnabled)
        self.apply_btn = QPushButton("Apply")
        self.apply_btn.clicked.connect(self.apply)
        row.addWidget(self.enabled)
        row.addWidget(self.max_norm)
        row.addStretch(1)
        row.addWidget(self.apply_btn)
        lay.addLayout(row)
        lay.addWidget(self.result)

    def set_values(self, max_norm: float | None) -> None:
        self.enabled.setChecked(max_norm is not None)
        if max_norm is not None:
            self.max_norm.setValue(max_norm)

    def args(self) -> dict[str, Any]:
        return {"max_norm": self.max_norm.value() if self.enabled.isChecked() else None}

    def apply(self) -> None:
        self.send("set_grad_clip", self.args())


class LossPanel(CommandPanel):
    """alpha (CE vs. the human terms) and lambda (the scale term) -> set_alpha, set_lambda."""

    def __init__(self, submit: SubmitFn, parent: QWidget | None = None) -> None:
        super().__init__("HILL loss", submit, parent)
        form = QFormLayout(self)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.alpha = _spin(0.0, 1.0, 3, 0.05, 0.5)
        self.alpha.setToolTip("L = (1 - alpha) CE + alpha L_human + lambda |1 - scale|")
        self.lam = _spin(0.0, 100.0, 3, 0.05, 0.1)
        self.lam.setToolTip("weight of the scale term, so the latent space cannot shrink to satisfy compactness")
        self.alpha_btn = QPushButton("Set")
        self.alpha_btn.clicked.connect(self.apply_alpha)
        self.lam_btn = QPushButton("Set")
        self.lam_btn.clicked.connect(self.apply_lambda)
        for label, spin, btn in (("alpha", self.alpha, self.alpha_btn), ("lambda", self.lam, self.lam_btn)):
            row = QHBoxLayout()
            row.addWidget(spin, 1)
            row.addWidget(btn)
            form.addRow(label, row)
        form.addRow(self.result)

    def set_values(self, alpha: float, lam: float) -> None:
        self.alpha.setValue(alpha)
        self.lam.setValue(lam)

    def apply_alpha(self) -> None:
        self.send("set_alpha", {"alpha": self.alpha.value()})

    def apply_lambda(self) -> None:
        self.send("set_lambda", {"lam": self.lam.value()})


@dataclass
class EditHooks:
    """What the panels need from the window besides submit: the latent view's edit stack and selection."""

    push_edit: Callable[[dict[str, Any]], bool]
    suggest: Callable[[], tuple[int, str]]
    selected_train_indices: Callable[[], list[int]]


class ControlsPanel(QScrollArea):
    """All command panels in one scrollable column (the right-hand dock).

    ``sections`` names each panel as the study protocols do (latent, projection, loss, optimizer, grad_clip,
    data, layers, evaluate, stop), so a window's restrictions can hide what is not allowed.
    """

    def __init__(self, submit: SubmitFn, hooks: EditHooks | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from .data_panel import DataPanel
        from .edit_panels import LatentEditsPanel, ProjectionPanel
        from .layers_panel import LayersPanel

        hooks = hooks or EditHooks(lambda e: False, lambda: (0, "no latent view"), lambda: [])
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner = QWidget()
        lay = QVBoxLayout(inner)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(8)
        self.run = RunPanel(submit)
        self.edits = LatentEditsPanel(submit, hooks.push_edit, hooks.suggest)
        self.projection = ProjectionPanel(submit)
        self.optimizer = OptimizerPanel(submit)
        self.clip = GradClipPanel(submit)
        self.loss = LossPanel(submit)
        self.data = DataPanel(submit, hooks.selected_train_indices)
        self.layers = LayersPanel(submit)
        self.panels: list[CommandPanel] = [
            self.run,
            self.edits,
            self.projection,
            self.optimizer,
            self.clip,
            self.loss,
            self.data,
            self.layers,
        ]
        for p in self.panels:
            lay.addWidget(p)
        lay.addStretch(1)
        self.setWidget(inner)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.sections: dict[str, list[QWidget]] = {
            "evaluate": [self.run.split, self.run.eval_btn],
            "stop": [self.run.stop_btn],
            "latent": [self.edits],
            "projection": [self.projection],
            "optimizer": [self.optimizer],
            "grad_clip": [self.clip],
            "loss": [self.loss],
            "data": [self.data],
            "layers": [self.layers],
        }
        self.set_active(False)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        """As wide as the widest panel (plus the scroll bar), so the dock never clips a control; any height."""
        inner = self.widget()
        w = inner.minimumSizeHint().width() if inner is not None else 0
        bar = self.verticalScrollBar().sizeHint().width()
        return QSize(w + bar + 2 * self.frameWidth(), 120)

    def restrict(self, shows: Callable[[str], bool]) -> None:
        """Hide every section ``shows`` refuses (and the Run panel when neither evaluate nor stop is left)."""
        for name, widgets in self.sections.items():
            for w in widgets:
                w.setVisible(shows(name))
        self.run.setVisible(shows("evaluate") or shows("stop"))

    def visible_sections(self) -> list[str]:
        return [
            n
            for n, ws in self.sections.items()
            if all(not w.isHidden() for w in ws) and not (n in ("evaluate", "stop") and self.run.isHidden())
        ]

    def set_active(self, on: bool) -> None:
        """Controls work only while a run is live (running or paused)."""
        for p in self.panels:
            p.setEnabled(on)

    def set_paused(self, paused: bool) -> None:
        self.edits.set_paused(paused)

    def on_command(self, rec: dict[str, Any]) -> None:
        for p in self.panels:
            if p.on_command(rec):
                return

    def reset(self) -> None:
        """A new run: no panel keeps what the last run's commands said."""
        for p in self.panels:
            p.reset()

    def load_from_config(self, cfg: Any) -> None:
        """Show the run's starting values, so Apply without edits changes nothing (a RunConfig or its JSON)."""
        get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
        self.optimizer.set_values(get("optimizer"), get("lr"), get("momentum"), get("weight_decay"))
        self.clip.set_values(get("grad_clip"))
        self.loss.set_values(get("alpha"), get("lam"))
        self.projection.set_method(str(get("projection") or "pca"))

    def set_run(self, info: dict[str, Any]) -> None:
        """A run's facts (from its client): the class list for the weights, the layer tree."""
        ds = info.get("dataset") or {}
        self.data.set_run(str(ds.get("name", "")), list(ds.get("class_names") or []))
        self.layers.set_model(info.get("model"))


__all__ = [
    "CommandPanel",
    "ControlsPanel",
    "EditHooks",
    "GradClipPanel",
    "LEVEL_COLOURS",
    "LogConsole",
    "LossPanel",
    "OptimizerPanel",
    "RunPanel",
    "STATUS_COLOURS",
    "describe_result",
]
