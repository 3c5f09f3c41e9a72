"""The training data at any step: add labelled samples from a file, drop samples, per-class sampling weights.

Each control sends one command (``update_dataset`` add or drop, ``update_dataset_runtime_hyperparameters``);
while training runs they wait for the next epoch boundary, at a pause they apply at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .panels import CommandPanel, SubmitFn

FILE_FORMATS = {
    "digits": "an optdigits text file (64 values and the label per line)",
    "cifar10": "a CIFAR-10 batch pickle (b'data', b'labels')",
    "pamap2": "a PAMAP2 subject .dat file",
}


def parse_indices(text: str) -> list[int]:
    """'3, 10-12 40' -> [3, 10, 11, 12, 40]; ValueError naming the bad token."""
    out: list[int] = []
    for tok in re.split(r"[,\s;]+", text.strip()):
        if not tok:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", tok)
        if m is None:
            raise ValueError(f"{tok!r} is not an index or a range such as 10-20")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise ValueError(f"range {tok!r} runs backwards")
        if b - a > 1_000_000:
            raise ValueError(f"range {tok!r} is too long (at most a million indices)")
        out.extend(range(a, b + 1))
    return sorted(set(out))


class DataPanel(CommandPanel):
    """Add samples from a file, drop samples by index (or the points selected in the latent view), class weights."""

    def __init__(
        self,
        submit: SubmitFn,
        selected_train_indices: Callable[[], list[int]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Training data", submit, parent)
        self._selected = selected_train_indices or (lambda: [])
        self.dataset = ""
        lay = QVBoxLayout(self)
        lay.setSpacing(4)

        lay.addWidget(QLabel("Add labelled samples from a file"))
        row = QHBoxLayout()
        self.path = QLineEdit()
        self.path.setPlaceholderText("file in the data set's own format")
        self.browse_btn = QPushButton("\u2026")
        self.browse_btn.setToolTip("choose the file")
        self.browse_btn.clicked.connect(self._browse)
        self.add_btn = QPushButton("Add")
        self.add_btn.clicked.connect(self.add_file)
        row.addWidget(self.path, 1)
        row.addWidget(self.browse_btn)
        row.addWidget(self.add_btn)
        lay.addLayout(row)

        lay.addWidget(QLabel("Drop training samples"))
        row = QHBoxLayout()
        self.indices = QLineEdit()
        self.indices.setPlaceholderText("indices, e.g. 3, 10-20")
        self.drop_btn = QPushButton("Drop")
        self.drop_btn.clicked.connect(self.drop_typed)
        row.addWidget(self.indices, 1)
        row.addWidget(self.drop_btn)
        lay.addLayout(row)
        self.drop_selected_btn = QPushButton("Drop the points selected in the view")
        self.drop_selected_btn.setToolTip(
            "select points in the latent view (Ctrl+drag), then drop those training samples"
        )
        self.drop_selected_btn.clicked.connect(self.drop_selected)
        lay.addWidget(self.drop_selected_btn)

        lay.addWidget(QLabel("Sampling weight per class"))
        self.weights_box = QWidget()
        self.weights_grid = QGridLayout(self.weights_box)
        self.weights_grid.setContentsMargins(0, 0, 0, 0)
        self.weights_grid.setHorizontalSpacing(6)
        self.weights_grid.setVerticalSpacing(2)
        lay.addWidget(self.weights_box)
        self.weight_spins: list[QDoubleSpinBox] = []
        row = QHBoxLayout()
        self.weights_btn = QPushButton("Apply weights")
        self.weights_btn.clicked.connect(self.apply_weights)
        self.uniform_btn = QPushButton("Uniform")
        self.uniform_btn.setToolTip("sample every class by its share of the data again")
        self.uniform_btn.clicked.connect(self.clear_weights)
        row.addWidget(self.weights_btn)
        row.addWidget(self.uniform_btn)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addWidget(self.result)

    def set_run(self, dataset: str, class_names: list[str]) -> None:
        """A new run: one weight per class, all 1."""
        self.dataset = dataset
        self.path.setToolTip(FILE_FORMATS.get(dataset, "a file in the data set's own format"))
        for s in self.weight_spins:
            s.deleteLater()
        while self.weights_grid.count():
            it = self.weights_grid.takeAt(0)
            if it.widget() is not None:
                it.widget().deleteLater()
        self.weight_spins = []
        for c, name in enumerate(class_names):
            lab = QLabel(name if len(name) <= 12 else name[:11] + "\u2026")
            lab.setToolTip(name)
            spin = QDoubleSpinBox()
            spin.setRange(0.0, 100.0)
            spin.setDecimals(2)
            spin.setSingleStep(0.25)
            spin.setValue(1.0)
            spin.setKeyboardTracking(False)
            spin.setToolTip(f"sampling weight of class {c} ({name}); 0 leaves it out of training")
            r, col = divmod(c, 2)
            self.weights_grid.addWidget(lab, r, 2 * col)
            self.weights_grid.addWidget(spin, r, 2 * col + 1)
            self.weight_spins.append(spin)
        self.reset()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Samples to add", self.path.text(), "All files (*)")
        if path:
            self.path.setText(path)

    def add_file(self) -> str | None:
        p = self.path.text().strip()
        if not p:
            self.result.show_text("choose a file first", "#c53030")
            return None
        return self.send("update_dataset", {"action": "add", "path": p})

    def drop_typed(self) -> str | None:
        try:
            idx = parse_indices(self.indices.text())
        except ValueError as e:
            self.result.show_text(f"indices: {e}", "#c53030")
            return None
        if not idx:
            self.result.show_text("type the indices of the samples to drop", "#c53030")
            return None
        return self.send("update_dataset", {"action": "drop", "indices": idx})

    def drop_selected(self) -> str | None:
        idx = sorted(set(int(i) for i in self._selected()))
        if not idx:
            self.result.show_text("no points are selected in the latent view (Ctrl+drag to select)", "#c53030")
            return None
        return self.send("update_dataset", {"action": "drop", "indices": idx})

    def weights(self) -> list[float]:
        return [s.value() for s in self.weight_spins]

    def apply_weights(self) -> str | None:
        return self.send("update_dataset_runtime_hyperparameters", {"class_weights": self.weights()})

    def clear_weights(self) -> str | None:
        for s in self.weight_spins:
            s.setValue(1.0)
        return self.send("update_dataset_runtime_hyperparameters", {"class_weights": None})

    def command_done(self, rec: dict[str, Any]) -> None:
        if rec.get("status") == "success" and (rec.get("args") or {}).get("action") == "drop":
            self.indices.clear()
