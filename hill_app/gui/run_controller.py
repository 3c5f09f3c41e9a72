"""The one owner of the window's run: the training worker (in process) or an attached client, the poll
timer, and the dispatch of events to the window.

Every command the window sends goes through :meth:`RunController.submit`, i.e. ``RunClient.submit`` with the
source ``"window"``, whether the run trains in this process (:class:`LocalRunClient`) or in a served job
(:class:`RemoteRunClient`). The controller polls the client at ``POLL_HZ`` on the GUI thread, hands command,
epoch, pause, log and checkpoint events to the view in order, and coalesces snapshots and step metrics: only
the newest of a drain is drawn, and while training runs at most every ``DRAW_S``.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import QObject, QTimer

from hill_app.client.protocol import RunClient
from hill_app.engine.config import RunConfig

from .worker import TrainingWorker

if TYPE_CHECKING:
    from hill_app.engine.session import TrainingSession

POLL_HZ = 30
MAX_EVENTS_PER_POLL = 1000
STEP_DRAW_S = 0.1  # progress bar and step line: 10 Hz is smooth enough, and each repaint costs
DRAW_S = 0.25  # while training: latent view and metric plots at most 4 times a second
SLOW_MS = 50.0  # the main-thread stall budget


@dataclass
class PollStats:
    """How long the timer callback ran (ms): the main-thread work per poll while training."""

    count: int = 0
    max_ms: float = 0.0
    total_ms: float = 0.0
    slow: list[tuple[float, dict]] = field(default_factory=list)  # polls over SLOW_MS, with their event kinds
    worst: tuple[float, dict] = (0.0, {})

    def record(self, ms: float, kinds: dict[str, int]) -> None:
        self.count += 1
        self.total_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms
            self.worst = (round(ms, 2), kinds)
        if ms > SLOW_MS and len(self.slow) < 100:
            self.slow.append((round(ms, 2), kinds))

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.count if self.count else 0.0


class RunView(Protocol):
    """What the controller tells the window. Called on the GUI thread only."""

    def run_ready(self, client: RunClient, info: dict[str, Any]) -> None: ...
    def handle_event(self, kind: str, data: dict[str, Any], t: float) -> None: ...
    def show_snapshot(self, data: dict[str, Any]) -> None: ...
    def show_step(self, data: dict[str, Any]) -> None: ...
    def refresh_plots(self) -> bool: ...
    def run_finished(self, summary: dict[str, Any]) -> None: ...
    def run_failed(self, message: str, traceback_text: str, started: bool) -> None: ...
    def report_bug(self, traceback_text: str) -> None: ...


def commit_command(edits: list[dict]) -> tuple[str, dict[str, Any]]:
    """The one command that commits a pause's edits and resumes (the engine applies both atomically)."""
    if edits:
        return "set_latent_targets", {"edits": edits, "resume": True}
    return "resume_training", {}


