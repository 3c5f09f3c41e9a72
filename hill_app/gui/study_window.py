"""The study window: `hill-app study PROTOCOL --participant P07` (without --scripted).

One window, four pages:

1. instructions: the protocol's text, the participant id, what the session will do, and Start;
2. the training session: the main window, given the protocol's :class:`Restrictions`, under a study bar with
   the countdown of the current pause. The run is the protocol's (data set, model, epochs, pauses, alpha,
   lambda, seed); New run, Open run and Attach are not available; command panels the protocol does not
   allow are hidden, and a command or a latent edit op it does not allow is refused with a visible message
   (and a ``refused`` record in the study log). When a pause's time runs out the pending edits are committed
   and training resumes; the participant may resume earlier;
3. the questionnaires (UMUX-Lite, NASA-TLX with optional pairwise weights);
4. thank you, with the progress of the baseline condition.

The session leaves the same folder as a scripted one (studies/README.md): ``study_log.jsonl`` written through
the same :class:`ConditionRecorder` (``session_started`` with ``mode="interactive"``), ``protocol.toml``,
``hill/`` and ``baseline/`` run folders and ``session.h5``. The baseline is run by the runner's own
``run_condition`` with the protocol's config and the same data bundle, in a thread started when the hill run
ends (never alongside it: both seed torch's global generator, and the participant's pause times should not
depend on a second run competing for the CPU), so ``hill-app report`` treats interactive sessions like
scripted ones. Closing the window mid-session stops what runs (the runs' journals end cleanly), writes
``session_aborted`` and leaves the session marked incomplete.
"""

from __future__ import annotations

import html
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from hill_app.engine.events import EventChannel
from hill_app.engine.progress import run_fraction
from hill_app.studies.protocol import Protocol
from hill_app.studies.questionnaires import AnswerError, score_answers
from hill_app.studies.runner import ConditionCancelled, check_participant, run_condition, write_session_h5
from hill_app.studies.session_log import ConditionRecorder, StudyLog, session_started

from .main_window import STYLE, MainWindow
from .questionnaire_dialog import QuestionnaireForm
from .restrictions import Restrictions
from .worker import _lower_thread_priority

TICK_MS = 100
GRACE_S = 3.0  # after a timed-out pause, resume without the edits if the commit did not go through
MESSAGE_MS = 10000  # how long a refusal stays on screen
WAIT_THREAD_MS = 60000

PAGES = ("instructions", "training", "questionnaires", "thanks")


def _fmt_clock(seconds: float) -> str:
    s = max(0, int(seconds + 0.999))
    return f"{s // 60}:{s % 60:02d}"


def session_exists(pdir: Path) -> bool:
    return pdir.exists() and any(pdir.iterdir())


_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")


def instructions_html(text: str) -> str:
    """The protocol's instructions as HTML: blank lines separate paragraphs, lines inside one are joined (a
    TOML string is wrapped by hand), and lines starting with -, * or 1. are list items."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        items: list[str] = []
        lines: list[str] = []
        for line in para.splitlines():
            if _ITEM.match(line):
                items.append(_ITEM.sub("", line).strip())
            elif items:
                items[-1] += " " + line.strip()
            else:
                lines.append(line.strip())
        if lines:
            out.append(f"<p>{html.escape(' '.join(lines))}</p>")
        if items:
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
    return "".join(out)


def _centered(inner: QWidget, max_width: int) -> QWidget:
    inner.setMaximumWidth(max_width)
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addStretch(1)
    lay.addWidget(inner, 100)
    lay.addStretch(1)
    return w


# ---------------------------------------------------------------- threads


class _PauseClock:
    """Listens on the run's event channel (training thread): when the current pause began, engine time."""

    def __init__(self) -> None:
        self.count = 0
        self.paused_at: float | None = None
        self.epoch: int | None = None

    def __call__(self, ev: Any) -> None:
        if ev.kind == "paused":
            self.epoch = ev.data.get("epoch")
            self.paused_at = ev.time
            self.count += 1
        elif ev.kind == "resumed":
            self.paused_at = None


class StudyWindowError(RuntimeError):
    """The study window cannot open in this process; the message says why."""


