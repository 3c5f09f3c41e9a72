"""From the training thread's events to every connected client, without ever making training wait.

The session calls :meth:`Hub.listener` on the emitting thread; it appends to one bounded buffer under a
lock and, at most once per batch, wakes the server's event loop. The loop drains the buffer, updates the
mirrors, encodes each event once per protocol and offers it to each client's own bounded outbox
(:class:`ClientQueue`). A slow client loses its oldest messages (step metrics and snapshots first) and is
told how many; step metrics are rate-limited per client. Every client sees the same events in the same
order, because they are all fed from the one drained sequence.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from hill_app.engine.events import Event

LOSSY_KINDS = frozenset({"step", "snapshot", "progress"})


class OutMessage:
    """One message for a client. Its text may be made lazily (``make``), once, when a client first needs it: a
    step that every client's rate limit skips is never encoded."""

    __slots__ = ("_make", "_text", "lossy", "throttle")

    def __init__(
        self,
        text: str | None = None,
        *,
        make: Callable[[], str] | None = None,
        lossy: bool = False,
        throttle: bool = False,
    ) -> None:
        if (text is None) == (make is None):
            raise ValueError("give the text or a function that makes it")
        self._text, self._make = text, make
        self.lossy = lossy  # may be dropped first when the client falls behind
        self.throttle = throttle  # step metrics: at most ``step_rate`` per second per client

    @property
    def text(self) -> str:
        if self._text is None:
            assert self._make is not None
            self._text, self._make = self._make(), None
        return self._text


class Observer(Protocol):
    def apply(self, ev: Event) -> None: ...


class Codec(Protocol):
    def encode(self, ev: Event, seq: int) -> list[OutMessage]: ...

    def dropped_notice(self, count: int) -> str: ...


class ClientQueue:
    """One client's outbox: bounded in messages and bytes; drop-oldest (lossy kinds first); step rate limit."""

    def __init__(
        self,
        codec: Codec,
        loop: asyncio.AbstractEventLoop,
        *,
        max_messages: int = 2000,
        max_bytes: int = 32 << 20,
        step_rate: float = 20.0,
    ) -> None:
        self.codec = codec
        self._loop = loop
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._interval = 1.0 / step_rate if step_rate > 0 else 0.0
        self._q: collections.deque[OutMessage] = collections.deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self._held: OutMessage | None = None
        self._held_timer: asyncio.TimerHandle | None = None
        self._next_step_at = 0.0
        self.dropped = 0  # total, for the server's own state
        self._unreported = 0  # not yet told to the client
        self.sent = 0
        self.closed = False

    def offer(self, msg: OutMessage) -> None:
        """Loop thread only."""
        if self.closed:
            return
        if msg.throttle:
            now = time.monotonic()
            if now < self._next_step_at:
                self._held = msg  # newest wins; sent when the interval has passed
                if self._held_timer is None:
                    self._held_timer = self._loop.call_later(self._next_step_at - now, self._release_held)
                return
            self._held = None
            self._next_step_at = now + self._interval
        elif self._held is not None:  # keep order: the held (older) step goes out before this message
            self._push(self._held)
            self._held = None
        self._push(msg)

    def add_lost(self, n: int) -> None:
        """Events lost before they reached any outbox (the shared buffer overflowed): told like drops."""
        self.dropped += n
        self._unreported += n
        self._ready.set()

    def _release_held(self) -> None:
        self._held_timer = None
        if self._held is not None and not self.closed:
            msg, self._held = self._held, None
            self._next_step_at = time.monotonic() + self._interval
            self._push(msg)

    def _push(self, msg: OutMessage) -> None:
        self._q.append(msg)
        self._bytes += len(msg.text)
        while len(self._q) > self.max_messages or (self._bytes > self.max_bytes and len(self._q) > 1):
            self._drop_one()
        self._ready.set()

    def _drop_one(self) -> None:
        for i, m in enumerate(self._q):
            if m.lossy:
                del self._q[i]
                break
        else:
            m = self._q.popleft()
        self._bytes -= len(m.text)
        self.dropped += 1
        self._unreported += 1

    async def take(self) -> list[str]:
        """Wait for messages; return them oldest first, led by a notice of what was dropped since last time."""
        while not self._q and not self._unreported and not self.closed:
            self._ready.clear()
            await self._ready.wait()
        out = []
        if self._unreported:
            out.append(self.codec.dropped_notice(self._unreported))
            self._unreported = 0
        out.extend(m.text for m in self._q)
        self.sent += len(self._q)
        self._q.clear()
        self._bytes = 0
        return out

    def __len__(self) -> int:
        return len(self._q)

    def close(self) -> None:
        self.closed = True
        if self._held_timer is not None:
            self._held_timer.cancel()
        self._ready.set()


