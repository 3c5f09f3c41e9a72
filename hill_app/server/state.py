"""What the server knows about the run, without touching training state.

Three sources only: static facts captured once when serving starts (before training runs), a mirror kept
up to date from the session's events (:class:`RunMirror`, loop thread only), and the run folder's files
(config.json, journal.jsonl, checkpoints/tree.json, snapshots.h5), read when asked.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hill_app.engine.events import Event
from hill_app.engine.optimizers import torch_class

MAX_STEPS = 50_000  # step metrics kept for /metrics (digits: 18 a epoch; CIFAR-10 on a GPU: 2 a epoch)
MAX_EPOCHS = 100_000
MAX_COMMANDS = 5_000


# ------------------------------------------------------------------ static facts


@dataclass
class StaticFacts:
    run_dir: Path
    run_name: str
    started: float
    config: dict[str, Any]
    device: str
    dataset: dict[str, Any]
    model: dict[str, Any]
    optimizer_name: str
    optimizer: dict[str, Any]
    view_idx: np.ndarray
    view_labels: np.ndarray
    view_inputs: Any  # the training inputs tensor as it was at start; rows are read on request
    initial: dict[str, Any]


def _module_tree(model: Any) -> dict[str, Any]:
    """The layer tree with what the commands can do to each layer (operations, settings)."""
    import torch

    def node(name: str, m: torch.nn.Module) -> dict[str, Any]:
        params = list(m.parameters())
        ops = ["reset_parameters"] if any(hasattr(x, "reset_parameters") for x in m.modules()) and params else []
        ops += ["freeze", "unfreeze"] if params else []
        settings: dict[str, float] = {}
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            settings["p"] = float(m.p)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.momentum is not None:
            settings["momentum"] = float(m.momentum)
        kids = [node(f"{name}.{k}" if name else k, c) for k, c in m.named_children()]
        return {
            "name": name,
            "type": type(m).__name__,
            "module": f"{type(m).__module__}.{type(m).__qualname__}",
            "parameters": int(sum(p.numel() for p in params)),
            "trainable": bool(params) and all(p.requires_grad for p in params),
            "operations": ops if name else [],
            "settings": settings,
            "children": kids,
        }

    return node("", model)


def _optimizer_facts(opt: Any) -> tuple[str, dict[str, Any]]:
    """The optimiser's class and the hyperparameters update_optimizer can change (group 0)."""
    from hill_app.engine.commands import SPECS

    tunable = set(SPECS["update_optimizer"].schema.args) - {"group"}
    g = opt.param_groups[0]
    hp: dict[str, Any] = {}
    for k, v in g.items():
        if k not in tunable:
            continue
        if hasattr(v, "item") and getattr(v, "numel", lambda: 2)() == 1:
            v = v.item()
        if isinstance(v, tuple):
            v = list(v)
        if isinstance(v, (bool, int, float, list)) or v is None:
            hp[k] = v
    cls = torch_class(opt)
    return f"{cls.__module__}.{cls.__qualname__}", hp


def capture(session: Any) -> StaticFacts:
    """Read once, before training runs: the configuration, the data set, the model's layers, the optimiser."""
    d = session.data
    dataset = {
        "name": d.name,
        "kind": d.kind,
        "num_classes": d.num_classes,
        "class_names": list(d.class_names),
        "input_shape": list(d.input_shape),
        "n_train": int(session.n_train),
        "n_val": int(d.val_y.numel()),
        "n_test": int(d.test_y.numel()),
        "view_size": len(session.view_idx),
        "input_dtype": str(d.train_x.dtype).replace("torch.", ""),
        "channel_names": list(d.meta.get("channel_names") or []),
        "split_info": getattr(d, "split_info", None),
    }
    opt_name, opt = _optimizer_facts(session.optimizer)
    run_dir = Path(session.run_dir)
    return StaticFacts(
        run_dir=run_dir,
        run_name=run_dir.resolve().name,
        started=time.time(),
        config=session.config.to_json(),
        device=str(session.device),
        dataset=dataset,
        model=_module_tree(session.model),
        optimizer_name=opt_name,
        optimizer=opt,
        view_idx=np.asarray(session.view_idx, dtype=np.int64).copy(),
        view_labels=np.asarray(session.view_labels).copy(),
        view_inputs=d.train_x,
        initial={
            "epoch": int(session.epoch),
            "step": int(session.step),
            "branch": str(session.branch),
            "alpha": float(session.alpha),
            "lam": float(session.lam),
            "grad_clip": session.grad_clip,
            "paused": bool(session.paused),
            "finished": bool(session.finished),
        },
    )


# ------------------------------------------------------------------ the mirror


