"""Interactive Training's wire protocol (PEER_PROTOCOL.md), translated onto hill-app's commands and events.

Requests become ordinary ``session.submit`` calls (validated by the one command declaration, journaled
with their source); events become the peer's ``{status, command, args, uuid, time}`` messages. Nothing a
client names is looked up as an attribute: a peer operation without a declared hill-app meaning reaches
the declaration as an invalid argument and fails with that reason.
"""

from __future__ import annotations

import collections
import json
import time
import uuid as _uuid
from typing import TYPE_CHECKING, Any

from hill_app.engine.events import Event

from .fanout import OutMessage
from .wire import WireError, dumps, loads_strict

if TYPE_CHECKING:
    from .state import RunMirror

PEER_STATUSES = ("pending", "running", "success", "failed")
LOG_RATE = 20.0  # step points kept per second for get_logs (what a chart needs)
MAX_LOG_POINTS = 100_000


def _message(command: str, args: Any, uid: str, t: float, status: str = "success", **extra: Any) -> str:
    msg = {
        "status": status,
        "command": command,
        "args": args if isinstance(args, str) else dumps(args),
        "uuid": uid,
        "time": t,
    }
    msg.update(extra)
    return dumps(msg)


# ------------------------------------------------------------------ requests


def decode_args(raw: Any) -> dict[str, Any]:
    """The peer's ``args``: a JSON-encoded string (or null / ""); an object is accepted as well."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise WireError(f"'args' must be a JSON-encoded string, got {type(raw).__name__}")
    value = loads_strict(raw)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WireError(f"'args' must encode a JSON object, got {type(value).__name__}")
    return value


def translate(command: str, args: dict[str, Any]) -> dict[str, Any]:
    """Peer arguments -> hill-app arguments. Unknown shapes pass through, so the declaration refuses them
    with its own reason (unknown argument, value out of range) and the refusal is journaled."""
    if command == "update_optimizer":
        # {"lr": {"value": x, "name": "lr"}} (the peer's clients) and {"lr": x} (the peer's README)
        return {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in args.items()}
    if command == "model_layer_operation" and "operation_name" in args:
        op, params = args.get("operation_name"), args.get("params") or {}
        out = {k: v for k, v in args.items() if k not in ("operation_name", "params")}
        if op == "requires_grad_" and isinstance(params, dict) and set(params) <= {"requires_grad"}:
            flag = params.get("requires_grad", True)
            out["operation"] = "unfreeze" if flag in (True, "True", "true", "1", 1) else "freeze"
        elif op in ("reset_parameters", "freeze", "unfreeze") and not params:
            out["operation"] = op
        else:
            out["operation"] = op  # refused by the declaration: only reset_parameters, freeze, unfreeze exist
            if params:
                out["params"] = params
        return out
    if command == "model_layer_parameter_update" and isinstance(args.get("value"), str):
        try:  # the dashboard's inputs send numbers as text
            return dict(args, value=float(args["value"]))
        except ValueError:
            return args
    return args


# ------------------------------------------------------------------ state the peer's GET endpoints serve


class PeerState:
    """Log points per branch, branch tree and the args text of commands posted through this protocol."""

    def __init__(self, mirror: RunMirror) -> None:
        self.mirror = mirror
        self.local_step = 0
        self.logs: dict[str, list[dict[str, Any]]] = {mirror.branch: []}
        self.branch_info: dict[str, dict[str, Any]] = {
            mirror.branch: {"id": mirror.branch, "wall_time": mirror.static.started, "parent": None}
        }
        self.branch_tree: dict[str, list[str]] = {mirror.branch: []}
        self.args_text: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.point: dict[str, Any] | None = None  # the log point made from the event being fanned out
        self._next_kept = 0.0
        self._n_points = 0

    def remember_args(self, uid: str, text: str) -> None:
        self.args_text[uid] = text
        while len(self.args_text) > 2000:
            self.args_text.popitem(last=False)

    def apply(self, ev: Event) -> None:
        self.point = None
        d = ev.data
        if ev.kind == "command" and d.get("status") == "success" and d.get("command") == "load_checkpoint":
            res = d.get("result") or {}
            new, parent = str(res.get("branch") or ""), str(res.get("from_branch") or "")
            if new and new not in self.branch_info:
                self.branch_info[new] = {"id": new, "wall_time": ev.time, "parent": parent}
                self.branch_tree.setdefault(parent, []).append(new)
                self.branch_tree.setdefault(new, [])
                self.logs.setdefault(new, [])
            return
        metrics = self._metrics(ev)
        if metrics is None:
            return
        self.local_step += 1
        self.point = {
            "local_step": self.local_step,
            "wall_time": ev.time,
            "branch_id": self.mirror.branch,
            "metrics": metrics,
        }
        keep = ev.kind != "step"
        if ev.kind == "step" and ev.time >= self._next_kept:
            keep, self._next_kept = True, ev.time + 1.0 / LOG_RATE
        if keep and self._n_points < MAX_LOG_POINTS:
            self.logs.setdefault(self.mirror.branch, []).append(
                {k: self.point[k] for k in ("local_step", "wall_time", "metrics")}
            )
            self._n_points += 1

    def _metrics(self, ev: Event) -> dict[str, Any] | None:
        d = ev.data
        if ev.kind == "step":
            n = max(int(d.get("steps_in_epoch") or 1), 1)
            return {
                "loss": d.get("loss"),
                "learning_rate": d.get("lr"),
                "grad_norm": d.get("grad_norm"),
                "epoch": (int(d.get("epoch", 1)) - 1) + int(d.get("index_in_epoch", 0)) / n,
                "global_step": d.get("step"),
            }
        if ev.kind == "epoch":
            out = {
                "eval_loss": d.get("val_loss"),
                "eval_accuracy": d.get("val_accuracy"),
                "epoch": d.get("epoch"),
                "global_step": d.get("step"),
            }
            for k in ("train_loss", "train_accuracy", "lr", "alpha", "lam"):
                if isinstance(d.get(k), (int, float)):
                    out[k] = d[k]
            return out
        if ev.kind == "evaluation":
            split = d.get("split", "val")
            prefix = "eval" if split == "val" else split
            return {
                f"{prefix}_loss": d.get(f"{split}_loss"),
                f"{prefix}_accuracy": d.get(f"{split}_accuracy"),
                "epoch": d.get("epoch"),
                "global_step": d.get("step"),
            }
        return None

    def logs_json(self) -> dict[str, Any]:
        return {
            "local_step": self.local_step,
            "branched_logs": self.logs,
            "current_branch": self.mirror.branch,
            "branch_info": self.branch_info,
            "branch_tree": self.branch_tree,
        }


# ------------------------------------------------------------------ events -> peer messages


class PeerCodec:
    def __init__(self, mirror: RunMirror, state: PeerState, peer_model: Any) -> None:
        self.mirror = mirror
        self.state = state
        self.peer_model = peer_model  # callable -> the module tree in the peer's format

    def encode(self, ev: Event, seq: int) -> list[OutMessage]:
        d = ev.data
        out: list[OutMessage] = []
        if self.mirror.just_started:
            out.append(OutMessage(_message("train_state_update", self.train_state(), _uuid.uuid4().hex, ev.time)))
        if ev.kind == "command":
            status = d.get("status")
            if status not in PEER_STATUSES:
                return out
            uid = str(d.get("uuid", ""))
            extra: dict[str, Any] = {"source": d.get("source")}
            if status == "failed":
                extra["reason"] = d.get("reason")
            out.append(
                OutMessage(_message(d.get("command", ""), self._echo_args(d, uid), uid, ev.time, status, **extra))
            )
        elif ev.kind in ("step", "epoch", "evaluation") and self.state.point is not None:
            point = self.state.point
            out.append(
                OutMessage(
                    make=lambda: _message("log_update", point, _uuid.uuid4().hex, ev.time),
                    lossy=ev.kind == "step",
                    throttle=ev.kind == "step",
                )
            )
        elif ev.kind == "checkpoint":
            out.append(OutMessage(_message("checkpoint_info_update", self.checkpoint(d), _uuid.uuid4().hex, ev.time)))
        return out

    def _echo_args(self, d: dict[str, Any], uid: str) -> Any:
        name, args = d.get("command"), d.get("args") or {}
        if name == "update_optimizer" and d.get("status") == "success":  # the dashboard reads {k: {value}}
            return {k: {"value": v, "name": k} for k, v in args.items() if k != "group"}
        if name == "load_checkpoint" and d.get("status") == "success":
            res = d.get("result") or {}
            branch = str(res.get("branch") or "")
            info = self.state.branch_info.get(
                branch, {"id": branch, "wall_time": time.time(), "parent": res.get("from_branch")}
            )
            return {"uuid": args.get("uuid"), "branch_name": res.get("branch"), "branch_info": info}
        text = self.state.args_text.get(uid)
        if text is not None:
            if d.get("status") in ("success", "failed"):
                self.state.args_text.pop(uid, None)
            return text
        return args

    def dropped_notice(self, count: int) -> str:
        return _message("events_dropped", {"dropped": count}, _uuid.uuid4().hex, time.time())

    def checkpoint(self, node: dict[str, Any]) -> dict[str, Any]:
        folder = self.mirror.static.run_dir / "checkpoints"
        return {
            "checkpoint_dir": str(folder / str(node.get("file", ""))),
            "global_step": node.get("step"),
            "time": node.get("time"),
            "uuid": node.get("uuid"),
            "branch_id": node.get("branch"),
            "epoch": node.get("epoch"),
            "note": node.get("note"),
        }

    def train_state(self) -> dict[str, Any]:
        return {
            "model_infos": self.peer_model(),
            "optimizer_states": self.optimizer(),
            "start_time": self.mirror.static.started,
            "run_name": self.mirror.static.run_name,
        }

    def optimizer(self) -> dict[str, Any]:
        hp = {k: v for k, v in self.mirror.optimizer.items() if isinstance(v, (int, float, bool, list))}
        return {"optimizer_name": self.mirror.static.optimizer_name, **hp}


def peer_model_tree(native: dict[str, Any]) -> dict[str, Any]:
    """The native layer tree in the peer's shape; operations and settings are only the declared ones."""

    def node(n: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": n["name"] or "Model",
            "module_type": n["type"],
            "children": [node(c) for c in n["children"]],
            "operators": [{"name": op, "signature": []} for op in n["operations"]],
            "hyperparameters": [{"name": k, "value": v, "type": "float"} for k, v in n["settings"].items()],
        }

    return node(native)


