"""Command panels, log console, New Run dialog, sample pictures and feedback plots (offscreen Qt).

Panels are driven against a real TrainingSession in this thread: a click submits through the session's
queue, the test applies the queue (as the training thread would at its next step) and routes the command
events back, so what a panel shows is what the engine reported.
"""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402

from hill_app.engine.config import RunConfig  # noqa: E402
from hill_app.gui.metrics_view import MetricsView  # noqa: E402
from hill_app.gui.new_run_dialog import NewRunDialog  # noqa: E402
from hill_app.gui.panels import ControlsPanel, LogConsole, STATUS_COLOURS  # noqa: E402
from hill_app.gui.samples import SampleSource, render_image  # noqa: E402

LEFT = Qt.MouseButton.LeftButton
pytestmark = pytest.mark.usefixtures("qt_settings")


# ------------------------------------------------------------------ panels against a real session

@pytest.fixture(scope="module")
def digits_bundle():
    from hill_app.datasets import load_dataset
    return load_dataset("digits")


@pytest.fixture
def rig(qtbot, tmp_path, digits_bundle):
    """A session (not running), the controls panel and a log console wired to it."""
    from hill_app.engine.session import TrainingSession

    session = TrainingSession(RunConfig(epochs=3, pause_at=[], device="cpu"), tmp_path / "run", bundle=digits_bundle)
    panel = ControlsPanel(lambda c, a: session.submit(c, a))
    log = LogConsole()
    qtbot.addWidget(panel)
    qtbot.addWidget(log)
    panel.load_from_config(session.config)
    panel.set_active(True)

    def step() -> list[dict]:
        """What the training thread does at its next step boundary, then what the window does with the events."""
        session._process_commands(at_epoch_boundary=True)
        recs = []
        for ev in session.events.drain():
            if ev.kind == "command":
                panel.on_command(ev.data)
                log.add_command(ev.data)
                recs.append(ev.data)
        return recs

    yield SimpleNamespace(session=session, panel=panel, log=log, step=step)
    session.journal.close()


def test_optimizer_panel_changes_the_learning_rate(qtbot, rig):
    p = rig.panel.optimizer
    assert p.title() == "Optimiser (sgd)" and p.lr.value() == pytest.approx(0.05)
    p.lr.setValue(0.01)
    p.weight_decay.setValue(1e-4)
    qtbot.mouseClick(p.apply_btn, LEFT)
    assert "pending" in p.result.text()            # queued, not applied yet
    recs = rig.step()
    assert [r["status"] for r in recs] == ["requested", "pending", "running", "success"]
    g = rig.session.optimizer.param_groups[0]
    assert g["lr"] == pytest.approx(0.01) and g["weight_decay"] == pytest.approx(1e-4)
    text = p.result.text()
    assert "success" in text and "lr 0.05 \u2192 0.01" in text and STATUS_COLOURS["success"] in text


def test_a_failed_command_shows_its_reason_in_the_panel_and_the_log(qtbot, rig):
    p = rig.panel.optimizer
    p.momentum.setValue(0.0)                       # Nesterov SGD refuses momentum 0
    qtbot.mouseClick(p.apply_btn, LEFT)
    rig.step()
    assert "failed" in p.result.text() and "Nesterov" in p.result.text()
    assert STATUS_COLOURS["failed"] in p.result.text()
    assert rig.session.optimizer.param_groups[0]["momentum"] == pytest.approx(0.9)   # state untouched
    log = rig.log.plain_text()
    assert "failed" in log and "Nesterov" in log and "update_optimizer" in log
    assert "1 failed" in rig.log.summary.text()


def test_adam_has_no_momentum_field(qtbot):
    panel = ControlsPanel(lambda c, a: None)
    qtbot.addWidget(panel)
    panel.optimizer.set_values("adam", 1e-3, 0.9, 1e-4)
    assert not panel.optimizer.momentum.isEnabled()
    assert "momentum" not in panel.optimizer.args()


