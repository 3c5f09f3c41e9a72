"""The one bounded channel events leave the training thread through.

A slow or absent consumer never blocks training or grows its memory: the buffer has a fixed size and,
when full, drops the oldest event of a kind that a newer one supersedes (step metrics, snapshots)
before anything else, counting what it dropped.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOSSY_KINDS = frozenset({"step", "snapshot", "progress"})


@dataclass
class Event:
    kind: str
    data: dict[str, Any]
    time: float = field(default_factory=time.time)


class EventChannel:
    def __init__(self, maxlen: int = 2000):
        self.maxlen = maxlen
        self._buf: collections.deque[Event] = collections.deque()
        self._lock = threading.Lock()
        self.dropped = 0
        self._listeners: list[Callable[[Event], None]] = []
        # Listeners run on the emitting thread (the training thread, or a thread that called submit), but one
        # event at a time, in the order the buffer gets them: a listener never shares its state with another
        # thread's listener call. Re-entrant, so a listener may emit (e.g. submit a command) itself.
        self._dispatch = threading.RLock()

    def subscribe(self, fn: Callable[[Event], None]) -> None:
        """Call ``fn`` synchronously for every event, serialised with every other emit; keep it fast."""
        with self._dispatch:
            self._listeners.append(fn)

    def emit(self, kind: str, /, **data: Any) -> None:
        ev = Event(kind, data)
        with self._dispatch:
            for fn in self._listeners:
                fn(ev)
            with self._lock:
                if len(self._buf) >= self.maxlen:
                    self._drop_one()
                self._buf.append(ev)

    def _drop_one(self) -> None:
        for i, e in enumerate(self._buf):
            if e.kind in LOSSY_KINDS:
                del self._buf[i]
                self.dropped += 1
                return
        self._buf.popleft()
        self.dropped += 1

    def drain(self, max_events: int | None = None) -> list[Event]:
        with self._lock:
            n = len(self._buf) if max_events is None else min(max_events, len(self._buf))
            return [self._buf.popleft() for _ in range(n)]

    def __len__(self) -> int:
        return len(self._buf)