class RunMirror:
    """The run's state as the events tell it. Applied and read on the server's loop thread only."""

    def __init__(self, static: StaticFacts) -> None:
        self.static = static
        ini = static.initial
        self.status = "finished" if ini["finished"] else ("paused" if ini["paused"] else "init")
        self.epoch, self.step, self.branch = ini["epoch"], ini["step"], ini["branch"]
        self.alpha, self.lam, self.grad_clip = ini["alpha"], ini["lam"], ini["grad_clip"]
        self.pause_reason: str | None = None
        self.pause_epoch: int | None = None
        self.optimizer = dict(static.optimizer)
        self.layer_overrides: dict[str, dict[str, Any]] = {}
        self.class_weights: Any = None
        self.layout_committed = False
        self.last_step: dict[str, Any] | None = None
        self.steps: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_STEPS)
        self.steps_seen = 0
        self.epochs: list[dict[str, Any]] = []
        self.evaluations: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.commands: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.snapshot: dict[str, Any] | None = None
        self.pause_snapshot: dict[str, Any] | None = None
        self.logs: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self.summary: dict[str, Any] | None = None
        self.error: str | None = None
        self.started_running: float | None = None
        self.just_started = False  # true while the event that first made the run 'running' is being fanned out

    def apply(self, ev: Event) -> None:
        d, k = ev.data, ev.kind
        self.just_started = False
        if k == "step":
            self._running(ev.time)
            self.step = d.get("step", self.step)
            rec = {
                key: d.get(key)
                for key in (
                    "epoch",
                    "step",
                    "index_in_epoch",
                    "steps_in_epoch",
                    "loss",
                    "grad_norm",
                    "lr",
                    "images_per_s",
                )
            }
            rec["branch"], rec["time"] = self.branch, ev.time
            self.last_step = rec
            self.steps.append(rec)
            self.steps_seen += 1
            if "lr" in d:
                self.optimizer["lr"] = d["lr"]
        elif k == "epoch":
            self.epoch = d.get("epoch", self.epoch)
            self.step = d.get("step", self.step)
            rec = dict(d, time=ev.time)
            if len(self.epochs) < MAX_EPOCHS:
                self.epochs.append(rec)
            for key in ("alpha", "lam"):
                if key in d:
                    setattr(self, key, d[key])
            if "lr" in d:
                self.optimizer["lr"] = d["lr"]
        elif k == "evaluation":
            if len(self.evaluations) < MAX_EPOCHS:
                self.evaluations.append(dict(d, time=ev.time))
        elif k == "paused":
            self.status = "paused"
            self.pause_reason, self.pause_epoch = d.get("reason"), d.get("epoch")
        elif k == "resumed":
            self._running(ev.time)
            self.status = "running"
            self.pause_reason = self.pause_epoch = None
        elif k == "snapshot":
            self.snapshot = dict(d, time=ev.time)
            if d.get("kind") != "epoch":
                self.pause_snapshot = self.snapshot
            self.layout_committed = d.get("layout") is not None
        elif k == "checkpoint":
            self.checkpoints.append(dict(d))
        elif k == "command":
            self._command(d)
        elif k == "finished":
            self.status, self.summary = "finished", dict(d)
        elif k == "error":
            self.status, self.error = "error", d.get("message")
        elif k == "log":
            self.logs.append(dict(d, time=ev.time))

    def _running(self, t: float) -> None:
        if self.status in ("init", "paused") and self.started_running is None:
            self.started_running = t
            self.just_started = True
        if self.status == "init":
            self.status = "running"

    def _command(self, d: dict[str, Any]) -> None:
        uid = d.get("uuid")
        if isinstance(uid, str):
            self.commands[uid] = d
            self.commands.move_to_end(uid)
            while len(self.commands) > MAX_COMMANDS:
                self.commands.popitem(last=False)
        if d.get("status") != "success":
            return
        name, args, res = d.get("command"), d.get("args") or {}, d.get("result") or {}
        if name == "update_optimizer":
            self.optimizer.update(res.get("new", {}))
        elif name == "set_alpha":
            self.alpha = res.get("new", self.alpha)
        elif name == "set_lambda":
            self.lam = res.get("new", self.lam)
        elif name == "set_grad_clip":
            self.grad_clip = res.get("new")
        elif name == "load_checkpoint":
            self.branch = res.get("branch", self.branch)
            self.epoch, self.step = res.get("epoch", self.epoch), res.get("step", self.step)
        elif name == "model_layer_parameter_update":
            self.layer_overrides.setdefault(args["layer_name"], {})[args["param_name"]] = args["value"]
        elif name == "model_layer_operation" and args.get("operation") in ("freeze", "unfreeze"):
            self.layer_overrides.setdefault(args["layer_name"], {})["trainable"] = args["operation"] == "unfreeze"
        elif name == "update_dataset_runtime_hyperparameters":
            self.class_weights = res.get("class_weights")
        elif name == "clear_latent_targets":
            self.layout_committed = False
        elif name == "stop_training" and self.status != "finished":
            self.status = "stopping"

    # ------------------------------------------------------------------ views

    def state(self) -> dict[str, Any]:
        last_epoch = self.epochs[-1] if self.epochs else None
        return {
            "status": self.status,
            "paused": self.status == "paused",
            "epoch": self.epoch,
            "step": self.step,
            "branch": self.branch,
            "epochs_total": self.static.config.get("epochs"),
            "pause_reason": self.pause_reason,
            "pause_epoch": self.pause_epoch,
            "last_step": self.last_step,
            "last_epoch": None
            if last_epoch is None
            else {k: v for k, v in last_epoch.items() if not isinstance(v, list)},
            "optimizer": dict(self.optimizer, name=self.static.optimizer_name),
            "alpha": self.alpha,
            "lam": self.lam,
            "grad_clip": self.grad_clip,
            "class_weights": self.class_weights,
            "layout_committed": self.layout_committed,
            "checkpoints": len(self.checkpoints),
            "summary": self.summary,
            "error": self.error,
            "started": self.static.started,
            "started_running": self.started_running,
        }

    def model_tree(self) -> dict[str, Any]:
        """The static layer tree with what commands changed since (trainable, dropout p, batch-norm momentum)."""
        over = self.layer_overrides

        def walk(n: dict[str, Any], inherited: dict[str, Any]) -> dict[str, Any]:
            o = dict(inherited)
            o.update(over.get(n["name"], {}))
            settings = {k: o.get(k, v) for k, v in n["settings"].items()}
            trainable = o.get("trainable", n["trainable"]) if n["parameters"] else False
            nxt = {"trainable": o["trainable"]} if "trainable" in o else {}
            return dict(n, settings=settings, trainable=trainable, children=[walk(c, nxt) for c in n["children"]])

        return walk(self.static.model, {})

    def page(self, kind: str, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """A page of step, epoch or evaluation metrics; step offsets count from the first step still kept."""
        rows: Any = {"step": self.steps, "epoch": self.epochs, "evaluation": self.evaluations}[kind]
        total = len(rows)
        if kind == "step":
            rows = list(rows)[offset : offset + limit]
        else:
            rows = rows[offset : offset + limit]
        return rows, total


# ------------------------------------------------------------------ files of the run folder


class JournalPager:
    """Pages of journal.jsonl by record number, with an index of line offsets extended as the file grows."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offsets: list[int] = []
        self._scanned = 0
        self._lock = threading.Lock()

    def _scan(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size < self._scanned:  # replaced: start over
            self._offsets, self._scanned = [], 0
        if size == self._scanned:
            return
        with open(self.path, "rb") as f:
            f.seek(self._scanned)
            data = f.read(size - self._scanned)
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # a line still being written: indexed once complete
            if data[pos:nl].strip():
                self._offsets.append(self._scanned + pos)
            pos = nl + 1
        self._scanned += pos

    def page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        with self._lock:
            self._scan()
            total = len(self._offsets)
            starts = self._offsets[offset : offset + limit]
            end = self._offsets[offset + limit] if offset + limit < total else self._scanned
        if not starts:
            return [], total
        with open(self.path, "rb") as f:
            f.seek(starts[0])
            data = f.read(end - starts[0])
        out = []
        for i, line in enumerate(x for x in data.split(b"\n") if x.strip()):
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {
                    "type": "unreadable_record",
                    "record": offset + i,
                    "note": "torn line (the process was killed mid-write); skipped by replay",
                }
            out.append(rec)
        return out, total


def read_checkpoint_tree(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "checkpoints" / "tree.json"
    if not path.exists():
        return []
    try:
        nodes = json.loads(path.read_text())["nodes"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OSError(f"{path}: unreadable checkpoint index ({e})") from e
    return list(nodes)


def list_snapshots(run_dir: Path) -> list[dict[str, Any]]:
    """The snapshots stored in snapshots.h5 (pauses, commits, loads), with their attributes."""
    import h5py

    path = Path(run_dir) / "snapshots.h5"
    if not path.exists():
        return []
    out = []
    with h5py.File(path, "r") as f:
        for name, g in f.get("snapshots", {}).items():
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in g.attrs.items()}
            out.append({"name": name, "points": int(g["z"].shape[0]), **attrs})
    return sorted(out, key=lambda r: float(r.get("time", 0)))


def read_snapshot(run_dir: Path, name: str) -> dict[str, Any] | None:
    import h5py

    path = Path(run_dir) / "snapshots.h5"
    if not path.exists():
        return None
    with h5py.File(path, "r") as f:
        root = f.get("snapshots")
        if root is None or name not in root:
            return None
        g = root[name]
        snap: dict[str, Any] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in g.attrs.items()}
        snap.update(
            {
                "name": name,
                "z": g["z"][()],
                "labels": g["labels"][()],
                "preds": g["preds"][()],
                "view_indices": g["view_indices"][()],
                "layout": None,
            }
        )
        if "target_centers" in g:
            snap["target_centers"] = g["target_centers"][()]
            snap["target_spreads"] = g["target_spreads"][()]
    return snap
