"""The control server's gate, against a real server on a loopback port: every refusal (401, 403, 413, 415,
422), the token carriers (Bearer, Basic / ~/.netrc, the cookie from /?token=), no CORS, finite JSON out."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat

import httpx
import pytest
from server_helpers import ServedRun, served, strict_json, wait_until
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from hill_app.server import parse_address
from hill_app.server.auth import host_name, is_loopback_name
from hill_app.server.wire import WireError, dumps, loads_strict


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A served digits session that is not training: the gate does not depend on it."""
    r = ServedRun(tmp_path_factory.mktemp("gate") / "run")
    yield r
    r.close()


def plain(run, **kw):
    return httpx.Client(base_url=run.url, trust_env=False, **kw)


def test_control_file_is_private_and_names_a_loopback_url(run):
    path = run.run_dir / "control.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["token"] == run.token and data["url"] == run.url
    assert data["url"].startswith("http://127.0.0.1:")
    assert parse_address(None) == ("127.0.0.1", 7007)
    assert parse_address("7010") == ("127.0.0.1", 7010)
    assert parse_address("[::1]:7011") == ("::1", 7011)


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/api/v1/state"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/get_info/"),
        ("GET", "/api/v1/journal"),
        ("POST", "/api/v1/commands"),
        ("POST", "/api/command/"),
        ("GET", "/"),
    ],
)
def test_no_token_is_401(run, method, path):
    with plain(run) as c:
        body = {"command": "stop_training", "args": "", "time": 0, "uuid": "x", "status": "requested"}
        r = c.request(method, path, json=body if method == "POST" else None)
    assert r.status_code == 401
    assert "control.json" in r.json()["detail"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert not any(c["command"] == "stop_training" for c in run.commands())


def test_bearer_and_basic_carry_the_token(run):
    with plain(run) as c:
        assert c.get("/api/v1/state", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/v1/state", headers=run.auth).status_code == 200
        good = base64.b64encode(f"anyone:{run.token}".encode()).decode()
        bad = base64.b64encode(b"anyone:nope").decode()
        assert c.get("/api/v1/state", headers={"Authorization": f"Basic {good}"}).status_code == 200
        assert c.get("/api/v1/state", headers={"Authorization": f"Basic {bad}"}).status_code == 401


def test_netrc_carries_the_token(run, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1\n  login hill\n  password {run.token}\n")
    netrc.chmod(0o600)
    with plain(run, auth=httpx.NetRCAuth(str(netrc))) as c:
        assert c.get("/api/get_info/").status_code == 200


def test_cookie_from_token_query(run):
    with plain(run) as c:
        assert c.get("/", params={"token": "wrong"}).status_code == 401
        r = c.get("/", params={"token": run.token}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        name, value = cookie.split(";", 1)[0].split("=", 1)
    with plain(run, cookies={name: value}) as c:  # a fresh client holding only the cookie
        assert c.get("/api/get_info/").status_code == 200
        assert c.get("/").status_code == 200
    with plain(run, cookies={name: "forged"}) as c:
        assert c.get("/api/get_info/").status_code == 401


@pytest.mark.parametrize(
    "host,code",
    [("evil.example", 403), ("127.0.0.1.nip.io", 403), ("localhost", 200), ("[::1]", 200), ("127.0.0.1", 200)],
)
def test_host_header_must_be_loopback(run, host, code):
    port = run.handle.port
    with plain(run) as c:
        r = c.get("/api/v1/state", headers={**run.auth, "Host": f"{host}:{port}"})
    assert r.status_code == code, r.text
    if code == 403:
        assert "loopback" in r.json()["detail"]


@pytest.mark.parametrize(
    "origin,code", [("http://evil.example", 403), ("null", 403), ("http://localhost:1", 403), ("own", 202)]
)
def test_foreign_origin_refused(run, origin, code):
    hdr = {**run.auth, "Origin": run.url if origin == "own" else origin}
    with plain(run) as c:
        r = c.post("/api/v1/commands", headers=hdr, json={"command": "set_alpha", "args": {"alpha": 0.5}})
    assert r.status_code == code, r.text


def test_cross_site_fetch_refused(run):
    with plain(run) as c:
        r = c.get("/api/v1/state", headers={**run.auth, "Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403
        assert c.get("/api/v1/state", headers={**run.auth, "Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_no_cors_headers_anywhere(run):
    with plain(run) as c:
        pre = c.options(
            "/api/v1/commands", headers={"Origin": run.url, "Access-Control-Request-Method": "POST", **run.auth}
        )
        ok = c.get("/api/v1/state", headers={**run.auth, "Origin": run.url})
        refused = c.get("/api/v1/state", headers={"Origin": "http://evil.example"})
    for r in (pre, ok, refused):
        assert not [h for h in r.headers if h.lower().startswith("access-control-")]
    assert pre.status_code >= 400


def test_body_limits_and_types(run):
    with plain(run, headers=run.auth) as c:
        big = json.dumps({"command": "set_latent_targets", "args": {"edits": [{"op": "x", "pad": "y" * 5_000_000}]}})
        r = c.post("/api/v1/commands", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        r = c.post("/api/v1/commands", content=b'{"command":"stop_training"}', headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        # chunked, no Content-Length: counted while reading
        r = c.post(
            "/api/v1/commands",
            content=iter([b'{"command": "' + b"x" * (5 << 20) + b'"}']),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413
    assert not any(cmd["command"] == "stop_training" for cmd in run.commands())


@pytest.mark.parametrize(
    "raw",
    [
        b'{"command": "set_alpha", "args": {"alpha": NaN}}',
        b'{"command": "set_alpha", "args": {"alpha": Infinity}}',
        b'{"command": "set_alpha", "args": {"alpha": -Infinity}}',
        b'{"command": "set_alpha", "args": {"alpha": 1e999}}',
        b'{"command": "set_alpha", "args": ',
        b'[' * 100_000 + b']' * 100_000,
        b'{"command": "set_alpha", "args": [0.5]}',
        b'{"command": "set_alpha", "args": {"alpha": 0.5}, "extra": 1}',
        b'{"command": "set_alpha", "args": {"alpha": 0.5}, "source": "replay"}',
        b'{"command": "set_alpha", "args": {"alpha": 0.5}, "source": "agent:no spaces"}',
        b'{"command": "set_alpha", "args": {"alpha": 0.5}, "uuid": "a/b"}',
    ],
)
def test_malformed_native_bodies_are_422(run, raw):
    before = len(run.commands())
    with plain(run, headers={**run.auth, "Content-Type": "application/json"}) as c:
        r = c.post("/api/v1/commands", content=raw)
    assert r.status_code == 422, r.text
    assert strict_json(r.content)["detail"]
    assert len(run.commands()) == before  # never reached the session


@pytest.mark.parametrize(
    "body",
    [
        {"command": "pause_training", "args": "", "time": 1.0, "status": "requested"},
        {"command": "pause_training", "args": "", "uuid": "u1", "status": "requested"},
        {"args": "", "time": 1.0, "uuid": "u1", "status": "requested"},
        {"command": "update_optimizer", "args": "{lr: 0.1}", "time": 1.0, "uuid": "u1", "status": "requested"},
        {
            "command": "update_optimizer",
            "args": '{"lr": {"value": NaN, "name": "lr"}}',
            "time": 1.0,
            "uuid": "u1",
            "status": "requested",
        },
        {"command": "update_optimizer", "args": "[1, 2]", "time": 1.0, "uuid": "u1", "status": "requested"},
    ],
)
def test_malformed_peer_bodies_are_422(run, body):
    before = len(run.commands())
    with plain(run, headers=run.auth) as c:
        r = c.post("/api/command/", json=body)
    assert r.status_code == 422, r.text
    assert len(run.commands()) == before


def test_websocket_handshake_checks(run):
    for path in ("/api/v1/events", "/ws/message/"):
        with pytest.raises(InvalidStatus) as e:
            connect(run.ws_url + path).close()
        assert e.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as e:
            connect(run.ws_url + path, additional_headers={**run.auth, "Origin": "http://evil.example"}).close()
        assert e.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as e:  # DNS rebinding: the attacker's name, resolved to this machine
            sock = socket.create_connection(("127.0.0.1", run.handle.port))
            connect(f"ws://evil.example:{run.handle.port}{path}", sock=sock, additional_headers=run.auth).close()
        assert e.value.response.status_code == 403
    with connect(run.ws_url + "/api/v1/events", additional_headers=run.auth, origin=run.url) as ws:
        hello = strict_json(ws.recv(timeout=30))
        assert hello["kind"] == "hello" and hello["data"]["state"]["status"] == "init"
        ws.ping().wait(30)  # pings are answered (the peer's agent reconnects when a pong is late)


def test_open_events_is_read_only_and_off_by_default(tmp_path, run):
    with pytest.raises(InvalidStatus):
        connect(run.ws_url + "/ws/message/").close()  # default: no tokenless stream
    with served(tmp_path / "open", open_events=True) as r:
        with connect(r.ws_url + "/api/v1/events") as ws:
            assert strict_json(ws.recv(timeout=30))["kind"] == "hello"
        with connect(r.ws_url + "/ws/message/") as ws:
            ws.ping().wait(30)
        with plain(r) as c:
            assert c.get("/api/v1/state").status_code == 401
            body = {"command": "stop_training", "args": "", "time": 0, "uuid": "x", "status": "requested"}
            assert c.post("/api/command/", json=body).status_code == 401
        with pytest.raises(InvalidStatus) as e:  # the Origin check still holds without a token
            connect(r.ws_url + "/ws/message/", origin="http://evil.example").close()
        assert e.value.response.status_code == 403


def test_non_finite_numbers_go_out_as_null(tmp_path):
    """lr=100 makes the digits loss blow up: every message stays valid JSON (a browser's JSON.parse accepts it)."""
    with served(tmp_path / "nan", epochs=2, lr=99.0) as r:
        with connect(r.ws_url + "/api/v1/events", additional_headers=r.auth) as ws:
            r.start()
            seen = []
            while True:
                msg = strict_json(ws.recv(timeout=120))
                seen.append(msg)
                if msg["kind"] == "paused":
                    break
        steps = [m["data"] for m in seen if m["kind"] == "step"]
        assert any(s["loss"] is None or s["grad_norm"] is None for s in steps)  # was NaN or inf
        with plain(r, headers=r.auth) as c:
            rows = strict_json(c.get("/api/v1/metrics", params={"kind": "step"}).content)["rows"]
            assert any(row["loss"] is None or row["grad_norm"] is None for row in rows)
            strict_json(c.get("/api/v1/journal").content)
            strict_json(c.get("/api/get_logs/").content)
        wait_until(lambda: r.session.paused, what="the non-finite pause")


def test_wire_helpers():
    with pytest.raises(WireError):
        loads_strict(b'{"a": NaN}')
    with pytest.raises(WireError):
        loads_strict("1" * 5000)
    assert loads_strict(b'{"a": 1.5}') == {"a": 1.5}
    assert json.loads(dumps({"a": float("nan"), "b": [float("inf"), 1.0]})) == {"a": None, "b": [None, 1.0]}
    assert host_name("[::1]:7007") == "::1" and host_name("LOCALHOST:1") == "localhost"
    assert is_loopback_name("127.3.4.5") and not is_loopback_name("10.0.0.1") and not is_loopback_name("localhost.evil")
