"""The main window: the latent view in the middle, command panels and the log on the right, feedback plots
below, run state in the banner, menus, toolbar and status bar.

The window never touches a session: a :class:`RunController` owns the run (a training worker in this
process, or a served job it is attached to) and its :class:`~hill_app.client.protocol.RunClient`; every
command goes through ``controller.submit`` (source ``"window"``), every event comes back through the
controller's poll. What the window may offer is given by a :class:`Restrictions` (everything by default; a
study protocol's panels and commands in the study window).
"""

from __future__ import annotations

import html
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from hill_app.client.protocol import RunClient
from hill_app.engine.config import ConfigError, RunConfig

from .checkpoint_panel import CheckpointPanel
from .history import RunHistory, class_names_for, latest_snapshot, read_client_history, read_run_folder
from .latent_view import LatentView
from .metrics_view import MetricsView
from .new_run_dialog import NewRunDialog, last_base, make_settings, new_run_dir
from .panels import ControlsPanel, EditHooks, LogConsole
from .restrictions import UNRESTRICTED, Restrictions
from .run_controller import PollStats, RunController
from .widgets import ElidedLabel, WrapLabel, breakable

if TYPE_CHECKING:
    from hill_app.engine.session import TrainingSession

    from .worker import TrainingWorker

GIL_SWITCH_S = 0.001  # how long the GUI thread may wait for the GIL while the training thread runs Python
IDLE_TITLE = "human-in-the-loop latent steering"  # Qt adds the application's display name ("hill-app")
MIN_SIZE = QSize(1024, 700)  # the window stays usable down to this size