class BaselineWorker(QThread):
    """After the hill run: its final snapshot (as the runner takes it), then the baseline condition through the
    runner's ``run_condition`` (same protocol, config, seed and data bundle; no edits)."""

    progress = Signal(int, int, float)  # epoch, epochs, fraction done
    done = Signal(object)  # the baseline's summary (None when the protocol has no baseline)
    failed = Signal(str, str)  # message, traceback

    def __init__(
        self,
        protocol: Protocol,
        pdir: Path,
        log: StudyLog,
        cfg: Any,
        bundle: Any,
        hill_session: Any,
        parent: Any = None,
    ) -> None:
        super().__init__(parent)
        self.protocol, self.pdir, self.log, self.cfg, self.bundle = protocol, pdir, log, cfg, bundle
        self.hill_session = hill_session
        self._cancel = threading.Event()
        self._last_progress = 0.0

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """From any thread: the baseline stops at its next step (a checkpoint and a 'stopped' record)."""
        self._cancel.set()

    def _on_event(self, ev: Any) -> None:
        """On the training thread: step events become the progress signal, at most 10 a second."""
        if ev.kind != "step":
            return
        d, now = ev.data, time.monotonic()
        if now - self._last_progress < 0.1 and d["index_in_epoch"] != d["steps_in_epoch"]:
            return
        self._last_progress = now
        n = int(self.cfg.epochs)
        self.progress.emit(d["epoch"], n, run_fraction(d, n))

    def run(self) -> None:  # noqa: D401 - QThread entry point
        _lower_thread_priority()
        try:
            if self.hill_session is not None:
                self.hill_session.snapshot("final")  # the final layout, for the report's last 'after' panel
            summary = None
            if "baseline" in self.protocol.conditions and not self.cancelled:
                events = EventChannel()
                events.subscribe(self._on_event)
                summary = run_condition(
                    self.protocol,
                    "baseline",
                    self.pdir,
                    self.log,
                    self.cfg,
                    self.bundle,
                    [],
                    events=events,
                    cancel=self._cancel,
                )
        except ConditionCancelled as e:
            self.failed.emit(f"StudyCancelled: the participant closed the study window ({e})", "")
            return
        except BaseException as e:  # noqa: BLE001 - reported to the window, which logs it
            self.failed.emit(f"{type(e).__name__}: {e}", traceback.format_exc())
            return
        self.done.emit(summary)


class DataLoader(QThread):
    """Loads the protocol's data set while the instructions are read (class names for the log, the baseline's
    bundle)."""

    loaded = Signal(object)
    failed = Signal(str)

    def __init__(self, cfg: Any, parent: Any = None) -> None:
        super().__init__(parent)
        self.cfg = cfg

    def run(self) -> None:
        from hill_app.datasets import load_dataset

        c = self.cfg
        try:
            bundle = load_dataset(c.dataset, c.data_root, download=False, synthetic_size=c.synthetic_size, seed=c.seed)
        except Exception as e:  # noqa: BLE001
            self.failed.emit(str(e) or type(e).__name__)
            return
        self.loaded.emit(bundle)


# ---------------------------------------------------------------- the window


