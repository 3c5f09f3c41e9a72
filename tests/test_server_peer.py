"""The peer's protocol (PEER_PROTOCOL.md) against a real served digits run, driven the way the peer's own
clients drive it: the agent example's loop (pause on an evaluation, ask an LLM, resume, change the lr with
the {value, name} encoding), and the dashboard's endpoints."""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest
from server_helpers import StandInLLM, served, strict_json, wait_until
from websockets.sync.client import connect


class PeerAgentLoop:
    """The peer's LLM-tuner loop as PEER_PROTOCOL.md describes it: one fixed uuid per kind of request (reused for
    every pause), HTTP with credentials from ~/.netrc, the WebSocket with one added header line (the token)."""

    def __init__(self, url: str, token: str, netrc_file: str, llm_url: str, evaluations: int) -> None:
        self.http = httpx.Client(base_url=url, auth=httpx.NetRCAuth(netrc_file), trust_env=False)
        self.ws_url = url.replace("http://", "ws://") + "/ws/message/"
        self.token = token
        self.llm_url = llm_url
        self.wanted = evaluations
        self.requests = {
            name: {"command": name, "args": "", "uuid": str(uuid.uuid4()), "time": time.time(), "status": "requested"}
            for name in ("pause_training", "resume_training", "update_optimizer")
        }
        self.train_loss, self.train_steps, self.lr_history = [], [], []
        self.eval_loss, self.eval_steps = [], []
        self.messages: list[dict] = []
        self.answers: list[dict] = []
        self.new_lrs: list[float] = []
        self.connected = threading.Event()

    def post(self, name: str) -> None:
        r = self.http.post("/api/command/", json=self.requests[name])
        self.answers.append(r.json())

    def ask_llm(self, step: int) -> float:
        prompt = (
            f"step {step}, lr {self.lr_history[-1]}, train loss {self.train_loss[-5:]}, "
            f"valid loss {self.eval_loss}. Answer JSON: explanation, action Double|Half|Same"
        )
        r = httpx.post(
            f"{self.llm_url}/chat/completions",
            trust_env=False,
            json={
                "model": "stand-in",
                "messages": [{"role": "user", "content": prompt}],
                "response_format": {"type": "json_object"},
            },
        )
        action = json.loads(r.json()["choices"][0]["message"]["content"])["action"]
        lr = self.lr_history[-1]
        return {"Double": lr * 2, "Half": lr / 2}.get(action, lr)

    def on_message(self, raw: str) -> None:
        msg = json.loads(raw)
        self.messages.append(msg)
        if msg["command"] == "log_update":
            m = json.loads(msg["args"])["metrics"]
            if "eval_loss" in m and m["epoch"] != 0.0 and len(self.eval_loss) < self.wanted:
                self.eval_loss.append(m["eval_loss"])
                self.eval_steps.append(m["global_step"])
                self.post("pause_training")
                new_lr = self.ask_llm(int(m["global_step"]) + 1)
                self.post("resume_training")
                self.requests["update_optimizer"]["args"] = json.dumps({"lr": {"value": new_lr, "name": "lr"}})
                self.post("update_optimizer")
                self.new_lrs.append(new_lr)
            if "loss" in m:
                self.train_loss.append(m["loss"])
                self.train_steps.append(m["global_step"])
                self.lr_history.append(m["learning_rate"])

    def run(self, stop: threading.Event) -> None:
        with connect(self.ws_url, additional_headers={"Authorization": f"Bearer {self.token}"}) as ws:
            self.connected.set()
            while not stop.is_set():
                try:
                    raw = ws.recv(timeout=0.2)
                except TimeoutError:
                    continue
                self.on_message(raw)

    def echoes(self, name: str) -> list[str]:
        uid = self.requests[name]["uuid"]
        return [m["status"] for m in self.messages if m["command"] == name and m["uuid"] == uid]


