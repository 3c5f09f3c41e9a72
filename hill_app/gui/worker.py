"""The training thread of the GUI: builds the TrainingSession (data loading can take seconds) and runs it.

The main thread never waits on this thread. Events flow out through the session's bounded EventChannel,
which the window polls with a timer; the three signals here only say that the session exists, that the
run ended, or that it failed (with the message a user can act on, and the traceback for the log).
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThread, Signal

from hill_app.engine.config import ConfigError, RunConfig
from hill_app.engine.events import EventChannel


def _user_message(e: BaseException) -> str:
    """Config and data errors already read as sentences; anything else gets its type name in front."""
    from hill_app.datasets import DataError
    from hill_app.engine.checkpoints import CheckpointError

    if isinstance(e, (ConfigError, DataError, CheckpointError)):
        return str(e)
    return f"{type(e).__name__}: {e}"


TRAINING_NICENESS = 5


def _lower_thread_priority(niceness: int = TRAINING_NICENESS) -> None:
    """Let the GUI thread win the CPU when training saturates a small machine (2 cores, no GPU).

    QThread.setPriority is ignored on Linux, so the thread's own nice value is raised; the intra-op
    (OpenMP) threads that torch creates for this thread inherit it. Measured on 2 cores with digits (40
    epochs, a snapshot per epoch): the longest event-loop gap fell from ~89 to ~67 ms, the 99th percentile
    from ~51 to ~39 ms, at the same training time. Numerics are untouched (same thread count), so a run made
    here replays exactly headless. Linux only; elsewhere (or if refused) training runs at normal priority.
    """
    import os
    import threading

    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
    except (AttributeError, OSError):
        pass


class TrainingWorker(QThread):
    """One run in one QThread. ``events`` exists before the session does, so polling can start at once."""

    sessionReady = Signal(object)  # TrainingSession (constructed, about to run)
    runFinished = Signal(dict)  # the run's summary
    runFailed = Signal(str, str)  # message, traceback

    def __init__(self, config: RunConfig, run_dir: str | Path, parent: Any = None) -> None:
        super().__init__(parent)
        self.config = config
        self.run_dir = Path(run_dir)
        self.events = EventChannel(maxlen=4000)
        self.session: Any = None
        self.samples: Any = None
        self.error: str | None = None
        self.summary: dict | None = None
        self._cancelled = False

    def cancel(self) -> None:
        """Stop as soon as possible: a running session gets stop_training; one still loading never starts."""
        self._cancelled = True
        if self.session is not None:
            self.session.submit("stop_training", {}, source="window")

    def run(self) -> None:  # noqa: D401 - QThread entry point
        from hill_app.engine.session import TrainingSession

        from .samples import SampleSource

        _lower_thread_priority()
        try:
            session = TrainingSession(self.config, self.run_dir, events=self.events)
            try:
                self.samples = SampleSource.from_bundle(session.data, session.view_idx)
            except Exception:  # pictures are a nicety: a failure here must not stop the run
                self.events.emit(
                    "log", level="warning", message="cannot render samples for hover:\n" + traceback.format_exc()
                )
            # The window may notice ``session`` in its poll before the queued signal arrives; either works.
            self.session = session
            self.sessionReady.emit(session)
            if self._cancelled:
                session.submit("stop_training", {}, source="window")
            self.summary = session.run()
        except BaseException as e:  # noqa: BLE001 - everything must reach the user, nothing may kill Qt
            self.error = _user_message(e)
            self.runFailed.emit(self.error, traceback.format_exc())
            return
        self.runFinished.emit(self.summary)
