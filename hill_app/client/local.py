"""LocalRunClient: the RunClient interface around a TrainingSession in this process (the default window).

Commands go through ``session.submit`` (thread-safe) with this client's source; events are drained from the
session's bounded channel. Everything else is read from facts that do not change while training runs (the
data set, the view set, the layer structure) or from the run folder's files, so the GUI thread never reads
a ``Command`` or a tensor the training thread is writing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hill_app.engine.events import EventChannel
    from hill_app.engine.session import TrainingSession


class LocalRunClient:
    """One client of a session in this process. ``source`` is recorded with every command it sends."""

    def __init__(self, session: TrainingSession, *, source: str = "window", events: EventChannel | None = None) -> None:
        from hill_app.server.state import capture

        self.session = session
        self.source = source
        self._events = events if events is not None else session.events
        self._static = capture(session)  # read once, before training runs: data set, layers, optimiser
        self._last_snapshot: dict[str, Any] | None = None

    # ------------------------------------------------------------------ RunClient

    def submit(self, command: str, args: Mapping[str, Any] | None = None, *, uuid: str | None = None) -> str:
        """Queue a command; a malformed one fails at once (its ``failed`` status arrives as an event)."""
        cmd = self.session.submit(command, dict(args) if args is not None else {}, source=self.source, uuid=uuid)
        return cmd.uuid

    def poll_events(self, max_events: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        return [(k, d) for k, d, _, _ in self.poll_timed(max_events)]

    def poll_timed(self, max_events: int | None = None) -> list[tuple[str, dict[str, Any], float, float]]:
        """Like poll_events, with (kind, data, time emitted, time received) as RemoteRunClient gives them."""
        out = []
        for ev in self._events.drain(max_events=max_events):
            if ev.kind == "snapshot":
                self._last_snapshot = ev.data
            out.append((ev.kind, ev.data, ev.time, ev.time))
        return out

    def info(self) -> dict[str, Any]:
        from hill_app.server.state import _module_tree

        st = self._static
        return {
            "run_dir": str(Path(st.run_dir).resolve()),
            "run_name": st.run_name,
            "config": st.config,
            "device": st.device,
            "dataset": st.dataset,
            "model": _module_tree(self.session.model),
            "optimizer": {"name": st.optimizer_name, **st.optimizer},
            "state": self.state(),
            "view_indices": st.view_idx.tolist(),
        }

    def state(self) -> dict[str, Any]:
        """Where the run stands (plain ints and strings the training thread sets; reading them is safe)."""
        s = self.session
        status = "finished" if s.finished else ("paused" if s.paused else "running")
        return {
            "status": status,
            "paused": bool(s.paused),
            "epoch": int(s.epoch),
            "step": int(s.step),
            "branch": str(s.branch),
            "epochs_total": int(s.config.epochs),
        }

    def view_samples(self, indices: Sequence[int]) -> np.ndarray:
        import torch

        rows = torch.from_numpy(self._static.view_idx[np.asarray(list(indices), dtype=np.int64)])
        return np.asarray(self._static.view_inputs[rows].numpy())

    def view_labels(self) -> np.ndarray:
        return np.asarray(self._static.view_labels)

    def view_indices(self) -> np.ndarray:
        """Training-sample index of each view position (drop the selected points, point edits)."""
        return np.asarray(self._static.view_idx)

    def latest_snapshot(self) -> dict[str, Any] | None:
        return self._last_snapshot

    def checkpoints(self) -> list[dict[str, Any]]:
        """The nodes of checkpoints/tree.json (replaced atomically, so reading it mid-run is safe)."""
        p = self.session.tree.index_path
        if not Path(p).exists():
            return []
        nodes = json.loads(Path(p).read_text()).get("nodes", [])
        return [n for n in nodes if isinstance(n, dict) and isinstance(n.get("uuid"), str)]

    def journal(self, offset: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        from hill_app.engine.journal import read_journal

        out = []
        for i, r in enumerate(read_journal(Path(self.session.run_dir) / "journal.jsonl")):
            if i >= offset + limit:
                break
            if i >= offset:
                out.append(r)
        return out

    def close(self) -> None:
        """Nothing to release: the session belongs to whoever runs it (the window's worker)."""