def test_the_peer_agents_loop_pauses_changes_the_lr_and_resumes(tmp_path):
    llm = StandInLLM(lambda body: json.dumps({"explanation": "validation loss is noisy", "action": "Half"}))
    try:
        with served(tmp_path / "run", epochs=60) as r:
            netrc = tmp_path / "netrc"
            netrc.write_text(f"machine 127.0.0.1 login agent password {r.token}\n")
            netrc.chmod(0o600)
            agent = PeerAgentLoop(r.url, r.token, str(netrc), llm.base_url, evaluations=3)
            stop = threading.Event()
            t = threading.Thread(target=agent.run, args=(stop,), daemon=True)
            t.start()
            assert agent.connected.wait(30)
            r.start()
            wait_until(
                lambda: (
                    len(agent.echoes("update_optimizer")) >= 9
                    and agent.echoes("update_optimizer")[-1] in ("success", "failed")
                ),
                what="three rounds",
            )
            stop.set()
            t.join(30)
            r.close()  # stop_training from a script, then the server closes

            assert agent.answers == [
                {"status": "success", "uuid": agent.requests[n]["uuid"]}
                for _ in range(3)
                for n in ("pause_training", "resume_training", "update_optimizer")
            ]
            for name in ("pause_training", "resume_training", "update_optimizer"):
                assert agent.echoes(name) == ["pending", "running", "success"] * 3, name
            ok = [m for m in agent.messages if m["command"] == "update_optimizer" and m["status"] == "success"]
            assert [json.loads(m["args"]) for m in ok] == [{"lr": {"value": lr, "name": "lr"}} for lr in agent.new_lrs]
            assert agent.new_lrs == pytest.approx([0.025, 0.0125, 0.00625])
            assert len(llm.requests) == 3 and "valid loss" in llm.requests[0]["messages"][0]["content"]
            evals = [
                json.loads(m["args"])["metrics"]
                for m in agent.messages
                if m["command"] == "log_update" and "eval_loss" in json.loads(m["args"])["metrics"]
            ]
            assert {"eval_loss", "eval_accuracy", "epoch", "global_step"} <= set(evals[0]) and evals[0]["epoch"] == 1
            assert agent.lr_history[0] == pytest.approx(0.05)
            types = {m["command"] for m in agent.messages}
            assert {"train_state_update", "log_update", "pause_training"} <= types
            for m in agent.messages:
                strict_json(json.dumps(m))
                assert m["uuid"]

            journal = r.commands()
            lr_cmds = [c for c in journal if c["command"] == "update_optimizer" and c["status"] == "success"]
            assert [c["args"] for c in lr_cmds] == [{"lr": lr} for lr in agent.new_lrs]
            assert {
                c["source"]
                for c in journal
                if c["command"] in ("pause_training", "resume_training", "update_optimizer")
            } == {"peer"}
            assert [c["uuid"] for c in lr_cmds] == [agent.requests["update_optimizer"]["uuid"]] * 3
            stops = [c for c in journal if c["command"] == "stop_training"]
            assert stops[-1]["source"] == "script" and stops[-1]["status"] == "success"
    finally:
        llm.close()


def post(c: httpx.Client, command: str, args, uid: str | None = None) -> dict:
    body = {
        "command": command,
        "args": args if isinstance(args, str) else json.dumps(args),
        "uuid": uid or str(uuid.uuid4()),
        "time": time.time(),
        "status": "requested",
    }
    return {"uuid": body["uuid"], **c.post("/api/command/", json=body).json()}


