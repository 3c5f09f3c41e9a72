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
from hill_app.gui.panels import STATUS_COLOURS, ControlsPanel, LogConsole  # noqa: E402
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
    panel = ControlsPanel(lambda c, a: session.submit(c, a, source="window").uuid)
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
    assert "requested" in p.result.text()  # sent, not applied yet
    recs = rig.step()
    assert [r["status"] for r in recs] == ["requested", "pending", "running", "success"]
    g = rig.session.optimizer.param_groups[0]
    assert g["lr"] == pytest.approx(0.01) and g["weight_decay"] == pytest.approx(1e-4)
    text = p.result.text()
    assert "success" in text and "lr 0.05 \u2192 0.01" in text and STATUS_COLOURS["success"] in text


def test_a_failed_command_shows_its_reason_in_the_panel_and_the_log(qtbot, rig):
    p = rig.panel.optimizer
    p.momentum.setValue(0.0)  # Nesterov SGD refuses momentum 0
    qtbot.mouseClick(p.apply_btn, LEFT)
    rig.step()
    assert "failed" in p.result.text() and "Nesterov" in p.result.text()
    assert STATUS_COLOURS["failed"] in p.result.text()
    assert rig.session.optimizer.param_groups[0]["momentum"] == pytest.approx(0.9)  # state untouched
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


def test_run_panel_evaluate_in_percent_and_stop(qtbot, rig):
    """Evaluate reports percentages, like the plots (10.5); Save checkpoint lives in the Checkpoints panel only."""
    p = rig.panel.run
    assert not hasattr(p, "save_btn")
    p.split.setCurrentText("test")
    qtbot.mouseClick(p.eval_btn, LEFT)
    rig.step()
    text = p.result.plain()
    acc = rig.session.evaluate("test")["test_accuracy"]
    assert "success" in text and f"accuracy {100 * acc:.2f}%" in text, text
    qtbot.mouseClick(p.stop_btn, LEFT)
    rig.step()
    assert rig.session.stop_requested


def test_without_a_run_the_panel_says_so(qtbot):
    panel = ControlsPanel(lambda c, a: None)
    qtbot.addWidget(panel)
    panel.set_active(True)
    qtbot.mouseClick(panel.loss.alpha_btn, LEFT)
    assert "no run in progress" in panel.loss.result.text()


def test_log_console_one_row_per_command_updated_in_place(qtbot):
    """Each command is one row whose status moves in place (10.5); its arguments are one click away (a child
    row and the tooltip); tracebacks fold under their error."""
    from hill_app.gui.command_log import COL_STATUS, COL_TEXT

    log = LogConsole()
    qtbot.addWidget(log)
    for st in ("requested", "pending", "running", "failed"):
        log.add_command(
            {
                "command": "set_alpha",
                "args": {"alpha": 2},
                "status": st,
                "time": 0,
                "uuid": "u1",
                "reason": "set_alpha: argument 'alpha': must be <= 1, got 2" if st == "failed" else None,
            }
        )
        row = log.rows["u1"]
        assert row.text(COL_STATUS) == st
        assert row.foreground(COL_STATUS).color() == QColor(STATUS_COLOURS[st])
    for st in ("requested", "pending", "running", "success"):
        log.add_command(
            {
                "command": "set_lambda",
                "args": {"lam": 0.2},
                "status": st,
                "uuid": "u2",
                "result": {"old": 0.1, "new": 0.2} if st == "success" else None,
                "source": "agent:tuner",
            }
        )
    assert log.tree.topLevelItemCount() == 2 and log.command_rows() == 2
    assert "must be <= 1" in log.row_text("u1")
    assert log.row_text("u2") == "success set_lambda [agent:tuner] \u2014 0.1 \u2192 0.2"
    args = log.rows["u1"].child(0).text(COL_TEXT)
    assert '"alpha": 2' in args and '"alpha": 2' in log.rows["u1"].toolTip(COL_TEXT)
    log.add_error("RuntimeError: boom", "Traceback (most recent call last):\n  File x\nRuntimeError: boom")
    text = log.plain_text()
    assert "must be <= 1" in text and "Traceback (most recent call last):" in text
    assert "1 error" in log.summary.text() and "1 succeeded, 1 failed" in log.summary.text()
    assert log.tree.topLevelItemCount() == 3


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
    # A folder without the batch files is refused here, before any run is stopped, in the window's words
    # (no CLI flag in the message).
    dlg.data_root.setText(str(tmp_path))
    assert not dlg.start_button.isEnabled() and "CIFAR-10 not found" in dlg.error.text()
    assert "--download" not in dlg.error.text() and "tick download" in dlg.error.text()
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (cifar / name).write_bytes(b"x")
    dlg.data_root.setText(str(tmp_path) + "/")
    assert dlg.start_button.isEnabled(), dlg.error.text()

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


