"""RemoteRunClient: the RunClient interface over a served job's HTTP + WebSocket API (``hill-app train --serve``).

Requests go through httpx; events arrive on a background thread (websockets' sync client) into a bounded
buffer that :meth:`RemoteRunClient.poll_events` drains, so a window polls a remote run exactly as it polls
a local one. A dropped connection is retried; the run goes on (or stays paused) meanwhile.
"""

from __future__ import annotations

import collections
import json
import netrc
import os
import threading
import time
import uuid as _uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from hill_app.server.wire import decode_array, decode_arrays

LOSSY_KINDS = frozenset({"step", "snapshot", "progress"})
TERMINAL = frozenset({"success", "failed"})


class RemoteError(RuntimeError):
    """The server cannot be reached or refused a request; the message says why and what to do."""


def resolve_target(target: str | Path, token: str | None = None) -> tuple[str, str]:
    """A URL or a run folder (or its control.json) -> (base URL, token).

    For a URL the token comes from ``token``, else $HILL_APP_TOKEN, else ~/.netrc (the password for the host).
    """
    text = str(target)
    if text.startswith(("http://", "https://")):
        url = text.rstrip("/")
        tok = token or os.environ.get("HILL_APP_TOKEN") or _netrc_token(urlsplit(url).hostname or "")
        if not tok:
            raise RemoteError(
                f"{url}: no token: pass token=..., set HILL_APP_TOKEN, add the host to ~/.netrc, or "
                "attach by run folder (its control.json holds the token)"
            )
        return url, tok
    path = Path(text)
    control = path if path.name == "control.json" else path / "control.json"
    try:
        data = json.loads(control.read_text())
    except FileNotFoundError:
        raise RemoteError(f"{control}: not found; is the run served? (hill-app train ... --serve)") from None
    except (OSError, ValueError) as e:
        raise RemoteError(f"{control}: unreadable ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not isinstance(data.get("token"), str):
        raise RemoteError(f"{control}: expected an object with 'url' and 'token'")
    return data["url"].rstrip("/"), token or data["token"]


def _netrc_token(host: str) -> str | None:
    try:
        auth = netrc.netrc().authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return None
    return auth[2] if auth else None


class RemoteRunClient:
    """One attached client. ``source`` is recorded with every command it sends ("window", "agent:NAME", "script")."""

    def __init__(
        self,
        target: str | Path,
        *,
        token: str | None = None,
        source: str = "window",
        events: bool = True,
        timeout: float = 10.0,
        max_events: int = 10_000,
    ) -> None:
        self.url, self.token = resolve_target(target, token)
        self.source = source
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            trust_env=False,
            headers={"Authorization": f"Bearer {self.token}", "X-Hill-Source": source},
        )
        self._buf: collections.deque[tuple[str, dict[str, Any], float, float]] = collections.deque()
        self._max_events = max_events
        self._lock = threading.Lock()
        self.dropped = 0  # events lost here or on the server because this client fell behind
        self.last_refusal: str | None = None
        self._labels: np.ndarray | None = None
        self._view_idx: np.ndarray | None = None
        self._closing = threading.Event()
        self.connected = threading.Event()
        self._ws: Any = None
        self._gave_up: str | None = None
        self._info = self._get("/api/v1/info")
        self._thread: threading.Thread | None = None
        if events:
            self._thread = threading.Thread(target=self._ws_loop, name="hill-app-remote-events", daemon=True)
            self._thread.start()
            end = time.monotonic() + timeout
            while not self.connected.wait(0.01):
                if self._gave_up or time.monotonic() > end:
                    self.close()
                    why = self._gave_up or f"the event stream did not open within {timeout:.0f} s"
                    raise RemoteError(f"{self.url}: {why}")

    # ------------------------------------------------------------------ RunClient

    def submit(self, command: str, args: Mapping[str, Any] | None = None, *, uuid: str | None = None) -> str:
        uid = uuid or _uuid.uuid4().hex
        body = {
            "command": command,
            "args": dict(args) if args is not None else None,
            "uuid": uid,
            "source": self.source,
        }
        r = self._request("POST", "/api/v1/commands", json=body)
        if r.status_code == 202:
            return uid
        detail = _detail(r)
        if r.status_code == 422 and _json(r).get("status") == "failed":
            self.last_refusal = detail  # the failed status also arrives as an event
            return uid
        raise RemoteError(f"{command}: the server answered {r.status_code}: {detail}")

    def poll_events(self, max_events: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        return [(k, d) for k, d, _, _ in self.poll_timed(max_events)]

    def poll_timed(self, max_events: int | None = None) -> list[tuple[str, dict[str, Any], float, float]]:
        """Like poll_events, with (kind, data, time emitted on the server, time received here)."""
        with self._lock:
            n = len(self._buf) if max_events is None else min(max_events, len(self._buf))
            return [self._buf.popleft() for _ in range(n)]

    def info(self) -> dict[str, Any]:
        self._info = self._get("/api/v1/info")
        return self._info

    def view_samples(self, indices: Sequence[int]) -> np.ndarray:
        idx = [int(i) for i in indices]
        parts = []
        for i in range(0, len(idx), 4096):
            chunk = ",".join(map(str, idx[i : i + 4096]))
            parts.append(decode_array(self._get("/api/v1/view/samples", params={"indices": chunk})["inputs"]))
        if not parts:
            shape = self._info["dataset"]["input_shape"]
            return np.zeros((0, *shape), dtype=np.uint8 if self._info["dataset"]["kind"] == "image" else np.float32)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def view_labels(self) -> np.ndarray:
        if self._labels is None:
            self._load_view()
        assert self._labels is not None
        return self._labels

    def view_indices(self) -> np.ndarray:
        """The training-sample index of each view point, in view order."""
        if self._view_idx is None:
            self._load_view()
        assert self._view_idx is not None
        return self._view_idx

    def _load_view(self) -> None:
        d = self._get("/api/v1/view/labels")
        self._labels, self._view_idx = decode_array(d["labels"]), decode_array(d["view_indices"])

    def latest_snapshot(self) -> dict[str, Any] | None:
        r = self._request("GET", "/api/v1/snapshot/latest")
        if r.status_code == 404:
            return None
        return decode_arrays(self._checked(r))

    def checkpoints(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/checkpoints")["nodes"])

    def journal(self, offset: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/journal", params={"offset": offset, "limit": limit})["records"])

    def close(self) -> None:
        self._closing.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 - closing a dead socket
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._http.close()

    # ------------------------------------------------------------------ beyond the protocol

    def state(self) -> dict[str, Any]:
        """Where the run stands now: status, epoch, step, branch, optimiser, alpha, lam, ..."""
        return self._get("/api/v1/state")

    def metrics(self, kind: str = "epoch", offset: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Step, epoch or evaluation metrics so far (to fill charts when attaching to a running job)."""
        return list(self._get("/api/v1/metrics", params={"kind": kind, "offset": offset, "limit": limit})["rows"])

    def commands(self) -> list[dict[str, Any]]:
        """The command declaration: name, applies, doc, args_schema."""
        return list(self._get("/api/v1/commands")["commands"])

    def command_status(self, uuid: str) -> dict[str, Any] | None:
        r = self._request("GET", f"/api/v1/commands/{uuid}")
        return None if r.status_code == 404 else self._checked(r)

    def wait(self, uuid: str, timeout: float = 60.0, interval: float = 0.02) -> dict[str, Any]:
        """Block until the command has succeeded or failed (without consuming events); its latest record."""
        end = time.monotonic() + timeout
        while True:
            rec = self.command_status(uuid)
            if rec is not None and rec.get("status") in TERMINAL:
                return rec
            if time.monotonic() > end:
                raise RemoteError(
                    f"command {uuid}: no result within {timeout:.0f} s (last status: "
                    f"{rec.get('status') if rec else 'unknown'})"
                )
            time.sleep(interval)

    # ------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise RemoteError(
                f"cannot reach {self.url}{path}: {e} (is the job still serving? its control.json names the address)"
            ) from None

    def _checked(self, r: httpx.Response) -> Any:
        if r.status_code == 401:
            raise RemoteError(f"{self.url}: the token was refused (401); use the one in RUN_DIR/control.json")
        if r.status_code >= 400:
            raise RemoteError(f"{r.request.method} {r.request.url.path}: {r.status_code} {_detail(r)}")
        return r.json()

    def _get(self, path: str, **kw: Any) -> Any:
        return self._checked(self._request("GET", path, **kw))

    def _push(self, kind: str, data: dict[str, Any], sent: float) -> None:
        with self._lock:
            if len(self._buf) >= self._max_events:
                for i, item in enumerate(self._buf):
                    if item[0] in LOSSY_KINDS:
                        del self._buf[i]
                        break
                else:
                    self._buf.popleft()
                self.dropped += 1
            self._buf.append((kind, data, sent, time.time()))

    def _ws_loop(self) -> None:
        from websockets.exceptions import InvalidStatus, WebSocketException
        from websockets.sync.client import connect

        ws_url = self.url.replace("http", "ws", 1) + "/api/v1/events"
        delay = 0.2
        while not self._closing.is_set():
            reason = "closed by the server"
            try:
                with connect(
                    ws_url,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    open_timeout=self.timeout,
                    max_size=None,
                    ping_interval=20,
                    ping_timeout=20,
                    compression=None,
                ) as ws:
                    self._ws = ws
                    delay = 0.2
                    for raw in ws:
                        self._on_message(json.loads(raw))
            except InvalidStatus as e:
                code = e.response.status_code
                self._push(
                    "connection",
                    {
                        "connected": False,
                        "url": self.url,
                        "message": f"the event stream was refused ({code}); check the token",
                    },
                    time.time(),
                )
                if code in (401, 403):
                    self._gave_up = f"the event stream was refused ({code}): {e}"
                    return
                reason = f"refused ({code})"
            except (OSError, WebSocketException, ValueError) as e:
                reason = f"{type(e).__name__}: {e}"
            self._ws = None
            was = self.connected.is_set()
            self.connected.clear()
            if self._closing.is_set():
                return
            if was:
                self._push("connection", {"connected": False, "url": self.url, "message": reason}, time.time())
            self._closing.wait(delay)
            delay = min(delay * 2, 5.0)

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind, data, sent = msg.get("kind"), msg.get("data") or {}, float(msg.get("time") or time.time())
        if kind == "hello":
            self._push("connection", {"connected": True, "url": self.url, "state": data.get("state")}, sent)
            self.connected.set()
        elif kind == "dropped":
            with self._lock:
                self.dropped += int(data.get("count", 0))
            self._push("dropped", data, sent)
        elif isinstance(kind, str):
            self._push(kind, decode_arrays(data) if kind == "snapshot" else data, sent)


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        v = r.json()
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def _detail(r: httpx.Response) -> str:
    d = _json(r)
    return str(d.get("detail") or d.get("reason") or r.text[:300])
