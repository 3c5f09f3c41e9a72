"""A text progress bar for headless runs, fed by the event channel (no dependency, no flood in logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .events import Event


def run_fraction(step: dict, total_epochs: int) -> float:
    """How much of the run a 'step' event's data says is done (0..1): whole epochs plus this epoch's part."""
    return (step["epoch"] - 1 + step["index_in_epoch"] / max(1, step["steps_in_epoch"])) / max(1, total_epochs)


class ProgressBar:
    def __init__(self, total_epochs: int, stream: TextIO | None = None, width: int = 24):
        self.total = total_epochs
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0
        self._val = None

    def __call__(self, ev: Event) -> None:
        d = ev.data
        if ev.kind == "step" and self.tty:
            now = time.monotonic()
            if now - self._last < 0.1 and d["index_in_epoch"] != d["steps_in_epoch"]:
                return
            self._last = now
            done = run_fraction(d, self.total)
            bar = "#" * int(done * self.width)
            val = "" if self._val is None else f" val {self._val:.3f}"
            self.stream.write(
                f"\r[{bar:<{self.width}}] epoch {d['epoch']}/{self.total} step "
                f"{d['index_in_epoch']}/{d['steps_in_epoch']} loss {d['loss']:.4f}{val} "
                f"{d['images_per_s']:,.0f} img/s "
            )
            self.stream.flush()
        elif ev.kind == "epoch":
            self._val = d.get("val_accuracy")
            if not self.tty:
                self.stream.write(
                    f"epoch {d['epoch']}/{self.total} loss {d['train_loss']:.4f} "
                    f"train {d['train_accuracy']:.3f} val {d['val_accuracy']:.3f} "
                    f"{d['images_per_s']:,.0f} img/s\n"
                )
                self.stream.flush()
        elif ev.kind == "paused":
            self._line(f"paused before epoch {d['epoch']}: {d['reason']}")
        elif ev.kind == "command" and d["status"] in ("success", "failed"):
            msg = f"command {d['command']} {d['status']}"
            if d["status"] == "failed":
                msg += f": {d['reason']}"
            self._line(msg)
        elif ev.kind == "log" and d.get("level") in ("warning", "error"):
            self._line(f"{d['level']}: {d['message'].strip().splitlines()[-1]}")

    def _line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
