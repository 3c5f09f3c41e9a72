"""A study protocol: one TOML file (a ``[study]`` and a ``[training]`` table) that fixes everything a
participant session may and may not do. The format, with an example: studies/README.md ("Protocols").

Every problem is reported as ``FILE: [table] key: what is wrong``.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from hill_app.datasets import DATASET_NAMES
from hill_app.engine.config import ConfigError, RunConfig
from hill_app.losses import EDIT_OPS

PROTOCOLS_DIR = Path(__file__).resolve().parent / "protocols"

CONDITIONS = ("hill", "baseline")

# What each panel of the study window lets a participant send. pause/resume are always allowed.
PANELS: dict[str, tuple[str, ...]] = {
    "latent": ("set_latent_targets", "clear_latent_targets"),
    "projection": ("refit_projection",),
    "loss": ("set_alpha", "set_lambda"),
    "optimizer": ("update_optimizer",),
    "grad_clip": ("set_grad_clip",),
    "checkpoints": ("save_checkpoint", "load_checkpoint"),
    "data": ("update_dataset", "update_dataset_runtime_hyperparameters"),
    "layers": ("model_layer_operation", "model_layer_parameter_update"),
    "evaluate": ("do_evaluate",),
    "stop": ("stop_training",),
}
ALWAYS_ALLOWED = ("pause_training", "resume_training")

STUDY_KEYS = ("name", "conditions", "panels", "edit_ops", "seconds_per_pause", "instructions")
REQUIRED_TRAINING = ("dataset", "epochs", "pause_at", "alpha", "lam", "seed")
# RunConfig fields a protocol may set; pause_at etc. are checked here, the rest by RunConfig.check().
TRAINING_KEYS = tuple(f.name for f in fields(RunConfig) if f.name not in ("download",))


_EXTRA_TYPES: dict[str, type] = {
    "batch_size": int,
    "view_size": int,
    "checkpoint_every": int,
    "synthetic_size": int,
    "lr": float,
    "momentum": float,
    "weight_decay": float,
    "grad_clip": float,
    "w_center": float,
    "w_spread": float,
    "w_sep": float,
    "w_point": float,
    "device": str,
    "optimizer": str,
    "projection": str,
    "amp": str,
    "compile": bool,
    "ce_weight": str,
    "val_size": "size",
    "train_size": "size",  # C1: a count (int >= 1) or a fraction (0 < float < 1)
}


class ProtocolError(ValueError):
    """The protocol file is unreadable or holds a bad value; the message names the file and the key."""


@dataclass
class Protocol:
    name: str
    dataset: str
    epochs: int
    pause_at: list[int]
    seconds_per_pause: float
    alpha: float
    lam: float
    seed: int
    conditions: list[str]
    panels: list[str]
    instructions: str
    model: str | None = None
    data_root: str | None = None
    edit_ops: list[str] = field(default_factory=lambda: list(EDIT_OPS))
    training: dict[str, Any] = field(default_factory=dict)  # further RunConfig fields (lr, device, ...)
    path: str | None = None
    sha256: str | None = None
    text: str | None = None

    # ------------------------------------------------------------------ what it allows

    def allowed_commands(self) -> set[str]:
        out = set(ALWAYS_ALLOWED)
        for p in self.panels:
            out.update(PANELS[p])
        return out

    def check_command(self, name: str) -> str | None:
        """None if the participant may send this command, else the reason it is not allowed."""
        if name in self.allowed_commands():
            return None
        panel = next((p for p, cmds in PANELS.items() if name in cmds), None)
        if panel is None:
            return f"command {name!r} belongs to no study panel"
        return (
            f"command {name!r} needs the {panel!r} panel, which this protocol does not allow "
            f"(panels: {', '.join(self.panels) or 'none'})"
        )

    def check_edit(self, edit: dict[str, Any]) -> str | None:
        if "latent" not in self.panels:
            return "latent edits need the 'latent' panel, which this protocol does not allow"
        op = edit.get("op") if isinstance(edit, dict) else None
        if op not in self.edit_ops:
            return f"edit op {op!r} is not allowed by this protocol (allowed: {', '.join(self.edit_ops)})"
        return None

    # ------------------------------------------------------------------ the run it describes

    def run_config(self, device: str | None = None) -> RunConfig:
        """The resolved RunConfig every condition of a session shares (same seed, same pauses)."""
        d = dict(self.training)
        d.update(
            dataset=self.dataset,
            model=self.model,
            epochs=self.epochs,
            pause_at=list(self.pause_at),
            alpha=self.alpha,
            lam=self.lam,
            seed=self.seed,
            data_root=self.data_root,
        )
        if device is not None:
            d["device"] = device
        return RunConfig(**d).resolved()

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "text"}


# ---------------------------------------------------------------- loading


def shipped_protocols() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PROTOCOLS_DIR.glob("*.toml"))}


def resolve_protocol_path(name: str | Path) -> Path:
    """A path, or the name of a shipped protocol (``digits_short``) when no such file exists."""
    p = Path(name).expanduser()
    if p.exists():
        return p
    shipped = shipped_protocols()
    stem = p.name.removesuffix(".toml")
    if stem in shipped and len(p.parts) == 1:
        return shipped[stem]
    raise ProtocolError(f"{name}: no such protocol file (shipped protocols: {', '.join(shipped) or 'none'})")


def load_protocol(path: str | Path) -> Protocol:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ProtocolError(f"{path}: cannot read the protocol ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError:
        raise ProtocolError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ProtocolError(f"{path}: not valid TOML ({e})") from None
    proto = parse_protocol(data, source=str(path))
    proto.path = str(path.resolve())
    proto.sha256 = hashlib.sha256(raw).hexdigest()
    proto.text = text
    return proto


def _err(source: str, table: str, key: str, msg: str) -> ProtocolError:
    return ProtocolError(f"{source}: [{table}] {key}: {msg}")


def _int(v: Any, source: str, table: str, key: str, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _err(source, table, key, f"expected an integer, got {v!r}")
    if lo is not None and v < lo:
        raise _err(source, table, key, f"must be >= {lo}, got {v}")
    return v


def _float(
    v: Any, source: str, table: str, key: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _err(source, table, key, f"expected a finite number, got {v!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise _err(source, table, key, f"must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and v > hi:
        raise _err(source, table, key, f"must be <= {hi}, got {v}")
    return float(v)


def _str(v: Any, source: str, table: str, key: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _err(source, table, key, f"expected a non-empty string, got {v!r}")
    return v


def _str_list(
    v: Any, source: str, table: str, key: str, choices: tuple[str, ...] | list[str], allow_empty: bool = False
) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _err(source, table, key, f"expected a list of strings, got {v!r}")
    if not v and not allow_empty:
        raise _err(source, table, key, "must not be empty")
    bad = [x for x in v if x not in choices]
    if bad:
        raise _err(source, table, key, f"unknown {', '.join(map(repr, bad))}; expected some of {', '.join(choices)}")
    if len(set(v)) != len(v):
        raise _err(source, table, key, f"names an entry twice: {v}")
    return list(v)


def parse_protocol(data: Any, source: str = "protocol") -> Protocol:
    if not isinstance(data, dict):
        raise ProtocolError(f"{source}: expected a TOML document with [study] and [training] tables")
    extra = set(data) - {"study", "training"}
    if extra:
        raise ProtocolError(
            f"{source}: unexpected top-level key(s) {sorted(extra)}; expected the tables [study] and [training]"
        )
    for t in ("study", "training"):
        if not isinstance(data.get(t), dict):
            raise ProtocolError(f"{source}: missing the [{t}] table")
    study, training = data["study"], dict(data["training"])

    bad = sorted(set(study) - set(STUDY_KEYS))
    if bad:
        raise _err(source, "study", bad[0], f"unknown key; expected some of {', '.join(STUDY_KEYS)}")
    for k in ("conditions", "panels", "seconds_per_pause", "instructions"):
        if k not in study:
            raise _err(source, "study", k, "missing")
    name = _str(study.get("name", Path(source).stem), source, "study", "name")
    conditions = _str_list(study["conditions"], source, "study", "conditions", CONDITIONS)
    if "hill" not in conditions:
        raise _err(source, "study", "conditions", "must include 'hill' (the condition the participant edits in)")
    panels = _str_list(study["panels"], source, "study", "panels", tuple(PANELS), allow_empty=True)
    edit_ops = _str_list(study.get("edit_ops", list(EDIT_OPS)), source, "study", "edit_ops", EDIT_OPS, allow_empty=True)
    seconds = _float(study["seconds_per_pause"], source, "study", "seconds_per_pause", lo=0, lo_open=True)
    instructions = _str(study["instructions"], source, "study", "instructions").strip()

    bad = sorted(set(training) - set(TRAINING_KEYS))
    if bad:
        raise _err(source, "training", bad[0], f"unknown key; expected some of {', '.join(TRAINING_KEYS)}")
    for k in REQUIRED_TRAINING:
        if k not in training:
            raise _err(source, "training", k, "missing")
    dataset = training.pop("dataset")
    if dataset not in DATASET_NAMES:
        raise _err(source, "training", "dataset", f"unknown {dataset!r}; expected one of {', '.join(DATASET_NAMES)}")
    epochs = _int(training.pop("epochs"), source, "training", "epochs", lo=1)
    pause_at = training.pop("pause_at")
    if not isinstance(pause_at, list):
        raise _err(source, "training", "pause_at", f"expected a list of epochs, got {pause_at!r}")
    pause_at = [_int(e, source, "training", "pause_at", lo=2) for e in pause_at]
    if not pause_at and "hill" in conditions:
        raise _err(source, "training", "pause_at", "the hill condition needs at least one pause")
    over = [e for e in pause_at if e > epochs]
    if over:
        raise _err(source, "training", "pause_at", f"{over} beyond the last epoch ({epochs})")
    if sorted(set(pause_at)) != pause_at:
        raise _err(source, "training", "pause_at", f"must be increasing without repeats, got {pause_at}")
    alpha = _float(training.pop("alpha"), source, "training", "alpha", lo=0, hi=1)
    lam = _float(training.pop("lam"), source, "training", "lam", lo=0)
    seed = _int(training.pop("seed"), source, "training", "seed", lo=0)
    model = training.pop("model", None)
    if model is not None:
        from hill_app.engine.models import MODELS

        if model not in MODELS:
            raise _err(source, "training", "model", f"unknown {model!r}; expected one of {', '.join(MODELS)}")
    data_root = training.pop("data_root", None)
    if data_root is not None:
        data_root = str(Path(_str(data_root, source, "training", "data_root")).expanduser())
    elif dataset in ("cifar10", "pamap2"):
        raise _err(source, "training", "data_root", f"the {dataset} data set needs a data folder")

    for k, v in training.items():
        kind = _EXTRA_TYPES.get(k)
        if kind is int:
            _int(v, source, "training", k, lo=0)
        elif kind is float:
            _float(v, source, "training", k)
        elif kind is str:
            _str(v, source, "training", k)
        elif kind is bool and not isinstance(v, bool):
            raise _err(source, "training", k, f"expected true or false, got {v!r}")
        elif kind == "size" and (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or (isinstance(v, int) and v < 1)
            or (isinstance(v, float) and not 0 < v < 1)
        ):
            raise _err(source, "training", k, f"expected a count (integer >= 1) or a fraction in (0, 1), got {v!r}")
    dev = training.get("device")
    if dev is not None and not re.fullmatch(r"auto|cpu|cuda(:\d+)?", dev):
        raise _err(source, "training", "device", f"expected auto, cpu or cuda[:N], got {dev!r}")

    proto = Protocol(
        name=name,
        dataset=dataset,
        epochs=epochs,
        pause_at=pause_at,
        seconds_per_pause=seconds,
        alpha=alpha,
        lam=lam,
        seed=seed,
        conditions=conditions,
        panels=panels,
        instructions=instructions,
        model=model,
        data_root=data_root,
        edit_ops=edit_ops,
        training=training,
    )
    try:  # the remaining RunConfig fields (types and ranges) through the engine's own checks
        cfg = RunConfig(
            **{
                **training,
                "dataset": dataset,
                "model": model,
                "epochs": epochs,
                "pause_at": pause_at,
                "alpha": alpha,
                "lam": lam,
                "seed": seed,
                "data_root": data_root,
            }
        )
        cfg.resolved()
    except ConfigError as e:
        key = str(e).split(":", 1)[0]
        raise ProtocolError(f"{source}: [training] {e}" if key in TRAINING_KEYS else f"{source}: {e}") from None
    except TypeError as e:
        raise ProtocolError(f"{source}: [training] {e}") from None
    return proto
