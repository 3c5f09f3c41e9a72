"""The main window: the latent view in the middle, command panels and the log on the right, feedback plots
below, run state in the banner, toolbar and status bar.

Threads: training runs in :class:`TrainingWorker`; this window only ever *polls* the run's bounded event
channel with a ~30 Hz timer and never waits on the training thread. Each poll drains a bounded number of
events, handles command/log/epoch events in order, and draws only the newest snapshot and step of the drain,
so a burst of events costs one redraw. ``poll_stats`` records how long each poll took (the main-thread
stall budget is 50 ms).
"""
from __future__ import annotations

import gc
import html
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QSettings, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMessageBox,
                               QProgressBar, QPushButton, QSizePolicy, QStyle, QToolBar, QVBoxLayout, QWidget)

from hill_app.engine.config import ConfigError, RunConfig

from .checkpoint_panel import CheckpointPanel, read_tree_index
from .metrics_view import MetricsView
from .new_run_dialog import NewRunDialog, last_base, make_settings, new_run_dir
from .panels import ControlsPanel, LogConsole
from .worker import TrainingWorker

POLL_HZ = 30
MAX_EVENTS_PER_POLL = 1000
STEP_DRAW_S = 0.1          # progress bar and step line: 10 Hz is smooth enough, and each repaint costs
DRAW_S = 0.25              # while training: latent view and metric plots at most 4 times a second
SLOW_MS = 50.0             # the main-thread stall budget
GIL_SWITCH_S = 0.001       # how long the GUI thread may wait for the GIL while the training thread runs Python

STYLE = """
QMainWindow, QDialog { background: #f5f6f8; }
QDockWidget { font-weight: 600; color: #2d3748; }
QDockWidget::title { padding: 5px 8px; background: #e9ecf1; border-bottom: 1px solid #d9dee6; }
QGroupBox { font-weight: 600; color: #2d3748; border: 1px solid #dfe3ea; border-radius: 6px;
            margin-top: 14px; padding: 8px 8px 6px 8px; background: #ffffff; }
QGroupBox::title { subcontrol-origin: margin; left: 10px; padding: 0 4px; }
QGroupBox QLabel, QGroupBox QCheckBox { font-weight: 400; }
QPushButton { padding: 4px 12px; border: 1px solid #c9d0da; border-radius: 4px; background: #ffffff; }
QPushButton:hover { background: #eef2f7; }
QPushButton:disabled { color: #a0aec0; border-color: #e2e8f0; background: #f7f8fa; }
QPushButton#primary { background: #2563eb; color: white; border: 1px solid #1d4ed8; font-weight: 600;
                      padding: 6px 16px; }
QPushButton#primary:hover { background: #1d4ed8; }
QPushButton#primary:disabled { background: #a9bde8; border-color: #a9bde8; color: #eef2ff; }
QPushButton#danger { color: #c53030; }
QPushButton#danger:disabled { color: #e6b0b0; }
QToolBar { spacing: 4px; padding: 3px; background: #ffffff; border-bottom: 1px solid #dfe3ea; }
QToolBar QToolButton { padding: 4px 10px; border-radius: 4px; }
QToolBar QToolButton:hover { background: #eef2f7; }
QStatusBar { background: #ffffff; border-top: 1px solid #dfe3ea; color: #4a5568; }
QFrame#banner { border-radius: 6px; }
"""

BANNER_COLOURS = {
    "idle": ("#eef2ff", "#c7d2fe", "#3730a3"),
    "loading": ("#eef2ff", "#c7d2fe", "#3730a3"),
    "running": ("#ecfdf5", "#a7f3d0", "#065f46"),
    "paused": ("#fffbeb", "#fcd34d", "#92400e"),
    "finished": ("#f0f9ff", "#bae6fd", "#075985"),
    "failed": ("#fef2f2", "#fecaca", "#991b1b"),
}


@dataclass
class PollStats:
    """How long the timer callback ran (ms): the main-thread work per poll while training."""

    count: int = 0
    max_ms: float = 0.0
    total_ms: float = 0.0
    slow: list[tuple[float, dict]] = field(default_factory=list)   # polls over SLOW_MS, with their event kinds
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


def _make_latent_view() -> QWidget:
    from .latent_view import LatentView
    return LatentView()


