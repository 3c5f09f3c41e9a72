"""`hill-app attach URL|RUN_DIR`: the desktop window as a client of a job served with ``hill-app train --serve``.

The window does everything it does in process (live metrics, pause, the latent view with its edits and
commit, every panel, the checkpoint tree) through :class:`~hill_app.client.remote.RemoteRunClient`. Closing
the window or File > Detach leaves the job running (or paused); File > Attach follows it again.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Any

import numpy as np
from PySide6.QtGui import QImage

from .samples import _signal_lanes as signal_lanes  # (L: a public name would be better)
from .samples import render_image, render_signal


class RemoteSamples:
    """Hover pictures of an attached job's view set, fetched one sample at a time and cached."""

    def __init__(self, client: Any, dataset: dict[str, Any], cache_size: int = 256) -> None:
        self.client = client
        self.kind = str(dataset.get("kind", "image"))
        shape = list(dataset.get("input_shape") or [])
        self.lanes = (
            signal_lanes(dataset.get("channel_names") or None, int(shape[0]) if shape else 0)
            if self.kind == "signal"
            else []
        )
        self.size = int(dataset.get("view_size") or 0)
        self._cache: OrderedDict[int, QImage | None] = OrderedDict()
        self._cache_size = cache_size
        self.errors = 0

    def render(self, i: int) -> QImage | None:
        if not 0 <= i < self.size:
            return None
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        try:
            x = np.asarray(self.client.view_samples([i]))[0]
        except Exception:  # noqa: BLE001 - a picture is a nicety: a dropped connection must not break hovering
            self.errors += 1
            return None
        img = render_image(x) if self.kind == "image" else render_signal(x, self.lanes)
        self._cache[i] = img
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return img


def main(target: str, argv: list[str] | None = None) -> int:
    """Open the window attached to ``target``; 0 when the window closes after attaching, 1 if it cannot attach
    (the reason is printed: one line, no traceback)."""
    from hill_app.client.remote import RemoteError, RemoteRunClient

    from .app import make_app

    try:  # check the target before opening a window: a wrong URL or token is a one-line error
        RemoteRunClient(target, source="window", events=False).close()
    except RemoteError as e:
        print(f"hill-app attach: {e}", file=sys.stderr)
        return 1
    app = make_app(argv)
    from .main_window import MainWindow

    win = MainWindow()
    if not win.attach(target):
        box = win.error_box
        print(f"hill-app attach: {box.text() if box is not None else 'cannot attach'}", file=sys.stderr)
        win.close()
        return 1
    win.show()
    app.exec()
    return 0
