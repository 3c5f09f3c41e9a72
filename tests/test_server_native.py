"""The native API through RemoteRunClient against a real served digits run: events, a pause, the latent
snapshot, committing edits, the checkpoint tree, the journal pages, several clients, detach and re-attach."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from server_helpers import served, strict_json, wait_until

from hill_app.client.protocol import RunClient
from hill_app.client.remote import RemoteError, RemoteRunClient
from hill_app.engine.commands import SPECS
from hill_app.server import ServeError, serve_session


def collect(client, until, seen=None, what="event"):
    """Poll ``client`` into ``seen`` until ``until(kind, data)`` holds for an event; return that event."""
    seen = [] if seen is None else seen
    found = [(k, d) for k, d in seen if until(k, d)][:1]

    def step():
        for k, d in client.poll_events():
            seen.append((k, d))
            if not found and until(k, d):
                found.append((k, d))
        return found

    return wait_until(step, timeout=120, what=what)[0]


def statuses(events, uid):
    return [d["status"] for k, d in events if k == "command" and d["uuid"] == uid]


def test_attach_pause_snapshot_commit_and_journal(tmp_path):
    with served(tmp_path / "run", epochs=3, pause_at=(2,)) as r:
        client = RemoteRunClient(r.run_dir, source="script")  # by run folder: control.json
        assert isinstance(client, RunClient)
        info = client.info()
        assert info["dataset"]["name"] == "digits" and info["dataset"]["view_size"] == len(r.session.view_idx)
        assert info["config"]["epochs"] == 3 and info["state"]["status"] == "init"
        assert {c["name"] for c in client.commands()} == set(SPECS)
        assert np.array_equal(client.view_labels(), r.session.view_labels)
        assert np.array_equal(client.view_indices(), r.session.view_idx)
        samples = client.view_samples([0, 5, 7])
        assert np.array_equal(samples, r.session.data.train_x[r.session.view_idx[[0, 5, 7]]].numpy())

        seen: list = []
        r.start()
        collect(client, lambda k, d: k == "paused", seen, "the scheduled pause")
        kinds = [k for k, _ in seen]
        assert kinds[0] == "connection" and {"step", "epoch", "snapshot", "checkpoint"} <= set(kinds)
        assert client.state()["status"] == "paused"

        snap = client.latest_snapshot()
        n = len(r.session.view_idx)
        assert snap["z"].dtype == np.float32 and snap["z"].shape == (n, 2)
        assert np.array_equal(snap["labels"], r.session.view_labels) and snap["preds"].shape == (n,)
        assert snap["epoch"] == 1 and snap["kind"] == "pause"
        ev_snap = [d for k, d in seen if k == "snapshot"][-1]
        assert np.array_equal(ev_snap["z"], snap["z"])  # the event carries the same arrays

        bad = client.submit("set_alpha", {"alpha": 2.0})
        edits = [{"op": "move_center", "class": 3, "to": [1.0, -0.5]}]
        uid = client.submit("set_latent_targets", {"edits": edits, "resume": True})
        collect(
            client,
            lambda k, d: k == "command" and d["uuid"] == uid and d["status"] in ("success", "failed"),
            seen,
            "the commit",
        )
        assert statuses(seen, uid) == ["requested", "pending", "running", "success"]
        assert statuses(seen, bad)[-1] == "failed" and "alpha" in client.last_refusal
        collect(client, lambda k, d: k == "finished", seen, "the end of the run")
        commit_snaps = [d for k, d in seen if k == "snapshot" and d["kind"] == "commit"]
        assert commit_snaps and commit_snaps[0]["layout"] is not None
        assert client.wait(uid)["status"] == "success"
        r.join()

        journal = r.journal()
        pages = []
        for off in range(0, len(journal), 7):
            pages += client.journal(off, 7)
        assert pages == json.loads(json.dumps(journal))
        mine = [c for c in r.commands("set_latent_targets") if c["uuid"] == uid]
        assert [c["status"] for c in mine] == ["requested", "pending", "running", "success"]
        assert all(c["source"] == "script" for c in mine)
        assert [c for c in r.commands("set_alpha") if c["uuid"] == bad][-1]["status"] == "failed"

        tree = json.loads((r.run_dir / "checkpoints" / "tree.json").read_text())["nodes"]
        assert client.checkpoints() == tree
        epochs = client.metrics("epoch")
        assert [e["epoch"] for e in epochs] == [1, 2, 3]
        assert client.metrics("step")[-1]["step"] == r.summary["steps"]
        assert client.state()["status"] == "finished"
        client.close()


def test_clients_see_the_same_statuses_in_the_same_order(tmp_path):
    with served(tmp_path / "run", epochs=30) as r:
        a = RemoteRunClient(r.url, token=r.token, source="window")
        b = RemoteRunClient(r.url, token=r.token, source="agent:order-test")
        r.start()
        uids = []
        for i in range(6):
            uids.append(a.submit("set_alpha", {"alpha": 0.5}))
            uids.append(b.submit("set_lambda", {"lam": 0.1}))
            uids.append(b.submit("set_grad_clip", {"max_norm": "x" if i == 3 else None}))
        seen_a: list = []
        seen_b: list = []
        for c, seen in ((a, seen_a), (b, seen_b)):
            for u in uids:
                collect(
                    c,
                    lambda k, d, u=u: k == "command" and d["uuid"] == u and d["status"] in ("success", "failed"),
                    seen,
                    f"command {u}",
                )
        order_a = [(d["uuid"], d["status"]) for k, d in seen_a if k == "command"]
        order_b = [(d["uuid"], d["status"]) for k, d in seen_b if k == "command"]
        assert order_a == order_b and len(order_a) >= 4 * len(uids) - 3
        sources = {d["uuid"]: d["source"] for k, d in seen_a if k == "command"}
        assert sources[uids[0]] == "window" and sources[uids[1]] == "agent:order-test"
        a.close()
        b.close()


def test_detach_leaves_the_run_paused_and_a_new_client_reattaches(tmp_path):
    with served(tmp_path / "run", epochs=3, pause_at=(2,)) as r:
        first = RemoteRunClient(r.run_dir, source="window")
        r.start()
        collect(first, lambda k, d: k == "paused", what="the pause")
        first.close()
        assert r.session.paused and r.thread.is_alive()
        again = RemoteRunClient(r.run_dir, source="window")
        hello = collect(again, lambda k, d: k == "connection")
        assert hello[1]["connected"] and hello[1]["state"]["status"] == "paused"
        assert again.latest_snapshot()["epoch"] == 1
        uid = again.submit("resume_training")
        assert again.wait(uid)["status"] == "success"
        collect(again, lambda k, d: k == "finished", what="the end")
        again.close()
        r.join()


def test_errors_a_user_can_act_on(tmp_path):
    with pytest.raises(RemoteError, match="control.json: not found"):
        RemoteRunClient(tmp_path / "nothing-here")
    with served(tmp_path / "run") as r:
        with pytest.raises(RemoteError, match="refused"):
            RemoteRunClient(r.url, token="wrong-token")
        port = r.handle.port
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}: .*free port"):
            serve_session(r.session, f"127.0.0.1:{port}")
        with pytest.raises(ServeError, match="not a number"):
            serve_session(r.session, "127.0.0.1:http")
    with pytest.raises(RemoteError, match="cannot reach"):
        RemoteRunClient(f"http://127.0.0.1:{port}", token="t")
    assert not (r.run_dir / "control.json").exists()  # closing removed it


def test_openapi_and_command_listing(tmp_path):
    with served(tmp_path / "run") as r, httpx.Client(base_url=r.url, headers=r.auth, trust_env=False) as c:
        doc = strict_json(c.get("/api/v1/openapi.json").content)
        paths = set(doc["paths"])
        assert {
            "/api/v1/commands",
            "/api/v1/state",
            "/api/v1/journal",
            "/api/v1/snapshot/latest",
            "/api/command/",
            "/api/get_info/",
        } <= paths
        post = doc["paths"]["/api/v1/commands"]["post"]
        assert "command" in post["requestBody"]["content"]["application/json"]["schema"]["properties"]
        assert c.get("/api/v1/docs").status_code == 200
        listing = strict_json(c.get("/api/v1/commands").content)["commands"]
        lr = next(x for x in listing if x["name"] == "update_optimizer")
        assert lr["args_schema"]["properties"]["lr"]["type"] == "number"
        assert c.get("/api/v1/commands/unknown-uuid").status_code == 404
        assert c.get("/api/v1/snapshot/latest").status_code == 404
        assert c.get("/api/v1/view/samples", params={"indices": "0,99999"}).status_code == 422
