"""The Qt application, made once for every window of the app (`hill-app`, `hill-app attach`, the study)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from PySide6.QtWidgets import QApplication

from .new_run_dialog import APPLICATION, ORGANIZATION


class AppError(RuntimeError):
    """This process cannot open a window (a Qt application without widgets is already running)."""


def make_app(argv: Sequence[str] | None = None, display_name: str = "hill-app") -> QApplication:
    """The QApplication with the app's names, style, font and plot look. Qt appends ``display_name`` to
    every window title, so titles never repeat it."""
    from PySide6.QtGui import QFont

    from .metrics_view import configure_pyqtgraph

    app = QApplication.instance()
    if app is not None and not isinstance(app, QApplication):
        raise AppError(
            "this process already runs a Qt application without widgets (QGuiApplication, e.g. after "
            "drawing report figures); open the window in a process of its own"
        )
    app = app or QApplication([sys.argv[0] if sys.argv else "hill-app", *(argv or [])])
    app.setApplicationName(APPLICATION)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationDisplayName(display_name)
    app.setStyle("Fusion")  # the same look on every platform; the window's style sheet builds on it
    font = QFont(app.font())
    if font.pointSizeF() < 10:
        font.setPointSizeF(10)
        app.setFont(font)
    configure_pyqtgraph()
    return app


def run_gui(argv: Sequence[str] | None = None) -> int:
    """Open the main window, ready to train digits with the default protocol; return the exit code."""
    app = make_app(argv)
    from .main_window import MainWindow

    win = MainWindow()
    win.show()
    return int(app.exec())
