"""Command panels and the log console: every control sends one engine command and shows what became of it.

A panel never changes training state itself: it calls ``submit(command, args)`` (the session's thread-safe
queue) and remembers the command's uuid. The window routes every "command" event to every panel; the one
that sent it shows the status (pending, running, success with the result, failed with the reason), so the
status a user sees is the status that happened in the training thread.
"""
from __future__ import annotations

import html
import json
import time
from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QTextCursor
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QLineEdit, QPlainTextEdit, QPushButton, QScrollArea, QSizePolicy,
                               QToolButton, QVBoxLayout, QWidget)

SubmitFn = Callable[[str, dict], Any]   # returns the engine's Command (with .uuid and .status) or None

STATUS_COLOURS = {
    "requested": "#8a8a8a", "pending": "#b7791f", "running": "#2b6cb0", "success": "#2f855a", "failed": "#c53030",
}
LEVEL_COLOURS = {"debug": "#8a8a8a", "info": "#4a5568", "warning": "#b7791f", "error": "#c53030"}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "none"
    return str(v)


def describe_result(rec: dict[str, Any]) -> str:
    """A short human reading of a command's result ('lr 0.05 -> 0.01'), or its reason when it failed."""
    if rec.get("status") == "failed":
        return rec.get("reason") or "failed"
    res = rec.get("result") or {}
    if not isinstance(res, dict) or not res:
        return ""
    if "old" in res and "new" in res:
        old, new = res["old"], res["new"]
        if isinstance(old, dict) and isinstance(new, dict):
            return ", ".join(f"{k} {_fmt(old.get(k))} \u2192 {_fmt(new[k])}" for k in new)
        return f"{_fmt(old)} \u2192 {_fmt(new)}"
    if rec.get("command") == "save_checkpoint":
        return f"checkpoint {str(res.get('uuid', ''))[:8]} at epoch {res.get('epoch')}, step {res.get('step')}"
    if rec.get("command") == "do_evaluate":
        parts = [f"{k.split('_', 1)[1]} {_fmt(v)}" for k, v in res.items() if isinstance(v, (int, float))]
        return ", ".join(parts)
    if rec.get("command") == "set_latent_targets":
        return f"{res.get('edits')} edit(s) \u2192 targets for {res.get('classes')} classes"
    return ", ".join(f"{k} {_fmt(v)}" for k, v in res.items())


class _ResultLabel(QLabel):
    """The line under a panel that says what happened to the panel's last command."""

    def __init__(self) -> None:
        super().__init__("")
        self.setWordWrap(True)
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