class RunController(QObject):
    """One run at a time: started here (``start_local``) or attached (``attach``)."""

    def __init__(self, view: RunView, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.worker: TrainingWorker | None = None
        self.client: RunClient | None = None
        self.attached = False  # a served job (RemoteRunClient); closing the window only detaches
        self.target: str | None = None  # what was attached (URL or run folder), for re-attaching
        self.poll_stats = PollStats()
        self.ended = False
        self.paused = False
        self._pending_step: dict[str, Any] | None = None
        self._pending_snap: dict[str, Any] | None = None
        self._last_step_draw = 0.0
        self._last_snap_draw = 0.0
        self._last_metrics_draw = 0.0
        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / POLL_HZ))
        self.timer.timeout.connect(self.poll)

    # ------------------------------------------------------------------ what runs

    @property
    def session(self) -> TrainingSession | None:
        """The in-process session (None when attached or before it is built)."""
        return self.worker.session if self.worker is not None else None

    @property
    def busy(self) -> bool:
        """A worker thread is alive (loading, training or saving its last checkpoint)."""
        return self.worker is not None and self.worker.isRunning()

    @property
    def live(self) -> bool:
        """Commands can be sent: a client exists and its run has not ended."""
        return self.client is not None and not self.ended

    def start_local(self, config: RunConfig, run_dir: Path) -> TrainingWorker:
        """Train ``config`` in ``run_dir`` in a worker thread of this process."""
        self._reset()
        if self.worker is not None:  # the last run's thread has ended: let its session (model, data) go
            self.worker.deleteLater()
        self.worker = w = TrainingWorker(config, run_dir, self)
        w.runFinished.connect(self._worker_finished)
        w.runFailed.connect(self._worker_failed)
        w.sessionReady.connect(lambda _s: self._session_ready())
        w.start()
        self.timer.start()
        return w

    def attach(self, client: RunClient, target: str) -> dict[str, Any]:
        """Follow a served job through ``client`` (already connected); returns its info."""
        self._reset()
        self.client = client
        self.attached = True
        self.target = target
        info = client.info()
        st = info.get("state") or {}
        self.ended = st.get("status") in ("finished", "failed")
        self.paused = bool(st.get("paused"))
        self.view.run_ready(client, info)
        self.timer.start()
        return info

    def detach(self) -> None:
        """Stop following an attached job; the job goes on (or stays paused)."""
        if self.client is not None and self.attached:
            self.poll()
            try:
                self.client.close()
            finally:
                self.client = None
                self.attached = False
                self.timer.stop()

    def _reset(self) -> None:
        if self.attached:
            self.detach()
        self.client = None
        self.ended = False
        self.paused = False
        self._pending_step = self._pending_snap = None

    def _session_ready(self) -> None:
        """Idempotent: called from the poll (which may see the session first) and from the worker's signal."""
        w = self.worker
        if w is None or w.session is None or self.client is not None:
            return
        from hill_app.client.local import LocalRunClient

        # Torch, Qt, pyqtgraph and the data are loaded now: ~400k long-lived objects that every full GC pass
        # would walk (100-250 ms with the GIL held, in whichever thread triggers it; measured). Freezing them
        # out of the collector keeps those passes short. Nothing frozen is ever garbage we'd want back.
        gc.freeze()
        self.client = LocalRunClient(w.session, source="window", events=w.events)
        self.view.run_ready(self.client, self.client.info())

    # ------------------------------------------------------------------ commands

    def submit(self, command: str, args: dict[str, Any] | None = None) -> str | None:
        """Send a command through the client; its uuid, or None when no run can take it."""
        if not self.live:
            return None
        assert self.client is not None
        return self.client.submit(command, args or {})

    def commit(self, edits: list[dict]) -> str | None:
        """Commit the pause's edits and resume, as one command."""
        name, args = commit_command(edits)
        return self.submit(name, args)

    def stop(self) -> None:
        """Stop the run (a final checkpoint is saved); a run still loading never starts."""
        if self.worker is not None and self.worker.isRunning():
            self.worker.cancel()
        elif self.live:
            self.submit("stop_training", {})

    # ------------------------------------------------------------------ polling

    def poll(self) -> None:
        """Drain the client (bounded), hand events to the view in order, then draw what changed, coalesced.

        While training runs a snapshot is drawn at most every DRAW_S and the plots are refreshed at most every
        DRAW_S and never in the tick that drew a snapshot; when the run pauses or ends everything is drawn at
        once. The tick that sets up a new session drains nothing.
        """
        t0 = time.perf_counter()
        kinds: dict[str, int] = {}
        if self.client is None and self.worker is not None and self.worker.session is not None:
            self._session_ready()
            kinds["session"] = 1
        elif self.client is not None:
            try:
                evs = self._drain()
            except Exception as e:  # a remote client that lost its server: say so, keep the window
                evs = [("connection", {"connected": False, "message": f"{type(e).__name__}: {e}"}, time.time())]
            for k, _, _ in evs:
                kinds[k] = kinds.get(k, 0) + 1
            try:
                self._dispatch(evs)
                self.flush(force=self.paused or self.ended)
            except Exception:  # a bug in a handler must not freeze the window: report it and go on
                import traceback

                self.view.report_bug(traceback.format_exc())
        self.poll_stats.record((time.perf_counter() - t0) * 1000.0, kinds)

    def _drain(self) -> list[tuple[str, dict[str, Any], float]]:
        c = self.client
        assert c is not None
        timed = getattr(c, "poll_timed", None)  # both clients of this package have it; others may not
        if timed is not None:
            return [(k, d, t) for k, d, t, _ in timed(MAX_EVENTS_PER_POLL)]
        now = time.time()
        return [(k, d, now) for k, d in c.poll_events(MAX_EVENTS_PER_POLL)]

    def _dispatch(self, evs: list[tuple[str, dict[str, Any], float]]) -> None:
        snap = step = None
        for k, d, t in evs:
            if k == "step":
                step = d
                continue
            if k == "snapshot":
                snap = d
                continue
            if k == "paused":
                self.paused = True
            elif k == "resumed":
                self.paused = False
            self.view.handle_event(k, d, t)
            if k == "finished" and self.attached:
                self.ended = True
                self.flush(force=True)
                self.view.run_finished(d)
            elif k == "error" and self.attached:
                self.ended = True
                self.view.run_failed(str(d.get("message", "")), str(d.get("traceback") or ""), True)
        if snap is not None:
            self._pending_snap = snap
        if step is not None:
            self._pending_step = step

    def flush(self, force: bool = False) -> None:
        """Draw the pending snapshot, the plots and the step line when they are due (or now, with ``force``)."""
        now = time.perf_counter()
        drew = False
        if self._pending_snap is not None and (force or now - self._last_snap_draw >= DRAW_S):
            snap, self._pending_snap = self._pending_snap, None
            self.view.show_snapshot(snap)
            self._last_snap_draw = now
            drew = True
        if force or (not drew and now - self._last_metrics_draw >= DRAW_S):
            if self.view.refresh_plots():
                self._last_metrics_draw = now
        if self._pending_step is not None and (force or now - self._last_step_draw >= STEP_DRAW_S):
            self.view.show_step(self._pending_step)
            self._pending_step = None
            self._last_step_draw = now

    @property
    def has_pending_snapshot(self) -> bool:
        return self._pending_snap is not None

    def drain_all(self) -> None:
        """Handle what is left (the thread has ended, so nothing new arrives), then draw."""
        for _ in range(100):
            w = self.worker
            if self.client is None or w is None or not len(w.events):
                break
            self.poll()
        self.flush(force=True)

    # ------------------------------------------------------------------ the end of an in-process run

    def _worker_finished(self, summary: dict) -> None:
        self._session_ready()
        self.drain_all()
        self.ended = True
        self.timer.stop()
        self.view.run_finished(summary)

    def _worker_failed(self, message: str, tb: str) -> None:
        started = self.worker is not None and self.worker.session is not None
        self._session_ready()
        self.drain_all()
        self.ended = True
        self.timer.stop()
        self.view.run_failed(message, tb, started)

    def close(self, stop_local: bool = True) -> None:
        """The window closes: stop an in-process run and wait for its thread; only detach from a served one."""
        w = self.worker
        if stop_local and w is not None and w.isRunning():
            w.cancel()
            w.wait()
        self.detach()
        self.timer.stop()