def info(mirror: RunMirror) -> dict[str, Any]:
    status = {"init": "init", "running": "running", "paused": "paused", "stopping": "running"}.get(
        mirror.status, mirror.status
    )
    return {"start_time": mirror.static.started, "status": status, "run_name": mirror.static.run_name}


def dataset_info(mirror: RunMirror) -> dict[str, Any]:
    ds = mirror.static.dataset
    cfg = mirror.static.config
    init = {k: ds[k] for k in ("name", "kind", "num_classes", "n_train", "n_val", "n_test", "view_size")}
    init.update({"batch_size": cfg.get("batch_size"), "data_root": cfg.get("data_root"), "seed": cfg.get("seed")})
    return {"initialization_parameters": init, "interactive_parameters": {"class_weights": mirror.class_weights}}


def parse_request(body: Any) -> tuple[str, dict[str, Any], str, str]:
    """Check the peer's command envelope; return (command, hill-app args, uuid, original args text)."""
    if not isinstance(body, dict):
        raise WireError("the body must be a JSON object {command, args, time, uuid, status}")
    missing = [k for k in ("command", "time", "uuid", "status") if k not in body]
    if missing:
        raise WireError(
            f"missing field(s) {', '.join(missing)}; required: command, time, uuid, status "
            "(args: a JSON-encoded string, optional)"
        )
    command, uid = body["command"], body["uuid"]
    if not isinstance(command, str) or not command or len(command) > 100:
        raise WireError("'command' must be a non-empty string of at most 100 characters")
    if not isinstance(uid, str) or not uid or len(uid) > 64:
        raise WireError("'uuid' must be a non-empty string of at most 64 characters")
    if isinstance(body["time"], bool) or not isinstance(body["time"], (int, float)):
        raise WireError("'time' must be a number")
    raw = body.get("args")
    args = decode_args(raw)
    text = raw if isinstance(raw, str) else json.dumps(args)
    return command, translate(command, args), uid, text