STYLE = """
QMainWindow, QDialog { background: #f5f6f8; }
QDockWidget { font-weight: 600; color: #2d3748; }
QDockWidget::title { padding: 4px 8px; background: #e9ecf1; border-bottom: 1px solid #d9dee6; }
QGroupBox { font-weight: 600; color: #2d3748; border: 1px solid #dfe3ea; border-radius: 6px;
            margin-top: 14px; padding: 8px 8px 6px 8px; background: #ffffff; }
QGroupBox::title { subcontrol-origin: margin; left: 10px; padding: 0 4px; }
QGroupBox QLabel, QGroupBox QCheckBox { font-weight: 400; }
QPushButton { padding: 4px 10px; border: 1px solid #c9d0da; border-radius: 4px; background: #ffffff; }
QPushButton:hover { background: #eef2f7; }
QPushButton:disabled { color: #a0aec0; border-color: #e2e8f0; background: #f7f8fa; }
QPushButton#primary { background: #2563eb; color: white; border: 1px solid #1d4ed8; font-weight: 600;
                      padding: 5px 14px; }
QPushButton#primary:hover { background: #1d4ed8; }
QPushButton#primary:disabled { background: #a9bde8; border-color: #a9bde8; color: #eef2ff; }
QPushButton#danger { color: #c53030; }
QPushButton#danger:disabled { color: #e6b0b0; }
QToolBar { spacing: 4px; padding: 2px; background: #ffffff; border-bottom: 1px solid #dfe3ea; }
QToolBar QToolButton { padding: 3px 8px; border-radius: 4px; }
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
    "detached": ("#f7fafc", "#e2e8f0", "#4a5568"),
}
LIVE_STATES = ("running", "paused")


class MainWindow(QMainWindow):
    """One window, one run at a time; a failed or finished run leaves everything on screen."""

    refused = Signal(str, str, str)  # kind ("command" | "edit"), name, reason: what the restrictions refused

    def __init__(self, settings: QSettings | None = None, restrictions: Restrictions | None = None) -> None:
        super().__init__()
        self.settings = settings or make_settings()
        self.restrictions = restrictions or UNRESTRICTED
        self.setWindowTitle(IDLE_TITLE)
        self.setStyleSheet(STYLE)
        self.controller = RunController(self, self)
        self.client: RunClient | None = None
        self.info: dict[str, Any] = {}
        self.state = "idle"
        self.class_names: list[str] = []
        self.view_indices: np.ndarray | None = None  # training index of each view position
        self.next_config = RunConfig()  # the default protocol: digits, 40 epochs, pauses 25..40
        self.next_run_dir: Path | None = None
        self.run_dir: Path | None = None
        self.error_box: QMessageBox | None = None
        self.last_error: str | None = None
        self.commit_uuid: str | None = None  # the commit-and-resume command in flight
        self._error_logged = False
        self._snapshot: dict[str, Any] | None = None
        self._banner_pending: tuple[str | None, str | None] | None = None  # set during a drag, shown after it
        self._epochs_total = self.next_config.epochs
        # PySide releases the GIL around most Qt calls; getting it back from a training thread that is busy in
        # Python can take up to the switch interval (5 ms by default), per call. 1 ms bounds that wait.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))

        self._build_actions()
        self._build_menus()
        self._build_central()
        self._build_docks()
        self._build_status()
        self.setMinimumSize(MIN_SIZE)
        self._apply_restrictions()
        self._set_state("idle")
        self._initial_size()

    # ------------------------------------------------------------------ what the window runs

    @property
    def worker(self) -> TrainingWorker | None:
        return self.controller.worker

    @property
    def session(self) -> TrainingSession | None:
        """The in-process session, for scripts and tests (None when attached)."""
        return self.controller.session

    @property
    def poll_stats(self) -> PollStats:
        return self.controller.poll_stats

    @property
    def timer(self) -> QTimer:
        return self.controller.timer

    @property
    def attached(self) -> bool:
        return self.controller.attached

    @property
    def commit_pending(self) -> bool:
        """A commit-and-resume was sent and the engine has not answered yet."""
        return self.commit_uuid is not None

    # ------------------------------------------------------------------ building

    def _initial_size(self) -> None:
        """As large as the screen allows, up to 1600 x 1000; never smaller than the minimum."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        avail = screen.availableGeometry() if screen is not None else None
        w, h = 1600, 1000
        if avail is not None and avail.width() > 0:
            w, h = min(w, avail.width()), min(h, avail.height())
        w, h = max(w, MIN_SIZE.width()), max(h, MIN_SIZE.height())
        self.resize(w, h)
        # The docks take what the latent view can spare: on a 1024 x 700 screen a narrower right column and a
        # lower feedback row (the plots scroll), so the view keeps about half the window.
        right = 360 if w < 1280 else 400
        if self.controls_dock.isHidden():  # a study without command panels: the log needs less
            right = 280 if w < 1280 else 340
        feedback = 200 if h < 850 else 270
        self.resizeDocks([self.controls_dock], [right], Qt.Orientation.Horizontal)
        # the controls scroll; the checkpoint tree's rows (note, load, its result) need about 300 px
        self.resizeDocks(
            [self.controls_dock, self.log_dock],
            [int(h * 0.5), int(h * 0.5)] if h < 850 else [int(h * 0.55), int(h * 0.4)],
            Qt.Orientation.Vertical,
        )
        self.resizeDocks([self.metrics_dock], [feedback], Qt.Orientation.Vertical)

    def _action(self, text: str, slot: Any, shortcuts: list[Any] | None = None, tip: str = "") -> QAction:
        a = QAction(text, self)
        a.triggered.connect(slot)
        if shortcuts:
            a.setShortcuts([QKeySequence(s) for s in shortcuts])
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            a.setToolTip(tip)
            a.setStatusTip(tip)
        self.addAction(a)  # shortcuts work even when the action is on no visible toolbar
        return a

    def _build_actions(self) -> None:
        self.new_run_action = self._action(
            "New run\u2026",
            self.new_run,
            [QKeySequence.StandardKey.New],
            "choose a data set, model and protocol, then start",
        )
        self.open_run_action = self._action(
            "Open run\u2026",
            self.open_run_dialog,
            [QKeySequence.StandardKey.Open],
            "show a run folder's checkpoint tree and branch curves (read-only)",
        )
        self.attach_action = self._action(
            "Attach to a running job\u2026",
            self.attach_dialog,
            ["Ctrl+Shift+A"],
            "follow and steer a job served with hill-app train --serve (its URL or run folder)",
        )
        self.detach_action = self._action(
            "Detach", self.detach, [], "stop following the attached job; it goes on running (or paused)"
        )
        self.quit_action = self._action(
            "Quit",
            self.close,
            [QKeySequence.StandardKey.Quit, "Ctrl+Q"],
            "close the window (a run trained here is stopped with a final checkpoint; an attached job goes on)",
        )
        self.start_action = self._action(
            "Start", self.start_default, [], "start training with the run shown in the banner"
        )
        self.pause_action = self._action(
            "Pause", self.pause_on_demand, [Qt.Key.Key_Space], "pause at the next step (Space)"
        )
        self.stop_action = self._action("Stop", self.stop_run, [], "stop and save a final checkpoint")
        self.undo_action = self._action("Undo", self.undo_edit, [QKeySequence.StandardKey.Undo], "undo the last edit")
        self.redo_action = self._action(
            "Redo", self.redo_edit, [QKeySequence.StandardKey.Redo, "Ctrl+Shift+Z", "Ctrl+Y"], "redo"
        )
        self.reset_action = self._action("Reset", self.reset_edits, [], "drop every edit made at this pause")
        self.commit_action = self._action(
            "Commit edits and resume",
            self.commit_and_resume,
            ["Ctrl+Return", "Ctrl+Enter"],
            "send the edits as the teacher layout and resume (Ctrl+Enter)",
        )
        self.suggest_action = self._action(
            "Suggest edits",
            self.suggest_edits,
            ["Ctrl+Shift+S"],
            "add edits computed from the scatter and the confusion matrix (undoable)",
        )
        self.fit_action = self._action("Fit view", self._fit_view, ["Ctrl+0"], "zoom the latent view to all points")
        for a in (self.redo_action, self.quit_action):
            # A standard key may equal one listed explicitly: drop duplicates so no shortcut is ambiguous.
            seen, uniq = set(), []
            for s in a.shortcuts():
                if s.toString() not in seen and not s.isEmpty():
                    seen.add(s.toString())
                    uniq.append(s)
            a.setShortcuts(uniq)

        sp = QStyle.StandardPixmap
        for a, icon in (
            (self.new_run_action, sp.SP_FileDialogNewFolder),
            (self.open_run_action, sp.SP_DirOpenIcon),
            (self.start_action, sp.SP_MediaPlay),
            (self.pause_action, sp.SP_MediaPause),
            (self.stop_action, sp.SP_MediaStop),
            (self.attach_action, sp.SP_DriveNetIcon),
        ):
            a.setIcon(self.style().standardIcon(icon))
        tb = QToolBar("Run")
        tb.setObjectName("runToolbar")
        tb.setMovable(False)
        tb.setIconSize(QSize(16, 16))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for a in (
            self.new_run_action,
            self.open_run_action,
            self.attach_action,
            self.start_action,
            self.pause_action,
            self.stop_action,
        ):
            tb.addAction(a)
        self.run_label = ElidedLabel("", min_chars=4, mode=Qt.TextElideMode.ElideMiddle)
        self.run_label.setStyleSheet("color:#4a5568; padding: 0 8px")
        self.run_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.run_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        tb.addWidget(self.run_label)
        self.addToolBar(tb)
        self.toolbar = tb

    def _build_menus(self) -> None:
        mb = self.menuBar()
        self.file_menu = mb.addMenu("&File")
        for a in (self.new_run_action, self.open_run_action, self.attach_action, self.detach_action):
            self.file_menu.addAction(a)
        self.file_menu.addSeparator()
        self.file_menu.addAction(self.quit_action)
        self.run_menu = mb.addMenu("&Run")
        for a in (self.start_action, self.pause_action, self.stop_action):
            self.run_menu.addAction(a)
        self.run_menu.addSeparator()
        for a in (self.commit_action, self.undo_action, self.redo_action, self.reset_action, self.suggest_action):
            self.run_menu.addAction(a)
        self.view_menu = mb.addMenu("&View")
        self.view_menu.addAction(self.fit_action)

    def _build_central(self) -> None:
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(6, 6, 6, 2)
        lay.setSpacing(4)

        self.banner = QWidget()
        self.banner.setObjectName("banner")
        self.banner.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        bl = QVBoxLayout(self.banner)
        bl.setContentsMargins(10, 4, 6, 5)
        bl.setSpacing(1)
        self.banner_title = ElidedLabel("", min_chars=10)
        self.banner_title.setStyleSheet("font-weight:700; font-size:11pt")
        self.banner_text = WrapLabel("")
        # Arrows only (named in their tooltips and for screen readers): the title beside them keeps its room at
        # 1024 px ("Paused before epoch 12" is what a user reads first).
        self.undo_btn = QPushButton("\u21b6")
        self.redo_btn = QPushButton("\u21b7")
        self.undo_btn.setAccessibleName("Undo")
        self.redo_btn.setAccessibleName("Redo")
        self.reset_btn = QPushButton("Reset")
        self.undo_btn.setToolTip("undo the last edit (Ctrl+Z)")
        self.redo_btn.setToolTip("redo (Ctrl+Shift+Z)")
        self.reset_btn.setToolTip("drop every edit made at this pause")
        self.commit_btn = QPushButton("Commit edits and resume")
        self.commit_btn.setObjectName("primary")
        self.commit_btn.setToolTip("send the edits to the training as the teacher layout and resume (Ctrl+Enter)")
        # Its own size hint (never clipped). A new count only moves the elided title's end: the banner's text is
        # on a row of its own, so nothing below the buttons moves.
        self.commit_btn.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)
        self.start_btn = QPushButton("Start training")
        self.start_btn.setObjectName("primary")
        self.undo_btn.clicked.connect(self.undo_action.trigger)
        self.redo_btn.clicked.connect(self.redo_action.trigger)
        self.reset_btn.clicked.connect(self.reset_action.trigger)
        self.commit_btn.clicked.connect(self.commit_action.trigger)
        self.start_btn.clicked.connect(self.start_action.trigger)
        # Two rows: the title with the buttons, then the text across the whole banner. The text's line count then
        # depends only on the window's width, not on which buttons show, and it stays short at 1024 px.
        top = QHBoxLayout()
        top.setSpacing(6)
        top.addWidget(self.banner_title, 1)
        for b in (self.undo_btn, self.redo_btn, self.reset_btn):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            top.addWidget(b)
        top.addSpacing(4)
        top.addWidget(self.commit_btn)
        top.addWidget(self.start_btn)
        bl.addLayout(top)
        bl.addWidget(self.banner_text)
        lay.addWidget(self.banner)

        self.view = LatentView()
        self.view.setMinimumSize(360, 220)
        # Undo, Redo and Reset live in the banner next to Commit; hide the view's own copies of them.
        for b in (self.view.undo_button, self.view.redo_button, self.view.reset_button):
            b.hide()
        lay.addWidget(self.view, 1)
        self.view.editsChanged.connect(self._edits_changed)
        self.view.hovered.connect(self._hovered)
        self.view.dragActive.connect(self._drag_active)
        self.setCentralWidget(central)

    def _build_docks(self) -> None:
        hooks = EditHooks(
            push_edit=self._push_edit, suggest=self._suggest, selected_train_indices=self.selected_train_indices
        )
        self.controls = ControlsPanel(self.submit, hooks)
        self.log = LogConsole()
        self.metrics = MetricsView()
        self.metrics_scroll = QScrollArea()
        self.metrics_scroll.setWidgetResizable(True)
        self.metrics_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.metrics_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.metrics_scroll.setWidget(self.metrics)
        self.metrics_scroll.setMinimumHeight(190)

        self.controls_dock = QDockWidget("Training controls", self)
        self.controls_dock.setObjectName("controls")
        self.controls_dock.setWidget(self.controls)
        self.log_dock = QDockWidget("Command log", self)
        self.log_dock.setObjectName("log")
        self.log_dock.setWidget(self.log)
        self.metrics_dock = QDockWidget("Feedback", self)
        self.metrics_dock.setObjectName("feedback")
        self.metrics_dock.setWidget(self.metrics_scroll)
        self.checkpoints = CheckpointPanel(self.submit)
        self.checkpoints_dock = QDockWidget("Checkpoints", self)
        self.checkpoints_dock.setObjectName("checkpoints")
        self.checkpoints_dock.setWidget(self.checkpoints)
        feats = QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        self.docks = (self.controls_dock, self.log_dock, self.metrics_dock, self.checkpoints_dock)
        for d in self.docks:
            d.setFeatures(feats)
            self.view_menu.addAction(d.toggleViewAction())
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.controls_dock)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.log_dock)
        # The checkpoint tree shares the lower right with the command log, as a tab.
        self.tabifyDockWidget(self.log_dock, self.checkpoints_dock)
        self.log_dock.raise_()
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.metrics_dock)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.progress = QProgressBar()
        self.progress.setMinimumWidth(120)
        self.progress.setMaximumWidth(240)
        self.progress.setTextVisible(True)
        self.progress.setFormat("%p%")
        # Elided, and asking for little width: a new text every poll neither re-lays-out nor widens the window.
        self.stats_label = ElidedLabel("", min_chars=12)
        self.stats_label.setStyleSheet("padding: 0 6px")
        self.stats_label.setMinimumWidth(160)
        self.device_label = ElidedLabel("", min_chars=8)
        self.device_label.setStyleSheet("padding: 0 6px; color:#718096")
        self.device_label.setMaximumWidth(160)
        # The step line is a normal widget: a message (a hovered sample, a refusal, an epoch's accuracy) takes its
        # place while it shows. As a permanent widget it left messages no room at all.
        sb.addWidget(self.stats_label, 3)
        sb.addPermanentWidget(self.device_label, 1)
        sb.addPermanentWidget(self.progress, 1)

    def _apply_restrictions(self) -> None:
        r = self.restrictions
        self.controls.restrict(r.shows)
        self.checkpoints_dock.setVisible(r.shows("checkpoints"))
        self.checkpoints.save_btn.setVisible(r.command_refusal("save_checkpoint") is None)
        self.checkpoints.note.setVisible(r.command_refusal("save_checkpoint") is None)
        self.checkpoints.load_btn.setVisible(r.command_refusal("load_checkpoint") is None)
        for a in (self.new_run_action, self.open_run_action, self.attach_action, self.detach_action, self.start_action):
            a.setVisible(r.new_runs)
        self.stop_action.setVisible(r.command_refusal("stop_training") is None)
        self.suggest_action.setVisible(r.shows("latent") and r.suggestions)
        self.controls.edits.suggest_btn.setVisible(r.suggestions)
        # strategy edits, like suggestions, are automated aids: a study (suggestions off) measures the participant
        probe = {"op": "strategy", "name": "compactness", "strength": 0.5}
        strategies = r.suggestions and r.edit_refusal(probe) is None
        for w in (
            self.controls.edits.strategy,
            self.controls.edits.strength,
            self.controls.edits.add_btn,
            self.controls.edits.strength_label,
        ):
            w.setVisible(strategies)
        # the edits section holds only Suggest and the strategy edits: with neither allowed it is empty
        if not (r.suggestions or strategies):
            self.controls.edits.setVisible(False)
        self.controls_dock.setVisible(bool(self.controls.visible_sections()))
        self.log_dock.raise_()

    def refuse(self, kind: str, name: str, reason: str) -> None:
        """Something the restrictions do not allow: say why (status bar, log) and tell ``refused`` listeners."""
        self.statusBar().showMessage(f"not allowed {self.restrictions.where}: {reason}", 10000)
        self.log.add_log("warning", f"refused ({self.restrictions.name or 'restricted window'}): {reason}")
        self.refused.emit(kind, name, reason)

    # ------------------------------------------------------------------ state

    def _set_state(self, state: str, title: str | None = None, text: str | None = None) -> None:
        self.state = state
        bg, border, fg = BANNER_COLOURS.get(state, BANNER_COLOURS["idle"])
        self.banner.setStyleSheet(
            f"QWidget#banner {{ background:{bg}; border:1px solid {border}; "
            f"border-radius:6px; }} QWidget#banner QLabel {{ color:{fg}; }}"
        )
        if state == "idle":
            title = title or "Ready"
            text = text or (
                html.escape(self._describe(self.next_config)) + " \u2014 press <b>Start training</b> "
                "or choose <b>New run\u2026</b>"
                if self.restrictions.new_runs
                else ""
            )
        self._show_banner(title or state.capitalize(), text or "")
        live = state in LIVE_STATES
        active = state in ("loading", "running", "paused")
        new_runs = self.restrictions.new_runs
        self.start_btn.setVisible(new_runs and state in ("idle", "finished", "failed", "detached"))
        self.start_btn.setText("Start training" if state == "idle" else "New run\u2026")
        self.start_action.setEnabled(new_runs and not active)
        self.new_run_action.setEnabled(new_runs)
        self.open_run_action.setEnabled(new_runs)
        self.attach_action.setEnabled(new_runs)
        self.detach_action.setEnabled(self.attached)
        self.pause_action.setEnabled(state == "running")
        self.stop_action.setEnabled(live)
        self.controls.set_active(live)
        self.controls.set_paused(state == "paused")
        self.checkpoints.set_active(live)
        self.checkpoints.set_paused(state == "paused")
        self.view.set_editable(state == "paused" and self.restrictions.shows("latent"))
        if state in ("finished", "failed", "detached", "idle"):
            # The view's own line says "locked while training runs"; after the run that would be wrong.
            self.view.status_label.setText(
                {
                    "finished": "The run has ended \u00b7 start a new run to edit",
                    "failed": "The run stopped \u00b7 start a new run to edit",
                    "detached": "Detached \u00b7 attach again to edit",
                    "idle": "No run yet",
                }[state]
            )
        editing = state == "paused"
        for b in (self.commit_btn, self.undo_btn, self.redo_btn, self.reset_btn):
            b.setVisible(editing)
        self._update_edit_buttons()

    def _describe(self, cfg: RunConfig | dict[str, Any]) -> str:
        if isinstance(cfg, RunConfig):
            try:
                r = cfg.resolved().to_json()
            except ConfigError:
                r = cfg.to_json()
        else:
            r = cfg
        pauses = ", ".join(map(str, r.get("pause_at") or [])) or "none"
        return (
            f"{r.get('dataset')} \u00b7 {r.get('model')} \u00b7 {r.get('epochs')} epochs \u00b7 pauses before "
            f"{pauses} \u00b7 \u03b1 {float(r.get('alpha', 0)):g} \u00b7 \u03bb {float(r.get('lam', 0)):g} "
            f"\u00b7 device {r.get('device')}"
        )

    def _update_edit_buttons(self) -> None:
        paused = self.state == "paused" and self.commit_uuid is None
        stack = self.view.edit_stack
        n = len(self.view.edits()) if paused else 0
        can_undo = bool(paused and stack.can_undo())
        can_redo = bool(paused and stack.can_redo())
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)
        self.reset_action.setEnabled(paused and n > 0)
        self.commit_action.setEnabled(paused)
        self.suggest_action.setEnabled(
            paused
            and self._snapshot is not None
            and self.restrictions.shows("latent")
            and self.restrictions.suggestions
        )
        self.undo_btn.setEnabled(can_undo)
        self.redo_btn.setEnabled(can_redo)
        self.reset_btn.setEnabled(paused and n > 0)
        self.commit_btn.setEnabled(paused)
        self.commit_btn.setText(f"Commit {n} edit{'s' if n != 1 else ''} and resume" if n else "Resume without edits")

    # ------------------------------------------------------------------ starting runs

    def start_default(self) -> None:
        """Start the run described in the banner (the default protocol at launch), or open New Run after one."""
        if not self.restrictions.new_runs:
            self.refuse("command", "new_run", "this window trains its own run only; New run is not available")
            return
        if self.state in ("finished", "failed", "detached"):
            self.new_run()
            return
        run_dir = self.next_run_dir or new_run_dir(last_base(self.settings), self.next_config.dataset)
        self.start_run(self.next_config, run_dir)

    def new_run(self) -> None:
        """Choose a run in the dialog (which checks everything first); only then is a running one stopped."""
        if not self.restrictions.new_runs:
            self.refuse("command", "new_run", "this window trains its own run only; New run is not available")
            return
        dlg = NewRunDialog(self, self.settings)
        if dlg.exec() != NewRunDialog.DialogCode.Accepted:
            return
        cfg, run_dir = dlg.run_config(), dlg.run_dir()
        if self.controller.busy or (self.attached and self.state in LIVE_STATES):
            what = (
                "A run is in progress. Stop it (a final checkpoint is saved)"
                if not self.attached
                else "This window is attached to a running job. Detach (the job goes on)"
            )
            ans = QMessageBox.question(self, "Start the new run?", f"{what} and start the new one?")
            if ans != QMessageBox.StandardButton.Yes:
                return
            if self.attached:
                self.detach()
            else:
                self._start_when_stopped(cfg, run_dir)
                return
        self.start_run(cfg, run_dir)

    def _start_when_stopped(self, cfg: RunConfig, run_dir: Path) -> None:
        w = self.worker
        assert w is not None
        w.finished.connect(lambda: QTimer.singleShot(0, lambda: self.start_run(cfg, run_dir)))
        self.controller.stop()

    def start_run(self, config: RunConfig, run_dir: str | Path) -> bool:
        """Start training ``config`` in ``run_dir`` in a worker thread; False (with a message) if it cannot."""
        if self.controller.busy and self.state in ("finished", "failed"):
            self.worker.wait(5000)  # it sent its last signal and is returning from run(): a moment at most
        if self.controller.busy:
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
        if self.attached:
            self.detach()
        self.next_config, self.next_run_dir = config, None
        self._forget_run()
        self._epochs_total = cfg.epochs
        self.run_dir = run_dir
        self.log.add_info(f"starting {self._describe(cfg)} in {run_dir}")
        self._set_state(
            "loading", f"Loading {cfg.dataset}\u2026", html.escape(breakable(f"{self._describe(cfg)} \u2192 {run_dir}"))
        )
        self.run_label.setText(str(run_dir))
        self.progress.setRange(0, 0)
        self.controller.start_local(cfg, run_dir)
        return True

    def _forget_run(self) -> None:
        """Nothing of the last run stays on screen for the next one."""
        self.client = None
        self.info = {}
        self.class_names = []
        self.view_indices = None
        self._snapshot = None
        self._error_logged = False
        self.commit_uuid = None
        self.last_error = None
        self.metrics.clear()
        self.checkpoints.clear()
        self.controls.reset()
        self.statusBar().clearMessage()
        self.stats_label.setText("")
        self.device_label.setText("")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.view.set_sample_renderer(None)
        self.view.clear()  # no points, handles or edits of the last run while the next one loads
        self._set_axis_labels(self.next_config.projection or "pca")

    def run_ready(self, client: RunClient, info: dict[str, Any]) -> None:
        """The run exists (an in-process session was built, or a served job was attached)."""
        self.client = client
        self.info = info
        ds = info.get("dataset") or {}
        cfg = info.get("config") or {}
        st = info.get("state") or {}
        self.class_names = list(ds.get("class_names") or [])
        # Training index of each view position (to drop the selected points): both clients of this package
        # offer view_indices(); the RunClient protocol does not (yet).
        vi = getattr(client, "view_indices", None)
        self.view_indices = np.asarray(vi(), dtype=np.int64) if callable(vi) else None
        self._epochs_total = int(cfg.get("epochs") or st.get("epochs_total") or self._epochs_total)
        self.metrics.set_class_names(self.class_names)
        self.controls.load_from_config(cfg)
        self.controls.set_run(info)
        self._set_axis_labels(str(cfg.get("projection") or "pca"))
        self._show_history(read_client_history(client))
        if self.controller.worker is not None and self.controller.worker.samples is not None:
            self.view.set_sample_renderer(self.controller.worker.samples.render)
        elif self.attached:
            from .attach import RemoteSamples

            self.view.set_sample_renderer(RemoteSamples(client, ds).render)
        self.device_label.setText(f"device: {info.get('device', '')}")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        name = str(info.get("run_name") or Path(str(info.get("run_dir", ""))).name)
        self.setWindowTitle(f"{name} (attached)" if self.attached else name)
        self.run_label.setText(str(self.controller.target if self.attached else info.get("run_dir", "")))
        status = st.get("status")
        if status == "paused":
            self._set_state(
                "paused",
                f"Paused before epoch {st.get('pause_epoch') or int(st.get('epoch', 0)) + 1}",
                html.escape(str(st.get("pause_reason") or "paused")) + ". Drag class centres (or "
                "points), then <b>Commit edits and resume</b> (Ctrl+Enter).",
            )
            snap = client.latest_snapshot()
            if snap is not None:
                self.show_snapshot(snap)
        elif status in ("finished", "failed"):
            self._set_state("finished", "Finished", "the job has ended; its curves and checkpoints are shown")
        else:
            self._set_state(
                "running",
                "Training",
                html.escape(self._describe(cfg)) + " \u2014 press Space to pause and edit at any time",
            )
            if self.attached:
                snap = client.latest_snapshot()
                if snap is not None:
                    self.show_snapshot(snap)

    def _set_axis_labels(self, method: str) -> None:
        m = method.upper()
        self.view.set_axis_labels(f"{m} axis 1 (frozen map)", f"{m} axis 2")

    def _show_history(self, h: RunHistory) -> None:
        """Curves, forks, commits and checkpoints of what happened before (a resumed, attached or opened run)."""
        for n in h.nodes:
            self.checkpoints.add_node(n)
        for r in h.epochs:  # first, so that branches are listed in the order they trained
            self.metrics.add_epoch(r)
        for f in h.forks:
            self.metrics.add_branch(f.branch, f.parent, f.epoch)
            self.checkpoints.note_fork(f.branch, f.parent, f.epoch)
        for e in h.commits:
            self.metrics.add_commit(e)
        self.metrics.set_current_branch(h.current_branch)
        self.checkpoints.set_current_branch(h.current_branch)
        if h.projection:
            self._set_axis_labels(h.projection)
        self.metrics.refresh()

    # ------------------------------------------------------------------ attaching to a served job

    def attach_dialog(self) -> None:
        if not self.restrictions.new_runs:
            self.refuse("command", "attach", "this window shows its own run only; Attach is not available")
            return
        text, ok = QInputDialog.getText(
            self,
            "Attach to a running job",
            "URL of a job served with hill-app train --serve (token from HILL_APP_TOKEN "
            "or ~/.netrc), or its run folder (the token is read from control.json):",
            QLineEdit.EchoMode.Normal,
            self.controller.target or "",
        )
        if ok and text.strip():
            self.attach(text.strip())

    def attach(self, target: str) -> bool:
        """Follow and steer the job served at ``target`` (URL or run folder); False with a message if not."""
        from hill_app.client.remote import RemoteError, RemoteRunClient

        if self.controller.busy:
            self.show_error(
                "A run is in progress", "Stop the run trained in this window before attaching to another job."
            )
            return False
        if self.attached:
            self.detach()
        try:
            client = RemoteRunClient(target, source="window")
        except RemoteError as e:
            self.show_error("Cannot attach", str(e))
            return False
        self._forget_run()
        self.log.add_info(f"attached to {client.url}")
        try:
            self.controller.attach(client, target)
        except RemoteError as e:
            client.close()
            self.show_error("Cannot attach", str(e))
            return False
        return True

    def detach(self) -> None:
        """Stop following the attached job; it goes on (or stays paused). Attach again at any time."""
        if not self.attached:
            return
        target = self.controller.target
        self.controller.detach()
        self.client = None
        self.commit_uuid = None
        self.log.add_info(f"detached from {target}; the job goes on")
        self._set_state(
            "detached",
            "Detached",
            html.escape(breakable(f"{target}: the job goes on without this window")) + " \u2014 <b>File \u203a Attach"
            "</b> to follow it again",
        )

    def _on_connection(self, d: dict[str, Any]) -> None:
        if d.get("connected"):
            self.statusBar().showMessage(f"connected to {d.get('url', '')}", 5000)
            return
        self.log.add_log("warning", f"connection to the job lost: {d.get('message', '')} (retrying)")
        self.statusBar().showMessage("connection to the job lost; retrying\u2026")

    # ------------------------------------------------------------------ commands

    def submit(self, command: str, args: dict | None = None) -> str | None:
        """Send a command through the run's client; its uuid, or None when it cannot be sent (no live run, or
        the restrictions refuse it: then the reason is shown)."""
        why = self.restrictions.command_refusal(command)
        if why:
            self.refuse("command", command, why)
            return None
        if self.state not in LIVE_STATES:
            return None
        return self.controller.submit(command, args or {})

    def pause_on_demand(self) -> None:
        if self.state == "running":
            if self.submit("pause_training", {"reason": "paused on request"}) is not None:
                self.pause_action.setEnabled(False)

    def stop_run(self) -> None:
        if self.state in LIVE_STATES:
            self.submit("stop_training", {})

    def disallowed_edits(self, edits: list[dict] | None = None) -> list[tuple[int, dict, str]]:
        out = []
        for i, e in enumerate(self.view.edits() if edits is None else edits):
            why = self.restrictions.edit_refusal(e)
            if why:
                out.append((i, e, why))
        return out

    def commit_and_resume(self) -> None:
        """Send the edits (if any) as the teacher layout and resume, as one engine command."""
        if self.state != "paused" or self.commit_uuid is not None:
            return
        bad = self.disallowed_edits()
        if bad:
            _, e, why = bad[0]
            self.refuse("edit", str(e.get("op")), why + " \u2014 undo or reset that edit to go on")
            return
        edits = self.view.edits()
        why = self.restrictions.command_refusal("set_latent_targets" if edits else "resume_training")
        if why:
            self.refuse("command", "set_latent_targets", why)
            return
        uid = self.controller.commit(edits)
        if uid is None:
            return
        self.commit_uuid = uid
        self._show_banner(text=f"Committing {len(edits)} edit(s) and resuming\u2026" if edits else "Resuming\u2026")
        self._update_edit_buttons()

    def undo_edit(self) -> None:
        if self.state == "paused":
            self.view.undo()
            self._update_edit_buttons()

    def redo_edit(self) -> None:
        if self.state == "paused":
            self.view.redo()
            self._update_edit_buttons()

    def reset_edits(self) -> None:
        if self.state == "paused":
            self.view.reset_edits()
            self._update_edit_buttons()

    def _push_edit(self, edit: dict[str, Any]) -> bool:
        """A strategy or suggested edit onto the view's undoable stack (the restrictions may refuse it)."""
        if self.state != "paused":
            return False
        why = self.restrictions.edit_refusal(edit)
        if why:
            self.refuse("edit", str(edit.get("op")), why)
            return False
        ok = self.view.push_edit(edit)
        self._update_edit_buttons()
        return ok

    def suggest_edits(self) -> int:
        n, text = self._suggest()
        self.statusBar().showMessage(text, 10000)
        return n

    def _suggest(self) -> tuple[int, str]:
        """Edits from ``hill_app.studies.suggest`` for the scatter on screen and the newest validation confusion,
        pushed onto the edit stack one by one (each undoable), logged with what was measured of each."""
        if not self.restrictions.suggestions:
            return 0, f"suggestions are not offered {self.restrictions.where}"
        if self.state != "paused" or self._snapshot is None:
            return 0, "suggestions are made at a pause, once the latent view shows a snapshot"
        try:
            from hill_app.studies.suggest import suggest_edits
        except ImportError as e:
            return 0, f"suggestions are not available: {e}"
        conf = None
        for r in reversed(self.metrics.epochs):
            if isinstance(r.get("val_confusion"), list):
                conf = r["val_confusion"]
                break
        snap = {
            "z": self._snapshot["z"],
            "labels": self._snapshot["labels"],
            "preds": self._snapshot["preds"],
            "layout": self._snapshot.get("layout"),
        }
        try:
            suggestions = suggest_edits(snap, conf)
        except ValueError as e:
            return 0, f"no suggestions: {e}"
        n = 0
        for s in suggestions:
            if self._push_edit(s["edit"]):
                n += 1
                self.log.add_info(f"suggested {s['strategy']}: {s.get('reason', '')} (effect: {s['measured']})")
        if not suggestions:
            return 0, "no edits to suggest for this scatter"
        return n, (
            f"added {n} suggested edit{'s' if n != 1 else ''} (undo removes them; the log says why and what "
            "was measured)"
        )

    def selected_train_indices(self) -> list[int]:
        """Training-sample indices of the points selected in the latent view."""
        sel = self.view.selected_indices()
        if self.view_indices is None or not len(sel):
            return []
        return [int(self.view_indices[i]) for i in sel if 0 <= i < len(self.view_indices)]

    def _fit_view(self) -> None:
        self.view.fit()

    def _show_banner(self, title: str | None = None, text: str | None = None) -> None:
        """Set the banner's title and/or text. While the user drags in the latent view this waits for the
        release: a banner text that wraps to another line count would move the view, and the drop target with
        it, under the user's hand."""
        if self.view.dragging:
            old_t, old_x = self._banner_pending or (None, None)
            self._banner_pending = (old_t if title is None else title, old_x if text is None else text)
            return
        if title is not None:
            self.banner_title.setText(title)
        if text is not None:
            self.banner_text.setText(text)
            self.banner_text.setVisible(bool(text))

    def _drag_active(self, on: bool) -> None:
        if not on and self._banner_pending is not None:
            title, text = self._banner_pending
            self._banner_pending = None
            self._show_banner(title, text)

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

    # ------------------------------------------------------------------ events (the controller calls these)

    def handle_event(self, kind: str, d: dict[str, Any], t: float) -> None:
        if kind == "epoch":
            self.metrics.add_epoch(d)
            if isinstance(d.get("branch"), str) and d["branch"] != self.checkpoints.current_branch:
                self.checkpoints.set_current_branch(d["branch"])
            self._show_epoch(d)
        elif kind == "command":
            self.log.add_command(d)
            self.controls.on_command(d)
            self.checkpoints.on_command(d)
            self._on_command(d)
        elif kind == "paused":
            self._on_paused(d)
        elif kind == "resumed":
            self._on_resumed(d)
        elif kind == "log":
            self.log.add_log(str(d.get("level", "info")), str(d.get("message", "")), t)
        elif kind == "error":
            self._error_logged = True
            self.log.add_error(str(d.get("message", "")), d.get("traceback"), t)
        elif kind == "checkpoint":
            self.checkpoints.add_node(d)
            self.log.add_log(
                "info",
                f"checkpoint {str(d.get('uuid', ''))[:8]} saved at epoch {d.get('epoch')}, "
                f"step {d.get('step')} ({d.get('note') or 'manual'})",
                t,
            )
        elif kind == "evaluation":
            self.metrics.show_evaluation(d)
            split = d.get("split", "val")
            self.log.add_log(
                "info",
                f"evaluation on {split}: accuracy {100 * float(d.get(f'{split}_accuracy', float('nan'))):.2f}%",
                t,
            )
        elif kind == "finished":
            self.log.add_log(
                "info",
                f"finished: test accuracy {100 * float(d.get('test_accuracy', 0)):.2f}%, "
                f"val {100 * float(d.get('val_accuracy', 0)):.2f}%, {d.get('epochs')} "
                f"epochs, {d.get('edits_applied')} edit(s)",
                t,
            )
        elif kind == "connection":
            self._on_connection(d)
        elif kind == "dropped":
            self.log.add_log("warning", f"{d.get('count')} event(s) were dropped because this window fell behind", t)

    def show_snapshot(self, s: dict[str, Any]) -> None:
        self._snapshot = s
        self.metrics.add_snapshot(s)
        names = self.class_names or [str(c) for c in range(int(np.max(s["labels"])) + 1)]
        self.view.set_snapshot(
            s["z"], s["labels"], s["preds"], names, committed_layout=s.get("layout"), keep_edits=False
        )  # the view fits its first snapshot (after clear(): the run's)
        self._update_edit_buttons()

    def refresh_plots(self) -> bool:
        return self.metrics.refresh()

    def report_bug(self, traceback_text: str) -> None:
        self.log.add_error("the window failed to show an event", traceback_text)

    def show_step(self, d: dict[str, Any]) -> None:
        e, i, n = int(d.get("epoch", 1)), int(d.get("index_in_epoch", 0)), max(1, int(d.get("steps_in_epoch", 1)))
        self._set_progress(e, (e - 1) + i / n)
        ips = float(d.get("images_per_s", 0.0))
        self.stats_label.setText(
            f"epoch {e}/{max(1, self._epochs_total)} \u00b7 step {int(d.get('step', 0)):,} "
            f"\u00b7 {ips:,.0f} images/s \u00b7 loss {float(d.get('loss', float('nan'))):.4f} "
            f"\u00b7 lr {float(d.get('lr', float('nan'))):.3g}"
        )

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
            self.statusBar().showMessage(
                f"epoch {e}: val accuracy {100 * va:.2f}%, {float(d.get('images_per_s', 0)):,.0f} images/s", 8000
            )

    def _on_command(self, d: dict[str, Any]) -> None:
        st, cmd = d.get("status"), d.get("command")
        if cmd == "set_latent_targets" and st == "success":
            ep = d.get("epoch")
            if isinstance(ep, int):
                self.metrics.add_commit(ep)
        if self.commit_uuid is not None and d.get("uuid") == self.commit_uuid and st in ("success", "failed"):
            self.commit_uuid = None
            if st == "failed" and self.state == "paused":
                self._set_state(
                    "paused",
                    "Edits were not accepted",
                    f"<span style='color:#c53030'>{html.escape(str(d.get('reason')))}</span> "
                    "\u2014 change or reset the edits, then commit again",
                )
            self._update_edit_buttons()
        if cmd == "pause_training" and st == "failed" and self.state == "running":
            self.pause_action.setEnabled(True)
        if cmd == "load_checkpoint" and st == "success":
            self._on_branch_loaded(d)
        if cmd == "refit_projection" and st == "success":
            self._set_axis_labels(str((d.get("result") or {}).get("method") or "pca"))

    def _on_branch_loaded(self, d: dict[str, Any]) -> None:
        """A checkpoint was loaded: training continues on a new branch whose curves start at the checkpoint.
        The engine has already sent the loaded model's snapshot, so the view shows the loaded model."""
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
            title = f"Paused \u2014 now on branch {new}"
            shown = (
                "The latent view shows the loaded model: edit it, then <b>Commit edits and resume</b> (Ctrl+Enter)."
                if self._snapshot is not None or self.controller.has_pending_snapshot
                else "<b>Resume</b> (Ctrl+Enter) to train the new branch."
            )
            self._show_banner(
                title,
                f"Loaded the checkpoint of {html.escape(str(parent))} at epoch {epoch}; "
                f"training continues on <b>{html.escape(new)}</b> from there. {shown}",
            )

    def _on_paused(self, d: dict[str, Any]) -> None:
        reason = str(d.get("reason", ""))
        title = f"Paused before epoch {d.get('epoch')}"
        branch = str(d.get("branch") or self.checkpoints.current_branch)
        if len(self.metrics.branches) > 1 or branch != "main":
            title += f" \u00b7 branch {branch}"
        if self._snapshot is None and not self.controller.has_pending_snapshot:
            text = (
                f"{html.escape(reason)}. The latent view appears after epoch 1; "
                "press <b>Resume</b> (Ctrl+Enter) to continue."
            )
        elif self.restrictions.shows("latent"):
            text = (
                f"{html.escape(reason)}. Drag class centres (or points) to reshape the latent space, then "
                "<b>Commit edits and resume</b> (Ctrl+Enter)."
            )
        else:
            text = f"{html.escape(reason)}. Press <b>Resume</b> (Ctrl+Enter) to continue."
        self._set_state("paused", title, text)

    def _on_resumed(self, d: dict[str, Any]) -> None:
        if self.state == "paused":
            self.commit_uuid = None
            self._set_state(
                "running",
                "Training",
                f"resumed at epoch {d.get('epoch')} \u2014 press Space to pause and edit at any time",
            )

    def run_finished(self, summary: dict[str, Any]) -> None:
        self.progress.setRange(0, 1000)
        self.progress.setValue(1000)
        acc = summary.get("test_accuracy")
        where = self.info.get("run_dir") or (self.worker.run_dir if self.worker else "")
        text = (
            html.escape(
                breakable(
                    f"test accuracy {100 * acc:.2f}% after {summary.get('epochs')} epochs, "
                    f"{summary.get('edits_applied')} edit(s) \u2014 files in {where}"
                )
            )
            if isinstance(acc, (int, float))
            else ""
        )
        self.commit_uuid = None
        self._set_state("finished", "Stopped" if summary.get("stopped_early") else "Finished", text)

    def run_failed(self, message: str, tb: str, started: bool) -> None:
        if not self._error_logged:
            self.log.add_error(message, tb)
        self.progress.setRange(0, 1000)
        self.last_error = message
        self.commit_uuid = None
        self._set_state(
            "failed",
            "Training failed" if started else "Could not start the run",
            html.escape(breakable(message)) + " \u2014 details in the command log; start a new run "
            "with <b>New run\u2026</b>",
        )
        self.show_error("Training failed" if started else "Could not start the run", message)

    # ------------------------------------------------------------------ opening a run from disk

    def open_run_dialog(self) -> None:
        if not self.restrictions.new_runs:
            self.refuse("command", "open_run", "this window shows its own run only; Open run is not available")
            return
        folder = QFileDialog.getExistingDirectory(self, "Open a run folder", str(last_base(self.settings)))
        if folder:
            self.open_run(folder)

    def open_run(self, run_dir: str | Path) -> bool:
        """Show a finished (or crashed) run from its folder, read-only: the checkpoint tree from
        ``checkpoints/tree.json`` and every branch's curves from the journal's epoch records. Nothing in the
        folder is written. Not while a run is training (False, with a message)."""
        if not self.restrictions.new_runs:
            self.open_run_dialog()
            return False
        if self.controller.busy:
            self.show_error("A run is in progress", "Stop the current run before opening another one.")
            return False
        run_dir = Path(run_dir).expanduser()
        if not (run_dir / "journal.jsonl").exists():
            self.show_error("Cannot open the run", f"{run_dir} holds no run (there is no journal.jsonl in it).")
            return False
        try:
            h = read_run_folder(run_dir)
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.show_error("Cannot open the run", f"{run_dir}: {e}")
            return False
        try:
            cfg: RunConfig | None = RunConfig.load(run_dir / "config.json")
        except ConfigError:
            cfg = None
        if self.attached:
            self.detach()
        self._forget_run()
        self.run_dir = run_dir
        self.class_names = class_names_for(cfg.dataset if cfg else "", h.class_count())
        self.metrics.set_class_names(self.class_names)
        self._show_history(h)
        snap = latest_snapshot(run_dir / "snapshots.h5")
        if snap is not None:
            self._snapshot = snap
            self.view.set_snapshot(
                snap["z"],
                snap["labels"],
                snap["preds"],
                self.class_names or [str(c) for c in range(int(np.max(snap["labels"])) + 1)],
                committed_layout=None,
                keep_edits=False,
            )
            self.view.fit()
        if cfg is not None:
            try:
                self.controls.load_from_config(cfg.resolved())  # the run's settings, shown (controls stay off)
            except ConfigError:
                pass
        self.next_run_dir = None
        self.run_label.setText(str(run_dir))
        self.setWindowTitle(f"{run_dir.name} (read-only)")
        nb = len(self.metrics.branches)
        self._set_state(
            "finished",
            f"Opened {run_dir.name}",
            f"{len(h.epochs)} epoch records, {len(h.nodes)} checkpoints, {nb} "
            f"branch{'es' if nb != 1 else ''} (read-only) \u2014 start a new run with <b>New run\u2026</b>",
        )
        self.log.add_info(f"opened {run_dir}: {len(h.nodes)} checkpoints, branches {', '.join(self.metrics.branches)}")
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

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt name)
        """Stop a run trained here (it saves a final checkpoint) and wait for its thread; only detach from a
        served job, which goes on."""
        if self.controller.busy:
            self.statusBar().showMessage("stopping the run and saving a final checkpoint\u2026")
        self.controller.close()
        super().closeEvent(event)


__all__ = ["BANNER_COLOURS", "MIN_SIZE", "MainWindow", "STYLE"]