class Hub:
    """The one place events cross from the emitting threads into the server's event loop."""

    def __init__(
        self, observers: list[Observer], codecs: dict[str, Codec], maxlen: int = 50_000, step_rate: float = 20.0
    ) -> None:
        self.observers = observers
        self.codecs = codecs
        self.clients: dict[str, set[ClientQueue]] = {name: set() for name in codecs}
        self._buf: collections.deque[Event] = collections.deque()
        self._maxlen = maxlen
        self._lock = threading.Lock()
        self._wake_pending = False
        self._n_clients = 0
        self._lost = 0
        self.lost_total = 0
        self.seq = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        self._step_interval = 1.0 / step_rate if step_rate > 0 else 0.0
        self._step_due = 0.0  # before this (monotonic) no client takes a step: a step does not wake the loop

    # ------------------------------------------------------------------ any thread (the training thread)

    def listener(self, ev: Event) -> None:
        """Subscribed to the session's events: O(1), never blocks on a client."""
        if self.closed:
            return
        with self._lock:
            if len(self._buf) >= self._maxlen:
                self._drop_oldest_locked()
            self._buf.append(ev)
            if self._wake_pending or self.loop is None or (ev.kind in LOSSY_KINDS and not self._n_clients):
                return  # lossy events with nobody listening wait for the periodic drain
            if ev.kind == "step" and time.monotonic() < self._step_due:
                return  # every client's rate limit would hold it: the next due step (or drain) carries it
            self._wake_pending = True
        try:
            self.loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # the loop has closed: the server is shutting down
            pass

    def _drop_oldest_locked(self) -> None:
        for i, e in enumerate(self._buf):
            if e.kind in LOSSY_KINDS:
                del self._buf[i]
                break
        else:
            self._buf.popleft()
        self._lost += 1

    # ------------------------------------------------------------------ loop thread

    def drain(self) -> None:
        with self._lock:
            batch = list(self._buf)
            self._buf.clear()
            self._wake_pending = False
            lost, self._lost = self._lost, 0
        if lost:
            self.lost_total += lost
            for group in self.clients.values():
                for c in group:
                    c.add_lost(lost)
        last_step = max((i for i, ev in enumerate(batch) if ev.kind == "step"), default=-1)
        for i, ev in enumerate(batch):
            self.seq += 1
            for obs in self.observers:
                obs.apply(ev)
            if ev.kind == "step":
                if i != last_step:
                    continue  # superseded within this batch: rate-limited clients would only hold it
                self._step_due = time.monotonic() + self._step_interval
            for name, group in self.clients.items():
                if not group:
                    continue
                msgs = self.codecs[name].encode(ev, self.seq)
                for c in group:
                    for m in msgs:
                        c.offer(m)

    def add_client(self, protocol: str, client: ClientQueue) -> None:
        self.drain()  # the client starts after everything already emitted (its hello covers that)
        self.clients[protocol].add(client)
        with self._lock:
            self._n_clients += 1

    def remove_client(self, protocol: str, client: ClientQueue) -> None:
        client.close()
        if client in self.clients[protocol]:
            self.clients[protocol].discard(client)
            with self._lock:
                self._n_clients -= 1

    def n_clients(self) -> int:
        return sum(len(g) for g in self.clients.values())

    def stats(self) -> dict[str, Any]:
        return {
            "clients": {k: len(v) for k, v in self.clients.items()},
            "events": self.seq,
            "lost_before_fanout": self.lost_total,
            "dropped_per_client": [c.dropped for g in self.clients.values() for c in g],
        }

    async def periodic_drain(self, every: float = 0.1) -> None:
        while not self.closed:
            await asyncio.sleep(every)
            self.drain()

    def close(self) -> None:
        self.closed = True
        for group in self.clients.values():
            for c in group:
                c.close()
