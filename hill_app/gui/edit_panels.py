"""Edits beyond dragging, at a pause: the strategies (compactness, separation, merge similar) with a strength,
the suggested edits of ``hill_app.studies.suggest``, dropping the committed targets; and the 2D view's
projection (refit with PCA or LDA).

Strategy and suggested edits are pushed onto the latent view's undoable edit stack like a drag: nothing is
sent until the user commits, and each suggested edit carries ``origin: "suggested:NAME"`` into the journal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from .panels import CommandPanel, SubmitFn, compact_combo

STRATEGY_LABELS = (
    ("compactness", "compactness (shrink every class)"),
    ("separation", "separation (push classes apart)"),
    ("merge_similar", "merge similar (close pairs)"),
)


class LatentEditsPanel(CommandPanel):
    """Strategy edits and suggestions (edit stack), and clear_latent_targets (a command)."""

    def __init__(
        self,
        submit: SubmitFn,
        push_edit: Callable[[dict[str, Any]], bool],
        suggest: Callable[[], tuple[int, str]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Latent edits", submit, parent)
        self._push = push_edit
        self._suggest = suggest
        self.paused = False
        lay = QVBoxLayout(self)
        lay.setSpacing(4)
        row = QHBoxLayout()
        self.strategy = QComboBox()
        for key, label in STRATEGY_LABELS:
            self.strategy.addItem(label, key)
        self.strength = QDoubleSpinBox()
        self.strength.setRange(0.05, 1.0)
        self.strength.setDecimals(2)
        self.strength.setSingleStep(0.05)
        self.strength.setValue(0.3)
        self.strength.setToolTip("how strongly the strategy reshapes the layout (0..1)")
        self.add_btn = QPushButton("Add")
        self.add_btn.setToolTip("add this strategy to the edits of this pause (undoable; sent on commit)")
        self.add_btn.clicked.connect(self.add_strategy)
        self.strength_label = QLabel("strength")
        # The strategy on a row of its own, its strength and Add below: side by side they made the dock wider
        # than a 1024 px window leaves it (and the dock clipped them).
        compact_combo(self.strategy)
        lay.addWidget(self.strategy)
        row.addWidget(self.strength_label)
        row.addWidget(self.strength)
        row.addWidget(self.add_btn)
        row.addStretch(1)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.suggest_btn = QPushButton("Suggest edits")
        self.suggest_btn.setToolTip(
            "edits computed from the scatter and the confusion matrix, added to the edit "
            "stack (undo removes them); each says whether its effect was measured"
        )
        self.suggest_btn.clicked.connect(self.suggest)
        self.clear_btn = QPushButton("Clear committed targets")
        self.clear_btn.setToolTip("drop the teacher layout: plain cross-entropy from the next step")
        self.clear_btn.clicked.connect(self.clear_targets)
        row.addWidget(self.suggest_btn)
        row.addStretch(1)
        row.addWidget(self.clear_btn)
        lay.addLayout(row)
        lay.addWidget(self.result)
        self.set_paused(False)

    def set_paused(self, paused: bool) -> None:
        """Strategies and suggestions are edits: only at a pause."""
        self.paused = bool(paused)
        for w in (self.strategy, self.strength, self.add_btn, self.suggest_btn):
            w.setEnabled(self.paused)
        tip = "" if self.paused else "edits are made at a pause (Space pauses)"
        for w in (self.add_btn, self.suggest_btn):
            w.setStatusTip(tip)

    def strategy_edit(self) -> dict[str, Any]:
        return {
            "op": "strategy",
            "name": self.strategy.currentData(),
            "strength": round(self.strength.value(), 4),
            "origin": "hand",
        }

    def add_strategy(self) -> bool:
        if not self.paused:
            self.result.show_text("edits are made at a pause", "#c53030")
            return False
        ok = self._push(self.strategy_edit())
        self.result.show_text(
            f"added {self.strategy.currentText().split(' (')[0]} to this pause's edits"
            if ok
            else "the edit was not accepted",
            "#718096" if ok else "#c53030",
        )
        return ok

    def suggest(self) -> int:
        if not self.paused:
            self.result.show_text("suggestions are made at a pause", "#c53030")
            return 0
        n, text = self._suggest()
        self.result.show_text(text, "#718096" if n else "#b7791f")
        return n

    def clear_targets(self) -> str | None:
        return self.send("clear_latent_targets", {})


class ProjectionPanel(CommandPanel):
    """Refit the 2D view on the current features (PCA or LDA); refused while targets are committed."""

    def __init__(self, submit: SubmitFn, parent: QWidget | None = None) -> None:
        super().__init__("2D view", submit, parent)
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.method = QComboBox()
        self.method.addItem("PCA (largest variance)", "pca")
        self.method.addItem("LDA (separates the classes)", "lda")
        compact_combo(self.method)
        self.refit_btn = QPushButton("Refit view")
        self.refit_btn.setToolTip(
            "fit the frozen 2D map again on the current features (at the next epoch "
            "boundary, or at once while paused); clear committed targets first"
        )
        self.refit_btn.clicked.connect(self.refit)
        row.addWidget(self.method, 1)
        row.addWidget(self.refit_btn)
        lay.addLayout(row)
        lay.addWidget(self.result)

    def set_method(self, method: str) -> None:
        i = self.method.findData(method)
        if i >= 0:
            self.method.setCurrentIndex(i)

    def refit(self) -> str | None:
        return self.send("refit_projection", {"method": self.method.currentData()})
