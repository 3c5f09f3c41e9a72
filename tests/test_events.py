"""The event channel: listeners are called one event at a time, in buffer order, whichever thread emits."""

from __future__ import annotations

import threading
import time

from hill_app.engine.events import EventChannel


def test_listeners_never_run_concurrently_and_see_the_buffer_order():
    ch = EventChannel(maxlen=10_000)
    inside, overlaps, seen = [0], [0], []

    def listener(ev):
        inside[0] += 1
        if inside[0] > 1:
            overlaps[0] += 1
        time.sleep(0.0005)  # widen the window another thread's call would land in
        seen.append((ev.data["t"], ev.data["i"]))
        inside[0] -= 1

    ch.subscribe(listener)
    start = threading.Barrier(3)

    def emitter(t):
        start.wait()
        for i in range(100):
            ch.emit("command", t=t, i=i)

    threads = [threading.Thread(target=emitter, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert overlaps[0] == 0
    assert seen == [(e.data["t"], e.data["i"]) for e in ch.drain()]
    assert sorted(seen) == [(t, i) for t in range(3) for i in range(100)]


def test_a_listener_may_emit_itself():
    ch = EventChannel()
    got = []

    def listener(ev):
        got.append(ev.kind)
        if ev.kind == "paused":
            ch.emit("command", status="requested")  # e.g. a pause handler submitting a command

    ch.subscribe(listener)
    ch.emit("paused")
    assert got == ["paused", "command"]
    assert [e.kind for e in ch.drain()] == ["command", "paused"]
