"""The command log: one row per command, updated in place as its status moves (requested, pending, running,
success or failed with the reason), its arguments one click away; log lines and errors (with their
tracebacks folded under them) in the same list, in order."""

from __future__ import annotations

import json
import time
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFontDatabase
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .results import STATUS_COLOURS, describe_result
from .widgets import ElidedLabel

LEVEL_COLOURS = {"debug": "#8a8a8a", "info": "#4a5568", "warning": "#b7791f", "error": "#c53030"}
COL_TIME, COL_STATUS, COL_TEXT = range(3)
QUIET_SOURCES = (None, "window", "user", "gui")


def _args_text(args: Any) -> str:
    try:
        return json.dumps(args, indent=1, default=str)
    except (TypeError, ValueError):
        return repr(args)


class LogConsole(QWidget):
    """Every command (one row each), log line and error of the run."""

    cleared = Signal()

    def __init__(self, parent: QWidget | None = None, max_rows: int = 5000) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        head = QHBoxLayout()
        head.setContentsMargins(6, 2, 6, 0)
        self.summary = ElidedLabel("")
        self.summary.setStyleSheet("color:#718096; font-size:9pt")
        clear = QToolButton()
        clear.setText("Clear")
        clear.clicked.connect(self.clear)
        head.addWidget(self.summary, 1)
        head.addWidget(clear)
        lay.addLayout(head)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(3)
        self.tree.setHeaderHidden(True)
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(False)
        self.tree.setIndentation(12)
        self.tree.setWordWrap(False)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(8.5)
        self.tree.setFont(font)
        self.tree.setStyleSheet("QTreeWidget { background: #fbfbfc; border: 1px solid #e2e8f0; }")
        h = self.tree.header()
        h.setStretchLastSection(True)
        h.setSectionResizeMode(COL_TIME, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(COL_STATUS, QHeaderView.ResizeMode.ResizeToContents)
        lay.addWidget(self.tree)
        self.max_rows = max_rows
        self.rows: dict[str, QTreeWidgetItem] = {}  # command uuid -> its row
        self.records: dict[str, dict[str, Any]] = {}  # command uuid -> its newest record
        self.counts = {s: 0 for s in STATUS_COLOURS}  # final statuses, one per command
        self.errors = 0
        self._update_summary()

    def clear(self) -> None:
        self.tree.clear()
        self.rows.clear()
        self.records.clear()
        self.counts = {s: 0 for s in STATUS_COLOURS}
        self.errors = 0
        self._update_summary()
        self.cleared.emit()

    # ------------------------------------------------------------------ rows

    def _new_row(self, ts: float | None) -> QTreeWidgetItem:
        item = QTreeWidgetItem()
        item.setText(COL_TIME, time.strftime("%H:%M:%S", time.localtime(ts or time.time())))
        item.setForeground(COL_TIME, QBrush(QColor("#a0aec0")))
        self.tree.addTopLevelItem(item)
        while self.tree.topLevelItemCount() > self.max_rows:
            old = self.tree.takeTopLevelItem(0)
            uid = old.data(COL_TEXT, Qt.ItemDataRole.UserRole) if old is not None else None
            if uid:
                self.rows.pop(uid, None)
                self.records.pop(uid, None)
        self.tree.scrollToItem(item)
        return item

    def add_command(self, rec: dict[str, Any]) -> QTreeWidgetItem:
        """A command event: the command's row is created on its first status and updated on the next ones."""
        uid = str(rec.get("uuid") or "")
        st = str(rec.get("status", "?"))
        item = self.rows.get(uid) if uid else None
        prev = self.records.get(uid, {}).get("status") if uid else None
        if item is None:
            item = self._new_row(rec.get("requested_time") or rec.get("time"))
            item.setData(COL_TEXT, Qt.ItemDataRole.UserRole, uid)
            args = rec.get("args") or {}
            child = QTreeWidgetItem([" ", " ", "args " + _args_text(args)])
            child.setForeground(COL_TEXT, QBrush(QColor("#718096")))
            child.setFlags(child.flags() & ~Qt.ItemFlag.ItemIsSelectable)
            item.addChild(child)
            if uid:
                self.rows[uid] = item
        if uid:
            self.records[uid] = rec
        if st in ("success", "failed") and prev not in ("success", "failed"):
            self.counts[st] = self.counts.get(st, 0) + 1
        col = QColor(STATUS_COLOURS.get(st, "#4a5568"))
        item.setText(COL_STATUS, st)
        item.setForeground(COL_STATUS, QBrush(col))
        f = item.font(COL_STATUS)
        f.setBold(True)
        item.setFont(COL_STATUS, f)
        text = str(rec.get("command"))
        src = rec.get("source")
        if src not in QUIET_SOURCES:
            text += f" [{src}]"
        detail = describe_result(rec) if st in ("success", "failed") else ""
        if detail:
            text += f" \u2014 {detail}"
        item.setText(COL_TEXT, text)
        item.setForeground(COL_TEXT, QBrush(QColor("#c53030" if st == "failed" else "#1a202c")))
        tip = f"{rec.get('command')} ({st})\nuuid {uid}\nsource {src}\nargs {_args_text(rec.get('args') or {})}"
        if detail:
            tip += f"\n{detail}"
        for c in range(3):
            item.setToolTip(c, tip)
        self._update_summary()
        return item

    def add_log(self, level: str, message: str, ts: float | None = None) -> QTreeWidgetItem:
        if level == "error":
            self.errors += 1
        lines = str(message).splitlines() or [""]
        item = self._new_row(ts)
        col = QBrush(QColor(LEVEL_COLOURS.get(level, "#4a5568")))
        item.setText(COL_STATUS, level)
        item.setForeground(COL_STATUS, col)
        item.setText(COL_TEXT, lines[0])
        item.setForeground(COL_TEXT, col)
        item.setToolTip(COL_TEXT, str(message)[:4000])
        if len(lines) > 1:
            child = QTreeWidgetItem([" ", " ", "\n".join(lines[1:])])
            child.setForeground(COL_TEXT, col)
            item.addChild(child)
        self._update_summary()
        return item

    def add_error(self, message: str, traceback_text: str | None = None, ts: float | None = None) -> None:
        self.add_log("error", message + (("\n" + traceback_text.rstrip()) if traceback_text else ""), ts)

    def add_info(self, message: str) -> None:
        self.add_log("info", message)

    def _update_summary(self) -> None:
        done = self.counts.get("success", 0)
        failed = self.counts.get("failed", 0)
        self.summary.setText(
            f"commands: {done} succeeded, {failed} failed" + (f" \u00b7 {self.errors} error(s)" if self.errors else "")
        )

    # ------------------------------------------------------------------ reading it back

    def command_rows(self) -> int:
        return len(self.rows)

    def row_text(self, uid: str) -> str:
        item = self.rows[uid]
        return f"{item.text(COL_STATUS)} {item.text(COL_TEXT)}"

    def plain_text(self) -> str:
        """Everything the log holds, one row a line, folded details (arguments, tracebacks) included."""
        out = []
        for i in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(i)
            out.append(f"{it.text(COL_TIME)}  {it.text(COL_STATUS):<9} {it.text(COL_TEXT)}")
            for j in range(it.childCount()):
                out.append("    " + it.child(j).text(COL_TEXT))
        return "\n".join(out)

    def scroll_to_end(self) -> None:
        n = self.tree.topLevelItemCount()
        if n:
            self.tree.scrollToItem(self.tree.topLevelItem(n - 1))


__all__ = ["LEVEL_COLOURS", "LogConsole"]
