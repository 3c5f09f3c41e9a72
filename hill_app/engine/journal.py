"""The run's append-only journal: one JSON object a line, flushed and fsynced per record.

It is the source of truth for replay and studies. A kill loses at most the record being written; the
reader skips a torn last line and nothing else.
"""
from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator


class Journal:
    def __init__(self, path: Path, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._seq = sum(1 for _ in read_journal(self.path)) if self.path.exists() else 0
        self._repair_tail()
        self._f = open(self.path, "a", encoding="utf-8")

    def _repair_tail(self) -> None:
        """A torn last line (killed mid-write) would glue onto the next record: end it with a newline."""
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb+") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")

    def write(self, type_: str, **fields: Any) -> dict:
        with self._lock:
            rec = {**fields, "seq": self._seq, "type": type_, "time": time.time()}
            line = json.dumps(rec, separators=(",", ":"), allow_nan=True)
            self._f.write(line + "\n")
            self._f.flush()
            if self._fsync:
                os.fsync(self._f.fileno())
            self._seq += 1
            return rec

    @property
    def closed(self) -> bool:
        return self._f.closed

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.close()


def read_journal(path: Path) -> Iterator[dict]:
    """Every complete record in order; a torn line (from a kill mid-write) is skipped with a warning."""
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                warnings.warn(f"{path} line {lineno}: torn record skipped (the process was killed mid-write)")
                continue
            if isinstance(rec, dict):
                yield rec