class StudyWindow(QMainWindow):
    """One participant session of ``protocol`` in ``study_dir/participant``."""

    sessionEnded = Signal(bool)  # complete?

    def __init__(
        self,
        protocol: Protocol,
        participant: str,
        study_dir: str | Path,
        device: str | None = None,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__()
        check_participant(participant)
        self.protocol = protocol
        self.participant = participant
        self.study_dir = Path(study_dir)
        self.pdir = self.study_dir / participant
        self.cfg = protocol.run_config(device)  # ConfigError for a bad device: the caller reports it
        self.phase = "instructions"  # instructions, training, questionnaires, thanks, done, aborted, failed
        self.log: StudyLog | None = None
        self.bundle: Any = None
        self.recorder: ConditionRecorder | None = None
        self.clock = _PauseClock()
        self.hill_summary: dict | None = None
        self.baseline_summary: dict | None = None
        self.baseline_done = False
        self.answers: dict | None = None
        self.scores: dict | None = None
        self.baseline_worker: BaselineWorker | None = None
        self.ask_before_close = True
        self._countdown_for: int | None = None  # the pause (clock.count) the countdown runs for
        self._expired_at: float | None = None
        self._auto_resumed_for: int | None = None
        self._fixing_edits = False
        self._start_requested = False

        # Qt appends the application's display name ("hill-app study"): the title does not repeat it.
        self.setWindowTitle(f"{protocol.name} \u2014 participant {participant}")
        self.setStyleSheet(
            STYLE
            + """
            QLabel#title { font-size: 16pt; font-weight: 700; color: #1a202c; }
            QFrame#studybar { background: #ffffff; border: 1px solid #dfe3ea; border-radius: 6px; }
            QLabel#clock { font-size: 20pt; font-weight: 700; font-family: monospace; }
            QLabel#message { background: #fef2f2; border: 1px solid #fecaca; color: #991b1b; border-radius: 4px;
                             padding: 4px 8px; }
        """
        )
        self.pages = QStackedWidget()
        self.setCentralWidget(self.pages)
        self.pages.addWidget(self._build_instructions())
        self.pages.addWidget(self._build_training(settings))
        self.pages.addWidget(self._build_questionnaires())
        self.pages.addWidget(self._build_thanks())
        self.tick = QTimer(self)
        self.tick.setInterval(TICK_MS)
        self.tick.timeout.connect(self._tick)
        self.message_timer = QTimer(self)
        self.message_timer.setSingleShot(True)
        self.message_timer.timeout.connect(self.message_label.hide)
        self.resize(1500, 980)

        if session_exists(self.pdir):
            self._instructions_error(
                f"{self.pdir} already holds a session; choose another participant id or study folder"
            )
        else:
            self.loader = DataLoader(self.cfg, self)
            self.loader.loaded.connect(self._data_loaded)
            self.loader.failed.connect(lambda msg: self._instructions_error(f"cannot load the data: {msg}"))
            self.loader.start()

    # ------------------------------------------------------------------ pages

    @property
    def page(self) -> str:
        return PAGES[self.pages.currentIndex()]

    def _show_page(self, name: str) -> None:
        self.pages.setCurrentIndex(PAGES.index(name))

    def _build_instructions(self) -> QWidget:
        p = self.protocol
        w = QWidget()
        outer = QVBoxLayout(w)
        outer.setContentsMargins(40, 48, 40, 40)
        outer.setSpacing(10)
        title = QLabel(p.name)
        title.setObjectName("title")
        outer.addWidget(title)
        who = QLabel(f"Participant <b>{html.escape(self.participant)}</b>")
        outer.addWidget(who)
        self.instructions_text = QTextBrowser()
        self.instructions_text.setOpenExternalLinks(False)
        self.instructions_text.setHtml(instructions_html(p.instructions))
        self.instructions_text.setStyleSheet(
            "QTextBrowser { background: #ffffff; border: 1px solid #dfe3ea; "
            "border-radius: 6px; padding: 16px 20px; font-size: 12pt; "
            "color: #1a202c; }"
        )
        outer.addWidget(self.instructions_text, 1)
        pauses = ", ".join(map(str, p.pause_at))
        secs = (
            f"{p.seconds_per_pause:g} seconds" if p.seconds_per_pause < 120 else f"{p.seconds_per_pause / 60:g} minutes"
        )
        plural = "s" if len(p.pause_at) > 1 else ""
        facts = QLabel(
            f"{p.dataset} \u00b7 {p.epochs} epochs \u00b7 training pauses before epoch{plural} "
            f"{pauses} \u00b7 {secs} per pause \u00b7 then two short questionnaires"
        )
        facts.setStyleSheet("color: #4a5568;")
        outer.addWidget(facts)
        row = QHBoxLayout()
        self.instructions_status = QLabel("Preparing the data\u2026")
        self.instructions_status.setWordWrap(True)
        self.instructions_status.setStyleSheet("color: #4a5568;")
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("primary")
        self.start_button.setMinimumWidth(160)
        self.start_button.setEnabled(False)
        self.start_button.clicked.connect(self.start_session)
        row.addWidget(self.instructions_status, 1)
        row.addWidget(self.start_button)
        outer.addLayout(row)
        return _centered(w, 900)

    def _build_training(self, settings: QSettings | None) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(6, 6, 6, 0)
        lay.setSpacing(4)
        bar = QFrame()
        bar.setObjectName("studybar")
        bl = QHBoxLayout(bar)
        bl.setContentsMargins(12, 6, 12, 6)
        who = QLabel(f"<b>{html.escape(self.participant)}</b> \u00b7 {html.escape(self.protocol.name)}")
        self.phase_label = QLabel("")
        self.phase_label.setWordWrap(True)
        self.clock_label = QLabel("")
        self.clock_label.setObjectName("clock")
        self.countdown_bar = QProgressBar()
        self.countdown_bar.setRange(0, 1000)
        self.countdown_bar.setTextVisible(False)
        self.countdown_bar.setFixedWidth(240)
        self.countdown_bar.setFixedHeight(12)
        self.message_label = QLabel("")
        self.message_label.setObjectName("message")
        self.message_label.setWordWrap(True)
        self.message_label.hide()
        bl.addWidget(who)
        bl.addSpacing(16)
        bl.addWidget(self.phase_label, 1)
        bl.addWidget(self.message_label, 1)
        bl.addWidget(self.countdown_bar)
        bl.addWidget(self.clock_label)
        lay.addWidget(bar)
        self.win = MainWindow(settings, restrictions=Restrictions.from_protocol(self.protocol))
        self.win.setWindowFlags(Qt.WindowType.Widget)
        self.win.setMinimumSize(0, 0)  # the study bar and margins come on top: the study window has its own
        self.win.refused.connect(self._refused)
        self.win.view.editsChanged.connect(self._edits_changed)
        lay.addWidget(self.win, 1)
        self._show_countdown(None)
        return w

    def _build_questionnaires(self) -> QWidget:
        self.questionnaire = QuestionnaireForm()
        self.questionnaire.submitted.connect(self._answers_given)
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(20, 20, 20, 10)
        lay.addWidget(self.questionnaire, 1)
        self.q_baseline = QLabel("")
        self.q_baseline.setStyleSheet("color: #718096;")
        lay.addWidget(self.q_baseline)
        return _centered(w, 980)

    def _build_thanks(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(40, 80, 40, 80)
        title = QLabel("Thank you!")
        title.setObjectName("title")
        lay.addWidget(title)
        self.thanks_label = QLabel("")
        self.thanks_label.setWordWrap(True)
        self.thanks_label.setStyleSheet("font-size: 11pt; color: #2d3748;")
        lay.addWidget(self.thanks_label)
        self.baseline_progress = QProgressBar()
        self.baseline_progress.setRange(0, 1000)
        self.baseline_progress.setFormat("comparison run %p%")
        lay.addWidget(self.baseline_progress)
        lay.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        self.close_button = QPushButton("Close")
        self.close_button.setObjectName("primary")
        self.close_button.setEnabled(False)
        self.close_button.clicked.connect(self.close)
        row.addWidget(self.close_button)
        lay.addLayout(row)
        return _centered(w, 760)

    # ------------------------------------------------------------------ instructions -> training

    def _instructions_error(self, msg: str) -> None:
        self.instructions_status.setText(f"<span style='color:#c53030'>{html.escape(msg)}</span>")
        self.start_button.setEnabled(False)

    def _data_loaded(self, bundle: Any) -> None:
        self.bundle = bundle
        self.instructions_status.setText("Read the instructions, then press <b>Start</b>.")
        self.start_button.setEnabled(self.phase == "instructions")

    def start_session(self) -> bool:
        """Write the session's first records and start the hill run in the (restricted) main window."""
        if self.phase != "instructions" or self.bundle is None:
            return False
        if session_exists(self.pdir):
            self._instructions_error(f"{self.pdir} already holds a session; choose another participant id")
            return False
        from hill_app.studies.runner import _app_version

        p, cfg = self.protocol, self.cfg
        self.start_button.setEnabled(False)
        self.pdir.mkdir(parents=True, exist_ok=True)
        if p.text is not None:
            (self.pdir / "protocol.toml").write_text(p.text, encoding="utf-8")
        self.log = log = StudyLog(self.pdir)
        session_started(
            log,
            participant=self.participant,
            mode="interactive",
            protocol=p,
            seed=cfg.seed,
            class_names=list(self.bundle.class_names),
            app_version=_app_version(),
            pid=os.getpid(),
        )
        self.recorder = ConditionRecorder(log, "hill", p.seconds_per_pause)
        self.recorder.condition_started(cfg.to_json(), 0)
        self.phase = "training"
        self._show_page("training")
        win = self.win
        if not win.start_run(cfg, self.pdir / "hill"):
            self._fail("the hill run could not start" + (f": {win.last_error}" if win.last_error else ""))
            return False
        # The recorder listens in the training thread; the thread is still loading its data, far from any pause.
        win.worker.events.subscribe(self.recorder)
        win.worker.events.subscribe(self.clock)
        win.worker.runFinished.connect(self._hill_finished)
        win.worker.runFailed.connect(self._hill_failed)
        self.tick.start()
        return True

    # ------------------------------------------------------------------ training: countdown, refusals

    def _show_countdown(self, remaining: float | None, epoch: int | None = None) -> None:
        total = self.protocol.seconds_per_pause
        if remaining is None:
            self.clock_label.setText("")
            self.countdown_bar.hide()
            return
        low = remaining <= min(10.0, total / 3)
        self.clock_label.setText(_fmt_clock(remaining))
        self.clock_label.setStyleSheet(f"color: {'#c53030' if low else '#92400e'};")
        self.countdown_bar.show()
        self.countdown_bar.setValue(int(1000 * max(0.0, min(1.0, remaining / total))))
        colour = "#e53e3e" if low else "#d69e2e"
        self.countdown_bar.setStyleSheet(
            f"QProgressBar {{ border: 1px solid #e2e8f0; border-radius: 5px; "
            f"background: #f7fafc; }} QProgressBar::chunk {{ background: {colour}; "
            "border-radius: 5px; }"
        )

    def remaining_seconds(self) -> float | None:
        """Seconds left in the current pause (engine time), or None when not paused."""
        t0 = self.clock.paused_at
        if t0 is None:
            return None
        return t0 + self.protocol.seconds_per_pause - time.time()

    def _tick(self) -> None:
        if self.phase != "training":
            return
        win = self.win
        rem = self.remaining_seconds()
        if win.state != "paused" or rem is None:
            self._show_countdown(None)
            nxt = [e for e in self.protocol.pause_at if self.clock.epoch is None or e > self.clock.epoch]
            if win.state == "running":
                self.phase_label.setText(
                    "Training\u2026 " + (f"the next pause comes before epoch {nxt[0]}" if nxt else "no more pauses")
                )
            elif win.state == "loading":
                self.phase_label.setText("Starting the training\u2026")
            return
        pause = self.clock.count
        self._show_countdown(rem, self.clock.epoch)
        self.phase_label.setText(
            f"<b>Pause before epoch {self.clock.epoch}</b>: reshape the map, then "
            "<b>Commit edits and resume</b> \u2014 when the time runs out your edits are "
            "committed and training resumes by itself."
        )
        if rem <= 0 and self._countdown_for != pause:
            self._countdown_for = pause
            self._expired_at = time.time()
            if not win.commit_pending:  # else the participant's own commit is under way
                self._time_out()
        elif (
            self._countdown_for == pause
            and self._expired_at is not None
            and self._auto_resumed_for != pause
            and time.time() - self._expired_at > GRACE_S
            and not win.commit_pending
        ):
            # The commit was refused by the engine (its reason is in the banner): the time is up all the same.
            self._auto_resumed_for = pause
            self.win.log.add_log("warning", "the pause's time is up: resuming without the refused edits")
            win.submit("resume_training", {})

    def _time_out(self) -> None:
        win = self.win
        bad = win.disallowed_edits()
        if bad:  # never committed; they are normally undone as soon as they are made
            keep = [e for i, e in enumerate(win.view.edits()) if i not in {b[0] for b in bad}]
            win.view.edit_stack.replace(keep)
        edits = win.view.edits()
        if self.log is not None:
            self.log.write(
                "pause_timed_out",
                condition="hill",
                epoch=self.clock.epoch,
                seconds_allowed=self.protocol.seconds_per_pause,
                edits=len(edits),
            )
        win.log.add_log(
            "info",
            f"the pause's {self.protocol.seconds_per_pause:g} s are up: committing {len(edits)} edit(s) and resuming",
        )
        win.commit_and_resume()

    def _refused(self, kind: str, name: str, reason: str) -> None:
        self.show_message(f"Not allowed in this study: {reason}")
        if self.log is not None and self.phase == "training":
            self.log.write(
                "refused",
                condition="hill",
                kind=kind,
                name=name,
                reason=reason,
                pause_epoch=self.clock.epoch if self.clock.paused_at is not None else None,
            )

    def show_message(self, text: str) -> None:
        self.message_label.setText(text)
        self.message_label.setToolTip(text)
        self.message_label.show()
        self.message_timer.start(MESSAGE_MS)

    def _edits_changed(self, edits: list) -> None:
        """An edit op the protocol does not allow is refused as soon as it is made: message, then undone."""
        if self._fixing_edits or self.phase != "training" or self.win.state != "paused":
            return
        bad = self.win.disallowed_edits(edits)
        if bad:
            _, e, why = bad[-1]
            self.win.refuse("edit", str(e.get("op")), why)
            QTimer.singleShot(0, self._drop_disallowed)

    def _drop_disallowed(self) -> None:
        """Undo until no disallowed edit is left (each gesture pushes one edit, so one undo normally does)."""
        self._fixing_edits = True
        try:
            for _ in range(50):
                if not self.win.disallowed_edits() or not self.win.view.undo():
                    break
        finally:
            self._fixing_edits = False

    # ------------------------------------------------------------------ end of the hill run

    def _hill_finished(self, summary: dict) -> None:
        if self.phase != "training":
            return
        self.tick.stop()
        self._show_countdown(None)
        self.hill_summary = summary
        assert self.log is not None and self.recorder is not None
        self.recorder.condition_finished(summary)
        self.phase = "questionnaires"
        acc = summary.get("test_accuracy")
        self.questionnaire.set_header(
            f"<b>Training finished</b> \u2014 your model's test accuracy: <b>{100 * acc:.1f}%</b>. "
            "Please answer a few questions about the session."
            if isinstance(acc, (int, float))
            else ""
        )
        self._show_page("questionnaires")
        # The worker thread sent its last signal and is returning; the hill session is no longer touched by it.
        self.win.worker.wait(WAIT_THREAD_MS)
        self.baseline_worker = bw = BaselineWorker(
            self.protocol, self.pdir, self.log, self.cfg, self.bundle, self.win.session, self
        )
        bw.progress.connect(self._baseline_progress)
        bw.done.connect(self._baseline_done)
        bw.failed.connect(self._baseline_failed)
        self._baseline_progress(0, self.cfg.epochs, 0.0)
        bw.start()

    def _hill_failed(self, message: str, tb: str) -> None:
        if self.phase == "training":
            self._fail(f"the hill run failed: {message}")

    def _baseline_progress(self, epoch: int, epochs: int, frac: float) -> None:
        self.baseline_progress.setValue(int(1000 * frac))
        if "baseline" in self.protocol.conditions:
            self.q_baseline.setText(
                f"Meanwhile the comparison run (same settings, no edits) is training: epoch {max(1, epoch)}/{epochs}"
            )
        self._update_thanks()

    def _baseline_done(self, summary: Any) -> None:
        if self.phase in ("aborted", "failed", "done"):
            return
        self.baseline_summary = summary
        self.baseline_done = True
        self.baseline_progress.setValue(1000)
        self.q_baseline.setText("The comparison run has finished." if summary is not None else "")
        self._maybe_finish()

    def _baseline_failed(self, message: str, tb: str) -> None:
        if self.phase in ("aborted", "failed", "done"):
            return
        sys.stderr.write(tb)
        self._fail(f"the baseline run failed: {message}")

    # ------------------------------------------------------------------ questionnaires and the end

    def _answers_given(self, answers: dict) -> None:
        if self.phase != "questionnaires" or self.log is None:
            return
        try:
            scores = score_answers(answers, source="study window")
        except AnswerError as e:  # the form only submits complete sheets; say so rather than lose them
            self.show_message(str(e))
            return
        self.answers, self.scores = answers, scores
        for name in ("umux_lite", "nasa_tlx"):
            if name in scores:
                self.log.write("questionnaire", name=name, **scores[name], source="study window")
        if "nasa_tlx_pairwise" not in answers:
            self.log.write(
                "questionnaire_part_skipped",
                name="nasa_tlx_pairwise",
                reason="the participant skipped the pairwise comparisons",
            )
        self.phase = "thanks"
        self._show_page("thanks")
        self._update_thanks()
        self._maybe_finish()

    def _update_thanks(self) -> None:
        if self.phase == "done":
            self.thanks_label.setText(
                f"Your session is complete, {html.escape(self.participant)}. "
                "Thank you for taking part. You can close this window now."
            )
            self.baseline_progress.hide()
            self.close_button.setEnabled(True)
        elif self.phase in ("thanks", "questionnaires"):
            self.thanks_label.setText(
                "Your answers are saved. Please wait a moment while the comparison run "
                "(same settings, no edits) finishes \u2014 do not close the window yet."
            )

    def _maybe_finish(self) -> None:
        if self.phase != "thanks" or not self.baseline_done or self.log is None:
            return
        acc = {"hill": self.hill_summary["test_accuracy"]} if self.hill_summary else {}
        if self.baseline_summary is not None:
            acc["baseline"] = self.baseline_summary["test_accuracy"]
        gain = acc["hill"] - acc["baseline"] if "hill" in acc and "baseline" in acc else None
        try:
            write_session_h5(self.pdir)
        except Exception as e:  # noqa: BLE001 - the logs are the source of truth; the h5 can be rebuilt
            self.log.write("session_aborted", reason=f"session.h5 could not be written: {type(e).__name__}: {e}")
            self._end("failed")
            return
        self.log.write("session_finished", test_accuracy=acc, gain=gain)
        self._end("done")

    def _end(self, phase: str) -> None:
        self.phase = phase
        self.tick.stop()
        if self.log is not None:
            self.log.close()
        self._update_thanks()
        self.sessionEnded.emit(phase == "done")

    def _fail(self, reason: str) -> None:
        """The session cannot go on (a run failed): log it, say so, leave everything on screen."""
        if self.log is not None and self.phase not in ("done", "aborted", "failed"):
            self.log.write("session_aborted", reason=reason)
            try:
                write_session_h5(self.pdir)
            except Exception:  # noqa: BLE001
                pass
            self._end("failed")
        self.show_message(f"The session stopped: {reason}. Please call the researcher.")
        self.thanks_label.setText(
            f"<span style='color:#c53030'>The session stopped: {html.escape(reason)}. "
            "Please call the researcher.</span>"
        )
        self.close_button.setEnabled(True)

    # ------------------------------------------------------------------ closing

    @property
    def in_progress(self) -> bool:
        return self.log is not None and self.phase in ("training", "questionnaires", "thanks")

    def abort(self, reason: str) -> None:
        """Stop what runs, write ``session_aborted`` and close the log: the session is left incomplete."""
        if not self.in_progress:
            return
        self.tick.stop()
        w = self.win.worker
        if w is not None and w.isRunning():
            w.cancel()
            w.wait(WAIT_THREAD_MS)
        bw = self.baseline_worker
        if bw is not None and bw.isRunning():
            bw.cancel()
            bw.wait(WAIT_THREAD_MS)
        self.phase = "aborted"
        assert self.log is not None
        self.log.write("session_aborted", reason=reason)
        try:
            write_session_h5(self.pdir)
        except Exception:  # noqa: BLE001 - the logs stay readable; the h5 can be rebuilt from them
            pass
        self.log.close()
        self.sessionEnded.emit(False)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        if self.in_progress:
            where = {
                "training": "during training",
                "questionnaires": "before the questionnaires were answered",
                "thanks": "while the baseline condition was running",
            }[self.phase]
            if self.ask_before_close:
                ans = QMessageBox.question(
                    self,
                    "End the session?",
                    "The session is not finished. Closing now stops it and marks it incomplete. Close anyway?",
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                    QMessageBox.StandardButton.No,
                )
                if ans != QMessageBox.StandardButton.Yes:
                    event.ignore()
                    return
            self.abort(f"the window was closed {where}")
        else:
            for t in (getattr(self, "loader", None), self.win.worker, self.baseline_worker):
                if t is not None and t.isRunning():
                    if hasattr(t, "cancel"):
                        t.cancel()
                    t.wait(WAIT_THREAD_MS)
        self.tick.stop()
        self.win.timer.stop()
        super().closeEvent(event)


def run_study_gui(protocol: Protocol, participant: str, study_dir: str | Path, device: str | None = None) -> int:
    """Open the study window and run the Qt event loop: 0 if the session completed, 1 if it did not."""
    from .app import AppError, make_app

    try:
        app = make_app(display_name="hill-app study")
    except AppError as e:
        raise StudyWindowError(str(e)) from None
    win = StudyWindow(protocol, participant, study_dir, device=device)
    result = {"complete": False}
    win.sessionEnded.connect(lambda ok: result.update(complete=ok))
    win.show()
    app.exec()
    return 0 if result["complete"] else 1


__all__ = ["BaselineWorker", "StudyWindow", "StudyWindowError", "run_study_gui"]