class CommandPanel(QGroupBox):
    """A titled group of controls that submits commands and shows their outcome."""

    def __init__(self, title: str, submit: SubmitFn, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self._submit = submit
        self._mine: set[str] = set()
        self.result = _ResultLabel()

    def send(self, command: str, args: dict[str, Any]) -> Any:
        """Submit through the session; a command refused at once (bad args) shows its reason right away."""
        cmd = self._submit(command, args)
        if cmd is None:
            self.result.show_text("no run in progress", "#c53030")
            return None
        self._mine.add(cmd.uuid)
        self.result.show_status(cmd.to_json())
        return cmd

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


class RunPanel(CommandPanel):
    """Save a checkpoint, evaluate now, stop the run."""

    def __init__(self, submit: SubmitFn, parent: QWidget | None = None) -> None:
        super().__init__("Run", submit, parent)
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.note = QLineEdit()
        self.note.setPlaceholderText("checkpoint note (optional)")
        self.save_btn = QPushButton("Save checkpoint")
        self.save_btn.clicked.connect(self.save_checkpoint)
        row.addWidget(self.note, 1)
        row.addWidget(self.save_btn)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.split = QComboBox()
        self.split.addItems(["val", "test"])
        self.eval_btn = QPushButton("Evaluate now")
        self.eval_btn.clicked.connect(self.evaluate)
        self.stop_btn = QPushButton("Stop run")
        self.stop_btn.setObjectName("danger")
        self.stop_btn.clicked.connect(self.stop)
        row.addWidget(QLabel("split"))
        row.addWidget(self.split)
        row.addWidget(self.eval_btn)
        row.addStretch(1)
        row.addWidget(self.stop_btn)
        lay.addLayout(row)
        lay.addWidget(self.result)

    def save_checkpoint(self) -> None:
        note = self.note.text().strip()
        self.send("save_checkpoint", {"note": note} if note else {})

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


class ControlsPanel(QScrollArea):
    """All command panels in one scrollable column (the right-hand dock)."""

    def __init__(self, submit: SubmitFn, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        inner = QWidget()
        lay = QVBoxLayout(inner)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(8)
        self.run = RunPanel(submit)
        self.optimizer = OptimizerPanel(submit)
        self.clip = GradClipPanel(submit)
        self.loss = LossPanel(submit)
        self.panels: list[CommandPanel] = [self.run, self.optimizer, self.clip, self.loss]
        for p in self.panels:
            lay.addWidget(p)
        lay.addStretch(1)
        self.setWidget(inner)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.set_active(False)

    def set_active(self, on: bool) -> None:
        """Controls work only while a session runs (running or paused)."""
        for p in self.panels:
            p.setEnabled(on)

    def on_command(self, rec: dict[str, Any]) -> None:
        for p in self.panels:
            if p.on_command(rec):
                return

    def load_from_config(self, cfg: Any) -> None:
        """Show the run's starting values, so Apply without edits changes nothing."""
        self.optimizer.set_values(cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay)
        self.clip.set_values(cfg.grad_clip)
        self.loss.set_values(cfg.alpha, cfg.lam)


class LogConsole(QWidget):
    """Every command event (coloured by status), log line and error of the run; tracebacks go here too."""

    cleared = Signal()

    def __init__(self, parent: QWidget | None = None, max_lines: int = 5000) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        head = QHBoxLayout()
        head.setContentsMargins(6, 2, 6, 0)
        self.summary = QLabel("")
        self.summary.setStyleSheet("color:#718096; font-size:9pt")
        clear = QToolButton()
        clear.setText("Clear")
        clear.clicked.connect(self.clear)
        head.addWidget(self.summary, 1)
        head.addWidget(clear)
        lay.addLayout(head)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(max_lines)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(8.5)
        self.text.setFont(font)
        self.text.setStyleSheet("QPlainTextEdit { background: #fbfbfc; border: 1px solid #e2e8f0; }")
        lay.addWidget(self.text)
        self.counts = {s: 0 for s in STATUS_COLOURS}
        self.errors = 0

    def clear(self) -> None:
        self.text.clear()
        self.cleared.emit()

    def _append(self, ts: float | None, body: str) -> None:
        t = time.strftime("%H:%M:%S", time.localtime(ts or time.time()))
        self.text.appendHtml(f"<span style='color:#a0aec0'>{t}</span>&nbsp; {body}")

    def add_command(self, rec: dict[str, Any]) -> None:
        st = str(rec.get("status", "?"))
        self.counts[st] = self.counts.get(st, 0) + 1
        col = STATUS_COLOURS.get(st, "#4a5568")
        args = rec.get("args") or {}
        a = json.dumps(args, separators=(",", ":"), default=str) if args else ""
        if len(a) > 140:
            a = a[:137] + "..."
        body = (f"<b style='color:{col}'>{html.escape(st):<9}</b> "
                f"<span style='color:#1a202c'>{html.escape(str(rec.get('command')))}</span> "
                f"<span style='color:#718096'>{html.escape(a)}</span>")
        if rec.get("source") not in (None, "user", "gui"):
            body += f" <span style='color:#a0aec0'>[{html.escape(str(rec['source']))}]</span>"
        if st in ("success", "failed"):
            detail = describe_result(rec)
            if detail:
                body += f" <span style='color:{col}'>\u2014 {html.escape(detail)}</span>"
        self._append(rec.get("time"), body.replace("  ", "&nbsp; "))
        self._update_summary()

    def add_log(self, level: str, message: str, ts: float | None = None) -> None:
        col = LEVEL_COLOURS.get(level, "#4a5568")
        if level == "error":
            self.errors += 1
        lines = html.escape(str(message)).splitlines() or [""]
        body = f"<b style='color:{col}'>{html.escape(level)}</b> <span style='color:{col}'>{lines[0]}</span>"
        if len(lines) > 1:
            body += "<br>" + "<br>".join(f"<span style='color:{col}'>&nbsp;&nbsp;{ln}</span>"
                                         for ln in lines[1:])
        self._append(ts, body)
        self._update_summary()

    def add_error(self, message: str, traceback_text: str | None = None, ts: float | None = None) -> None:
        self.add_log("error", message + (("\n" + traceback_text.rstrip()) if traceback_text else ""), ts)

    def add_info(self, message: str) -> None:
        self.add_log("info", message)

    def _update_summary(self) -> None:
        done = self.counts.get("success", 0)
        failed = self.counts.get("failed", 0)
        self.summary.setText(f"commands: {done} succeeded, {failed} failed"
                             + (f" \u00b7 {self.errors} error(s)" if self.errors else ""))

    def plain_text(self) -> str:
        return self.text.toPlainText()

    def scroll_to_end(self) -> None:
        self.text.moveCursor(QTextCursor.MoveOperation.End)
