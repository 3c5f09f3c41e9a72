"""The control server: ``serve_session(session, "127.0.0.1:7007")`` serves a TrainingSession over HTTP +
WebSocket from a daemon thread of the same process. API reference and security model: docs/control-server.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CONTROL_FILE", "ServeError", "ServerHandle", "parse_address", "serve_session"]

CONTROL_FILE = "control.json"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7007


class ServeError(RuntimeError):
    """The server cannot start (bad address, port taken); the message says what to change."""


def parse_address(address: str | int | tuple[str, int] | None) -> tuple[str, int]:
    """'7007', ':7007', 'HOST:PORT', '[::1]:7007', 'HOST' or None -> (host, port). Port 0: any free port."""
    if address is None or address == "":
        return DEFAULT_HOST, DEFAULT_PORT
    if isinstance(address, tuple):
        host, port = address
    elif isinstance(address, int):
        host, port = DEFAULT_HOST, address
    else:
        text = address.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest.lstrip(":") or str(DEFAULT_PORT)
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        elif text.isdigit():
            host, port_text = "", text
        elif text.count(":") > 1:
            raise ServeError(f"{address!r}: write an IPv6 address in brackets, e.g. [::1]:7007")
        else:
            host, port_text = text, str(DEFAULT_PORT)
        try:
            port = int(port_text)
        except ValueError:
            raise ServeError(
                f"{address!r}: port {port_text!r} is not a number (expected HOST:PORT, e.g. 127.0.0.1:7007)"
            ) from None
        host = host or DEFAULT_HOST
    if not 0 <= int(port) <= 65535:
        raise ServeError(f"{address!r}: port {port} outside 0..65535")
    return str(host), int(port)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServeError(f"cannot resolve host {host!r}: {e}") from None
    if _is_loopback(host):  # 'localhost' may resolve to a non-loopback address on odd systems: never serve on that
        infos = [i for i in infos if ipaddress.ip_address(i[4][0]).is_loopback]
    last: OSError | None = None
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.setblocking(False)
            return sock
        except OSError as e:
            sock.close()
            last = e
    hint = (
        " (another job serving there? use --serve 127.0.0.1:0 for any free port)"
        if last and getattr(last, "errno", None) == 98
        else ""
    )
    raise ServeError(f"cannot listen on {host}:{port}: {last.strerror if last else 'no address'}{hint}")


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write_control_file(path: Path, data: dict[str, Any]) -> None:
    """Written once listening: mode 0600 from the first byte, then renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(data, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass
class ServerHandle:
    url: str
    token: str
    host: str
    port: int
    control_path: Path
    _server: Any
    _thread: threading.Thread
    _hub: Any
    guard: Any = None  # the gate's config (its refusal counts)
    context: Any = None  # the server's context (mirror, hub), for tests and benchmarks

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving; the run goes on. Removes control.json so nothing points at a closed server."""
        self._hub.close()
        self._server.should_exit = True
        self._thread.join(timeout)
        with contextlib.suppress(FileNotFoundError):
            if json.loads(self.control_path.read_text()).get("token") == self.token:
                self.control_path.unlink()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_session(
    session: Any,
    address: str | int | tuple[str, int] | None = None,
    *,
    open_events: bool = False,
    dashboard_dir: str | Path | None = None,
    step_rate: float = 20.0,
    client_queue: int = 2000,
) -> ServerHandle:
    """Serve ``session`` (call before ``session.run()``, from the thread that will run it or any other).

    Loopback only unless ``address`` names another host. Every request needs the token written to
    RUN_DIR/control.json; ``open_events`` lets loopback clients read the event streams without it.
    Prints nothing. Raises ServeError with the reason when it cannot listen.
    """
    import uvicorn

    from . import peer
    from .app import NATIVE, ServeOptions, ServerContext, build_app
    from .auth import Guard, GuardConfig
    from .fanout import Hub
    from .state import JournalPager, RunMirror, capture

    host, port = parse_address(address)
    dash = Path(dashboard_dir) if dashboard_dir is not None else None
    if dash is not None and not (dash / "index.html").is_file():
        raise ServeError(
            f"dashboard folder {dash}: no index.html there (expected a built dashboard, e.g. interactive_training/dist)"
        )
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    token = secrets.token_urlsafe(32)
    url = _url(host, port)

    static = capture(session)
    mirror = RunMirror(static)
    pstate = peer.PeerState(mirror)
    codec = peer.PeerCodec(mirror, pstate, lambda: peer.peer_model_tree(mirror.model_tree()))
    hub = Hub([mirror, pstate], {"native": NATIVE, "peer": codec}, step_rate=step_rate)
    ws_base = url.replace("http://", "ws://", 1)
    urls = {
        "url": url,
        "api": f"{url}/api/v1",
        "events": f"{ws_base}/api/v1/events",
        "peer_events": f"{ws_base}/ws/message/",
        "openapi": f"{url}/api/v1/openapi.json",
        "docs": f"{url}/api/v1/docs",
    }
    ctx = ServerContext(
        session=session,
        static=static,
        mirror=mirror,
        peer_state=pstate,
        peer_codec=codec,
        hub=hub,
        journal=JournalPager(static.run_dir / "journal.jsonl"),
        options=ServeOptions(
            open_events=open_events, step_rate=step_rate, client_queue=client_queue, dashboard_dir=dash
        ),
        urls=urls,
    )
    extra = frozenset() if _is_loopback(host) else frozenset({host.lower()})
    guard = GuardConfig(
        token=token,
        cookie_name=f"hill_token_{port}",
        extra_hosts=extra,
        open_event_paths=frozenset({"/ws/message/", "/api/v1/events"}) if open_events else frozenset(),
    )
    app = Guard(build_app(ctx), guard)  # type: ignore[arg-type]  # FastAPI is an ASGI app
    session.events.subscribe(hub.listener)  # before the loop runs: events meanwhile wait in the hub's buffer

    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="asyncio",
        ws_max_size=1 << 20,
        ws_per_message_deflate=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        timeout_graceful_shutdown=2,
        limit_concurrency=200,
        proxy_headers=False,
        server_header=False,
    )
    server = _make_server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="hill-app-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30.0
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            hub.close()
            server.should_exit = True
            sock.close()
            raise ServeError(f"the control server did not start on {url} (see the messages above)")
        time.sleep(0.01)
    control = Path(session.run_dir) / CONTROL_FILE
    write_control_file(
        control,
        {
            "url": url,
            "token": token,
            "pid": os.getpid(),
            "host": host,
            "port": port,
            "run_dir": str(Path(session.run_dir).resolve()),
            **urls,
            "open_events": open_events,
            "started": time.time(),
            "api_version": 1,
        },
    )
    return ServerHandle(
        url=url,
        token=token,
        host=host,
        port=port,
        control_path=control,
        _server=server,
        _thread=thread,
        _hub=hub,
        guard=guard,
        context=ctx,
    )


def _make_server(config: Any) -> Any:
    """uvicorn.Server without signal handling: the process's signals belong to the training job."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)
