"""The resolved configuration of a run: everything needed to start (or replay) it, JSON round-trippable."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DATASETS = ("digits", "cifar10", "pamap2", "synthetic")

# Per-data-set defaults: a small readable table rather than a framework.
DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"batch_size": 64, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
               "view_size": 0},
    "cifar10": {"batch_size": 500, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                "view_size": 3000},
    "pamap2": {"batch_size": 128, "optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4,
               "view_size": 3000},
    "synthetic": {"batch_size": 128, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                  "view_size": 2000},
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
    amp: str = "auto"          # auto: bf16 autocast on CUDA, off on CPU; or "off" / "bf16"
    compile: bool | None = None  # compile the loss and capture the step in a CUDA graph; None: on for CUDA only
    checkpoint_every: int = 0  # epochs; 0 = only at pauses and at the end
    synthetic_size: int = 2000

    def resolved(self) -> "RunConfig":
        """A copy with data-set defaults filled in and every field checked."""
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset: unknown {self.dataset!r}; expected one of {', '.join(DATASETS)}")
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
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs: must be a positive integer, got {self.epochs!r}")
        bad = [e for e in self.pause_at if not isinstance(e, int) or not 2 <= e <= self.epochs]
        if bad:
            raise ConfigError(f"pause_at: {bad} outside 2..{self.epochs} (epochs are numbered from 1 and the "
                              "projection is fitted after epoch 1)")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha: must be in [0, 1], got {self.alpha}")
        if self.lam < 0:
            raise ConfigError(f"lam: must be >= 0, got {self.lam}")
        if self.batch_size is not None and self.batch_size < 2:
            raise ConfigError(f"batch_size: must be >= 2, got {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")
        if self.optimizer is not None and self.optimizer not in ("sgd", "adam", "adamw"):
            raise ConfigError(f"optimizer: expected sgd, adam or adamw, got {self.optimizer!r}")
        if self.projection not in ("lda", "pca"):
            raise ConfigError(f"projection: expected lda or pca, got {self.projection!r}")
        if self.amp not in ("auto", "off", "bf16"):
            raise ConfigError(f"amp: expected auto, off or bf16, got {self.amp!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip: must be > 0 or unset, got {self.grad_clip}")
        if self.dataset in ("cifar10", "pamap2") and not self.data_root:
            raise ConfigError(f"data_root: the {self.dataset} data set needs a data folder (--data-root)")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown config field(s): {sorted(unknown)}")
        return cls(**d)

    def save(self, path: Path) -> None:
        from .files import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the run config: {e}") from e
