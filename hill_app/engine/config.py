"""The resolved configuration of a run: everything needed to start (or replay) it, JSON round-trippable."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hill_app.datasets import DATASET_NAMES

# Per-data-set defaults: a small readable table rather than a framework.
DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"batch_size": 64, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "view_size": 0},
    "cifar10": {
        "batch_size": 500,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "view_size": 3000,
    },
    "pamap2": {
        "batch_size": 128,
        "optimizer": "adam",
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "view_size": 3000,
    },
    "synthetic": {
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "view_size": 2000,
    },
}


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent; the message names the field."""


@dataclass
class RunConfig:
    """One run. ``None`` fields take the data set's default when resolved.

    Epochs are numbered 1..epochs. ``pause_at`` = E pauses at the start of epoch E, after E - 1 epochs,
    so a pause at the last epoch still trains one epoch with its edits. The projection is fitted after
    epoch 1, so pauses start at 2.
    """

    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    model: str | None = None
    epochs: int = 40
    pause_at: list[int] = field(default_factory=lambda: [25, 30, 35, 40])
    alpha: float = 0.5
    lam: float = 0.1
    seed: int = 0
    device: str = "auto"
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    projection: str = "pca"
    view_size: int | None = None
    w_center: float = 1.0
    w_spread: float = 1.0
    w_sep: float = 1.0
    w_point: float = 1.0
    amp: str = "auto"  # auto: bf16 autocast on CUDA, off on CPU; or "off" / "bf16"
    compile: bool | None = None  # compile the loss and capture the step in a CUDA graph; None: on for CUDA only
    checkpoint_every: int = 0  # epochs; 0 = only at pauses and at the end
    synthetic_size: int = 2000
    val_size: int | float | None = None  # validation split: a count (int >= 1), a fraction (0 < f < 1), None: default
    train_size: int | float | None = None  # training subset of the rest: a count, a fraction, None: all of it
    ce_weight: str = "blend"  # "blend": (1 - alpha) CE + alpha L_human (the paper); "full": CE + alpha L_human

    def resolved(self) -> RunConfig:
        """A copy with data-set defaults filled in and every field checked."""
        if self.dataset not in DATASET_NAMES:
            raise ConfigError(f"dataset: unknown {self.dataset!r}; expected one of {', '.join(DATASET_NAMES)}")
        d = asdict(self)
        for k, v in DEFAULTS[self.dataset].items():
            if d.get(k) is None:
                d[k] = v
        if d["model"] is None:
            from .models import default_model

            d["model"] = default_model(self.dataset)
        out = RunConfig(**d)
        out.check()
        return out

    def check(self) -> None:
        """Every field's type and range, so a hand-edited config.json or a CLI value is refused with its name
        (never a TypeError deep in training, never a NaN that trains silently)."""
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs: must be a positive integer, got {_show(self.epochs)}")
        _int("epochs", self.epochs, 1, MAX_EPOCHS)
        if not isinstance(self.pause_at, list):
            raise ConfigError(f"pause_at: expected a list of epochs, got {self.pause_at!r}")
        bad = [e for e in self.pause_at if isinstance(e, bool) or not isinstance(e, int) or not 2 <= e <= self.epochs]
        if bad:
            raise ConfigError(
                f"pause_at: {_show(bad[:10])} outside 2..{self.epochs} (epochs are numbered from 1 "
                "and the projection is fitted after epoch 1)"
            )
        _num("alpha", self.alpha, 0.0, 1.0)
        _num("lam", self.lam, 0.0, None)
        _int("seed", self.seed, 0, 2**63 - 1)
        if self.batch_size is not None:
            _int("batch_size", self.batch_size, 2, 10**7)
        if self.lr is not None:
            _num("lr", self.lr, 0.0, None, lo_open=True)
        for name in ("momentum", "weight_decay"):
            if getattr(self, name) is not None:
                _num(name, getattr(self, name), 0.0, 1.0 if name == "momentum" else None)
        if self.grad_clip is not None:
            _num("grad_clip", self.grad_clip, 0.0, None, lo_open=True, what="> 0 or unset")
        for name in ("w_center", "w_spread", "w_sep", "w_point"):
            _num(name, getattr(self, name), 0.0, None)
        _choice("optimizer", self.optimizer, ("sgd", "adam", "adamw"), allow_none=True)
        _choice("projection", self.projection, ("lda", "pca"))
        _choice("amp", self.amp, ("auto", "off", "bf16"))
        _choice("ce_weight", self.ce_weight, ("blend", "full"))
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"device: expected auto, cpu or cuda[:N], got {self.device!r}")
        if self.model is not None:
            from .models import MODELS

            if not isinstance(self.model, str) or self.model not in MODELS:
                raise ConfigError(f"model: unknown {self.model!r}; expected one of {', '.join(sorted(MODELS))}")
        for name in ("download",):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise ConfigError(f"compile: expected true, false or unset, got {self.compile!r}")
        if self.view_size is not None:
            _int("view_size", self.view_size, 0, 10**9)
        _int("checkpoint_every", self.checkpoint_every, 0, MAX_EPOCHS)
        _int("synthetic_size", self.synthetic_size, 20, 10**7)
        for name in ("val_size", "train_size"):
            check_size(name, getattr(self, name))
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise ConfigError(f"data_root: expected a folder path, got {self.data_root!r}")
        if self.dataset in ("cifar10", "pamap2") and not self.data_root:
            raise ConfigError(f"data_root: the {self.dataset} data set needs a data folder (--data-root)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"expected a JSON object of config fields, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown config field(s): {sorted(unknown)}")
        return cls(**d)

    def save(self, path: Path) -> None:
        from .files import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"{path}: not found; this folder holds no run (a run folder starts with its config.json)"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the run config ({getattr(e, 'strerror', None) or e})") from None
        try:
            d = json.loads(text, parse_constant=_no_constant)
        except (json.JSONDecodeError, ValueError, RecursionError) as e:
            raise ConfigError(f"{path}: the run config is not valid JSON ({str(e)[:200]})") from None
        try:
            return cls.from_json(d)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None


MAX_EPOCHS = 100_000


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a value a config may hold")


def _int(name: str, v: Any, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{name}: expected an integer in {lo}..{hi}, got {_show(v)}")
    if v < lo:
        raise ConfigError(f"{name}: must be >= {lo}, got {_show(v)}")
    if v > hi:
        raise ConfigError(f"{name}: must be <= {hi}, got {_show(v)}")


def _num(name: str, v: Any, lo: float, hi: float | None, *, lo_open: bool = False, what: str | None = None) -> None:
    rng = what or ((f"> {lo:g}" if lo_open else f">= {lo:g}") if hi is None else f"in [{lo:g}, {hi:g}]")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{name}: expected a finite number {rng}, got {_show(v)}")
    if (v <= lo if lo_open else v < lo) or (hi is not None and v > hi):
        raise ConfigError(f"{name}: must be {rng}, got {_show(v)}")


def _choice(name: str, v: Any, options: tuple[str, ...], allow_none: bool = False) -> None:
    if (v is None and allow_none) or (isinstance(v, str) and v in options):
        return
    raise ConfigError(f"{name}: expected {', '.join(options[:-1])} or {options[-1]}, got {_show(v)}")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:40] + f"... ({len(text)} characters)"


def check_size(name: str, v: Any) -> None:
    """val_size / train_size: None, a count (int >= 1) or a fraction strictly between 0 and 1."""
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{name}: expected a count (integer >= 1) or a fraction in (0, 1), got {_show(v)}")
    if isinstance(v, int):
        if not 1 <= v <= 10**9:
            raise ConfigError(f"{name}: a count must be in 1..{10**9}, got {_show(v)}")
        return
    if not (math.isfinite(v) and 0 < v < 1):
        raise ConfigError(
            f"{name}: a fraction must lie strictly between 0 and 1, got {_show(v)} "
            "(write a count as a whole number, e.g. 5000)"
        )