def test_grad_clip_on_and_off(qtbot, rig):
    p = rig.panel.clip
    assert not p.enabled.isChecked() and not p.max_norm.isEnabled()
    p.enabled.setChecked(True)
    p.max_norm.setValue(2.5)
    qtbot.mouseClick(p.apply_btn, LEFT)
    rig.step()
    assert rig.session.grad_clip == pytest.approx(2.5)
    assert "none \u2192 2.5" in p.result.text()
    p.enabled.setChecked(False)
    qtbot.mouseClick(p.apply_btn, LEFT)
    rig.step()
    assert rig.session.grad_clip is None


def test_alpha_and_lambda(qtbot, rig):
    p = rig.panel.loss
    p.alpha.setValue(0.8)
    qtbot.mouseClick(p.alpha_btn, LEFT)
    p.lam.setValue(0.3)
    qtbot.mouseClick(p.lam_btn, LEFT)
    rig.step()
    assert rig.session.alpha == pytest.approx(0.8) and rig.session.lam == pytest.approx(0.3)
    assert "0.1 \u2192 0.3" in p.result.text()


def test_run_panel_checkpoint_evaluate_stop(qtbot, rig):
    p = rig.panel.run
    p.note.setText("before edits")
    qtbot.mouseClick(p.save_btn, LEFT)
    rig.step()
    assert "success" in p.result.text() and "checkpoint" in p.result.text()
    assert rig.session.tree.latest()["note"] == "before edits"
    qtbot.mouseClick(p.eval_btn, LEFT)
    rig.step()
    assert "success" in p.result.text() and "accuracy" in p.result.text()
    qtbot.mouseClick(p.stop_btn, LEFT)
    rig.step()
    assert rig.session.stop_requested


def test_without_a_run_the_panel_says_so(qtbot):
    panel = ControlsPanel(lambda c, a: None)
    qtbot.addWidget(panel)
    panel.set_active(True)
    qtbot.mouseClick(panel.loss.alpha_btn, LEFT)
    assert "no run in progress" in panel.loss.result.text()


def test_log_console_colours_every_status_and_keeps_tracebacks(qtbot):
    log = LogConsole()
    qtbot.addWidget(log)
    for st in ("requested", "pending", "running", "failed"):
        log.add_command({"command": "set_alpha", "args": {"alpha": 2}, "status": st, "time": 0,
                         "reason": "set_alpha: argument 'alpha': must be <= 1, got 2" if st == "failed" else None})
    log.add_error("RuntimeError: boom", "Traceback (most recent call last):\n  File x\nRuntimeError: boom")
    html = log.text.document().toHtml()
    for st in ("requested", "pending", "running", "failed"):
        assert QColor(STATUS_COLOURS[st]).name() in html.lower()
    text = log.plain_text()
    assert "must be <= 1" in text and "Traceback (most recent call last):" in text
    assert "1 error" in log.summary.text()


# ------------------------------------------------------------------ New Run dialog

def test_new_run_dialog_defaults_to_the_published_protocol(qtbot, qt_settings, tmp_path):
    dlg = NewRunDialog(settings=qt_settings)
    qtbot.addWidget(dlg)
    assert dlg.dataset.currentData() == "digits"
    assert dlg.epochs.value() == 40 and dlg.pause_at.text() == "25, 30, 35, 40"
    assert dlg.alpha.value() == pytest.approx(0.5) and dlg.lam.value() == pytest.approx(0.1)
    assert dlg.device.currentText() == "auto" and dlg.seed.value() == 0
    assert dlg.start_button.isEnabled() and not dlg.data_root.isEnabled()
    assert Path(dlg.run_dir_edit.text()).parent == tmp_path / "home" / "hill-runs"
    cfg = dlg.run_config()
    assert (cfg.dataset, cfg.model, cfg.epochs, cfg.pause_at) == ("digits", None, 40, [25, 30, 35, 40])


