"""Study protocols: the shipped files follow the published setup; bad files are refused naming file and key."""

from pathlib import Path

import pytest

from hill_app.engine.commands import SPECS
from hill_app.studies.protocol import (
    ALWAYS_ALLOWED,
    PANELS,
    ProtocolError,
    load_protocol,
    resolve_protocol_path,
    shipped_protocols,
)

GOOD = """
[study]
name = "tiny"
conditions = ["hill", "baseline"]
panels = ["latent", "optimizer"]
seconds_per_pause = 30
instructions = "Do your best."

[training]
dataset = "digits"
epochs = 4
pause_at = [3]
alpha = 0.5
lam = 0.1
seed = 7
batch_size = 128
device = "cpu"
"""


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_shipped_protocols_follow_the_published_setup():
    shipped = shipped_protocols()
    assert {"cifar10_hill", "pamap2_hill", "digits_short"} <= set(shipped)
    for name, dataset in (("cifar10_hill", "cifar10"), ("pamap2_hill", "pamap2")):
        p = load_protocol(shipped[name])
        assert p.dataset == dataset
        assert (p.epochs, p.pause_at, p.alpha, p.lam) == (40, [25, 30, 35, 40], 0.5, 0.1)
        assert p.conditions == ["hill", "baseline"] and p.panels == ["latent"]
        assert p.data_root and p.instructions
    d = load_protocol(shipped["digits_short"])
    assert d.dataset == "digits" and d.epochs <= 15 and d.pause_at == [4, 7, 10]
    assert d.seconds_per_pause * len(d.pause_at) <= 5 * 60, "must fit ten minutes with training and questionnaires"
    cfg = d.run_config(device="cpu")
    assert (cfg.epochs, cfg.pause_at, cfg.alpha, cfg.lam, cfg.seed, cfg.model) == (
        12,
        [4, 7, 10],
        0.5,
        0.1,
        0,
        "digits_cnn",
    )


def test_load_good_protocol(tmp_path):
    p = load_protocol(write(tmp_path, GOOD))
    assert p.name == "tiny" and p.pause_at == [3] and p.seed == 7 and p.seconds_per_pause == 30.0
    assert p.training == {"batch_size": 128, "device": "cpu"}
    assert len(p.sha256) == 64 and p.text == GOOD
    cfg = p.run_config()
    assert cfg.batch_size == 128 and cfg.device == "cpu" and cfg.pause_at == [3]
    assert p.allowed_commands() == {"set_latent_targets", "clear_latent_targets", "update_optimizer", *ALWAYS_ALLOWED}
    assert p.check_command("update_optimizer") is None
    assert "'checkpoints' panel" in p.check_command("load_checkpoint")
    assert p.check_edit({"op": "merge", "classes": [1, 2]}) is None


def test_every_engine_command_belongs_to_a_panel():
    covered = set(ALWAYS_ALLOWED).union(*PANELS.values())
    assert covered == set(SPECS), "a new engine command needs a study panel"


