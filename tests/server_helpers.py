"""A real served digits run for the control-server tests: a TrainingSession, serve_session on a free loopback
port, and the training loop in a thread (started when the test says so)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hill_app.engine.config import RunConfig
from hill_app.engine.journal import read_journal
from hill_app.engine.session import TrainingSession
from hill_app.server import serve_session


class ServedRun:
    def __init__(
        self,
        run_dir: Path,
        *,
        epochs: int = 3,
        pause_at: tuple[int, ...] = (),
        lr: float | None = None,
        **serve_kw: Any,
    ) -> None:
        cfg = RunConfig(dataset="digits", epochs=epochs, pause_at=list(pause_at), device="cpu", seed=0, lr=lr)
        self.run_dir = run_dir
        self.session = TrainingSession(cfg, run_dir)
        self.handle = serve_session(self.session, "127.0.0.1:0", **serve_kw)
        self.url, self.token = self.handle.url, self.handle.token
        self.thread: threading.Thread | None = None
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    def start(self) -> None:
        def target() -> None:
            try:
                self.summary = self.session.run()
            except BaseException as e:  # noqa: BLE001 - reported by join()
                self.error = e

        self.thread = threading.Thread(target=target, name="training", daemon=True)
        self.thread.start()

    def join(self, timeout: float = 120.0) -> dict[str, Any]:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish"
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary

    def journal(self) -> list[dict[str, Any]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return list(read_journal(self.run_dir / "journal.jsonl"))

    def commands(self, name: str | None = None) -> list[dict[str, Any]]:
        """Command records; those journaled without their arguments (the engine writes them once, on
        'requested') get the arguments of the latest earlier record with the same uuid."""
        out, last_args = [], {}
        for r in self.journal():
            if r["type"] != "command":
                continue
            if "args" in r:
                last_args[r["uuid"]] = r["args"]
            else:
                r = dict(r, args=last_args.get(r["uuid"]))
            if name is None or r["command"] == name:
                out.append(r)
        return out

    def close(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            self.session.submit("stop_training", {}, source="script")
            self.thread.join(60)
        self.handle.close()


@contextlib.contextmanager
def served(run_dir: Path, **kw: Any) -> Iterator[ServedRun]:
    run = ServedRun(run_dir, **kw)
    try:
        yield run
    finally:
        run.close()


def wait_until(pred: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something truthy (the test fails, naming ``what``, after ``timeout``;
    this bounds a hang, it is not a speed requirement)."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def strict_json(text: str | bytes) -> Any:
    """Parse JSON refusing NaN and Infinity, as a browser's JSON.parse does."""

    def bad(name: str) -> Any:
        raise AssertionError(f"non-finite {name} in a message")

    return json.loads(text, parse_constant=bad)


class StandInLLM:
    """A loopback OpenAI-compatible chat endpoint (POST /v1/chat/completions) that answers every request with
    ``reply(request_json) -> str`` as the assistant's message, and records the requests."""

    def __init__(self, reply: Any) -> None:
        import http.server

        outer = self
        self.requests: list[dict[str, Any]] = []
        self.reply = reply

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                content = outer.reply(body)
                data = json.dumps(
                    {
                        "id": "stand-in",
                        "object": "chat.completion",
                        "model": body.get("model"),
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
                        ],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