def test_new_run_dialog_validates_inline(qtbot, qt_settings, tmp_path):
    dlg = NewRunDialog(settings=qt_settings)
    qtbot.addWidget(dlg)
    dlg.pause_at.setText("1, 30")
    assert not dlg.start_button.isEnabled() and "outside 2..40" in dlg.error.text()
    dlg.pause_at.setText("25, 50")
    assert not dlg.start_button.isEnabled() and "50" in dlg.error.text()
    dlg.epochs.setValue(60)
    assert dlg.start_button.isEnabled() and dlg.error.text() == ""
    dlg.pause_at.setText("25, x")
    assert not dlg.start_button.isEnabled() and "'x'" in dlg.error.text()
    dlg.pause_at.setText("")
    assert dlg.start_button.isEnabled() and dlg.run_config().pause_at == []

    dlg.dataset.setCurrentIndex(dlg.dataset.findData("cifar10"))
    assert dlg.data_root.isEnabled() and not dlg.start_button.isEnabled() and "data folder" in dlg.error.text()
    dlg.data_root.setText(str(tmp_path / "nowhere"))
    assert not dlg.start_button.isEnabled() and "does not exist" in dlg.error.text()
    dlg.data_root.setText(str(tmp_path))
    assert dlg.start_button.isEnabled()

    used = tmp_path / "used"
    used.mkdir()
    (used / "journal.jsonl").write_text("")
    dlg.run_dir_edit.setText(str(used))
    assert not dlg.start_button.isEnabled() and "already holds a run" in dlg.error.text()
    dlg.run_dir_edit.setText(str(tmp_path / "fresh"))
    assert dlg.start_button.isEnabled()

    if not torch.cuda.is_available():
        dlg.device.setCurrentText("cuda")
        assert not dlg.start_button.isEnabled() and "CUDA" in dlg.error.text()


def test_new_run_dialog_remembers_the_last_choice_in_temp_settings(qtbot, qt_settings, tmp_path):
    data = tmp_path / "cifar"
    data.mkdir()
    dlg = NewRunDialog(settings=qt_settings)
    qtbot.addWidget(dlg)
    dlg.dataset.setCurrentIndex(dlg.dataset.findData("cifar10"))
    dlg.data_root.setText(str(data))
    dlg.model.setCurrentIndex(dlg.model.findData("resnet18"))
    dlg.epochs.setValue(12)
    dlg.pause_at.setText("4 8")
    dlg.alpha.setValue(0.25)
    dlg.seed.setValue(7)
    dlg.device.setCurrentText("cpu")
    dlg.run_dir_edit.setText(str(tmp_path / "runs" / "mine"))
    qtbot.mouseClick(dlg.start_button, LEFT)
    assert dlg.result() == NewRunDialog.DialogCode.Accepted
    cfg = dlg.run_config()
    assert (cfg.dataset, cfg.data_root, cfg.model, cfg.epochs, cfg.pause_at, cfg.alpha, cfg.seed, cfg.device) == \
        ("cifar10", str(data), "resnet18", 12, [4, 8], 0.25, 7, "cpu")
    assert dlg.run_dir() == tmp_path / "runs" / "mine"
    assert Path(qt_settings.fileName()).is_relative_to(tmp_path)       # never the user's real config
    assert Path(qt_settings.fileName()).exists()

    again = NewRunDialog(settings=qt_settings)
    qtbot.addWidget(again)
    assert again.dataset.currentData() == "cifar10" and again.data_root.text() == str(data)
    assert again.model.currentData() == "resnet18" and again.epochs.value() == 12
    assert again.pause_at.text() == "4 8" and again.alpha.value() == pytest.approx(0.25)
    assert again.seed.value() == 7 and again.device.currentText() == "cpu"
    assert Path(again.run_dir_edit.text()).parent == tmp_path / "runs"   # a fresh folder next to the last one


# ------------------------------------------------------------------ sample pictures