def test_resolve_by_shipped_name(tmp_path):
    assert resolve_protocol_path("digits_short") == shipped_protocols()["digits_short"]
    assert resolve_protocol_path("digits_short.toml") == shipped_protocols()["digits_short"]
    with pytest.raises(ProtocolError, match="no such protocol"):
        resolve_protocol_path(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "old,new,match",
    [
        ('panels = ["latent", "optimizer"]', 'panels = ["latent", "magic"]', r"\[study\] panels: unknown 'magic'"),
        (
            'conditions = ["hill", "baseline"]',
            'conditions = ["baseline"]',
            r"\[study\] conditions: must include 'hill'",
        ),
        ('conditions = ["hill", "baseline"]', 'conditions = ["hill", "placebo"]', r"\[study\] conditions: unknown"),
        ('seconds_per_pause = 30', 'seconds_per_pause = 0', r"\[study\] seconds_per_pause: must be > 0"),
        ('seconds_per_pause = 30', 'seconds_per_pause = "long"', r"\[study\] seconds_per_pause: expected a finite"),
        ('instructions = "Do your best."', '', r"\[study\] instructions: missing"),
        ('name = "tiny"', 'name = "tiny"\ncolour = "red"', r"\[study\] colour: unknown key"),
        ('pause_at = [3]', 'pause_at = [3, 9]', r"\[training\] pause_at: \[9\] beyond the last epoch \(4\)"),
        ('pause_at = [3]', 'pause_at = [1]', r"\[training\] pause_at: must be >= 2"),
        ('pause_at = [3]', 'pause_at = [3, 2]', r"\[training\] pause_at: must be increasing"),
        ('pause_at = [3]', 'pause_at = []', r"\[training\] pause_at: the hill condition needs at least one pause"),
        ('pause_at = [3]', 'pause_at = 3', r"\[training\] pause_at: expected a list"),
        ('epochs = 4', 'epochs = 4.5', r"\[training\] epochs: expected an integer"),
        ('epochs = 4', '', r"\[training\] epochs: missing"),
        ('alpha = 0.5', 'alpha = 1.5', r"\[training\] alpha: must be <= 1"),
        ('lam = 0.1', 'lam = -1', r"\[training\] lam: must be >= 0"),
        ('seed = 7', 'seed = true', r"\[training\] seed: expected an integer"),
        ('dataset = "digits"', 'dataset = "mnist"', r"\[training\] dataset: unknown 'mnist'"),
        ('dataset = "digits"', 'dataset = "cifar10"', r"\[training\] data_root: the cifar10 data set needs"),
        ('batch_size = 128', 'batch_size = "big"', r"\[training\] batch_size: expected an integer"),
        ('batch_size = 128', 'batch_size = 1', r"\[training\] batch_size: must be >= 2"),
        ('batch_size = 128', 'optimiser = "sgd"', r"\[training\] optimiser: unknown key"),
        ('batch_size = 128', 'model = "gpt5"', r"\[training\] model: unknown 'gpt5'"),
        ('device = "cpu"', 'device = "tpu"', r"device: expected auto, cpu or cuda"),
    ],
)
def test_bad_protocols_name_file_and_key(tmp_path, old, new, match):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ProtocolError, match=match) as e:
        load_protocol(path)
    assert str(path) in str(e.value)


def test_broken_files(tmp_path):
    p = write(tmp_path, "[study\nname = 1")
    with pytest.raises(ProtocolError, match="not valid TOML") as e:
        load_protocol(p)
    assert str(p) in str(e.value)
    with pytest.raises(ProtocolError, match=r"missing the \[training\] table"):
        load_protocol(write(tmp_path, GOOD.split("[training]")[0]))
    with pytest.raises(ProtocolError, match="unexpected top-level key"):
        load_protocol(write(tmp_path, "seed = 1\n" + GOOD))
    with pytest.raises(ProtocolError, match="cannot read"):
        load_protocol(tmp_path / "missing.toml")


def test_studies_run_without_qt_loaded():
    import subprocess
    import sys

    code = (
        "import sys, hill_app.studies.protocol, hill_app.studies.questionnaires, hill_app.studies.strategies, "
        "hill_app.studies.session_log, hill_app.studies.runner, hill_app.studies.report, hill_app.studies.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_shipped_scripted_participant_fits_its_protocol(tmp_path):
    """studies/examples/digits_short_participant.json is the README's scripted participant for digits_short."""
    from pathlib import Path

    from hill_app.studies.protocol import load_protocol, resolve_protocol_path
    from hill_app.studies.runner import load_scripted

    proto = load_protocol(resolve_protocol_path("digits_short"))
    example = Path(__file__).resolve().parents[1] / "studies" / "examples" / "digits_short_participant.json"
    interventions, answers = load_scripted(example, proto, num_classes=10, view_size=1169)
    assert [iv.epoch for iv in interventions] == list(proto.pause_at)
    assert answers is not None and set(answers) == {"umux_lite", "nasa_tlx"}