def test_new_run_dialog_lists_only_models_that_fit_and_offers_the_training_settings(qtbot, qt_settings, tmp_path):
    """The model list follows the data set (digits never offers pamap_cnn1d, whose build would raise); the
    optimiser, lr, batch size, view size and projection reach the config."""
    dlg = NewRunDialog(settings=qt_settings)
    qtbot.addWidget(dlg)
    models = lambda: [dlg.model.itemData(i) for i in range(1, dlg.model.count())]  # noqa: E731
    assert "digits_cnn" in models() and "pamap_cnn1d" not in models()
    dlg.dataset.setCurrentIndex(dlg.dataset.findData("pamap2"))
    assert models() == ["pamap_cnn1d"]
    dlg.dataset.setCurrentIndex(dlg.dataset.findData("digits"))
    assert dlg.lr.specialValueText() == "default (0.05)" and dlg.batch_size.specialValueText() == "default (64)"
    dlg.optimizer.setCurrentIndex(dlg.optimizer.findData("adam"))
    dlg.lr.setValue(0.002)
    dlg.batch_size.setValue(32)
    dlg.view_size.setValue(500)
    dlg.projection.setCurrentIndex(dlg.projection.findData("lda"))
    dlg.run_dir_edit.setText(str(tmp_path / "r"))
    assert dlg.validate(), dlg.error.text()
    c = dlg.run_config()
    assert (c.optimizer, c.lr, c.batch_size, c.view_size, c.projection) == ("adam", 0.002, 32, 500, "lda")
    dlg.batch_size.setValue(1)
    assert not dlg.start_button.isEnabled() and "batch_size" in dlg.error.text()
    dlg.batch_size.setValue(0)
    dlg.lr.setValue(0.0)
    assert dlg.run_config().lr is None and dlg.run_config().batch_size is None and dlg.validate()


def test_new_run_dialog_remembers_the_last_choice_in_temp_settings(qtbot, qt_settings, tmp_path):
    data = tmp_path / "cifar"
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(b"x")  # the dialog checks the archive is there
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
    assert (cfg.dataset, cfg.data_root, cfg.model, cfg.epochs, cfg.pause_at, cfg.alpha, cfg.seed, cfg.device) == (
        "cifar10",
        str(data),
        "resnet18",
        12,
        [4, 8],
        0.25,
        7,
        "cpu",
    )
    assert dlg.run_dir() == tmp_path / "runs" / "mine"
    assert Path(qt_settings.fileName()).is_relative_to(tmp_path)  # never the user's real config
    assert Path(qt_settings.fileName()).exists()

    again = NewRunDialog(settings=qt_settings)
    qtbot.addWidget(again)
    assert again.dataset.currentData() == "cifar10" and again.data_root.text() == str(data)
    assert again.model.currentData() == "resnet18" and again.epochs.value() == 12
    assert again.pause_at.text() == "4 8" and again.alpha.value() == pytest.approx(0.25)
    assert again.seed.value() == 7 and again.device.currentText() == "cpu"
    assert Path(again.run_dir_edit.text()).parent == tmp_path / "runs"  # a fresh folder next to the last one


# ------------------------------------------------------------------ sample pictures


