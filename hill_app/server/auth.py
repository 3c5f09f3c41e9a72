"""The gate every request passes before any route: Host, Origin, token, content type and body size.

A pure ASGI middleware, so HTTP requests and WebSocket handshakes go through the same checks (the
reasons are in docs/control-server.md, "Security model"). It adds no CORS headers, ever.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 4 << 20  # 4 MiB: an edit list moving every one of 3,000 points is ~150 KiB
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def is_loopback_name(name: str) -> bool:
    """'localhost', 127.0.0.0/8 or ::1. Any other name could be rebound by DNS to this machine."""
    name = name.lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name part of a Host header: 'localhost:7007' -> 'localhost', '[::1]:7007' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


@dataclass(frozen=True)
class GuardConfig:
    token: str
    cookie_name: str
    extra_hosts: frozenset[str] = frozenset()  # non-loopback names the user asked to serve on
    open_event_paths: frozenset[str] = frozenset()  # read-only WebSocket paths open to loopback clients
    max_body: int = MAX_BODY
    refusals: dict[int, int] = field(default_factory=dict, compare=False)  # status -> count (for tests/state)


class Guard:
    def __init__(self, app: ASGIApp, config: GuardConfig) -> None:
        self.app = app
        self.cfg = config
        self._token = config.token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[str, list[str]] = {}
        for k, v in scope.get("headers", []):
            headers.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
        refusal = self._check(scope, headers)
        if refusal is None and kind == "http":
            cookie_answer = self._token_in_query(scope, headers)
            if cookie_answer is not None:
                await _respond(send, *cookie_answer)
                return
        if refusal is not None:
            self.cfg.refusals[refusal[0]] = self.cfg.refusals.get(refusal[0], 0) + 1
            if kind == "http":
                await _respond(send, *refusal)
            else:
                await _refuse_websocket(scope, receive, send, *refusal)
            return
        if kind == "http" and scope["method"] in BODY_METHODS:
            buffered = await self._read_body(scope, headers, receive, send)
            if buffered is None:
                return
            receive = buffered
        await self.app(scope, receive, send)

    # ------------------------------------------------------------------ checks

    def _check(self, scope: Scope, headers: dict[str, list[str]]) -> tuple[int, str, list[tuple[str, str]]] | None:
        hosts = headers.get("host", [])
        if len(hosts) != 1:
            return 403, "exactly one Host header is required", []
        name = host_name(hosts[0])
        if not (is_loopback_name(name) or name in self.cfg.extra_hosts):
            return (
                403,
                (
                    f"Host {hosts[0]!r} is not a loopback name (localhost, 127.0.0.1, ::1): refused to "
                    "block DNS rebinding; connect to 127.0.0.1 or serve on that host explicitly"
                ),
                [],
            )
        origin = headers.get("origin")
        if origin is not None:
            own = f"http://{hosts[0].strip().lower()}"
            if len(origin) != 1 or origin[0].strip().lower() != own:
                return (
                    403,
                    (
                        f"Origin {origin[0] if origin else ''!r} is not this server's own "
                        f"(http://{hosts[0]}): browsers on other sites may not use this API"
                    ),
                    [],
                )
        site = headers.get("sec-fetch-site")
        if site is not None and site[0].strip().lower() not in ("same-origin", "none"):
            return 403, f"cross-site request refused (Sec-Fetch-Site: {site[0]})", []
        if self._open_path(scope):
            return None
        if (
            scope["type"] == "http"
            and scope["path"] == "/"
            and scope["method"] in ("GET", "HEAD")
            and "token" in parse_qs(scope.get("query_string", b"").decode("latin-1"))
        ):
            return None  # the token in the query is checked by _token_in_query
        if not self._has_token(headers):
            return (
                401,
                (
                    "missing or wrong token: send 'Authorization: Bearer TOKEN' (TOKEN is in RUN_DIR/"
                    "control.json), Basic auth with the token as password (~/.netrc), or open /?token=TOKEN "
                    "once in a browser"
                ),
                [("www-authenticate", 'Bearer realm="hill-app"')],
            )
        if scope["type"] == "http" and scope["method"] in BODY_METHODS:
            ctype = (headers.get("content-type") or [""])[0].split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                return 415, f"request bodies must be JSON (Content-Type: application/json), got {ctype or 'none'!r}", []
            lengths = headers.get("content-length")
            if lengths:
                length = lengths[0]
                try:
                    n = int(length)
                except ValueError:
                    return 400, f"Content-Length {length!r} is not a number", []
                if n > self.cfg.max_body:
                    return 413, f"request body of {n} bytes exceeds the limit of {self.cfg.max_body} bytes", []
        return None

    def _open_path(self, scope: Scope) -> bool:
        """The opt-in tokenless event stream: read-only WebSocket paths, loopback clients only."""
        if scope["type"] != "websocket" or scope["path"] not in self.cfg.open_event_paths:
            return False
        client = scope.get("client")
        return client is not None and is_loopback_name(str(client[0]))

    def _has_token(self, headers: dict[str, list[str]]) -> bool:
        for value in headers.get("authorization", []):
            scheme, _, cred = value.strip().partition(" ")
            cred = cred.strip()
            if scheme.lower() == "bearer" and self._equal(cred):
                return True
            if scheme.lower() == "basic":
                try:
                    _, _, password = base64.b64decode(cred, validate=True).decode("utf-8").partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    continue
                if self._equal(password):
                    return True
        for value in headers.get("cookie", []):
            for part in value.split(";"):
                k, _, v = part.strip().partition("=")
                if k == self.cfg.cookie_name and self._equal(v.strip().strip('"')):
                    return True
        return False

    def _equal(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode("utf-8", "replace"), self._token)

    def _token_in_query(
        self, scope: Scope, headers: dict[str, list[str]]
    ) -> tuple[int, str, list[tuple[str, str]]] | None:
        """GET /?token=T: a right token sets the cookie and redirects to / (so the token leaves the address bar)."""
        if scope["path"] != "/" or scope["method"] not in ("GET", "HEAD"):
            return None
        q = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" not in q:
            return None
        if not self._equal(q["token"][0]):
            self.cfg.refusals[401] = self.cfg.refusals.get(401, 0) + 1
            return 401, "wrong token in /?token=...: copy it from RUN_DIR/control.json", []
        cookie = f"{self.cfg.cookie_name}={self.cfg.token}; HttpOnly; SameSite=Strict; Path=/"
        return 303, "token accepted; cookie set", [("location", "/"), ("set-cookie", cookie)]

    async def _read_body(
        self, scope: Scope, headers: dict[str, list[str]], receive: Receive, send: Send
    ) -> Receive | None:
        """Read the whole body (bounded), then hand the app a receive that replays it."""
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            body = msg.get("body", b"")
            size += len(body)
            if size > self.cfg.max_body:
                self.cfg.refusals[413] = self.cfg.refusals.get(413, 0) + 1
                await _respond(send, 413, f"request body exceeds the limit of {self.cfg.max_body} bytes", [])
                return None
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        data = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        return replay


async def _respond(send: Send, status: int, detail: str, extra: list[tuple[str, str]]) -> None:
    body = json.dumps({"detail": detail}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def _refuse_websocket(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, extra: list[tuple[str, str]]
) -> None:
    """Refuse a handshake with a real HTTP status where the server supports it, else close before accepting
    (which the client sees as HTTP 403)."""
    msg = await receive()
    if msg["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        body = json.dumps({"detail": detail}).encode()
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        hdrs += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]
        await send({"type": "websocket.http.response.start", "status": status, "headers": hdrs})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
