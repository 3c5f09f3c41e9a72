"""Per-client outboxes and the hub: bounded, drop-oldest (lossy kinds first) with a count told to the client,
step metrics rate-limited without reordering, the same sequence for every client, an emitter never blocked."""

from __future__ import annotations

import asyncio
import json
import threading

from hill_app.engine.events import Event
from hill_app.server.fanout import ClientQueue, Hub, OutMessage


class Codec:
    def encode(self, ev: Event, seq: int) -> list[OutMessage]:
        return [
            OutMessage(
                json.dumps({"kind": ev.kind, "seq": seq, **ev.data}),
                lossy=ev.kind == "step",
                throttle=ev.kind == "step",
            )
        ]

    def dropped_notice(self, count: int) -> str:
        return json.dumps({"kind": "dropped", "count": count})


class Recorder:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    def apply(self, ev: Event) -> None:
        self.kinds.append(ev.kind)


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_full_outbox_drops_oldest_lossy_first_and_tells_the_count():
    async def main():
        q = ClientQueue(Codec(), asyncio.get_running_loop(), max_messages=4, step_rate=0)
        q.offer(OutMessage("cmd-1"))
        for i in range(5):
            q.offer(OutMessage(f"step-{i}", lossy=True))
        q.offer(OutMessage("cmd-2"))
        assert len(q) == 4
        return await q.take(), q.dropped

    out, dropped = run(main())
    assert json.loads(out[0]) == {"kind": "dropped", "count": 3}
    assert out[1:] == ["cmd-1", "step-3", "step-4", "cmd-2"] and dropped == 3


def test_byte_bound_and_plain_messages_dropped_when_nothing_lossy_is_left():
    async def main():
        q = ClientQueue(Codec(), asyncio.get_running_loop(), max_messages=100, max_bytes=10, step_rate=0)
        for i in range(4):
            q.offer(OutMessage(f"m{i}xxxx"))  # 6 bytes each
        return await q.take()

    out = run(main())
    assert json.loads(out[0])["count"] == 3 and out[1:] == ["m3xxxx"]


def test_step_rate_limit_keeps_the_newest_and_the_order():
    async def main():
        loop = asyncio.get_running_loop()
        q = ClientQueue(Codec(), loop, step_rate=1.0)  # one a second: the offers below come well within
        q.offer(OutMessage("s0", lossy=True, throttle=True))
        q.offer(OutMessage("s1", lossy=True, throttle=True))  # within the interval: held
        q.offer(OutMessage("s2", lossy=True, throttle=True))  # replaces s1
        first = await q.take()
        q.offer(OutMessage("s3", lossy=True, throttle=True))  # s2 is still held (within the interval): s3 replaces it
        q.offer(OutMessage("epoch"))  # flushes the held (older) step first
        second = await q.take()
        q.offer(OutMessage("s4", lossy=True, throttle=True))  # held until the interval has passed
        third = await asyncio.wait_for(q.take(), 30)
        return first, second, third

    first, second, third = run(main())
    assert first == ["s0"] and second == ["s3", "epoch"] and third == ["s4"]


def test_hub_feeds_every_client_the_same_sequence_from_another_thread():
    async def main():
        rec = Recorder()
        hub = Hub([rec], {"p": Codec()})
        hub.loop = asyncio.get_running_loop()
        a = ClientQueue(Codec(), hub.loop, step_rate=0)
        b = ClientQueue(Codec(), hub.loop, step_rate=0)
        hub.add_client("p", a)
        hub.add_client("p", b)

        def emit():
            for i in range(300):
                hub.listener(Event("command" if i % 3 else "epoch", {"i": i}))

        t = threading.Thread(target=emit)
        t.start()
        await asyncio.get_running_loop().run_in_executor(None, t.join)
        got: dict[str, list] = {"a": [], "b": []}
        while len(got["a"]) < 300 or len(got["b"]) < 300:
            for name, q in (("a", a), ("b", b)):
                if len(got[name]) < 300:
                    got[name] += await asyncio.wait_for(q.take(), 30)
        return got, rec.kinds

    got, kinds = run(main())
    assert got["a"] == got["b"]
    assert [json.loads(m)["i"] for m in got["a"]] == list(range(300))
    assert len(kinds) == 300


def test_an_emitter_never_waits_for_a_stalled_loop():
    """The loop never drains: the hub's buffer stays bounded, steps go first, the loss is told to every client
    later, and of the steps that waited only the newest is sent (rate-limited clients would hold the others)."""

    async def main():
        rec = Recorder()
        hub = Hub([rec], {"p": Codec()}, maxlen=100)
        hub.loop = asyncio.get_running_loop()
        q = ClientQueue(Codec(), hub.loop, step_rate=0)
        hub.add_client("p", q)
        for i in range(1000):  # this coroutine holds the loop: nothing drains meanwhile
            hub.listener(Event("command" if i % 10 == 0 else "step", {"i": i}))
        assert len(hub._buf) == 100
        hub.drain()
        return await q.take(), rec.kinds

    out, kinds = run(main())
    assert json.loads(out[0]) == {"kind": "dropped", "count": 900}
    got = [json.loads(m)["i"] for m in out[1:]]
    assert got == list(range(10, 1000, 10)) + [999]  # the newest commands that fit, then the newest step
    assert len(kinds) == 100  # the mirror saw all that was buffered