def test_digit_image_is_upscaled_dark_on_light():
    x = np.zeros((1, 8, 8), dtype=np.uint8)
    x[0, 2:6, 3] = 255  # a vertical stroke
    img = render_image(x)
    assert img.width() == img.height() and img.width() >= 96
    s = img.width() // 8
    assert QColor(img.pixel(3 * s + s // 2, 3 * s)).value() < 30  # ink is dark
    assert QColor(img.pixel(0, 0)).value() > 225  # paper is light


def test_cifar_image_keeps_its_colours():
    x = np.zeros((3, 32, 32), dtype=np.uint8)
    x[0] = 220  # red plane
    x[2, :16] = 200  # top half also blue -> magenta
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
    assert len(colours) > 10  # lines were drawn, not a blank card
    assert src.render(3) is None and src.render(-1) is None
    assert src.render(1) is img  # cached


# ------------------------------------------------------------------ feedback plots


def _epoch(e: int, k: int = 10, dist: bool = False) -> dict:
    rng = np.random.default_rng(e)
    conf = np.diag(np.full(k, 20)) + rng.integers(0, 2, (k, k))
    m = {
        "epoch": e,
        "train_loss": 2.0 / e,
        "train_ce": 2.0 / e,
        "train_center": 0.0,
        "train_spread": 0.0,
        "train_sep": 0.0,
        "train_point": 0.0,
        "train_scale": 0.0,
        "lam": 0.1,
        "train_accuracy": 0.5 + 0.1 * e,
        "val_accuracy": 0.55 + 0.1 * e,
        "val_per_class_accuracy": list(np.linspace(0.6, 1.0, k)),
        "val_confusion": conf.tolist(),
    }
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
    assert {"total", "cross-entropy", "centre", "scale penalty \u03bb|1\u2212scale|"} <= legend
    assert "points" not in legend
    # The scale line is the penalty lambda |1 - scale| (0.1 * 0.95), not the ratio; absent before the commit.
    px, py = mv.loss_curves["scale_penalty"].getData()
    assert np.isnan(py[:2]).all() and py[2] == pytest.approx(0.1 * 0.95)
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
    mv.show_evaluation(
        {"split": "test", "test_per_class_accuracy": [0.5] * 10, "test_confusion": np.eye(10, dtype=int).tolist()}
    )
    mv.refresh()
    assert "test" in mv.conf_plot.getPlotItem().titleLabel.text


def test_distance_plot_names_emphasises_and_measures_what_was_asked(qtbot):
    """A class whose points were moved (centre untouched) shows the moved points' distance to their drop
    positions, not its centre's; edited classes are drawn thick; the plot zooms to the epochs since the first
    commit; hovering names the lines and their values."""
    mv = MetricsView()
    qtbot.addWidget(mv)
    mv.resize(1200, 260)
    mv.show()
    k = 10
    mv.set_class_names([f"c{i}" for i in range(k)])
    for e in range(1, 9):
        mv.add_epoch(_epoch(e))
    mv.add_commit(8)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(k), 20)
    z = rng.normal(size=(len(labels), 2))
    moved = [int(i) for i in np.nonzero(labels == 4)[0][:3]]  # three points of class 4 moved
    edited = [False] * k
    edited[2] = True  # class 2's centre moved
    for e, off in ((9, 0.5), (10, 0.2)):
        pts = {str(i): (z[i] + [off, 0]).tolist() for i in moved}
        snap = {
            "epoch": e,
            "branch": "main",
            "z": z,
            "labels": labels,
            "preds": labels,
            "layout": {"centers": np.zeros((k, 2)).tolist(), "edited": edited, "points": pts},
        }
        mv.add_snapshot(snap)
        rec = _epoch(e, dist=True)
        rec["target_distance"] = [1.0] * k  # the centres' distances, from the engine
        mv.add_epoch(rec)
    mv.refresh()
    x, y4 = mv.dist_curves[4].getData()
    assert list(x[-2:]) == [9, 10] and y4[-2:] == pytest.approx([0.5, 0.2])  # what was asked of class 4
    assert mv.dist_curves[3].getData()[1][-1] == pytest.approx(1.0)  # untouched: the centre's
    assert mv.point_classes[4] and not mv.point_classes[2] and mv.edited[2]
    assert mv.dist_curves[2].opts["pen"].widthF() > mv.dist_curves[3].opts["pen"].widthF()
    xr = mv.dist_plot.getPlotItem().getViewBox().viewRange()[0]
    assert xr[0] == pytest.approx(8.5) and xr[1] <= 11  # since the first commit
    h = mv.hovers["distance"]
    epoch, rows = h.values_at(9.9)
    assert epoch == 10 and dict(rows)["c4 (moved points)"] == pytest.approx(0.2)
    assert dict(rows)["c2 \u2605"] == pytest.approx(1.0)


def test_plot_habits_smoothing_log_scale_hover_and_export(qtbot, tmp_path):
    mv = MetricsView()
    qtbot.addWidget(mv)
    mv.resize(1200, 260)
    mv.show()
    mv.set_class_names([f"c{i}" for i in range(10)])
    for e in range(1, 6):
        mv.add_epoch(_epoch(e))
    mv.refresh()
    raw = mv.val_acc.getData()[1].copy()
    mv.set_smoothing(0.6)
    smooth = mv.val_acc.getData()[1]
    assert smooth[0] == pytest.approx(raw[0]) and smooth[-1] < raw[-1]  # EMA lags a rising curve
    mv.set_smoothing(0.0)
    assert list(mv.val_acc.getData()[1]) == pytest.approx(list(raw))
    mv.set_log_losses(True)
    assert mv.loss_plot.getPlotItem().ctrl.logYCheck.isChecked()
    epoch, rows = mv.hovers["loss"].values_at(2.2)
    assert epoch == 2 and dict(rows)["cross-entropy"] == pytest.approx(1.0)  # values, not their log10
    mv.set_log_losses(False)
    # Zoom with the wheel, then Reset zoom shows everything again.
    vb = mv.acc_plot.getPlotItem().getViewBox()
    vb.scaleBy((0.2, 0.2))
    assert vb.viewRange()[0][1] - vb.viewRange()[0][0] < 2
    qtbot.mouseClick(mv.reset_btn, LEFT)
    mv.acc_plot.getPlotItem().getViewBox().updateAutoRange()
    assert vb.viewRange()[0][0] <= 1 and vb.viewRange()[0][1] >= 5
    csv_path = mv.export_csv(tmp_path / "m.csv")
    import csv

    rows = list(csv.DictReader(csv_path.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5] and rows[0]["branch"] == "main"
    assert float(rows[1]["val_accuracy"]) == pytest.approx(0.75)
    assert float(rows[0]["val_per_class_accuracy[c9]"]) == pytest.approx(1.0)
    png = mv.export_png(tmp_path / "m.png")
    from PySide6.QtGui import QImage

    img = QImage(str(png))
    assert img.width() == mv.width() and img.height() == mv.height()


# ------------------------------------------------------------------ the panels the README and protocols promise


def test_layers_panel_freeze_reset_dropout_and_batchnorm(qtbot, rig):
    """The layer tree comes from the run's client; a real click on a row, then each operation."""
    from hill_app.client.local import LocalRunClient
    from hill_app.gui.layers_panel import COL_TRAIN

    client = LocalRunClient(rig.session)
    rig.panel.set_run(client.info())
    p = rig.panel.layers
    assert {"body", "body.1", "dropout", "head"} <= set(p.nodes)

    def click(name):
        item = p.items[name]
        p.tree.scrollToItem(item)
        qtbot.mouseClick(p.tree.viewport(), LEFT, pos=p.tree.visualItemRect(item).center())
        assert p.selected()["name"] == name

    click("head")
    assert p.freeze_btn.isEnabled() and not p.unfreeze_btn.isEnabled() and not p.p.isEnabled()
    qtbot.mouseClick(p.freeze_btn, LEFT)
    rig.step()
    assert not any(q.requires_grad for q in rig.session.model.head.parameters())
    assert p.items["head"].text(COL_TRAIN) == "frozen" and p.unfreeze_btn.isEnabled()
    qtbot.mouseClick(p.unfreeze_btn, LEFT)
    rig.step()
    assert all(q.requires_grad for q in rig.session.model.head.parameters())
    before = rig.session.model.head.weight.detach().clone()
    qtbot.mouseClick(p.reset_btn, LEFT)
    rig.step()
    assert not torch.equal(before, rig.session.model.head.weight) and "success" in p.result.plain()

    click("dropout")
    assert p.p.isEnabled() and not p.momentum.isEnabled() and not p.reset_btn.isEnabled()
    p.p.setValue(0.35)
    qtbot.mouseClick(p.p_btn, LEFT)
    rig.step()
    assert rig.session.model.dropout.p == pytest.approx(0.35)
    click("body.1")
    assert p.momentum.isEnabled() and not p.p.isEnabled()
    p.momentum.setValue(0.2)
    qtbot.mouseClick(p.m_btn, LEFT)
    rig.step()
    assert rig.session.model.body[1].momentum == pytest.approx(0.2)
    assert "0.1 \u2192 0.2" in p.result.plain()


def test_data_panel_adds_drops_and_weights_classes(qtbot, rig, tmp_path):
    from hill_app.gui.data_panel import parse_indices

    s = rig.session
    rig.panel.set_run({"dataset": {"name": "digits", "class_names": list(s.data.class_names)}, "model": None})
    p = rig.panel.data
    n0 = s.n_train
    rows = [",".join(["8"] * 64 + [str(c % 10)]) for c in range(12)]
    f = tmp_path / "more.tra"
    f.write_text("\n".join(rows) + "\n")
    p.path.setText(str(f))
    qtbot.mouseClick(p.add_btn, LEFT)
    rig.step()
    assert s.n_train == n0 + 12 and "added 12" in p.result.plain()

    assert parse_indices("3, 10-12 40") == [3, 10, 11, 12, 40]
    qtbot.keyClicks(p.indices, "0-4, 9")
    qtbot.mouseClick(p.drop_btn, LEFT)
    rig.step()
    assert int(s.active.sum()) == n0 + 12 - 6 and not bool(s.active[9]) and p.indices.text() == ""
    p.indices.setText("7-x")
    qtbot.mouseClick(p.drop_btn, LEFT)
    assert "'7-x' is not an index" in p.result.plain()

    assert len(p.weight_spins) == 10
    p.weight_spins[3].setValue(3.0)
    p.weight_spins[5].setValue(0.0)
    qtbot.mouseClick(p.weights_btn, LEFT)
    rig.step()
    assert s.class_weights is not None and s.class_weights[3] == 3.0 and s.class_weights[5] == 0.0
    qtbot.mouseClick(p.uniform_btn, LEFT)
    rig.step()
    assert s.class_weights is None and all(w.value() == 1.0 for w in p.weight_spins)


def test_projection_refit_and_clear_targets_show_what_the_engine_said(qtbot, rig):
    p = rig.panel.projection
    p.set_method("lda")
    qtbot.mouseClick(p.refit_btn, LEFT)
    rig.step()
    assert "failed" in p.result.plain() and "at least one epoch" in p.result.plain()
    e = rig.panel.edits
    qtbot.mouseClick(e.clear_btn, LEFT)
    rig.step()
    assert "success" in e.result.plain() and "cleared False" in e.result.plain()


def test_strategy_edits_go_onto_the_edit_stack_only_at_a_pause(qtbot):
    pushed = []
    from hill_app.gui.panels import EditHooks

    panel = ControlsPanel(
        lambda c, a: None, EditHooks(lambda e: pushed.append(e) or True, lambda: (2, "added 2"), lambda: [])
    )
    qtbot.addWidget(panel)
    panel.set_active(True)
    e = panel.edits
    assert not e.add_btn.isEnabled()
    panel.set_paused(True)
    e.strategy.setCurrentIndex(e.strategy.findData("separation"))
    e.strength.setValue(0.4)
    qtbot.mouseClick(e.add_btn, LEFT)
    assert pushed == [{"op": "strategy", "name": "separation", "strength": 0.4, "origin": "hand"}]
    qtbot.mouseClick(e.suggest_btn, LEFT)
    assert "added 2" in e.result.plain()