def test_dashboard_endpoints_and_unsafe_peer_commands(tmp_path):
    with served(tmp_path / "run", epochs=40) as r:
        c = httpx.Client(base_url=r.url, headers=r.auth, trust_env=False)
        info = c.get("/api/get_info/").json()
        assert info["status"] == "init" and info["run_name"] == "run"
        model = c.get("/api/get_model_info/").json()
        assert model["name"] == "Model" and model["children"]
        names = []

        def walk(n):
            names.append(n["name"])
            for ch in n["children"]:
                walk(ch)

        walk(model)
        leaf = next(n for n in names if n != "Model" and "." in n)
        opt = c.get("/api/get_optimizer_info/").json()
        assert opt["optimizer_name"] == "torch.optim.sgd.SGD" and opt["lr"] == pytest.approx(0.05)
        assert set(c.get("/api/get_dataset_info/").json()) == {"initialization_parameters", "interactive_parameters"}
        assert c.get("/api/get_info").status_code in (200, 307)  # the peer's paths end with a slash

        with connect(r.ws_url + "/ws/message/", additional_headers=r.auth) as ws:
            r.start()
            wait_until(lambda: c.get("/api/get_info/").json()["status"] == "running", what="running")
            flat = post(c, "update_optimizer", {"lr": 0.04})  # the peer README's encoding
            wrapped = post(c, "update_optimizer", {"momentum": {"value": 0.8, "name": "momentum"}})
            getattr_style = post(
                c, "model_layer_operation", {"layer_name": leaf, "operation_name": "__class__", "params": {}}
            )
            to_device = post(
                c, "model_layer_operation", {"layer_name": leaf, "operation_name": "to", "params": {"device": "cpu"}}
            )
            freeze = post(
                c,
                "model_layer_operation",
                {"layer_name": leaf, "operation_name": "requires_grad_", "params": {"requires_grad": False}},
            )
            unknown = post(c, "reset_layer", {"layer_name": leaf})
            save = post(c, "save_checkpoint", "")
            assert flat["status"] == wrapped["status"] == save["status"] == freeze["status"] == "success"
            for bad in (getattr_style, to_device, unknown):
                assert bad["status"] == "error" and bad["message"]
            assert "reset_parameters, freeze, unfreeze" in getattr_style["message"]
            msgs = []
            final = {}
            terminal = {
                flat["uuid"],
                wrapped["uuid"],
                freeze["uuid"],
                save["uuid"],
                getattr_style["uuid"],
                to_device["uuid"],
                unknown["uuid"],
            }

            def drain():
                try:
                    while True:
                        m = strict_json(ws.recv(timeout=0.05))
                        msgs.append(m)
                        if m["status"] in ("success", "failed") and m["uuid"] in terminal:
                            final[m["uuid"]] = m
                except TimeoutError:
                    pass
                return terminal <= set(final) and any(m["command"] == "checkpoint_info_update" for m in msgs)

            wait_until(drain, what="the peer echoes")
            assert final[getattr_style["uuid"]]["status"] == "failed" and final[getattr_style["uuid"]]["reason"]
            assert final[to_device["uuid"]]["status"] == "failed"
            assert final[freeze["uuid"]]["status"] == "success"
            assert json.loads(final[wrapped["uuid"]]["args"]) == {"momentum": {"value": 0.8, "name": "momentum"}}
            ck = next(json.loads(m["args"]) for m in msgs if m["command"] == "checkpoint_info_update")
            assert set(ck) >= {"checkpoint_dir", "global_step", "time", "uuid", "branch_id"}

            opt = c.get("/api/get_optimizer_info/").json()
            assert opt["lr"] == pytest.approx(0.04) and opt["momentum"] == pytest.approx(0.8)
            cks = c.get("/api/get_checkpoints/").json()
            assert ck["uuid"] in [x["uuid"] for x in cks]
            load = post(c, "load_checkpoint", {"uuid": ck["uuid"], "branch_name": "retry"})
            assert load["status"] == "success"

            def loaded():
                drain()
                return [m for m in msgs if m["command"] == "load_checkpoint" and m["status"] == "success"]

            done = wait_until(loaded, what="the load")[0]
            args = json.loads(done["args"])
            assert args["uuid"] == ck["uuid"] and args["branch_name"] == "retry"
            assert args["branch_info"] == {
                "id": "retry",
                "wall_time": pytest.approx(args["branch_info"]["wall_time"]),
                "parent": "main",
            }
            logs = c.get("/api/get_logs/").json()
            assert logs["branch_tree"]["main"] == ["retry"] and logs["current_branch"] == "retry"
            assert logs["branched_logs"]["main"] and "metrics" in logs["branched_logs"]["main"][0]
        journal = r.commands()
        refused = [x for x in journal if x["uuid"] in (getattr_style["uuid"], to_device["uuid"], unknown["uuid"])]
        assert refused and all(x["status"] in ("requested", "failed") and x["source"] == "peer" for x in refused)
        assert not any(
            x["command"] == "model_layer_operation"
            and x["status"] == "success"
            and x["args"].get("operation") != "freeze"
            for x in journal
        )
        c.close()


def test_a_built_dashboard_is_served_behind_the_token(tmp_path):
    dash = tmp_path / "dist"
    (dash / "assets").mkdir(parents=True)
    (dash / "index.html").write_text("<!doctype html><title>dashboard</title>")
    (dash / "assets" / "app.js").write_text("console.log('x')")
    with served(tmp_path / "run", dashboard_dir=dash) as r:
        with httpx.Client(base_url=r.url, trust_env=False) as c:
            assert c.get("/").status_code == 401 and c.get("/assets/app.js").status_code == 401
            assert c.get("/", params={"token": r.token}, follow_redirects=True).status_code == 200  # cookie, then /
            assert "dashboard" in c.get("/").text and "dashboard" in c.get("/some/route").text
            assert c.get("/assets/app.js").text == "console.log('x')"
            assert c.get("/api/get_info/").json()["status"] == "init"
            assert c.get("/api/nothing/").status_code == 404
