"""Small widgets that keep the window's minimum size independent of what it says.

A QLabel asks for the width of its text; one status line with a path or a uuid in it can make the whole
window wider than the screen. :class:`ElidedLabel` asks for almost nothing and elides (the full text is in
its tooltip); :class:`WrapLabel` wraps and breaks long words (paths, uuids) so they never set a width.
"""

from __future__ import annotations

import html
import re
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

ZWSP = "\u200b"
_LONG = re.compile(r"\S{24,}")


def breakable(text: str) -> str:
    """Plain text with break opportunities after / _ - . inside long words, for word-wrapped labels."""
    return _LONG.sub(lambda m: re.sub(r"([/_\-.:,])", "\\1" + ZWSP, m.group(0)), text)


def breakable_html(text: str) -> str:
    """``breakable`` for rich text: only the text between tags is touched."""
    return re.sub(r"(^|>)([^<]+)", lambda m: m.group(1) + breakable(m.group(2)), text)


def plain_text(rich: str) -> str:
    """What a rich-text label reads as (no tags, no zero-width spaces)."""
    doc = QTextDocument()
    doc.setHtml(rich)
    return doc.toPlainText().replace("\u00a0", " ").replace(ZWSP, "")


class ElidedLabel(QLabel):
    """One line that elides on the right; it asks for ``min_chars`` characters at most."""

    def __init__(
        self,
        text: str = "",
        parent: QWidget | None = None,
        min_chars: int = 6,
        mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight,
    ) -> None:
        super().__init__(parent)
        self._full = ""
        self._min_chars = min_chars
        self._mode = mode
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt name)
        self._full = str(text)
        self.setToolTip(self._full if self._full else "")
        self._elide()

    def text(self) -> str:  # noqa: D102 - the full text, not the elided one
        return self._full

    def shown_text(self) -> str:
        return super().text()

    def _elide(self) -> None:
        w = max(10, self.contentsRect().width())
        super().setText(self.fontMetrics().elidedText(self._full, self._mode, w))

    def resizeEvent(self, ev: Any) -> None:  # noqa: N802
        super().resizeEvent(ev)
        self._elide()

    def sizeHint(self) -> QSize:  # noqa: N802
        fm = self.fontMetrics()
        return QSize(fm.horizontalAdvance(self._full) + 8, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        fm = self.fontMetrics()
        return QSize(fm.averageCharWidth() * self._min_chars, super().minimumSizeHint().height())


class WrapLabel(QLabel):
    """Word-wrapped rich text whose long words (paths, uuids) can break, so it never widens the window."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802
        super().setText(breakable_html(str(text)))

    def plain(self) -> str:
        return plain_text(self.text())

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(self.fontMetrics().averageCharWidth() * 8, super().minimumSizeHint().height())


def escape(text: Any) -> str:
    return html.escape(str(text))
