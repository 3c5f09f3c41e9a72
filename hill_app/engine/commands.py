"""Command messages and their schemas.

A command is ``{command, args, time, uuid, status}``; status moves requested -> pending -> running ->
success | failed, and a failed command carries its reason. Only the names in :data:`SPECS` exist:
nothing is looked up by a name a client sends (no getattr from the outside).
"""
from __future__ import annotations

import math
import time
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Any, Callable

STATUSES = ("requested", "pending", "running", "success", "failed")


class CommandError(Exception):
    """The command cannot be applied; the message is the reason the failed status carries."""


@dataclass
class Command:
    command: str
    args: dict[str, Any]
    uuid: str = field(default_factory=lambda: _uuid.uuid4().hex)
    time: float = field(default_factory=time.time)
    status: str = "requested"
    reason: str | None = None
    result: dict[str, Any] | None = None
    source: str = "user"
    step: int | None = None     # global step at which it was applied (for replay)
    epoch: int | None = None
    branch: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "args": self.args, "uuid": self.uuid, "time": self.time,
                "status": self.status, "reason": self.reason, "result": self.result, "source": self.source,
                "step": self.step, "epoch": self.epoch}


# ------------------------------------------------------------------ argument schemas

def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, integer: bool = False
           ) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            raise CommandError(f"expected {'an integer' if integer else 'a number'}, got {v!r}")
        if not math.isfinite(v):
            raise CommandError(f"expected a finite number, got {v!r}")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise CommandError(f"must be {'>' if lo_open else '>='} {lo}, got {v}")
        if hi is not None and v > hi:
            raise CommandError(f"must be <= {hi}, got {v}")
        return v
    return check


def string(max_len: int = 200) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not isinstance(v, str) or not v or len(v) > max_len:
            raise CommandError(f"expected a non-empty string of at most {max_len} characters, got {v!r}")
        return v
    return check


def one_of(*choices: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v not in choices:
            raise CommandError(f"expected one of {', '.join(choices)}, got {v!r}")
        return v
    return check


def optional(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        return None if v is None else inner(v)
    return check


def anything(v: Any) -> Any:
    return v


@dataclass(frozen=True)
class CommandSpec:
    name: str
    required: dict[str, Callable[[Any], Any]]
    optional: dict[str, Callable[[Any], Any]]
    boundary: str = "step"   # "step": next step boundary; "epoch": only between epochs (or while paused)
    doc: str = ""

    def check_args(self, args: Any) -> dict[str, Any]:
        if not isinstance(args, dict):
            raise CommandError(f"{self.name}: args must be a JSON object, got {type(args).__name__}")
        out = {}
        for k in args:
            if not isinstance(k, str) or (k not in self.required and k not in self.optional):
                allowed = sorted([*self.required, *self.optional])
                raise CommandError(f"{self.name}: unknown argument {k!r}; allowed: {', '.join(allowed) or 'none'}")
        for k, check in self.required.items():
            if k not in args:
                raise CommandError(f"{self.name}: missing argument {k!r}")
            try:
                out[k] = check(args[k])
            except CommandError as e:
                raise CommandError(f"{self.name}: argument {k!r}: {e}") from None
        for k, check in self.optional.items():
            if k in args:
                try:
                    out[k] = check(args[k])
                except CommandError as e:
                    raise CommandError(f"{self.name}: argument {k!r}: {e}") from None
        return out


OPTIMIZER_HPARAMS = ("lr", "momentum", "weight_decay", "betas", "eps", "dampening")

SPECS: dict[str, CommandSpec] = {s.name: s for s in [
    CommandSpec("update_optimizer", {}, {
        "lr": number(0, 100, lo_open=True), "momentum": number(0, 1), "weight_decay": number(0, 1),
        "betas": anything, "eps": number(0, 1, lo_open=True), "dampening": number(0, 1),
        "group": number(0, integer=True)}, doc="change optimiser hyperparameters (all groups or one)"),
    CommandSpec("set_grad_clip", {"max_norm": optional(number(0, lo_open=True))}, {},
                doc="clip the gradient norm (null: no clipping)"),
    CommandSpec("pause_training", {}, {"reason": string(500)}, doc="pause at the next step boundary"),
    CommandSpec("resume_training", {}, {}, doc="resume a paused run"),
    CommandSpec("stop_training", {}, {}, doc="stop and save a final checkpoint"),
    CommandSpec("save_checkpoint", {}, {"note": string(500)}, doc="save a checkpoint now"),
    CommandSpec("load_checkpoint", {"uuid": string(64)}, {"branch_name": string(64)}, boundary="epoch",
                doc="fork a branch from a saved checkpoint and continue there"),
    CommandSpec("model_layer_operation", {"layer_name": string(200), "operation": one_of(
        "reset_parameters", "freeze", "unfreeze")}, {}, doc="reset, freeze or unfreeze one layer"),
    CommandSpec("model_layer_parameter_update", {"layer_name": string(200), "param_name": one_of("p", "momentum"),
                                                 "value": number(0, 1)}, {},
                doc="dropout p or batch-norm momentum of one layer"),
    CommandSpec("update_dataset", {"action": one_of("add", "drop")}, {"path": string(4096), "indices": anything},
                boundary="epoch", doc="add labelled samples from a file, or drop training samples by index"),
    CommandSpec("update_dataset_runtime_hyperparameters", {"class_weights": anything}, {}, boundary="epoch",
                doc="per-class sampling weights"),
    CommandSpec("do_evaluate", {}, {"split": one_of("val", "test")}, doc="evaluate now and report"),
    CommandSpec("set_latent_targets", {"edits": anything}, {}, doc="commit latent edits as the teacher layout"),
    CommandSpec("clear_latent_targets", {}, {}, doc="drop the teacher layout: plain cross-entropy"),
    CommandSpec("set_alpha", {"alpha": number(0, 1)}, {}, doc="blend of CE and the human terms"),
    CommandSpec("set_lambda", {"lam": number(0, 100)}, {}, doc="weight of the scale term"),
    CommandSpec("refit_projection", {}, {"method": one_of("lda", "pca")}, boundary="epoch",
                doc="refit the 2D view on the current features"),
]}
