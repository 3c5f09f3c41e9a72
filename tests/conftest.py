"""Shared fixtures. Qt is imported only by the fixtures that need it, so engine tests never load it."""

from __future__ import annotations

import pytest


@pytest.fixture
def qt_settings(tmp_path, monkeypatch):
    """Point QSettings (INI, user scope) and the home folder at a temp dir: tests never touch the user's config."""
    from PySide6.QtCore import QSettings

    from hill_app.gui.new_run_dialog import make_settings

    folder = tmp_path / "qsettings"
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    s = make_settings()
    s.clear()
    yield s
    s.clear()
    s.sync()


@pytest.fixture
def main_window(qtbot, qt_settings):
    """A real, shown main window; closing it at the end stops any run and waits for its thread."""
    from hill_app.gui.main_window import MainWindow

    win = MainWindow(settings=qt_settings)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.error_box is not None:
        win.error_box.close()
    win.close()
