"""The New Run dialog: data set, model, protocol, optimiser, HILL weights, view, device, seed and run folder.

Inputs are checked inline while the user types (the Start button stays disabled and the message says
which field is wrong), so a run never starts from a config the engine would reject, and the window stops a
running run only after the dialog was accepted. Checked before accepting: the data folder holds the data
set's files and they are readable, the model takes the data set's inputs (the model list shows only those
that do), and every number is in range. The last accepted choice is remembered in QSettings.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from hill_app.engine.config import DEFAULTS, ConfigError, RunConfig
from hill_app.engine.models import MODELS, default_model

ORGANIZATION = "hill-app"
APPLICATION = "hill-app"

DATASET_LABELS = [
    ("digits", "Digits (scikit-learn, 8\u00d78, offline)"),
    ("cifar10", "CIFAR-10 (folder or archive)"),
    ("pamap2", "PAMAP2 (Protocol folder)"),
    ("synthetic", "Synthetic (quick tests)"),
]
NEEDS_FOLDER = ("cifar10", "pamap2")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("sgd", "adam", "adamw")
# Input shape (no batch dimension) and class count of each data set, to check that a model fits before loading.
INPUT_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((1, 8, 8), 10),
    "cifar10": ((3, 32, 32), 10),
    "pamap2": ((27, 171), 12),
    "synthetic": ((3, 32, 32), 10),
}
CIFAR_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
_SUBJECT = re.compile(r"^subject\d+\.dat$")
_fits: dict[tuple[str, str], str | None] = {}


def model_problem(model: str, dataset: str) -> str | None:
    """None if ``model`` takes ``dataset``'s inputs, else why not (built once per pair, on the CPU)."""
    key = (model, dataset)
    if key not in _fits:
        from hill_app.engine.models import build_model

        shape, k = INPUT_SHAPES[dataset]
        try:
            build_model(model, shape, k)
            _fits[key] = None
        except ValueError as e:
            _fits[key] = f"model {model} does not fit {dataset} (inputs {'x'.join(map(str, shape))}): {e}"
    return _fits[key]


def _readable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.R_OK)


def data_problem(dataset: str, root: str, download: bool) -> str | None:
    """None if ``root`` holds ``dataset``'s files (readable), else what is missing, in the window's words."""
    r = Path(root).expanduser()
    if not r.exists():
        return f"data folder {r} does not exist" + (
            " (tick download to fetch CIFAR-10 into it)" if dataset == "cifar10" else ""
        )
    if not r.is_dir():
        return f"data folder {r} is a file, not a folder"
    if not os.access(r, os.R_OK | os.X_OK):
        return f"data folder {r} is not readable"
    if dataset == "cifar10":
        for folder in (r, r / "cifar-10-batches-py"):
            if all((folder / f).exists() for f in CIFAR_FILES):
                bad = [f for f in CIFAR_FILES if not _readable(folder / f)]
                return f"{folder}: cannot read {', '.join(bad)}" if bad else None
        archive = r / "cifar-10-python.tar.gz"
        if archive.exists():
            return None if _readable(archive) else f"{archive} is not readable"
        if download:
            return None if os.access(r, os.W_OK) else f"data folder {r} is not writable (needed to download)"
        return (
            f"CIFAR-10 not found in {r}: expected cifar-10-batches-py/ (data_batch_1..5, test_batch) or "
            "cifar-10-python.tar.gz there; tick download to fetch it (170 MB, MD5-checked)"
        )
    if dataset == "pamap2":
        for folder in (r / "Protocol", r, r / "PAMAP2_Dataset" / "Protocol"):
            if folder.is_dir():
                subjects = [p for p in folder.iterdir() if _SUBJECT.match(p.name)]
                if subjects:
                    bad = [p.name for p in subjects if not _readable(p)]
                    return f"{folder}: cannot read {', '.join(bad)}" if bad else None
        return f"PAMAP2 not found in {r}: expected Protocol/subject101.dat ... subject109.dat"
    return None


