"""Process-wide work-arounds for the installed Qt binding, applied once when ``hill_app.gui`` is imported."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

_NONE_GUARDED = False
HEADROOM = 1 << 40


def leaks_none(call: Callable[[], object], repeat: int = 16) -> bool:
    """Whether ``call()`` drops a reference to None each time (PySide6 6.12.0's void bindings on CPython < 3.12)."""
    before = sys.getrefcount(None)
    for _ in range(repeat):
        call()
    return sys.getrefcount(None) < before


def none_guarded() -> bool:
    """Whether :func:`guard_none_refcount` found the leak and gave None its headroom in this process."""
    return _NONE_GUARDED


def guard_none_refcount() -> bool:
    """Work around a PySide6 6.12.0 bug on CPython < 3.12 that would crash a long session.

    There, every binding of a C++ ``void`` method returns ``None`` without taking a reference, so each
    call (``QPainter.setPen``, ``QWidget.update``, ...) drops None's reference count by one; after some
    10^5 calls (a minute of dragging) Python aborts with "Fatal Python error: none_dealloc". From 3.12
    None is immortal and the bug is harmless. When the leak is detected, give None a reference-count
    headroom no session can use up. Returns whether the guard is applied. Idempotent.
    """
    global _NONE_GUARDED
    if _NONE_GUARDED or sys.version_info >= (3, 12) or hasattr(sys, "gettotalrefcount"):  # debug build: skip
        return _NONE_GUARDED
    from PySide6.QtCore import QObject

    probe = QObject()
    if not leaks_none(lambda: probe.setObjectName("")):
        return False
    ctypes.c_ssize_t.from_address(id(None)).value += HEADROOM  # ob_refcnt is a PyObject's first field
    _NONE_GUARDED = True
    return True


guard_none_refcount()  # before any widget exists: importing hill_app.gui (or any of its modules) applies it