class MainWindow(QMainWindow):
    """One window, one run at a time; a failed or finished run leaves everything on screen."""

    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or make_settings()
        self.setWindowTitle("hill-app \u2014 human-in-the-loop latent steering")
        self.setStyleSheet(STYLE)
        self.worker: TrainingWorker | None = None
        self.session: Any = None
        self.state = "idle"
        self.class_names: list[str] = []
        self.next_config = RunConfig()             # the default protocol: digits, 40 epochs, pauses 25..40
        self.next_run_dir: Path | None = None
        self.error_box: QMessageBox | None = None
        self.last_error: str | None = None
        self.poll_stats = PollStats()
        self._resume_after: str | None = None      # uuid of the set_latent_targets a resume waits for
        self._pending_start: tuple[RunConfig, Path] | None = None
        self._error_logged = False
        self._snapshot: dict[str, Any] | None = None
        self._fitted = False
        self._pause_epoch: int | None = None
        self._epochs_total = self.next_config.epochs
        self._last_step_draw = 0.0
        self._pending_step: dict[str, Any] | None = None
        self._pending_snap: dict[str, Any] | None = None
        self._last_snap_draw = 0.0
        self._last_metrics_draw = 0.0
        # PySide releases the GIL around most Qt calls; getting it back from a training thread that is busy in
        # Python can take up to the switch interval (5 ms by default), per call. 1 ms bounds that wait.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))

        self._build_actions()
        self._build_central()
        self._build_docks()
        self._build_status()
        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / POLL_HZ))
        self.timer.timeout.connect(self._poll)
        self._set_state("idle")
        self.resize(1600, 1000)

    # ------------------------------------------------------------------ building

    def _action(self, text: str, slot: Any, shortcuts: list[Any] | None = None, tip: str = "") -> QAction:
        a = QAction(text, self)
        a.triggered.connect(slot)
        if shortcuts:
            a.setShortcuts([QKeySequence(s) for s in shortcuts])
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            a.setToolTip(tip)
            a.setStatusTip(tip)
        self.addAction(a)   # shortcuts work even when the action is on no visible toolbar
        return a

    def _build_actions(self) -> None:
        self.new_run_action = self._action("New run\u2026", self.new_run, [QKeySequence.StandardKey.New],
                                           "choose a data set, model and protocol, then start")
        self.open_run_action = self._action("Open run\u2026", self.open_run_dialog, [QKeySequence.StandardKey.Open],
                                            "show a run folder's checkpoint tree and branch curves (read-only)")
        self.start_action = self._action("Start", self.start_default, [],
                                         "start training with the run shown in the banner")
        self.pause_action = self._action("Pause", self.pause_on_demand, [Qt.Key.Key_Space],
                                         "pause at the next step (Space)")
        self.stop_action = self._action("Stop", self.stop_run, [], "stop and save a final checkpoint")
        self.undo_action = self._action("Undo", self.undo_edit, [QKeySequence.StandardKey.Undo], "undo the last edit")
        self.redo_action = self._action("Redo", self.redo_edit,
                                        [QKeySequence.StandardKey.Redo, "Ctrl+Shift+Z", "Ctrl+Y"], "redo")
        self.reset_action = self._action("Reset", self.reset_edits, [], "drop every edit made at this pause")
        self.commit_action = self._action("Commit edits and resume", self.commit_and_resume,
                                          ["Ctrl+Return", "Ctrl+Enter"],
                                          "send the edits as the teacher layout and resume (Ctrl+Enter)")
        self.fit_action = self._action("Fit view", self._fit_view, ["Ctrl+0"], "zoom the latent view to all points")
        # QKeySequence.Redo may equal Ctrl+Shift+Z already: drop duplicates so no shortcut is ambiguous.
        seen, uniq = set(), []
        for s in self.redo_action.shortcuts():
            if s.toString() not in seen and not s.isEmpty():
                seen.add(s.toString())
                uniq.append(s)
        self.redo_action.setShortcuts(uniq)

        sp = QStyle.StandardPixmap
        for a, icon in ((self.new_run_action, sp.SP_FileDialogNewFolder), (self.open_run_action, sp.SP_DirOpenIcon),
                        (self.start_action, sp.SP_MediaPlay), (self.pause_action, sp.SP_MediaPause),
                        (self.stop_action, sp.SP_MediaStop)):
            a.setIcon(self.style().standardIcon(icon))
        tb = QToolBar("Run")
        tb.setObjectName("runToolbar")
        tb.setMovable(False)
        tb.setIconSize(QSize(16, 16))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for a in (self.new_run_action, self.open_run_action, self.start_action, self.pause_action, self.stop_action):
            tb.addAction(a)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        tb.addWidget(spacer)
        self.run_label = QLabel("")
        self.run_label.setStyleSheet("color:#4a5568; padding-right:8px")
        tb.addWidget(self.run_label)
        self.addToolBar(tb)
        self.toolbar = tb

    def _build_central(self) -> None:
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(8, 8, 8, 4)
        lay.setSpacing(6)

        self.banner = QWidget()
        self.banner.setObjectName("banner")
        self.banner.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        bl = QHBoxLayout(self.banner)
        bl.setContentsMargins(12, 6, 8, 6)
        self.banner_title = QLabel("")
        self.banner_title.setStyleSheet("font-weight:700; font-size:11pt")
        self.banner_text = QLabel("")
        self.banner_text.setWordWrap(True)
        self.banner_text.setTextFormat(Qt.TextFormat.RichText)
        self.undo_btn = QPushButton("\u21b6 Undo")
        self.redo_btn = QPushButton("\u21b7 Redo")
        self.reset_btn = QPushButton("Reset")
        self.undo_btn.setToolTip("undo the last edit (Ctrl+Z)")
        self.redo_btn.setToolTip("redo (Ctrl+Shift+Z)")
        self.reset_btn.setToolTip("drop every edit made at this pause")
        self.commit_btn = QPushButton("Commit edits and resume")
        self.commit_btn.setObjectName("primary")
        self.commit_btn.setToolTip("send the edits to the training as the teacher layout and resume (Ctrl+Enter)")
        self.start_btn = QPushButton("Start training")
        self.start_btn.setObjectName("primary")
        self.undo_btn.clicked.connect(self.undo_action.trigger)
        self.redo_btn.clicked.connect(self.redo_action.trigger)
        self.reset_btn.clicked.connect(self.reset_action.trigger)
        self.commit_btn.clicked.connect(self.commit_action.trigger)
        self.start_btn.clicked.connect(self.start_action.trigger)
        text_col = QVBoxLayout()
        text_col.setSpacing(0)
        text_col.addWidget(self.banner_title)
        text_col.addWidget(self.banner_text)
        bl.addLayout(text_col, 1)
        for b in (self.undo_btn, self.redo_btn, self.reset_btn):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            bl.addWidget(b)
        bl.addSpacing(8)
        bl.addWidget(self.commit_btn)
        bl.addWidget(self.start_btn)
        lay.addWidget(self.banner)

        self.view = _make_latent_view()
        self.view.setMinimumSize(480, 360)
        # Undo, Redo and Reset live in the banner next to Commit; hide the view's own copies of them.
        for name in ("undo_button", "redo_button", "reset_button"):
            b = getattr(self.view, name, None)
            if b is not None:
                b.hide()
        lay.addWidget(self.view, 1)
        self.view.editsChanged.connect(self._edits_changed)
        self.view.hovered.connect(self._hovered)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        self.controls = ControlsPanel(self.submit)
        self.log = LogConsole()
        self.metrics = MetricsView()

        self.controls_dock = QDockWidget("Training controls", self)
        self.controls_dock.setObjectName("controls")
        self.controls_dock.setWidget(self.controls)
        self.log_dock = QDockWidget("Command log", self)
        self.log_dock.setObjectName("log")
        self.log_dock.setWidget(self.log)
        self.metrics_dock = QDockWidget("Feedback", self)
        self.metrics_dock.setObjectName("feedback")
        self.metrics_dock.setWidget(self.metrics)
        self.checkpoints = CheckpointPanel(self.submit)
        self.checkpoints_dock = QDockWidget("Checkpoints", self)
        self.checkpoints_dock.setObjectName("checkpoints")
        self.checkpoints_dock.setWidget(self.checkpoints)
        feats = (QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        for d in (self.controls_dock, self.log_dock, self.metrics_dock, self.checkpoints_dock):
            d.setFeatures(feats)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.controls_dock)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.log_dock)
        # The checkpoint tree shares the lower right with the command log, as a tab.
        self.tabifyDockWidget(self.log_dock, self.checkpoints_dock)
        self.log_dock.raise_()
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.metrics_dock)
        self.resizeDocks([self.controls_dock], [420], Qt.Orientation.Horizontal)
        self.resizeDocks([self.controls_dock, self.log_dock], [540, 400], Qt.Orientation.Vertical)
        self.resizeDocks([self.metrics_dock], [300], Qt.Orientation.Vertical)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.progress = QProgressBar()
        self.progress.setFixedWidth(260)
        self.progress.setTextVisible(True)
        self.progress.setFormat("%p%")
        self.stats_label = QLabel("")
        self.stats_label.setStyleSheet("padding: 0 8px")
        # A fixed width, so a new text every poll does not re-lay-out the status bar.
        self.stats_label.setMinimumWidth(self.stats_label.fontMetrics().horizontalAdvance(
            "epoch 400/400 \u00b7 step 1,000,000 \u00b7 100,000 images/s \u00b7 loss 0.0000 \u00b7 lr 0.0001") + 20)
        self.device_label = QLabel("")
        self.device_label.setStyleSheet("padding: 0 8px; color:#718096")
        sb.addPermanentWidget(self.stats_label)
        sb.addPermanentWidget(self.device_label)
        sb.addPermanentWidget(self.progress)

    # ------------------------------------------------------------------ state

    def _set_state(self, state: str, title: str | None = None, text: str | None = None) -> None:
        self.state = state
        bg, border, fg = BANNER_COLOURS.get(state, BANNER_COLOURS["idle"])
        self.banner.setStyleSheet(f"QWidget#banner {{ background:{bg}; border:1px solid {border}; "
                                  f"border-radius:6px; }} QWidget#banner QLabel {{ color:{fg}; }}")
        if state == "idle":
            title = title or "Ready"
            text = text or self._describe(self.next_config) + " \u2014 press <b>Start training</b> or choose " \
                                                             "<b>New run\u2026</b>"
        self.banner_title.setText(title or state.capitalize())
        self.banner_text.setText(text or "")
        active = state in ("loading", "running", "paused")
        self.start_btn.setVisible(state in ("idle", "finished", "failed"))
        self.start_btn.setText("Start training" if state == "idle" else "New run\u2026")
        self.start_action.setEnabled(not active)
        self.new_run_action.setEnabled(True)
        self.pause_action.setEnabled(state == "running")
        self.stop_action.setEnabled(state in ("running", "paused"))
        self.controls.set_active(state in ("running", "paused"))
        self.checkpoints.set_active(state in ("running", "paused"))
        self.checkpoints.set_paused(state == "paused")
        self.view.set_editable(state == "paused")
        editing = state == "paused"
        for b in (self.commit_btn, self.undo_btn, self.redo_btn, self.reset_btn):
            b.setVisible(editing)
        self._update_edit_buttons()

    def _describe(self, cfg: RunConfig) -> str:
        try:
            r = cfg.resolved()
        except ConfigError:
            r = cfg
        pauses = ", ".join(map(str, r.pause_at)) or "none"
        return (f"{r.dataset} \u00b7 {r.model} \u00b7 {r.epochs} epochs \u00b7 pauses before {pauses} \u00b7 "
                f"\u03b1 {r.alpha:g} \u00b7 \u03bb {r.lam:g} \u00b7 device {r.device}")

    def _update_edit_buttons(self) -> None:
        paused = self.state == "paused" and self._resume_after is None
        stack = getattr(self.view, "edit_stack", None)
        n = len(self.view.edits()) if paused else 0
        can_undo = bool(paused and stack is not None and stack.can_undo())
        can_redo = bool(paused and stack is not None and stack.can_redo())
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)
        self.reset_action.setEnabled(paused and n > 0)
        self.commit_action.setEnabled(paused)
        self.undo_btn.setEnabled(can_undo)
        self.redo_btn.setEnabled(can_redo)
        self.reset_btn.setEnabled(paused and n > 0)
        self.commit_btn.setEnabled(paused)
        self.commit_btn.setText(f"Commit {n} edit{'s' if n != 1 else ''} and resume" if n
                                else "Resume without edits")

    # ------------------------------------------------------------------ starting runs

    def start_default(self) -> None:
        """Start the run described in the banner (the default protocol at launch), or open New Run after one."""
        if self.state in ("finished", "failed"):
            self.new_run()
            return
        run_dir = self.next_run_dir or new_run_dir(last_base(self.settings), self.next_config.dataset)
        self.start_run(self.next_config, run_dir)

    def new_run(self) -> None:
        """Choose a run in the dialog; if one is training, it is stopped (final checkpoint) first."""
        dlg = NewRunDialog(self, self.settings)
        if dlg.exec() != NewRunDialog.DialogCode.Accepted:
            return
        cfg, run_dir = dlg.run_config(), dlg.run_dir()
        if self.worker is not None and self.worker.isRunning():
            ans = QMessageBox.question(self, "Stop the current run?",
                                       "A run is in progress. Stop it (a final checkpoint is saved) and start "
                                       "the new one?")
            if ans != QMessageBox.StandardButton.Yes:
                return
            self._pending_start = (cfg, run_dir)
            self.worker.cancel()
            return
        self.start_run(cfg, run_dir)

    def start_run(self, config: RunConfig, run_dir: str | Path) -> bool:
        """Start training ``config`` in ``run_dir`` in a worker thread; False (with a message) if it cannot."""
        if self.worker is not None and self.worker.isRunning() and self.state in ("finished", "failed"):
            self.worker.wait(5000)      # it sent its last signal and is returning from run(): a moment at most
        if self.worker is not None and self.worker.isRunning():
            self.show_error("A run is in progress", "Stop the current run before starting another one.")
            return False
        try:
            cfg = config.resolved()
        except ConfigError as e:
            self.show_error("Cannot start the run", str(e))
            return False
        run_dir = Path(run_dir).expanduser()
        if (run_dir / "journal.jsonl").exists():
            self.show_error("Cannot start the run", f"{run_dir} already holds a run; choose a new run folder.")
            return False
        self.next_config, self.next_run_dir = config, None
        if self.worker is not None:       # the last run's thread has ended: let its session (model, data) go
            self.worker.deleteLater()
        self.session = None
        self.class_names = []
        self._snapshot = None
        self._pending_snap = None
        self._pending_step = None
        self._fitted = False
        self._error_logged = False
        self._resume_after = None
        self._epochs_total = cfg.epochs
        self.last_error = None
        self.metrics.clear()
        self.checkpoints.clear()
        self.log.add_info(f"starting {self._describe(cfg)} in {run_dir}")
        self.worker = w = TrainingWorker(cfg, run_dir, self)
        w.runFinished.connect(self._on_finished)
        w.runFailed.connect(self._on_failed)
        w.sessionReady.connect(self._on_session_ready)
        self._set_state("loading", f"Loading {cfg.dataset}\u2026", f"{self._describe(cfg)} \u2192 {run_dir}")
        self.run_label.setText(str(run_dir))
        self.progress.setRange(0, 0)
        self.stats_label.setText("")
        self.device_label.setText("")
        w.start()
        self.timer.start()
        return True

    def _on_session_ready(self, session: Any = None) -> None:
        """Idempotent: called from the poll (which may see the session first) and from the worker's signal."""
        if self.worker is None or self.worker.session is None or self.session is self.worker.session:
            return
        s = self.session = self.worker.session
        # Torch, Qt, pyqtgraph and the data are loaded now: ~400k long-lived objects that every full GC pass
        # would walk (100-250 ms with the GIL held, in whichever thread triggers it; measured). Freezing them
        # out of the collector keeps those passes short. Nothing frozen is ever garbage we'd want back.
        gc.freeze()
        self.class_names = list(s.data.class_names)
        self.metrics.set_class_names(self.class_names)
        # A run resumed from disk already has checkpoints: show them (tree.json is replaced atomically, so
        # reading it while the training thread may write it is safe; nodes seen again as events are skipped).
        self.checkpoints.open_index(s.tree.index_path, current_branch=s.branch)
        self.metrics.set_current_branch(s.branch)
        self.controls.load_from_config(s.config)
        if self.worker.samples is not None and hasattr(self.view, "set_sample_renderer"):
            self.view.set_sample_renderer(self.worker.samples.render)
        self.device_label.setText(f"device: {s.device}")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.setWindowTitle(f"hill-app \u2014 {s.run_dir.name}")
        self._set_state("running", "Training", f"{self._describe(s.config)} \u2014 press Space to pause "
                                               "and edit at any time")

    # ------------------------------------------------------------------ commands

    def submit(self, command: str, args: dict | None = None) -> Any:
        """Send a command to the session (thread-safe queue); None when no run is active."""
        if self.session is None or self.state not in ("running", "paused"):
            return None
        return self.session.submit(command, args or {}, source="user")

    def pause_on_demand(self) -> None:
        if self.state == "running":
            self.submit("pause_training", {"reason": "paused on request"})
            self.pause_action.setEnabled(False)

    def stop_run(self) -> None:
        if self.state in ("running", "paused"):
            self.submit("stop_training", {})

    def commit_and_resume(self) -> None:
        """Send the edits (if any) as the teacher layout; resume once the engine accepted them."""
        if self.state != "paused" or self._resume_after is not None:
            return
        edits = self.view.edits()
        if edits:
            cmd = self.submit("set_latent_targets", {"edits": edits})
            if cmd is None or cmd.status == "failed":
                return
            self._resume_after = cmd.uuid
            self.banner_text.setText(f"Committing {len(edits)} edit(s)\u2026")
        else:
            self.submit("resume_training", {})
        self._update_edit_buttons()

    def undo_edit(self) -> None:
        self._stack_op("undo")

    def redo_edit(self) -> None:
        self._stack_op("redo")

    def _stack_op(self, op: str) -> None:
        if self.state != "paused":
            return
        fn = getattr(self.view, op, None)        # the view's own undo() redraws; fall back to the stack
        if callable(fn):
            fn()
        else:
            getattr(self.view.edit_stack, op)()
        self._update_edit_buttons()

    def reset_edits(self) -> None:
        if self.state == "paused":
            self.view.reset_edits()
            self._update_edit_buttons()

    def _fit_view(self) -> None:
        if hasattr(self.view, "fit"):
            self.view.fit()

    def _edits_changed(self, edits: list) -> None:
        self._update_edit_buttons()

    def _hovered(self, i: int) -> None:
        s = self._snapshot
        if s is None or i is None or i < 0 or i >= len(s["labels"]):
            self.statusBar().clearMessage()
            return
        y, p = int(s["labels"][i]), int(s["preds"][i])
        names = self.class_names or [str(c) for c in range(max(y, p) + 1)]
        ok = "correct" if y == p else f"predicted {names[p]}"
        self.statusBar().showMessage(f"sample #{i}: {names[y]} ({ok})")

    # ------------------------------------------------------------------ polling

    def _poll(self) -> None:
        """Drain the channel (bounded), handle events in order, then draw what changed, coalesced.

        Only the newest snapshot and step of a drain are drawn. While training runs, a snapshot is drawn at
        most every DRAW_S and the metric plots are refreshed at most every DRAW_S and never in the tick that
        drew a snapshot: a fast data set (digits: several epochs a second) would otherwise repaint six plots
        many times a second while training takes both cores of a small machine. When the run pauses or ends,
        everything is drawn at once. The tick that sets up a new session drains nothing.
        """
        t0 = time.perf_counter()
        w = self.worker
        kinds: dict[str, int] = {}
        if w is not None:
            if self.session is None and w.session is not None:
                self._on_session_ready()
                kinds["session"] = 1
            else:
                evs = w.events.drain(max_events=MAX_EVENTS_PER_POLL)
                for ev in evs:
                    kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
                try:
                    if evs:
                        self._dispatch(evs)
                    self._flush(force=self.state != "running")
                except Exception:   # a bug in a handler must not freeze the window: report it and go on
                    import traceback
                    self.log.add_error("the window failed to show an event", traceback.format_exc())
        self.poll_stats.record((time.perf_counter() - t0) * 1000.0, kinds)

    def _flush(self, force: bool = False) -> None:
        """Draw the pending snapshot, metric plots and step line when they are due (or now, with ``force``)."""
        now = time.perf_counter()
        drew = False
        if self._pending_snap is not None and (force or now - self._last_snap_draw >= DRAW_S):
            snap, self._pending_snap = self._pending_snap, None
            self._show_snapshot(snap)
            self._last_snap_draw = now
            drew = True
        if force or (not drew and now - self._last_metrics_draw >= DRAW_S):
            if self.metrics.refresh():
                self._last_metrics_draw = now
        self._flush_step(force)

    def _dispatch(self, evs: list[Any]) -> None:
        """Handle one drain in order; snapshots and steps only become pending (``_flush`` draws them)."""
        snap = step = None
        for ev in evs:
            k, d = ev.kind, ev.data
            if k == "step":
                step = d
            elif k == "snapshot":
                snap = d
            elif k == "epoch":
                self.metrics.add_epoch(d)
                if isinstance(d.get("branch"), str) and d["branch"] != self.checkpoints.current_branch:
                    self.checkpoints.set_current_branch(d["branch"])
                self._show_epoch(d)
            elif k == "command":
                self.log.add_command(d)
                self.controls.on_command(d)
                self.checkpoints.on_command(d)
                self._on_command(d)
            elif k == "paused":
                self._on_paused(d)
            elif k == "resumed":
                self._on_resumed(d)
            elif k == "log":
                self.log.add_log(str(d.get("level", "info")), str(d.get("message", "")), ev.time)
            elif k == "error":
                self._error_logged = True
                self.log.add_error(str(d.get("message", "")), d.get("traceback"), ev.time)
            elif k == "checkpoint":
                self.checkpoints.add_node(d)
                self.log.add_log("info", f"checkpoint {str(d.get('uuid', ''))[:8]} saved at epoch {d.get('epoch')}, "
                                         f"step {d.get('step')} ({d.get('note') or 'manual'})", ev.time)
            elif k == "evaluation":
                self.metrics.show_evaluation(d)
                split = d.get("split", "val")
                self.log.add_log("info", f"evaluation on {split}: accuracy "
                                         f"{100 * float(d.get(f'{split}_accuracy', float('nan'))):.2f}%", ev.time)
            elif k == "finished":
                self.log.add_log("info", f"finished: test accuracy {100 * float(d.get('test_accuracy', 0)):.2f}%, "
                                         f"val {100 * float(d.get('val_accuracy', 0)):.2f}%, {d.get('epochs')} "
                                         f"epochs, {d.get('edits_applied')} edit(s)", ev.time)
        if snap is not None:
            self._pending_snap = snap
        if step is not None:
            self._pending_step = step

    def _flush_step(self, force: bool = False) -> None:
        """Show the newest step event, at most STEP_DRAW_S apart (the last one always lands, one tick later)."""
        now = time.perf_counter()
        if self._pending_step is not None and (force or now - self._last_step_draw >= STEP_DRAW_S):
            self._show_step(self._pending_step)
            self._pending_step = None
            self._last_step_draw = now

    def _show_snapshot(self, s: dict[str, Any]) -> None:
        self._snapshot = s
        names = self.class_names or [str(c) for c in range(int(np.max(s["labels"])) + 1)]
        self.view.set_snapshot(s["z"], s["labels"], s["preds"], names, committed_layout=s.get("layout"),
                               keep_edits=False)
        if not self._fitted and hasattr(self.view, "fit"):
            self.view.fit()
            self._fitted = True
        self._update_edit_buttons()

    def _show_step(self, d: dict[str, Any]) -> None:
        e, i, n = int(d.get("epoch", 1)), int(d.get("index_in_epoch", 0)), max(1, int(d.get("steps_in_epoch", 1)))
        self._set_progress(e, (e - 1) + i / n)
        ips = float(d.get("images_per_s", 0.0))
        self.stats_label.setText(f"epoch {e}/{max(1, self._epochs_total)} \u00b7 step {int(d.get('step', 0)):,} "
                                 f"\u00b7 {ips:,.0f} images/s \u00b7 loss {float(d.get('loss', float('nan'))):.4f} "
                                 f"\u00b7 lr {float(d.get('lr', float('nan'))):.3g}")

    def _set_progress(self, epoch: int, done_epochs: float) -> None:
        """QProgressBar.setValue repaints synchronously: touch it only when what it shows changes."""
        total = max(1, self._epochs_total)
        v = int(1000 * min(1.0, done_epochs / total))
        fmt = f"epoch {epoch}/{total}  %p%"
        if self.progress.format() != fmt:
            self.progress.setFormat(fmt)
        if self.progress.value() != v:
            self.progress.setValue(v)

    def _show_epoch(self, d: dict[str, Any]) -> None:
        e = int(d.get("epoch", 0))
        self._set_progress(e, e)
        va = d.get("val_accuracy")
        if isinstance(va, (int, float)):
            self.statusBar().showMessage(f"epoch {e}: val accuracy {100 * va:.2f}%, "
                                         f"{float(d.get('images_per_s', 0)):,.0f} images/s", 8000)

    def _on_command(self, d: dict[str, Any]) -> None:
        st = d.get("status")
        if d.get("command") == "set_latent_targets" and st == "success":
            ep = d.get("epoch")
            if isinstance(ep, int):
                self.metrics.add_commit(ep)
        if self._resume_after is not None and d.get("uuid") == self._resume_after and st in ("success", "failed"):
            self._resume_after = None
            if st == "success":
                self.submit("resume_training", {})
            else:
                self._set_state("paused", "Edits were not accepted",
                                f"<span style='color:#c53030'>{html.escape(str(d.get('reason')))}</span> "
                                "\u2014 change or reset the edits, then commit again")
            self._update_edit_buttons()
        if d.get("command") == "pause_training" and st == "failed" and self.state == "running":
            self.pause_action.setEnabled(True)
        if d.get("command") == "load_checkpoint" and st == "success":
            self._on_branch_loaded(d)

    def _on_branch_loaded(self, d: dict[str, Any]) -> None:
        """A checkpoint was loaded: training continues on a new branch whose curves start at the checkpoint."""
        res = d.get("result") or {}
        new = str(res.get("branch") or "")
        if not new:
            return
        src = self.checkpoints.node(str((d.get("args") or {}).get("uuid")))
        parent = src["branch"] if src else res.get("from_branch")
        epoch = src.get("epoch") if src else res.get("epoch")
        self.metrics.add_branch(new, parent, epoch)
        self.metrics.set_current_branch(new)
        if self.state == "paused":
            self.banner_title.setText(f"Paused — now on branch {new}")
            self.banner_text.setText(
                f"Loaded the checkpoint of {html.escape(str(parent))} at epoch {epoch}; training continues on "
                f"<b>{html.escape(new)}</b> from there. The latent view still shows the model as it was before "
                "the load: <b>Resume</b> (Ctrl+Enter) to train the new branch.")

    def _on_paused(self, d: dict[str, Any]) -> None:
        self._pause_epoch = d.get("epoch")
        reason = str(d.get("reason", ""))
        title = f"Paused before epoch {d.get('epoch')}"
        if len(self.metrics.branches) > 1 or self.checkpoints.current_branch != "main":
            title += f" \u00b7 branch {self.checkpoints.current_branch}"
        if self._snapshot is None and self._pending_snap is None:
            text = (f"{html.escape(reason)}. The latent view appears after epoch 1; "
                    "press <b>Resume</b> (Ctrl+Enter) to continue.")
        else:
            text = (f"{html.escape(reason)}. Drag class centres (or points) to reshape the latent space, then "
                    "<b>Commit edits and resume</b> (Ctrl+Enter).")
        self._set_state("paused", title, text)

    def _on_resumed(self, d: dict[str, Any]) -> None:
        if self.state == "paused":
            self._set_state("running", "Training", f"resumed at epoch {d.get('epoch')} \u2014 press Space to "
                                                   "pause and edit at any time")

    def _drain_all(self) -> None:
        """Handle what is left in the channel (the thread has ended, so nothing new arrives)."""
        for _ in range(100):
            if self.worker is None or not len(self.worker.events):
                break
            self._poll()
        self._flush(force=True)

    def _on_finished(self, summary: dict) -> None:
        self._on_session_ready()
        self._drain_all()
        self.timer.stop()
        self.progress.setRange(0, 1000)
        self.progress.setValue(1000)
        acc = summary.get("test_accuracy")
        text = (f"test accuracy {100 * acc:.2f}% after {summary.get('epochs')} epochs, "
                f"{summary.get('edits_applied')} edit(s) \u2014 files in {self.worker.run_dir if self.worker else ''}"
                if isinstance(acc, (int, float)) else "")
        self._set_state("finished", "Stopped" if summary.get("stopped_early") else "Finished", text)
        self._after_worker()

    def _on_failed(self, message: str, tb: str) -> None:
        self._on_session_ready()
        self._drain_all()
        self.timer.stop()
        if not self._error_logged:
            self.log.add_error(message, tb)
        self.progress.setRange(0, 1000)
        started = self.session is not None
        self.last_error = message
        self._set_state("failed", "Training failed" if started else "Could not start the run",
                        html.escape(message) + " \u2014 details in the command log; start a new run with "
                                               "<b>New run\u2026</b>")
        self.show_error("Training failed" if started else "Could not start the run", message)
        self._after_worker()

    def _after_worker(self) -> None:
        if self._pending_start is not None:
            cfg, run_dir = self._pending_start
            self._pending_start = None
            QTimer.singleShot(0, lambda: self.start_run(cfg, run_dir))

    # ------------------------------------------------------------------ opening a run from disk

    def open_run_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a run folder", str(last_base(self.settings)))
        if folder:
            self.open_run(folder)

    def open_run(self, run_dir: str | Path) -> bool:
        """Show a finished (or crashed) run from its folder, read-only: the checkpoint tree from
        ``checkpoints/tree.json`` and every branch's curves from the journal's epoch records. Nothing in the
        folder is written. Not while a run is training (False, with a message)."""
        from hill_app.engine.journal import read_journal
        if self.worker is not None and self.worker.isRunning():
            self.show_error("A run is in progress", "Stop the current run before opening another one.")
            return False
        run_dir = Path(run_dir).expanduser()
        if not (run_dir / "journal.jsonl").exists():
            self.show_error("Cannot open the run", f"{run_dir} holds no run (there is no journal.jsonl in it).")
            return False
        try:
            records = list(read_journal(run_dir / "journal.jsonl"))
            nodes = read_tree_index(run_dir / "checkpoints" / "tree.json")
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.show_error("Cannot open the run", f"{run_dir}: {e}")
            return False
        try:
            cfg: RunConfig | None = RunConfig.load(run_dir / "config.json")
        except ConfigError:
            cfg = None
        epochs = [r for r in records if r.get("type") == "epoch"]
        pc = next((r.get("val_per_class_accuracy") for r in reversed(epochs)
                   if isinstance(r.get("val_per_class_accuracy"), list)), [])
        self.class_names = _class_names(cfg.dataset if cfg else "", len(pc))
        self.metrics.set_class_names(self.class_names)
        self.checkpoints.clear()
        for n in nodes:
            self.checkpoints.add_node(n)
        by_uuid = {n["uuid"]: n for n in nodes}
        current = "main"
        for r in records:
            t = r.get("type")
            if t == "branch" and isinstance(r.get("branch"), str):
                src = by_uuid.get(r.get("checkpoint"))
                parent = src["branch"] if src else r.get("from_branch")
                epoch = src.get("epoch") if src else r.get("epoch")
                self.metrics.add_branch(r["branch"], parent, epoch)
                self.checkpoints.note_fork(r["branch"], parent, epoch)
            elif t == "epoch":
                self.metrics.add_epoch(r)
            elif t == "targets" and isinstance(r.get("epoch"), int):
                self.metrics.add_commit(r["epoch"])
            if isinstance(r.get("branch"), str):
                current = r["branch"]
        self.metrics.set_current_branch(current)
        self.checkpoints.set_current_branch(current)
        self.metrics.refresh()
        snap = _latest_snapshot(run_dir / "snapshots.h5")
        if hasattr(self.view, "set_sample_renderer"):
            self.view.set_sample_renderer(None)      # the pictures of another run's data would be wrong here
        if snap is not None:
            self._snapshot = snap
            self._pending_snap = None
            self.view.set_snapshot(snap["z"], snap["labels"], snap["preds"],
                                   self.class_names or [str(c) for c in range(int(np.max(snap["labels"])) + 1)],
                                   committed_layout=None, keep_edits=False)
            if hasattr(self.view, "fit"):
                self.view.fit()
        if cfg is not None:
            try:
                self.controls.load_from_config(cfg.resolved())   # the run's settings, shown (controls stay off)
            except ConfigError:
                pass
        self.next_run_dir = None
        self.run_label.setText(str(run_dir))
        self.setWindowTitle(f"hill-app \u2014 {run_dir.name}")
        nb = len(self.metrics.branches)
        self._set_state("finished", f"Opened {run_dir.name}",
                        f"{len(epochs)} epoch records, {len(nodes)} checkpoints, {nb} branch{'es' if nb != 1 else ''}"
                        f" (read-only) \u2014 start a new run with <b>New run\u2026</b>")
        self.log.add_info(f"opened {run_dir}: {len(nodes)} checkpoints, branches {', '.join(self.metrics.branches)}")
        return True

    # ------------------------------------------------------------------ errors and closing

    def show_error(self, title: str, message: str) -> QMessageBox:
        """A window-modal message box that does not block the event loop (tests find it as ``error_box``)."""
        if self.error_box is not None:
            self.error_box.close()
        box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, self)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()
        self.error_box = box
        return box

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop a running session (it saves a final checkpoint) and wait for its thread before closing."""
        w = self.worker
        if w is not None and w.isRunning():
            self.statusBar().showMessage("stopping the run and saving a final checkpoint\u2026")
            w.cancel()
            w.wait()
        self.timer.stop()
        super().closeEvent(event)

    def wait_for_worker(self, timeout_ms: int = 30000) -> bool:
        """For scripts and tests: block until the worker thread has ended (never used by the GUI itself)."""
        return self.worker is None or self.worker.wait(timeout_ms)


def _latest_snapshot(path: Path) -> dict[str, Any] | None:
    """The newest latent snapshot stored in a run's snapshots.h5 (pauses, commits), or None."""
    if not path.exists():
        return None
    try:
        from hill_app.engine.snapshots import read_snapshots
        snaps = read_snapshots(path)
    except Exception:   # an unreadable analysis file must not stop the tree and curves from showing
        return None
    if not snaps:
        return None
    s = max(snaps.values(), key=lambda d: (float(d.get("time", 0.0)), int(d.get("step", 0))))
    return {"z": np.asarray(s["z"], dtype=np.float32), "labels": np.asarray(s["labels"]),
            "preds": np.asarray(s["preds"]), "epoch": s.get("epoch"), "step": s.get("step"),
            "branch": s.get("branch"), "kind": s.get("kind")}


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _class_names(dataset: str, k: int) -> list[str]:
    """Class names of a run opened from disk, without loading its data."""
    if dataset == "digits":
        return [str(i) for i in range(k)]
    if dataset == "cifar10" and k == len(CIFAR10_NAMES):
        return list(CIFAR10_NAMES)
    if dataset == "pamap2":
        from hill_app.datasets.pamap2 import CLASS_NAMES
        if len(CLASS_NAMES) == k:
            return list(CLASS_NAMES)
    return [f"class {i}" for i in range(k)]
