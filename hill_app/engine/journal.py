"""The run's append-only journal: one JSON object a line, flushed to the OS per record and fsynced per record
unless the writer marks it ``sync=False`` (a command's ``requested`` and ``pending``: the next synced record or
:meth:`Journal.sync` takes them to the disk, so only a power loss can drop them, and only from the end).

It is the source of truth for replay and studies. A kill loses at most the record being written; the
reader skips a torn line (a record cut short) and names any other unreadable line as corruption. Every
record carries ``seq``, its position, so a reader can tell a journal that lost records in the middle or at
the end (a checkpoint knows the journal's length when it was taken).
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Journal:
    def __init__(self, path: Path, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._unsynced = False  # records flushed to the OS but not yet fsynced
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

    def write(self, type_: str, /, *, sync: bool = True, **fields: Any) -> dict:
        """Append one record. It survives a kill at once (flushed to the OS); with ``sync`` it is also on the
        disk (with every record before it) when this returns."""
        with self._lock:
            rec = {**fields, "seq": self._seq, "type": type_, "time": time.time()}
            line = json.dumps(rec, separators=(",", ":"), allow_nan=True)
            try:
                self._f.write(line + "\n")
                self._f.flush()  # into the OS first, then to the disk: fsync before flush would sync nothing
                if self._fsync and sync:
                    os.fsync(self._f.fileno())
                self._unsynced = self._fsync and not sync
            except OSError as e:  # a full disk: say which file
                raise OSError(e.errno, e.strerror or str(e), str(self.path)) from None
            self._seq += 1
            return rec

    def sync(self) -> None:
        """Put every record written so far on the disk (before a checkpoint that counts them)."""
        with self._lock:
            if self._unsynced and not self._f.closed:
                try:
                    os.fsync(self._f.fileno())
                except OSError as e:
                    raise OSError(e.errno, e.strerror or str(e), str(self.path)) from None
                self._unsynced = False

    @property
    def seq(self) -> int:
        """The seq the next record gets (= the records written so far)."""
        return self._seq

    @property
    def closed(self) -> bool:
        return self._f.closed

    def close(self) -> None:
        self.sync()
        with self._lock:
            if not self._f.closed:
                self._f.close()


def read_journal(path: Path) -> Iterator[dict]:
    """Every complete record in order. A torn line (a record cut short by a kill) is skipped with a warning;
    any other unreadable line is skipped with a warning that names it as corruption."""
    scan = scan_journal(path)
    for lineno in scan.torn:
        warnings.warn(f"{path} line {lineno}: torn record skipped (the process was killed mid-write)", stacklevel=2)
    for lineno, what in scan.corrupt:
        warnings.warn(f"{path} line {lineno}: corrupt line skipped ({what}); the journal was damaged", stacklevel=2)
    yield from scan.records


@dataclass
class JournalScan:
    records: list[dict] = field(default_factory=list)
    torn: list[int] = field(default_factory=list)  # line numbers of records cut short
    corrupt: list[tuple[int, str]] = field(default_factory=list)  # (line number, what is wrong)

    def seq_problem(self) -> str | None:
        """None when the records are numbered 0, 1, 2 ... without a gap or a repeat; else what is wrong."""
        for i, r in enumerate(self.records):
            s = r.get("seq")
            if s != i:
                if isinstance(s, int) and not isinstance(s, bool) and s > i:
                    return f"records {i}..{s - 1} are missing (the journal was cut or edited)"
                return f"record {i} carries seq {s!r} (written twice, or by two processes at once)"
        return None


def scan_journal(path: Path) -> JournalScan:
    """Read a journal and sort its lines into records, torn records and corrupt lines."""
    out = JournalScan()
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                if text.startswith("{") and (e.pos >= len(text) or e.msg.startswith("Unterminated string")):
                    # valid as far as it goes: a record cut short
                    out.torn.append(lineno)
                else:
                    out.corrupt.append((lineno, f"not JSON at column {e.colno}: {e.msg}"))
                continue
            except RecursionError:
                out.corrupt.append((lineno, "nested too deeply"))
                continue
            if isinstance(rec, dict):
                out.records.append(rec)
            else:
                out.corrupt.append((lineno, f"a JSON {type(rec).__name__}, not a record"))
    return out
