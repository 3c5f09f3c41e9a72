"""The FastAPI application: the native API under /api/v1, the peer's protocol beside it, the event streams.

Routes only read (the mirror, the run folder's files, the static facts) or submit commands; the only
call into the session is ``session.submit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, FastAPI, Query, Request, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from hill_app.engine.commands import describe_commands
from hill_app.engine.events import Event

from . import peer
from .fanout import LOSSY_KINDS, ClientQueue, Hub, OutMessage
from .state import JournalPager, RunMirror, StaticFacts, list_snapshots, read_checkpoint_tree, read_snapshot
from .wire import WireError, dumps, encode_array, loads_strict

API = "/api/v1"
SOURCE_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}(:[A-Za-z0-9_.@-]{1,48})?$")
UUID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
RESERVED_SOURCES = frozenset({"replay"})
MAX_SAMPLES = 4096


@dataclass
class ServeOptions:
    open_events: bool = False
    step_rate: float = 20.0  # step metrics per second per client
    client_queue: int = 2000  # messages a client may fall behind before its oldest are dropped
    dashboard_dir: Path | None = None


@dataclass
class ServerContext:
    session: Any  # only .submit is ever called
    static: StaticFacts
    mirror: RunMirror
    peer_state: peer.PeerState
    peer_codec: peer.PeerCodec
    hub: Hub
    journal: JournalPager
    options: ServeOptions
    urls: dict[str, str] = field(default_factory=dict)


def J(obj: Any, status: int = 200) -> Response:
    """Finite JSON: NaN and infinities become null."""
    return Response(content=dumps(obj).encode("utf-8"), status_code=status, media_type="application/json")


def error(status: int, detail: str, **extra: Any) -> Response:
    return J({"detail": detail, **extra}, status)


def encode_snapshot(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    for k in ("z", "labels", "preds", "view_indices", "target_centers", "target_spreads"):
        if k in out and out[k] is not None:
            out[k] = encode_array(np.asarray(out[k]))
    return out


class NativeCodec:
    """Engine events as {kind, seq, time, data}; snapshots carry their arrays as base64."""

    def encode(self, ev: Event, seq: int) -> list[OutMessage]:
        def make() -> str:
            data = encode_snapshot(ev.data) if ev.kind == "snapshot" else ev.data
            return dumps({"kind": ev.kind, "seq": seq, "time": ev.time, "data": data})

        return [OutMessage(make=make, lossy=ev.kind in LOSSY_KINDS, throttle=ev.kind == "step")]

    def dropped_notice(self, count: int) -> str:
        return dumps(
            {
                "kind": "dropped",
                "time": time.time(),
                "data": {"count": count, "note": "this client fell behind; its oldest events were dropped"},
            }
        )


class CommandBody(BaseModel):
    command: str = Field(description="a declared command name (GET /api/v1/commands)")
    args: dict[str, Any] | None = Field(None, description="arguments as a JSON object, checked by the declaration")
    uuid: str | None = Field(None, description="your own id for the command; echoed on every status change")
    source: str | None = Field(
        None, description="who sends it: 'window', 'script', 'agent:NAME' (default 'api'; or the X-Hill-Source header)"
    )


class PeerCommandBody(BaseModel):
    command: str
    args: str | None = Field(None, description="a JSON-encoded string holding the arguments object")
    time: float
    uuid: str
    status: str


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def _json_body(request: Request) -> Any:
    return loads_strict(await request.body())


def _source(request: Request, field_value: Any, default: str) -> str:
    src = field_value if field_value is not None else request.headers.get("x-hill-source", default)
    if not isinstance(src, str) or not SOURCE_RE.match(src) or src in RESERVED_SOURCES:
        raise WireError(
            f"source {src!r} is not allowed: use 'window', 'script', 'api' or 'agent:NAME' (letters, digits, _ . @ -)"
        )
    return src


@dataclass(frozen=True)
class Submitted:
    uuid: str
    command: str
    source: str
    refused: str | None  # the reason, when the command failed its checks at once (never queued)


async def _submit(ctx: ServerContext, command: str, args: Any, source: str, uid: str | None) -> Submitted:
    """session.submit journals (with fsync) before it returns: run it off the event loop. What it answers is
    read at once: a queued command may already be running, or have failed in its handler, by the time we look,
    and that is reported on the event stream, not here. (The handler stamps ``step`` before it runs.)"""

    def call() -> Submitted:
        cmd = ctx.session.submit(command, args, source=source, uuid=uid)
        refused = cmd.reason if cmd.status == "failed" and cmd.step is None else None
        return Submitted(cmd.uuid, cmd.command, cmd.source, refused)

    return await run_in_threadpool(call)


# ------------------------------------------------------------------ WebSocket pump


async def pump(ws: WebSocket, hub: Hub, protocol: str, client: ClientQueue) -> None:
    """Send the client's outbox until it disconnects; read (and ignore) what it sends so pings and closes
    are seen."""

    async def sender() -> None:
        while not client.closed:
            for text in await client.take():
                await ws.send_text(text)

    async def receiver() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return

    tasks = [asyncio.ensure_future(sender()), asyncio.ensure_future(receiver())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                await t
        hub.remove_client(protocol, client)


# ------------------------------------------------------------------ the app


def build_app(ctx: ServerContext) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx.hub.loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(ctx.hub.periodic_drain())
        ctx.hub.drain()
        yield
        ctx.hub.close()
        task.cancel()

    app = FastAPI(
        title="hill-app control API",
        version="1",
        description="Steer a running hill-app job. Every request needs the run's token "
        "(RUN_DIR/control.json). See docs/control-server.md.",
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.include_router(native_routes(ctx))
    app.include_router(peer_routes(ctx))
    add_root_routes(app, ctx)
    return app


def native_routes(ctx: ServerContext) -> APIRouter:
    r = APIRouter(prefix=API, tags=["hill-app"])
    mirror, hub, static = ctx.mirror, ctx.hub, ctx.static

    @r.get("/info", summary="static facts of the run and its current state")
    async def get_info() -> Response:
        hub.drain()
        return J(
            {
                "run_dir": str(static.run_dir.resolve()),
                "run_name": static.run_name,
                "config": static.config,
                "device": static.device,
                "dataset": static.dataset,
                "model": mirror.model_tree(),
                "optimizer": {"name": static.optimizer_name, **static.optimizer},
                "state": mirror.state(),
                "server": dict(
                    ctx.urls, open_events=ctx.options.open_events, step_rate=ctx.options.step_rate, api_version=1
                ),
            }
        )

    @r.get("/state", summary="where the run stands now (status, epoch, step, branch, hyperparameters)")
    async def get_state() -> Response:
        hub.drain()
        return J(dict(mirror.state(), server=hub.stats()))

    @r.get("/config", summary="the resolved configuration (RUN_DIR/config.json)")
    def get_config() -> Response:
        path = static.run_dir / "config.json"
        try:
            return J(loads_strict(path.read_bytes()))
        except (OSError, WireError) as e:
            return error(500, f"{path}: cannot read the run config: {e}")

    @r.get("/commands", summary="every command: name, when it applies, its doc and its JSON Schema")
    async def list_commands() -> Response:
        return J({"commands": describe_commands()})

    @r.post(
        "/commands",
        status_code=202,
        summary="submit a command; its statuses arrive on /api/v1/events",
        openapi_extra=_body_doc(CommandBody),
        responses={
            202: {"description": "queued (status pending)"},
            422: {"description": "malformed request, or the command failed its checks (with reason)"},
        },
    )
    async def post_command(request: Request) -> Response:
        try:
            body = await _json_body(request)
            if not isinstance(body, dict):
                raise WireError("the body must be a JSON object {command, args, uuid?, source?}")
            unknown = set(body) - {"command", "args", "uuid", "source"}
            if unknown:
                raise WireError(f"unknown field(s) {', '.join(sorted(unknown))}; allowed: command, args, uuid, source")
            command, args, uid = body.get("command"), body.get("args"), body.get("uuid")
            if not isinstance(command, str) or not command:
                raise WireError("'command' must be a non-empty string")
            if args is not None and not isinstance(args, dict):
                raise WireError(f"'args' must be a JSON object or null, got {type(args).__name__}")
            if uid is not None and (not isinstance(uid, str) or not UUID_RE.match(uid)):
                raise WireError("'uuid' must be 1-64 characters of letters, digits, _ . : -")
            source = _source(request, body.get("source"), "api")
        except WireError as e:
            return error(422, str(e))
        sub = await _submit(ctx, command, args, source, uid)
        rec = {"uuid": sub.uuid, "command": sub.command, "source": sub.source}
        if sub.refused is not None:
            return J(dict(rec, status="failed", reason=sub.refused, detail=sub.refused), 422)
        return J(dict(rec, status="pending"), 202)

    @r.get("/commands/{uid}", summary="the latest status of one command")
    async def get_command(uid: str) -> Response:
        hub.drain()
        rec = mirror.commands.get(uid)
        if rec is None:
            return error(404, f"no command with uuid {uid!r} seen since the server started")
        return J(rec)

    @r.get("/metrics", summary="step, epoch or evaluation metrics, paged")
    async def get_metrics(
        kind: str = Query("epoch", pattern="^(step|epoch|evaluation)$"),
        offset: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=50_000),
    ) -> Response:
        hub.drain()
        rows, total = mirror.page(kind, offset, limit)
        return J({"kind": kind, "offset": offset, "total": total, "rows": rows, "steps_seen": mirror.steps_seen})

    @r.get("/snapshot/latest", summary="the newest latent snapshot (arrays as base64)")
    async def latest_snapshot(kind: str = Query("any", pattern="^(any|pause)$")) -> Response:
        hub.drain()
        snap = mirror.pause_snapshot if kind == "pause" else mirror.snapshot
        if snap is None:
            snap = await run_in_threadpool(_newest_stored_snapshot, static.run_dir)
        if snap is None:
            return error(404, "no latent snapshot yet: the view exists once epoch 1 has run")
        return J(encode_snapshot(snap))

    @r.get("/snapshots", summary="snapshots stored in RUN_DIR/snapshots.h5 (pauses, commits, loads)")
    def stored_snapshots() -> Response:
        return J({"snapshots": list_snapshots(static.run_dir)})

    @r.get("/snapshots/{name}", summary="one stored snapshot (arrays as base64)")
    def stored_snapshot(name: str) -> Response:
        snap = read_snapshot(static.run_dir, name)
        if snap is None:
            return error(404, f"no snapshot {name!r} in {static.run_dir / 'snapshots.h5'}")
        return J(encode_snapshot(snap))

    @r.get("/checkpoints", summary="the checkpoint tree (RUN_DIR/checkpoints/tree.json)")
    def checkpoints() -> Response:
        try:
            nodes = read_checkpoint_tree(static.run_dir)
        except OSError as e:
            return error(500, str(e))
        return J({"nodes": nodes})

    @r.get("/journal", summary="journal records, paged by record number")
    def journal(offset: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=10_000)) -> Response:
        records, total = ctx.journal.page(offset, limit)
        return J({"offset": offset, "total": total, "records": records})

    @r.get("/view/labels", summary="labels of the view set, in view order")
    async def view_labels() -> Response:
        return J({"labels": encode_array(static.view_labels), "view_indices": encode_array(static.view_idx)})

    @r.get("/view/samples", summary="raw inputs of view-set samples (for hover previews)")
    async def view_samples(
        indices: str | None = Query(None, description="comma-separated view positions"),
        start: int = Query(0, ge=0),
        count: int = Query(0, ge=0, le=MAX_SAMPLES),
    ) -> Response:
        n = len(static.view_idx)
        try:
            if indices is not None:
                pos = [int(t) for t in indices.split(",") if t.strip()]
            else:
                pos = list(range(start, min(start + count, n)))
        except ValueError:
            return error(422, f"indices must be comma-separated integers, got {(indices or '')[:80]!r}")
        if len(pos) > MAX_SAMPLES:
            return error(422, f"at most {MAX_SAMPLES} samples per request, got {len(pos)}")
        bad = [p for p in pos if not 0 <= p < n]
        if bad:
            return error(422, f"view positions {bad[:10]} outside 0..{n - 1}")
        import torch

        rows = torch.from_numpy(static.view_idx[np.asarray(pos, dtype=np.int64)])
        x = static.view_inputs[rows].numpy()
        return J(
            {
                "positions": pos,
                "inputs": encode_array(np.asarray(x)),
                "kind": static.dataset["kind"],
                "channel_names": static.dataset["channel_names"],
            }
        )

    @r.websocket("/events")
    async def events(ws: WebSocket) -> None:
        await ws.accept()
        client = ClientQueue(
            NATIVE, asyncio.get_running_loop(), max_messages=ctx.options.client_queue, step_rate=ctx.options.step_rate
        )
        hub.add_client("native", client)
        client.offer(
            OutMessage(dumps({"kind": "hello", "seq": hub.seq, "time": time.time(), "data": {"state": mirror.state()}}))
        )
        await pump(ws, hub, "native", client)

    return r


NATIVE = NativeCodec()


def _newest_stored_snapshot(run_dir: Path) -> dict[str, Any] | None:
    names = list_snapshots(run_dir)
    return read_snapshot(run_dir, names[-1]["name"]) if names else None


def peer_routes(ctx: ServerContext) -> APIRouter:
    r = APIRouter(prefix="/api", tags=["peer protocol (Interactive Training)"])
    mirror, hub, codec, pstate = ctx.mirror, ctx.hub, ctx.peer_codec, ctx.peer_state

    @r.get("/get_info/")
    async def get_info() -> Response:
        hub.drain()
        return J(peer.info(mirror))

    @r.get("/get_optimizer_info/")
    async def get_optimizer_info() -> Response:
        hub.drain()
        return J(codec.optimizer())

    @r.get("/get_model_info/")
    async def get_model_info() -> Response:
        hub.drain()
        return J(peer.peer_model_tree(mirror.model_tree()))

    @r.get("/get_checkpoints/")
    def get_checkpoints() -> Response:
        try:
            nodes = read_checkpoint_tree(ctx.static.run_dir)
        except OSError as e:
            return error(500, str(e))
        return J([codec.checkpoint(n) for n in nodes])

    @r.get("/get_logs/")
    async def get_logs() -> Response:
        hub.drain()
        return J(pstate.logs_json())

    @r.get("/get_dataset_info/")
    async def get_dataset_info() -> Response:
        hub.drain()
        return J(peer.dataset_info(mirror))

    @r.post("/command/", openapi_extra=_body_doc(PeerCommandBody))
    async def post_command(request: Request) -> Response:
        try:
            command, args, uid, text = peer.parse_request(await _json_body(request))
            source = _source(request, None, "peer")
        except WireError as e:
            return error(422, str(e))
        pstate.remember_args(uid, text)
        sub = await _submit(ctx, command, args, source, uid)
        if sub.refused is not None:
            return J({"status": "error", "message": sub.refused, "uuid": sub.uuid})
        return J({"status": "success", "uuid": sub.uuid})

    return r


def add_root_routes(app: FastAPI, ctx: ServerContext) -> None:
    @app.websocket("/ws/message/")
    async def peer_events(ws: WebSocket) -> None:
        await ws.accept()
        client = ClientQueue(
            ctx.peer_codec,
            asyncio.get_running_loop(),
            max_messages=ctx.options.client_queue,
            step_rate=ctx.options.step_rate,
        )
        ctx.hub.add_client("peer", client)
        await pump(ws, ctx.hub, "peer", client)

    dash = ctx.options.dashboard_dir
    if dash is not None:
        from starlette.staticfiles import StaticFiles

        if (dash / "assets").is_dir():
            app.mount("/assets", StaticFiles(directory=dash / "assets"), name="assets")

        @app.get("/{path:path}", include_in_schema=False)
        async def dashboard(path: str) -> Response:
            if path.startswith(("api/", "ws/")):
                return error(404, f"no endpoint /{path}; see {API}/docs")
            return FileResponse(dash / "index.html")

        return

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        name = html.escape(ctx.static.run_name)
        return HTMLResponse(
            f"<!doctype html><title>hill-app: {name}</title><h1>hill-app control server</h1>"
            f"<p>Run <b>{name}</b>. API reference: <a href='{API}/docs'>{API}/docs</a> "
            f"(OpenAPI: <a href='{API}/openapi.json'>{API}/openapi.json</a>).</p>"
        )
