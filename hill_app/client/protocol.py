"""The one interface through which the window, scripts and agents talk to a run.

Two implementations: ``local.LocalRunClient`` wraps a ``TrainingSession`` in this process (the default
window), ``remote.RemoteRunClient`` talks to ``hill-app train --serve`` over HTTP + WebSocket. Callers
never touch the session itself: commands go in through ``submit``, everything else comes out as events
or as plain JSON-like data, so an attached window behaves like the in-process one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class RunClient(Protocol):
    source: str  # recorded with every command: "window", "agent:NAME", "script"

    def submit(self, command: str, args: Mapping[str, Any] | None = None, *, uuid: str | None = None) -> str:
        """Queue a command; returns its uuid. Status changes arrive as ``command`` events with that uuid."""
        ...

    def poll_events(self, max_events: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Events since the last poll, oldest first, as (kind, data); never blocks. Kinds are the engine's:
        command, step, epoch, paused, resumed, snapshot, checkpoint, evaluation, finished, error, log."""
        ...

    def info(self) -> dict[str, Any]:
        """Static facts of the run: {"run_dir", "config", "dataset": {"name", "num_classes", "class_names",
        "kind", "input_shape", "n_train", "view_size"}, "model": layer tree, "state": {"status", "epoch",
        "step", "branch", "paused"}}."""
        ...

    def view_samples(self, indices: Sequence[int]) -> np.ndarray:
        """Raw inputs (images or signals) of view-set samples, for hover previews."""
        ...

    def view_labels(self) -> np.ndarray:
        """Labels of the view set, in view order."""
        ...

    def latest_snapshot(self) -> dict[str, Any] | None:
        """The newest latent snapshot (z, labels, preds, layout, ...) or None before epoch 1."""
        ...

    def checkpoints(self) -> list[dict[str, Any]]:
        """The checkpoint tree's nodes (uuid, parent, branch, epoch, step, metrics, note)."""
        ...

    def journal(self, offset: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """A page of journal records, in order."""
        ...

    def close(self) -> None:
        """Detach. The run goes on (or stays paused)."""
        ...