def test_digit_image_is_upscaled_dark_on_light():
    x = np.zeros((1, 8, 8), dtype=np.uint8)
    x[0, 2:6, 3] = 255                              # a vertical stroke
    img = render_image(x)
    assert img.width() == img.height() and img.width() >= 96
    s = img.width() // 8
    assert QColor(img.pixel(3 * s + s // 2, 3 * s)).value() < 30        # ink is dark
    assert QColor(img.pixel(0, 0)).value() > 225                        # paper is light


def test_cifar_image_keeps_its_colours():
    x = np.zeros((3, 32, 32), dtype=np.uint8)
    x[0] = 220                                       # red plane
    x[2, :16] = 200                                  # top half also blue -> magenta
    img = render_image(x)
    assert img.width() == 96
    top, bottom = QColor(img.pixel(48, 10)), QColor(img.pixel(48, 80))
    assert (top.red(), top.green(), top.blue()) == (220, 0, 200)
    assert (bottom.red(), bottom.green(), bottom.blue()) == (220, 0, 0)


def test_pamap2_window_is_drawn_as_three_sensor_lanes():
    from hill_app.datasets.pamap2 import CHANNEL_NAMES

    t = np.linspace(0, 6, 171, dtype=np.float32)
    x = torch.from_numpy(np.stack([np.sin(t * (1 + c % 5)) for c in range(27)])[None].repeat(5, 0))
    bundle = SimpleNamespace(kind="signal", train_x=x, meta={"channel_names": list(CHANNEL_NAMES)})
    src = SampleSource.from_bundle(bundle, np.array([0, 2, 4]))
    assert len(src) == 3 and src.x.shape == (3, 9, 171)
    assert [name for name, _ in src.lanes] == ["hand acc", "chest acc", "ankle acc"]
    img = src.render(1)
    assert img is not None and (img.width(), img.height()) == (220, 132)
    colours = {img.pixel(i, j) for i in range(0, 220, 3) for j in range(0, 132, 3)}
    assert len(colours) > 10                         # lines were drawn, not a blank card
    assert src.render(3) is None and src.render(-1) is None
    assert src.render(1) is img                      # cached


# ------------------------------------------------------------------ feedback plots

def _epoch(e: int, k: int = 10, dist: bool = False) -> dict:
    rng = np.random.default_rng(e)
    conf = np.diag(np.full(k, 20)) + rng.integers(0, 2, (k, k))
    m = {"epoch": e, "train_loss": 2.0 / e, "train_ce": 2.0 / e, "train_center": 0.0, "train_spread": 0.0,
         "train_sep": 0.0, "train_point": 0.0, "train_scale": 0.0, "train_accuracy": 0.5 + 0.1 * e,
         "val_accuracy": 0.55 + 0.1 * e, "val_per_class_accuracy": list(np.linspace(0.6, 1.0, k)),
         "val_confusion": conf.tolist()}
    if dist:
        m.update(train_center=0.4 / e, train_scale=0.05, target_distance=list(np.linspace(0.1, 1.0, k) / e))
    return m


def test_metrics_view_draws_every_plot(qtbot):
    mv = MetricsView()
    qtbot.addWidget(mv)
    names = [f"c{i}" for i in range(10)]
    mv.set_class_names(names)
    for e in (1, 2):
        mv.add_epoch(_epoch(e))
    mv.add_commit(2)
    mv.add_epoch(_epoch(3, dist=True))
    mv.refresh()
    x, y = mv.loss_curves["train_ce"].getData()
    assert list(x) == [1, 2, 3] and y[0] == pytest.approx(2.0)
    legend = {lab.text for _, lab in mv.loss_legend.items}
    assert {"total", "cross-entropy", "centre", "scale"} <= legend and "points" not in legend
    assert list(mv.val_acc.getData()[1]) == pytest.approx([65, 75, 85])
    dx, dy = mv.dist_curves[9].getData()
    assert np.isnan(dy[:2]).all() and dy[2] == pytest.approx(1.0 / 3)
    assert not mv.dist_hint.isVisible()
    assert mv.commit_epochs == [2.5] and len(mv.edit_lines) == 3
    assert mv.bars is not None and list(mv.bars.opts["width"]) == pytest.approx(np.linspace(60, 100, 10))
    assert mv.conf_image.image.shape == (10, 10)
    assert mv.conf_labels.counts[0, 0] >= 20
    # The class colours are the latent view's.
    from hill_app.gui.palette import class_colors
    assert mv.colours[3] == QColor(*class_colors(10)[3])

    # A branch from epoch 2 replaces the history after it.
    mv.add_epoch(_epoch(2))
    mv.refresh()
    assert [r["epoch"] for r in mv.epochs] == [1, 2]
    mv.show_evaluation({"split": "test", "test_per_class_accuracy": [0.5] * 10,
                        "test_confusion": np.eye(10, dtype=int).tolist()})
    mv.refresh()
    assert "test" in mv.conf_plot.getPlotItem().titleLabel.text
