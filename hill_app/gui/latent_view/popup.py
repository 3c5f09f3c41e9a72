"""The hover popup: the sample's picture, its label and the model's prediction, next to the cursor."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QGuiApplication, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget


class HoverPopup(QFrame):
    """A tooltip-like window with the sample's image, its label and the model's prediction."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent, Qt.WindowType.ToolTip | Qt.WindowType.FramelessWindowHint)
        self.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating, True)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, True)
        self.setObjectName("latentHoverPopup")
        self.setStyleSheet("QLabel { color: #202020; background: transparent; }")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(4)
        self.image = QLabel(self)
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel(self)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.image)
        lay.addWidget(self.text)

    def paintEvent(self, ev: Any) -> None:  # noqa: N802
        p = QPainter(self)
        p.setPen(QPen(QColor(184, 184, 184), 1))
        p.setBrush(QBrush(QColor(255, 255, 255)))
        p.drawRect(QRectF(0.5, 0.5, self.width() - 1, self.height() - 1))
        p.end()

    def show_sample(self, pixmap: QPixmap | None, html: str, global_pos: QPoint) -> None:
        if pixmap is not None and not pixmap.isNull():
            self.image.setPixmap(pixmap)
            self.image.show()
        else:
            self.image.clear()
            self.image.hide()
        self.text.setText(html)
        self.adjustSize()
        pos = global_pos + QPoint(16, 18)
        screen = QGuiApplication.screenAt(global_pos) or QGuiApplication.primaryScreen()
        if screen is not None:
            g = screen.availableGeometry()
            if pos.x() + self.width() > g.right():
                pos.setX(global_pos.x() - self.width() - 12)
            if pos.y() + self.height() > g.bottom():
                pos.setY(global_pos.y() - self.height() - 12)
        self.move(pos)
        self.show()
        self.raise_()
