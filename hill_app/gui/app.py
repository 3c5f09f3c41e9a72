"""`hill-app` with no arguments: the Qt application and its main window."""
from __future__ import annotations

import sys
from typing import Sequence

from .new_run_dialog import APPLICATION, ORGANIZATION


def run_gui(argv: Sequence[str] | None = None) -> int:
    """Open the main window, ready to train digits with the default protocol; return the exit code."""
    from PySide6.QtGui import QFont
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow
    from .metrics_view import configure_pyqtgraph

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "hill-app", *(argv or [])])
    app.setApplicationName(APPLICATION)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationDisplayName("hill-app")
    app.setStyle("Fusion")   # the same look on every platform; the window's style sheet builds on it
    font = QFont(app.font())
    if font.pointSizeF() < 10:
        font.setPointSizeF(10)
        app.setFont(font)
    configure_pyqtgraph()
    win = MainWindow()
    win.show()
    return int(app.exec())