def make_settings() -> QSettings:
    """The app's settings file (INI, user scope). Tests redirect it with QSettings.setPath to a temp folder."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


def default_runs_base() -> Path:
    return Path.home() / "hill-runs"


def new_run_dir(base: str | Path, dataset: str) -> Path:
    """A fresh, time-stamped folder name under ``base`` that does not exist yet."""
    base = Path(base).expanduser()
    stem = f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    p, n = base / stem, 1
    while p.exists():
        n += 1
        p = base / f"{stem}-{n}"
    return p


def parse_epochs(text: str) -> list[int]:
    """'25, 30 35,40' -> [25, 30, 35, 40]; raises ValueError naming the bad token."""
    out = []
    for tok in text.replace(",", " ").replace(";", " ").split():
        try:
            out.append(int(tok))
        except ValueError:
            raise ValueError(f"pause epochs: {tok!r} is not a whole number") from None
    return sorted(set(out))


def last_base(settings: QSettings | None = None) -> Path:
    s = settings or make_settings()
    return Path(str(s.value("new_run/run_base", str(default_runs_base()))))


class NewRunDialog(QDialog):
    """Choose a run. ``run_config()`` and ``run_dir()`` are valid once the dialog is accepted."""

    def __init__(self, parent: QWidget | None = None, settings: QSettings | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New run")
        self.setMinimumWidth(560)
        self.settings = settings or make_settings()
        self._run_dir_edited = False
        self._cuda = None

        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.dataset = QComboBox()
        for key, label in DATASET_LABELS:
            self.dataset.addItem(label, key)
        form.addRow("Data set", self.dataset)

        self.data_root = QLineEdit()
        self.data_root.setPlaceholderText("folder with the data set's files")
        self.data_browse = QPushButton("Browse\u2026")
        self.data_browse.clicked.connect(self._browse_data)
        row = QHBoxLayout()
        row.addWidget(self.data_root, 1)
        row.addWidget(self.data_browse)
        form.addRow("Data folder", row)
        self.download = QCheckBox("download CIFAR-10 if it is not there (MD5-checked)")
        form.addRow("", self.download)

        self.model = QComboBox()
        self.model.setToolTip("only the models that take this data set's inputs are listed")
        form.addRow("Model", self.model)

        self.epochs = QSpinBox()
        self.epochs.setRange(1, 100000)
        form.addRow("Epochs", self.epochs)
        self.pause_at = QLineEdit()
        self.pause_at.setPlaceholderText("e.g. 25, 30, 35, 40 (empty: no scheduled pauses)")
        self.pause_at.setToolTip(
            "Training pauses before each of these epochs (2..epochs) so you can edit "
            "the latent space. You can also pause at any time with Space."
        )
        form.addRow("Pause before epochs", self.pause_at)
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.0, 1.0)
        self.alpha.setDecimals(3)
        self.alpha.setSingleStep(0.05)
        self.alpha.setToolTip("blend: (1 - alpha) cross-entropy + alpha human terms")
        form.addRow("alpha", self.alpha)
        self.lam = QDoubleSpinBox()
        self.lam.setRange(0.0, 100.0)
        self.lam.setDecimals(3)
        self.lam.setSingleStep(0.05)
        self.lam.setToolTip("weight of the scale term |1 - scale|")
        form.addRow("lambda", self.lam)
        self.optimizer = QComboBox()
        self.optimizer.addItem("default for the data set", None)
        for o in OPTIMIZERS:
            self.optimizer.addItem(o, o)
        form.addRow("Optimiser", self.optimizer)
        self.lr = QDoubleSpinBox()
        self.lr.setRange(0.0, 10.0)
        self.lr.setDecimals(5)
        self.lr.setSingleStep(0.01)
        self.lr.setSpecialValueText("default")
        self.lr.setToolTip("learning rate (default: the data set's)")
        form.addRow("Learning rate", self.lr)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(0, 65536)
        self.batch_size.setSpecialValueText("default")
        self.batch_size.setToolTip("samples per step (default: the data set's)")
        form.addRow("Batch size", self.batch_size)
        self.view_size = QSpinBox()
        self.view_size.setRange(-1, 1_000_000)
        self.view_size.setSpecialValueText("default")
        self.view_size.setToolTip("training samples shown in the latent view (0: the whole training split)")
        form.addRow("View size", self.view_size)
        self.projection = QComboBox()
        self.projection.addItem("PCA (largest variance)", "pca")
        self.projection.addItem("LDA (separates the classes)", "lda")
        self.projection.setToolTip("the 2D map fitted after epoch 1 and then frozen")
        form.addRow("2D view", self.projection)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        form.addRow("Device", self.device)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        form.addRow("Seed", self.seed)

        self.run_dir_edit = QLineEdit()
        self.run_browse = QPushButton("Browse\u2026")
        self.run_browse.clicked.connect(self._browse_run)
        row = QHBoxLayout()
        row.addWidget(self.run_dir_edit, 1)
        row.addWidget(self.run_browse)
        form.addRow("Run folder", row)

        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setObjectName("formError")
        self.error.setStyleSheet("color: #c53030; padding: 4px 2px;")

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.start_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.start_button.setText("Start run")
        self.start_button.setDefault(True)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        lay = QVBoxLayout(self)
        body = QWidget()
        body.setLayout(form)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(body)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)

        self._load()
        self.dataset.currentIndexChanged.connect(self._dataset_changed)
        self.run_dir_edit.textEdited.connect(self._mark_run_dir_edited)
        for w in (self.data_root, self.pause_at, self.run_dir_edit):
            w.textChanged.connect(self.validate)
        for w in (self.epochs, self.seed):
            w.valueChanged.connect(self.validate)
        for w in (self.alpha, self.lam, self.lr, self.batch_size, self.view_size):
            w.valueChanged.connect(self.validate)
        self.optimizer.currentIndexChanged.connect(self.validate)
        self.projection.currentIndexChanged.connect(self.validate)
        self.device.currentIndexChanged.connect(self.validate)
        self.model.currentIndexChanged.connect(self.validate)
        self.download.toggled.connect(self.validate)
        self._dataset_changed()

    # ------------------------------------------------------------------ settings

    def _load(self) -> None:
        """Fill the form from the last accepted choice, or the default protocol (digits, 40 epochs)."""
        s, d = self.settings, RunConfig()
        ds = str(s.value("new_run/dataset", d.dataset))
        self.dataset.setCurrentIndex(max(0, self.dataset.findData(ds)))
        self.data_root.setText(str(s.value(f"new_run/data_root/{ds}", "") or ""))
        self.download.setChecked(_bool(s.value("new_run/download", False)))
        self._fill_models(ds)
        model = s.value("new_run/model", "") or None
        self.model.setCurrentIndex(max(0, self.model.findData(model)) if model else 0)
        self.epochs.setValue(int(s.value("new_run/epochs", d.epochs)))
        self.pause_at.setText(str(s.value("new_run/pause_at", ", ".join(map(str, d.pause_at)))))
        self.alpha.setValue(float(s.value("new_run/alpha", d.alpha)))
        self.lam.setValue(float(s.value("new_run/lam", d.lam)))
        dev = str(s.value("new_run/device", d.device))
        self.device.setCurrentIndex(max(0, self.device.findText(dev)))
        self.seed.setValue(int(s.value("new_run/seed", d.seed)))
        opt = s.value("new_run/optimizer", "") or None
        self.optimizer.setCurrentIndex(max(0, self.optimizer.findData(opt)) if opt else 0)
        self.lr.setValue(float(s.value("new_run/lr", 0.0) or 0.0))
        self.batch_size.setValue(int(s.value("new_run/batch_size", 0) or 0))
        self.view_size.setValue(
            int(s.value("new_run/view_size", -1) if s.value("new_run/view_size") not in (None, "") else -1)
        )
        self.projection.setCurrentIndex(
            max(0, self.projection.findData(str(s.value("new_run/projection", d.projection))))
        )
        self._base = last_base(s)
        self.run_dir_edit.setText(str(new_run_dir(self._base, ds)))

    def _save(self) -> None:
        s = self.settings
        ds = self.dataset.currentData()
        s.setValue("new_run/dataset", ds)
        if ds in NEEDS_FOLDER:
            s.setValue(f"new_run/data_root/{ds}", self.data_root.text().strip())
        s.setValue("new_run/download", self.download.isChecked())
        s.setValue("new_run/model", self.model.currentData() or "")
        s.setValue("new_run/epochs", self.epochs.value())
        s.setValue("new_run/pause_at", self.pause_at.text())
        s.setValue("new_run/alpha", self.alpha.value())
        s.setValue("new_run/lam", self.lam.value())
        s.setValue("new_run/device", self.device.currentText())
        s.setValue("new_run/seed", self.seed.value())
        s.setValue("new_run/optimizer", self.optimizer.currentData() or "")
        s.setValue("new_run/lr", self.lr.value())
        s.setValue("new_run/batch_size", self.batch_size.value())
        s.setValue("new_run/view_size", self.view_size.value())
        s.setValue("new_run/projection", self.projection.currentData())
        s.setValue("new_run/run_base", str(Path(self.run_dir_edit.text().strip()).expanduser().parent))
        s.sync()

    # ------------------------------------------------------------------ reactions

    def _dataset_changed(self) -> None:
        ds = self.dataset.currentData()
        needs = ds in NEEDS_FOLDER
        for w in (self.data_root, self.data_browse):
            w.setEnabled(needs)
        self.download.setVisible(ds == "cifar10")
        if needs:
            remembered = str(self.settings.value(f"new_run/data_root/{ds}", "") or "")
            if remembered or not self.data_root.text():
                self.data_root.setText(remembered)
        self._fill_models(ds)
        if not self._run_dir_edited:
            self.run_dir_edit.setText(str(new_run_dir(self._base, ds)))
        self.validate()

    def _fill_models(self, ds: str) -> None:
        """The models that take ``ds``'s inputs (the current choice is kept when it still fits)."""
        keep = self.model.currentData()
        self.model.blockSignals(True)
        self.model.clear()
        self.model.addItem(f"default for the data set ({default_model(ds)})", None)
        for name, doc in MODELS.items():
            if model_problem(name, ds) is None:
                self.model.addItem(name, name)
                self.model.setItemData(self.model.count() - 1, doc, Qt.ItemDataRole.ToolTipRole)
        self.model.setCurrentIndex(max(0, self.model.findData(keep)) if keep else 0)
        self.model.blockSignals(False)
        d = DEFAULTS.get(ds, {})
        self.lr.setSpecialValueText(f"default ({d.get('lr', '?'):g})" if "lr" in d else "default")
        self.batch_size.setSpecialValueText(f"default ({d.get('batch_size', '?')})")
        self.optimizer.setItemText(0, f"default for the data set ({d.get('optimizer', '?')})")
        vs = d.get("view_size")
        self.view_size.setSpecialValueText("default (all)" if vs == 0 else f"default ({vs})")

    def _mark_run_dir_edited(self) -> None:
        self._run_dir_edited = True

    def _browse_data(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Data folder", self.data_root.text() or str(Path.home()))
        if d:
            self.data_root.setText(d)

    def _browse_run(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder for runs", str(self._base))
        if d:
            self._base = Path(d)
            self.run_dir_edit.setText(str(new_run_dir(d, self.dataset.currentData())))

    # ------------------------------------------------------------------ result

    def run_config(self) -> RunConfig:
        """The config the form describes (raises ConfigError or ValueError if a field is wrong)."""
        ds = self.dataset.currentData()
        root = self.data_root.text().strip() if ds in NEEDS_FOLDER else None
        return RunConfig(
            dataset=ds,
            data_root=root or None,
            download=ds == "cifar10" and self.download.isChecked(),
            model=self.model.currentData(),
            epochs=self.epochs.value(),
            pause_at=parse_epochs(self.pause_at.text()),
            alpha=self.alpha.value(),
            lam=self.lam.value(),
            seed=self.seed.value(),
            device=self.device.currentText(),
            optimizer=self.optimizer.currentData(),
            lr=self.lr.value() or None,
            batch_size=self.batch_size.value() or None,
            view_size=None if self.view_size.value() < 0 else self.view_size.value(),
            projection=self.projection.currentData(),
        )

    def run_dir(self) -> Path:
        return Path(self.run_dir_edit.text().strip()).expanduser()

    def problems(self) -> dict[str, str]:
        """Field -> what is wrong with it; empty when the run can start."""
        bad: dict[str, str] = {}
        ds = self.dataset.currentData()
        try:
            pauses = parse_epochs(self.pause_at.text())
        except ValueError as e:
            bad["pause_at"] = str(e)
        else:
            out = [p for p in pauses if not 2 <= p <= self.epochs.value()]
            if out:
                what = f"pause epoch {out[0]} is" if len(out) == 1 else f"pause epochs {', '.join(map(str, out))} are"
                bad["pause_at"] = (
                    f"{what} outside 2..{self.epochs.value()} (the 2D view is fitted after epoch 1, "
                    "so the first pause can be before epoch 2)"
                )
        if ds in NEEDS_FOLDER:
            root = self.data_root.text().strip()
            if not root:
                bad["data_root"] = f"choose the {self.dataset.currentText().split(' (')[0]} data folder"
            else:
                why = data_problem(ds, root, ds == "cifar10" and self.download.isChecked())
                if why:
                    bad["data_root"] = why
        model = self.model.currentData() or default_model(ds)
        why = model_problem(model, ds)
        if why:
            bad["model"] = why
        if self.device.currentText() == "cuda":
            if self._cuda is None:
                import torch

                self._cuda = torch.cuda.is_available()
            if not self._cuda:
                bad["device"] = "this machine has no CUDA device; choose auto or cpu"
        rd = self.run_dir_edit.text().strip()
        if not rd:
            bad["run_dir"] = "choose a run folder"
        else:
            p = Path(rd).expanduser()
            if (p / "journal.jsonl").exists():
                bad["run_dir"] = f"{p} already holds a run; choose a new folder"
            elif p.exists() and not p.is_dir():
                bad["run_dir"] = f"{p} is a file, not a folder"
        if not bad:
            try:
                self.run_config().check()
            except (ConfigError, ValueError) as e:
                bad["config"] = str(e)
        return bad

    def validate(self) -> bool:
        """Show the first problem under the form, outline the fields at fault, enable Start only when valid."""
        bad = self.problems()
        widgets = {
            "pause_at": self.pause_at,
            "data_root": self.data_root,
            "device": self.device,
            "run_dir": self.run_dir_edit,
            "model": self.model,
        }
        for key, w in widgets.items():
            w.setStyleSheet("border: 1px solid #c53030; border-radius: 3px;" if key in bad else "")
        self.error.setText("\n".join(bad.values()))
        self.error.setVisible(bool(bad))
        self.start_button.setEnabled(not bad)
        return not bad

    def accept(self) -> None:
        if not self.validate():
            return
        self._save()
        super().accept()


def _bool(v: Any) -> bool:
    return v in (True, "true", "True", "1", 1)
