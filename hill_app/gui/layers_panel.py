"""The model's layers as a tree: reset, freeze or unfreeze a layer, dropout p and batch-norm momentum.

The tree comes from the run's client (``info()["model"]``: name, type, parameters, trainable, the operations
and settings each layer has), so the same panel works for a run in this process and an attached one.
A command that succeeds updates the row it changed; one that fails shows its reason.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .panels import CommandPanel, SubmitFn

COL_NAME, COL_TYPE, COL_PARAMS, COL_TRAIN = range(4)
NAME_ROLE = Qt.ItemDataRole.UserRole


def _params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1_000_000 else (f"{n / 1e3:.1f}k" if n >= 1000 else str(n))


class LayersPanel(CommandPanel):
    """Select a layer in the tree, then act on it."""

    def __init__(self, submit: SubmitFn, parent: QWidget | None = None) -> None:
        super().__init__("Layers", submit, parent)
        self.nodes: dict[str, dict[str, Any]] = {}
        self.items: dict[str, QTreeWidgetItem] = {}
        lay = QVBoxLayout(self)
        lay.setSpacing(4)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(4)
        self.tree.setHeaderLabels(["layer", "type", "params", "trains"])
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setIndentation(10)
        self.tree.setUniformRowHeights(True)
        self.tree.setMinimumHeight(120)
        self.tree.setMaximumHeight(220)
        self.tree.setStyleSheet("QTreeWidget { font-size: 8.5pt; }")
        h = self.tree.header()
        h.setStretchLastSection(False)
        h.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        for c in (COL_TYPE, COL_PARAMS, COL_TRAIN):
            h.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        lay.addWidget(self.tree)

        row = QHBoxLayout()
        self.reset_btn = QPushButton("Reset")
        self.reset_btn.setToolTip("re-initialise the layer's parameters")
        self.freeze_btn = QPushButton("Freeze")
        self.unfreeze_btn = QPushButton("Unfreeze")
        self.reset_btn.clicked.connect(lambda: self.operate("reset_parameters"))
        self.freeze_btn.clicked.connect(lambda: self.operate("freeze"))
        self.unfreeze_btn.clicked.connect(lambda: self.operate("unfreeze"))
        for b in (self.reset_btn, self.freeze_btn, self.unfreeze_btn):
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)

        row = QHBoxLayout()
        self.p_label = QLabel("dropout p")
        self.p = QDoubleSpinBox()
        self.p.setRange(0.0, 0.99)
        self.p.setDecimals(2)
        self.p.setSingleStep(0.05)
        self.p_btn = QPushButton("Set")
        self.p_btn.clicked.connect(lambda: self.set_param("p", self.p.value()))
        row.addWidget(self.p_label)
        row.addWidget(self.p, 1)
        row.addWidget(self.p_btn)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.m_label = QLabel("BN momentum")
        self.momentum = QDoubleSpinBox()
        self.momentum.setRange(0.0, 1.0)
        self.momentum.setDecimals(3)
        self.momentum.setSingleStep(0.05)
        self.m_btn = QPushButton("Set")
        self.m_btn.clicked.connect(lambda: self.set_param("momentum", self.momentum.value()))
        row.addWidget(self.m_label)
        row.addWidget(self.momentum, 1)
        row.addWidget(self.m_btn)
        lay.addLayout(row)
        lay.addWidget(self.result)
        self._update_buttons()

    # ------------------------------------------------------------------ the tree

    def set_model(self, tree: dict[str, Any] | None) -> None:
        """Show a model's layer tree (the root's children at the top level)."""
        self.tree.clear()
        self.nodes.clear()
        self.items.clear()
        if tree:
            for child in tree.get("children", []):
                self._add(child, None)
        self.tree.expandToDepth(0)
        self._update_buttons()

    def _add(self, node: dict[str, Any], parent: QTreeWidgetItem | None) -> None:
        name = str(node.get("name", ""))
        item = QTreeWidgetItem()
        item.setText(COL_NAME, name.rsplit(".", 1)[-1] if parent is not None else name)
        item.setData(COL_NAME, NAME_ROLE, name)
        item.setToolTip(COL_NAME, name)
        item.setText(COL_TYPE, str(node.get("type", "")))
        item.setText(COL_PARAMS, _params(int(node.get("parameters", 0))) if node.get("parameters") else "")
        item.setTextAlignment(COL_PARAMS, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.nodes[name] = dict(node)
        self.items[name] = item
        self._fill_trainable(name)
        if parent is None:
            self.tree.addTopLevelItem(item)
        else:
            parent.addChild(item)
        for child in node.get("children", []):
            self._add(child, item)

    def _fill_trainable(self, name: str) -> None:
        n, item = self.nodes[name], self.items[name]
        item.setText(COL_TRAIN, ("yes" if n.get("trainable") else "frozen") if n.get("parameters") else "")
        settings = n.get("settings") or {}
        extra = ", ".join(f"{k} {v:g}" for k, v in settings.items())
        item.setToolTip(COL_TYPE, f"{n.get('type')}" + (f" ({extra})" if extra else ""))

    def selected(self) -> dict[str, Any] | None:
        items = self.tree.selectedItems()
        return self.nodes.get(items[0].data(COL_NAME, NAME_ROLE)) if items else None

    def select(self, name: str) -> None:
        item = self.items[name]
        self.tree.setCurrentItem(item)
        item.setSelected(True)

    def _update_buttons(self) -> None:
        n = self.selected()
        ops = set(n.get("operations", [])) if n else set()
        settings = (n.get("settings") or {}) if n else {}
        self.reset_btn.setEnabled("reset_parameters" in ops)
        self.freeze_btn.setEnabled("freeze" in ops and bool(n and n.get("trainable")))
        self.unfreeze_btn.setEnabled("unfreeze" in ops and not bool(n and n.get("trainable")))
        for widgets, key, spin in (
            ((self.p_label, self.p, self.p_btn), "p", self.p),
            ((self.m_label, self.momentum, self.m_btn), "momentum", self.momentum),
        ):
            on = key in settings
            for w in widgets:
                w.setEnabled(on)
            if on:
                spin.setValue(float(settings[key]))
        if n is None and self.nodes:
            self.result.show_text("select a layer in the tree")

    # ------------------------------------------------------------------ commands

    def operate(self, op: str) -> str | None:
        n = self.selected()
        if n is None:
            self.result.show_text("select a layer in the tree first", "#c53030")
            return None
        return self.send("model_layer_operation", {"layer_name": n["name"], "operation": op})

    def set_param(self, param: str, value: float) -> str | None:
        n = self.selected()
        if n is None:
            self.result.show_text("select a layer in the tree first", "#c53030")
            return None
        return self.send(
            "model_layer_parameter_update", {"layer_name": n["name"], "param_name": param, "value": float(value)}
        )

    def command_done(self, rec: dict[str, Any]) -> None:
        """Show what a successful command changed in the tree (the layer and everything under it)."""
        if rec.get("status") != "success":
            return
        a = rec.get("args") or {}
        name = str(a.get("layer_name", ""))
        if rec.get("command") == "model_layer_operation" and a.get("operation") in ("freeze", "unfreeze"):
            for k in self.nodes:
                if k == name or k.startswith(name + "."):
                    if self.nodes[k].get("parameters"):
                        self.nodes[k]["trainable"] = a["operation"] == "unfreeze"
                        self._fill_trainable(k)
        elif rec.get("command") == "model_layer_parameter_update" and name in self.nodes:
            self.nodes[name].setdefault("settings", {})[a.get("param_name")] = float(a.get("value", 0))
            self._fill_trainable(name)
        self._update_buttons()
