"""The checkpoint tree of a run: every checkpoint (uuid, branch, epoch, step, metrics, note, time), where each
branch forked, and the two things a user does with it: save one now, and load one into a new branch.

The tree reads like a git log: a branch's checkpoints are listed one after another at one level, and a fork
(a checkpoint whose ``parent`` lies on another branch) opens a level under the checkpoint it was loaded
from. So ``main e1 > retry-1 e2, e3, ...`` says that retry-1 was forked from main's epoch-1 checkpoint, and
nesting never grows with the number of checkpoints, only with the number of forks.

The panel never changes training state: it submits ``save_checkpoint`` and ``load_checkpoint {uuid,
branch_name}`` through the session's queue and shows what became of them from the "command" events (a load
waits for the next epoch boundary while training runs, so it shows "pending" until then). Loads sent by
anyone (a script, an agent) are shown too. Nodes come from "checkpoint" events and from ``tree.json`` (a run
opened from disk, or one resumed after a crash); a node seen twice is added once.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hill_app.engine.branches import unique_name

from .history import read_tree_index
from .results import STATUS_COLOURS
from .widgets import WrapLabel

SubmitFn = Callable[[str, dict], "str | None"]  # the command's uuid, or None when no run can take it

COLUMNS = ("branch", "epoch", "step", "val acc", "note", "time")
COL_BRANCH, COL_EPOCH, COL_STEP, COL_VAL, COL_NOTE, COL_TIME = range(len(COLUMNS))
UUID_ROLE = Qt.ItemDataRole.UserRole
CURRENT_BG = QColor("#e6efff")
CURRENT_FG = QColor("#1e3a8a")
TEXT_COLOUR = "#4a5568"


def suggested_branch_name(node: dict[str, Any], taken: set[str]) -> str:
    """``<branch>-from-e<epoch>``, sanitised as the engine will, and not yet taken (``-2``, ``-3`` ...)."""
    return unique_name(f"{node.get('branch', 'branch')}-from-e{node.get('epoch', 0)}", taken)


class CheckpointPanel(QWidget):
    """The "Checkpoints" dock: the tree, Save checkpoint (with a note), Load / fork from selected..."""

    def __init__(self, submit: SubmitFn, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._submit = submit
        self.nodes: dict[str, dict[str, Any]] = {}
        self.items: dict[str, QTreeWidgetItem] = {}
        self.current_branch = "main"
        self.forks: dict[str, tuple[str | None, int | None]] = {}  # branch -> (parent branch, fork epoch)
        self.active = False
        self._loads: dict[str, dict[str, Any]] = {}  # load_checkpoint commands in flight, by command uuid
        self._saves: set[str] = set()  # save_checkpoint commands this panel sent
        self.dialog: QInputDialog | None = None  # the open "fork a branch" dialog (tests fill it in)
        self.last_load: dict[str, Any] | None = None  # the newest load_checkpoint command record seen
        self._paused_hint = False  # the run is paused: a load happens at once

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(6)
        self.header = WrapLabel("")
        self.header.setStyleSheet(f"color:{TEXT_COLOUR}")
        lay.addWidget(self.header)

        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(False)
        self.tree.setIndentation(14)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setStyleSheet(
            "QTreeWidget { border: 1px solid #e2e8f0; background: #ffffff; font-size: 9pt; }"
            "QTreeWidget::item { padding: 1px 0; }"
            "QTreeWidget::item:selected { background: #2563eb; color: white; }"
            "QHeaderView::section { background: #f1f3f7; border: none; border-bottom: 1px solid #dfe3ea;"
            " padding: 3px 4px; color: #4a5568; font-weight: 600; font-size: 8.5pt; }"
        )
        head = self.tree.header()
        head.setStretchLastSection(False)
        head.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        head.setSectionResizeMode(COL_NOTE, QHeaderView.ResizeMode.Stretch)
        for col, w in ((COL_BRANCH, 120), (COL_EPOCH, 44), (COL_STEP, 54), (COL_VAL, 58), (COL_TIME, 62)):
            self.tree.setColumnWidth(col, w)
        for col in (COL_EPOCH, COL_STEP, COL_VAL):
            self.tree.headerItem().setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.tree.itemDoubleClicked.connect(lambda *_: self.load_selected())
        self.empty_hint = QLabel(
            "No checkpoints yet: one is saved before each scheduled pause, at the end, "
            "and whenever you press <b>Save checkpoint</b>."
        )
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setStyleSheet("color:#9a9a9a; font-size:9pt; padding: 2px 2px")
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.empty_hint)

        row = QHBoxLayout()
        self.note = QLineEdit()
        self.note.setPlaceholderText("note for a new checkpoint (optional)")
        self.note.returnPressed.connect(self.save_checkpoint)
        self.save_btn = QPushButton("Save checkpoint")
        self.save_btn.setToolTip("save a checkpoint of the current branch now (at the next step)")
        self.save_btn.clicked.connect(self.save_checkpoint)
        row.addWidget(self.note, 1)
        row.addWidget(self.save_btn)
        lay.addLayout(row)

        row = QHBoxLayout()
        self.load_btn = QPushButton("Load / fork from selected\u2026")
        self.load_btn.setObjectName("primary")
        self.load_btn.setToolTip(
            "load the selected checkpoint and continue training on a new branch from it "
            "(while training runs, at the next epoch boundary); double-click a row does "
            "the same"
        )
        self.load_btn.clicked.connect(self.load_selected)
        row.addWidget(self.load_btn)
        row.addStretch(1)
        lay.addLayout(row)
        # Under the button, across the panel: beside it, a load's result (branch and checkpoint names) wrapped to
        # five lines in a 150 px column and was cut off in the dock's height.
        self.result = WrapLabel("")
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.result.setStyleSheet("color: #718096; font-size: 9pt;")
        self.result.setMinimumHeight(16)
        self.result.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        lay.addWidget(self.result)
        self._update_header()
        self._update_buttons()

    # ------------------------------------------------------------------ state

    def clear(self) -> None:
        """A new run: forget every node, fork and command."""
        self.tree.clear()
        self.nodes.clear()
        self.items.clear()
        self.forks.clear()
        self._loads.clear()
        self._saves.clear()
        self.last_load = None
        self.current_branch = "main"
        self.result.setText("")
        self._update_header()
        self._update_buttons()

    def set_active(self, on: bool) -> None:
        """Save and Load work while a session runs or is paused; the tree stays readable always."""
        self.active = bool(on)
        if not on:
            self._loads.clear()
        self._update_buttons()

    def branches(self) -> list[str]:
        """Branch names in the order they appeared (the current one included, even before its first checkpoint)."""
        names = dict.fromkeys(n["branch"] for n in self.nodes.values())
        names.update(dict.fromkeys(self.forks))
        names[self.current_branch] = None
        return list(names)

    def selected_node(self) -> dict[str, Any] | None:
        items = self.tree.selectedItems()
        if not items:
            return None
        return self.nodes.get(items[0].data(COL_BRANCH, UUID_ROLE))

    def node(self, uid: str) -> dict[str, Any] | None:
        return self.nodes.get(uid)

    # ------------------------------------------------------------------ nodes

    def open_index(self, path: str | Path, current_branch: str | None = None) -> int:
        """Add the nodes of a ``tree.json`` (or a run folder holding one); returns how many were new."""
        try:
            nodes = read_tree_index(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            self._show(f"cannot read the checkpoint tree: {e}", STATUS_COLOURS["failed"])
            return 0
        before = len(self.nodes)
        for n in nodes:
            self.add_node(n)
        if current_branch:
            self.set_current_branch(current_branch)
        return len(self.nodes) - before

    def add_node(self, node: dict[str, Any]) -> QTreeWidgetItem | None:
        """One checkpoint (a "checkpoint" event or a tree.json node); a uuid already shown is left as it is."""
        uid = node.get("uuid")
        if not isinstance(uid, str) or uid in self.items:
            return None
        node = dict(node)
        node.setdefault("branch", "main")
        self.nodes[uid] = node
        item = QTreeWidgetItem()
        self._fill(item, node)
        parent = self.nodes.get(node.get("parent") or "")
        pitem = self.items.get(parent["uuid"]) if parent else None
        if pitem is None:
            self.tree.addTopLevelItem(item)
        elif parent.get("branch") == node["branch"]:
            # Same branch: the next row at the parent's level (a branch reads as one list, not a staircase).
            container = pitem.parent()
            (container.addChild(item) if container is not None else self.tree.addTopLevelItem(item))
        else:
            # A fork: under the checkpoint it was loaded from.
            pitem.addChild(item)
            pitem.setExpanded(True)
            self.forks.setdefault(node["branch"], (parent.get("branch"), parent.get("epoch")))
        self.items[uid] = item
        self._style(item, node["branch"] == self.current_branch)
        self._update_header()
        self._update_buttons()
        return item

    def _fill(self, item: QTreeWidgetItem, n: dict[str, Any]) -> None:
        m = n.get("metrics") if isinstance(n.get("metrics"), dict) else {}
        va = m.get("val_accuracy")
        ts = n.get("time")
        item.setText(COL_BRANCH, str(n["branch"]))
        item.setText(COL_EPOCH, str(n.get("epoch", "")))
        item.setText(COL_STEP, f"{int(n['step']):,}" if isinstance(n.get("step"), int) else "")
        item.setText(COL_VAL, f"{100 * va:.1f}%" if isinstance(va, (int, float)) and math.isfinite(va) else "\u2013")
        item.setText(COL_NOTE, str(n.get("note") or ""))
        item.setText(COL_TIME, time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "")
        for col in (COL_EPOCH, COL_STEP, COL_VAL):
            item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        item.setData(COL_BRANCH, UUID_ROLE, n["uuid"])
        lines = [f"checkpoint {n['uuid']}", f"branch {n['branch']}, epoch {n.get('epoch')}, step {n.get('step')}"]
        if n.get("parent"):
            p = self.nodes.get(n["parent"])
            lines.append(f"parent {n['parent'][:8]}" + (f" ({p['branch']}, epoch {p.get('epoch')})" if p else ""))
        if isinstance(ts, (int, float)):
            lines.append(time.strftime("saved %Y-%m-%d %H:%M:%S", time.localtime(ts)))
        shown = [(k, v) for k, v in m.items() if isinstance(v, (int, float)) and k not in ("epoch", "step")]
        if shown:
            lines.append(", ".join(f"{k} {v:.4g}" for k, v in shown[:8]))
        tip = "\n".join(lines)
        for col in range(len(COLUMNS)):
            item.setToolTip(col, tip)

    def _style(self, item: QTreeWidgetItem, current: bool) -> None:
        font = QFont(self.tree.font())
        font.setBold(current)
        bg = QBrush(CURRENT_BG) if current else QBrush()
        for col in range(len(COLUMNS)):
            item.setBackground(col, bg)
            if col == COL_BRANCH:
                item.setFont(col, font)
                item.setForeground(col, QBrush(CURRENT_FG) if current else QBrush())

    def set_current_branch(self, name: str) -> None:
        """Training continues on ``name``: its rows are highlighted (the others are left as they were)."""
        name = str(name or "main")
        if name == self.current_branch:
            self._update_header()
            return
        old, self.current_branch = self.current_branch, name
        for uid, n in self.nodes.items():
            if n["branch"] in (old, name):
                self._style(self.items[uid], n["branch"] == name)
        self._update_header()

    def note_fork(self, branch: str, parent_branch: str | None, epoch: int | None) -> None:
        """A branch forked before it has a checkpoint of its own (a load that succeeded)."""
        self.forks.setdefault(branch, (parent_branch, epoch))
        self._update_header()

    def _update_header(self) -> None:
        n = len(self.nodes)
        br = self.current_branch
        text = f"on branch <b style='color:{CURRENT_FG.name()}'>{html.escape(br)}</b>"
        origin = self.forks.get(br)
        if origin and origin[0]:
            text += f" \u00b7 forked from {html.escape(str(origin[0]))} at epoch {origin[1]}"
        nb = len(self.branches())
        text += f" \u00b7 {n} checkpoint{'s' if n != 1 else ''}, {nb} branch{'es' if nb != 1 else ''}" if n else ""
        self.header.setText(text)
        self.empty_hint.setVisible(n == 0)

    def _update_buttons(self) -> None:
        self.save_btn.setEnabled(self.active)
        self.note.setEnabled(self.active)
        busy = any(r.get("status") in ("requested", "pending", "running") for r in self._loads.values())
        self.load_btn.setEnabled(self.active and self.selected_node() is not None and not busy)
        if not self.active:
            self.load_btn.setToolTip("a checkpoint can be loaded while a run is training or paused")
        else:
            self.load_btn.setToolTip(
                "load the selected checkpoint and continue training on a new branch from it "
                "(while training runs, at the next epoch boundary); double-click a row does "
                "the same"
            )

    # ------------------------------------------------------------------ commands out

    def save_checkpoint(self) -> Any:
        if not self.active:
            return None
        note = self.note.text().strip()
        uid = self._submit("save_checkpoint", {"note": note} if note else {})
        if uid is None:
            self._show("no run in progress", STATUS_COLOURS["failed"])
            return None
        self._saves.add(uid)
        self.note.clear()
        self._show_status("requested", "saving a checkpoint\u2026")
        return uid

    def ask_branch_name(self, node: dict[str, Any], suggested: str) -> str | None:
        """The "fork a branch" dialog (window-modal); the name typed, or None if cancelled."""
        dlg = QInputDialog(self)
        dlg.setObjectName("forkDialog")
        dlg.setWindowTitle("Load checkpoint into a new branch")
        dlg.setInputMode(QInputDialog.InputMode.TextInput)
        when = "now (training is paused)" if self._paused_hint else "at the next epoch boundary"
        dlg.setLabelText(
            f"Load checkpoint {node['uuid'][:8]} \u2014 branch {node['branch']}, epoch "
            f"{node.get('epoch')}, step {node.get('step')} \u2014 and continue training from it "
            f"on a new branch ({when}).\n\nName of the new branch:"
        )
        dlg.setTextValue(suggested)
        edit = dlg.findChild(QLineEdit)
        if edit is not None:
            edit.setMaxLength(64)  # the engine's limit for a branch name
        dlg.setOkButtonText("Load and fork")
        dlg.resize(460, dlg.sizeHint().height())
        self.dialog = dlg
        try:
            ok = dlg.exec() == QInputDialog.DialogCode.Accepted
            text = dlg.textValue()
        finally:
            self.dialog = None
            dlg.deleteLater()
        return text if ok else None

    def set_paused(self, paused: bool) -> None:
        """Only changes what the fork dialog says about when the load happens."""
        self._paused_hint = bool(paused)

    def load_selected(self) -> Any:
        """Ask for a branch name (suggested: ``<branch>-from-e<epoch>``), then submit load_checkpoint."""
        node = self.selected_node()
        if node is None or not self.active or not self.load_btn.isEnabled():
            if node is None:
                self._show("select a checkpoint in the tree first", STATUS_COLOURS["failed"])
            return None
        suggested = suggested_branch_name(node, set(self.branches()))
        name = self.ask_branch_name(node, suggested)
        if name is None:
            return None
        return self.request_load(node["uuid"], name.strip() or suggested)

    def request_load(self, uid: str, branch_name: str) -> str | None:
        args = {"uuid": uid, "branch_name": branch_name}
        cid = self._submit("load_checkpoint", args)
        if cid is None:
            self._show("no run in progress", STATUS_COLOURS["failed"])
            return None
        if cid not in self._loads:  # the engine's own "requested" may already have come back
            self.on_command({"command": "load_checkpoint", "uuid": cid, "status": "requested", "args": args})
        return cid

    # ------------------------------------------------------------------ commands in

    def on_command(self, rec: dict[str, Any]) -> bool:
        """A "command" event: every load_checkpoint (whoever sent it) and this panel's saves are shown."""
        cmd, uid, st = rec.get("command"), rec.get("uuid"), str(rec.get("status", ""))
        if cmd == "save_checkpoint" and uid in self._saves:
            if st in ("success", "failed"):
                self._saves.discard(uid)
                res = rec.get("result") or {}
                if st == "failed":
                    self._show_status(st, str(rec.get("reason") or ""))
                else:
                    self._show_status(
                        st,
                        f"checkpoint {str(res.get('uuid', ''))[:8]} of {res.get('branch')} at "
                        f"epoch {res.get('epoch')}, step {res.get('step')}",
                    )
            return True
        if cmd != "load_checkpoint" or not isinstance(uid, str):
            return False
        args = rec.get("args") or {}
        self.last_load = rec
        src = self.nodes.get(str(args.get("uuid")))
        what = f"checkpoint {str(args.get('uuid', ''))[:8]}" + (
            f" ({src['branch']}, epoch {src.get('epoch')})" if src else ""
        )
        if st in ("requested", "pending", "running"):
            self._loads[uid] = rec
            when = (
                ""
                if st == "running"
                else (" \u2014 waits for the next epoch boundary" if not self._paused_hint else "")
            )
            self._show_status(
                "pending" if st != "running" else "running",
                f"loading {what} into branch '{args.get('branch_name') or '(suggested)'}'{when}",
            )
        else:
            self._loads.pop(uid, None)
            if st == "success":
                res = rec.get("result") or {}
                new = str(res.get("branch", ""))
                wanted = args.get("branch_name")
                renamed = f" (asked for '{wanted}')" if wanted and wanted != new else ""
                self.note_fork(
                    new, src["branch"] if src else res.get("from_branch"), src.get("epoch") if src else res.get("epoch")
                )
                self.set_current_branch(new)
                self._show_status(
                    "success",
                    f"now training on branch '{new}'{renamed} from checkpoint "
                    f"{str(args.get('uuid', ''))[:8]} ({src['branch'] + ', ' if src else ''}"
                    f"epoch {res.get('epoch')}, step {res.get('step')})",
                )
            else:
                self._show_status("failed", str(rec.get("reason") or "failed"))
        self._update_buttons()
        return True

    def pending_loads(self) -> list[dict[str, Any]]:
        return list(self._loads.values())

    # ------------------------------------------------------------------ the result line

    def _show_status(self, status: str, detail: str) -> None:
        col = STATUS_COLOURS.get(status, TEXT_COLOUR)
        text = f"<b style='color:{col}'>{html.escape(status)}</b>"
        if detail:
            text += f" &nbsp;{html.escape(detail)}"
        self.result.setText(text)
        self.result.setToolTip(detail)

    def _show(self, text: str, colour: str = "#718096") -> None:
        self.result.setText(f"<span style='color:{colour}'>{html.escape(text)}</span>")
        self.result.setToolTip(text)

    def result_text(self) -> str:
        """The result line as plain text (what a user reads)."""
        return self.result.plain()
