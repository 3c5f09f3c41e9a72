"""`hill-app train` in-process: a scripted protocol end to end, refusals before training, and --resume."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hill_app.cli import main
from hill_app.engine.config import RunConfig
from hill_app.engine.edits_file import load_edits_file, scripted_pause_handler
from hill_app.engine.events import EventChannel
from hill_app.engine.journal import read_journal
from hill_app.engine.session import TrainingSession

EDITS = {
    "interventions": [
        {
            "epoch": 3,
            "edits": [
                {"op": "move_center", "class": 3, "to": [1.2, -0.4]},
                {"op": "scale_spread", "class": 3, "factor": 0.6},
                {"op": "separate", "classes": [3, 5], "min_distance": 1.5},
            ],
            "commands": [{"command": "update_optimizer", "args": {"lr": 0.02}}],
        }
    ]
}
TIMING = {"epoch_seconds", "images_per_s", "time", "seq"}


def journal(run_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(read_journal(Path(run_dir) / "journal.jsonl"))


def epochs(recs):
    return {
        (r["branch"], r["epoch"]): {k: v for k, v in r.items() if k not in TIMING} for r in recs if r["type"] == "epoch"
    }


def train_args(out, edits=None, *extra):
    a = [
        "train",
        "--dataset",
        "digits",
        "--epochs",
        "4",
        "--pause-at",
        "3",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    if edits is not None:
        a += ["--edits", str(edits)]
    return a + list(extra)


@pytest.fixture(scope="module")
def edits_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("edits") / "edits.json"
    p.write_text(json.dumps(EDITS, indent=1))
    return p


@pytest.fixture(scope="module")
def reference(tmp_path_factory, edits_file):
    """One uninterrupted scripted run through the CLI."""
    out = tmp_path_factory.mktemp("cli") / "run"
    rc = main(train_args(out, edits_file))
    return rc, out


def test_train_writes_the_summary(reference, edits_file):
    rc, out = reference
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    for k in ("test_accuracy", "val_accuracy", "epochs", "edits_applied", "wall_seconds"):
        assert k in summary
    assert summary["epochs"] == 4 and summary["edits_applied"] == 3
    assert 0.9 < summary["test_accuracy"] <= 1 and 0.9 < summary["val_accuracy"] <= 1
    assert summary["wall_seconds"] > 0 and summary["device"] == "cpu" and summary["seed"] == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["epochs"] == 4 and cfg["pause_at"] == [3] and cfg["seed"] == 0 and cfg["alpha"] == 0.5
    assert json.loads((out / "edits.json").read_text()) == EDITS  # the script is kept with the run
    recs = journal(out)
    assert sorted(epochs(recs)) == [("main", e) for e in (1, 2, 3, 4)]
    t = [r for r in recs if r["type"] == "targets"]
    assert len(t) == 1 and t[0]["edits"] == EDITS["interventions"][0]["edits"]
    lay = t[0]["layout"]
    assert lay["sep_min"][3][5] == lay["sep_min"][5][3] == 1.5
    c3, c5 = np.asarray(lay["centers"][3]), np.asarray(lay["centers"][5])
    assert float(np.linalg.norm(c3 - c5)) >= 1.5 - 1e-9
    assert [r["lr"] for r in recs if r["type"] == "epoch"] == [0.05, 0.05, 0.02, 0.02]
    cmds = {r["command"]: r["status"] for r in recs if r["type"] == "command"}
    assert cmds == {"set_latent_targets": "success", "update_optimizer": "success", "resume_training": "success"}
    assert all(r["source"] == "script" for r in recs if r["type"] == "command")


def test_json_flag_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "j"
    rc = main(
        [
            "train",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--pause-at",
            "none",
            "--device",
            "auto",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads((out / "summary.json").read_text())
    # --device auto takes CUDA only where there is one
    assert printed["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert printed["epochs"] == 1 and printed["edits_applied"] == 0


def test_reusing_an_out_that_holds_a_run_is_refused(reference, edits_file, capsys):
    _, out = reference
    before = (out / "journal.jsonl").read_bytes()
    rc = main(train_args(out, edits_file))
    assert rc == 2
    err = capsys.readouterr().err
    assert str(out) in err and "already holds a run" in err and "--resume" in err
    assert (out / "journal.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    "content,needles",
    [
        ('{"interventions": [\n {"epoch": 3,}\n]}', ["line 2 column", "not valid JSON"]),
        (
            json.dumps(
                {
                    "interventions": [
                        {
                            "epoch": 3,
                            "edits": [
                                {"op": "move_center", "class": 3, "to": [0, 0]},
                                {"op": "scale_spread", "class": 3, "factor": 0},
                            ],
                        }
                    ]
                }
            ),
            ["interventions[0].edits[1]", "'factor'"],
        ),
        (
            json.dumps({"interventions": [{"epoch": 2, "edits": []}]}),
            ["interventions[0]", "epoch 2 is not a pause epoch"],
        ),
        (
            json.dumps(
                {"interventions": [{"epoch": 3, "edits": [{"op": "move_points", "indices": [5000], "to": [0, 0]}]}]}
            ),
            ["interventions[0].edits[0]", "5000", "0..1168"],
        ),
        (
            json.dumps({"interventions": [{"epoch": 3, "commands": [{"command": "resume_training"}]}]}),
            ["interventions[0].commands[0]", "resume_training"],
        ),
    ],
    ids=["json", "bad-edit", "not-a-pause", "view-index", "resume-command"],
)
def test_malformed_edits_file_exits_2_before_training(tmp_path, capsys, content, needles):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    out = tmp_path / "run"
    rc = main(train_args(out, bad))
    assert rc == 2
    err = capsys.readouterr().err
    assert "error:" in err and str(bad) in err
    for n in needles:
        assert n in err, (n, err)
    assert not (out / "journal.jsonl").exists()
    assert not (out / "summary.json").exists()


def test_a_refused_edits_file_does_not_block_the_folder(tmp_path, edits_file, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"interventions": [{"epoch": 3, "edits": [{"op": "merge", "classes": [3, 3]}]}]}')
    out = tmp_path / "run"
    assert main(train_args(out, bad, "--epochs", "3")) == 2
    assert "two different classes" in capsys.readouterr().err
    # fixed, the same command with the same --out runs
    assert main(train_args(out, edits_file, "--epochs", "3")) == 0
    assert json.loads((out / "summary.json").read_text())["edits_applied"] == 3


def test_cifar10_without_data_root(tmp_path, capsys):
    rc = main(["train", "--dataset", "cifar10", "--epochs", "1", "--pause-at", "none", "--out", str(tmp_path / "c")])
    assert rc == 2
    assert "--data-root" in capsys.readouterr().err
    assert not (tmp_path / "c" / "journal.jsonl").exists()


def test_cifar10_folder_that_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "cifar"
    out = tmp_path / "c"
    rc = main(
        [
            "train",
            "--dataset",
            "cifar10",
            "--data-root",
            str(missing),
            "--epochs",
            "1",
            "--pause-at",
            "none",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err
    assert not (out / "journal.jsonl").exists()  # a failed start leaves nothing that blocks a retry


def test_pamap2_without_data_root(tmp_path, capsys):
    assert main(["train", "--dataset", "pamap2", "--out", str(tmp_path / "p")]) == 2
    assert "--data-root" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--pause-at", "1"], "pause_at"),
        (["--alpha", "1.5"], "alpha"),
        (["--device", "tpu"], "device"),
        (["--lr", "0"], "lr"),
        (["--lam", "nan"], "lam: expected a finite number >= 0, got nan"),
        (["--lam", "inf"], "lam: expected a finite number >= 0, got inf"),
        (["--lam=-inf"], "lam: expected a finite number >= 0, got -inf"),
        (["--lam", "-1"], "lam: must be >= 0, got -1"),
        (["--lr", "inf"], "lr: expected a finite number > 0, got inf"),
        (["--lr", "nan"], "lr: expected a finite number > 0, got nan"),
    ],
)
def test_bad_options_exit_2_naming_the_option(tmp_path, capsys, extra, needle):
    out = tmp_path / "r"
    rc = main(["train", "--dataset", "digits", "--epochs", "3", "--out", str(out)] + extra)
    assert rc == 2
    assert needle in capsys.readouterr().err
    assert not (out / "journal.jsonl").exists()


@pytest.mark.parametrize("method", ["lda", "pca"])
def test_projection_option_reaches_the_config_and_the_fitted_map(tmp_path, method):
    """`--projection` is the map the engine fits after epoch 1 (not only a word in config.json)."""
    out = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--epochs",
                "2",
                "--pause-at",
                "none",
                "--seed",
                "0",
                "--device",
                "cpu",
                "--projection",
                method,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "config.json").read_text())["projection"] == method
    recs = journal(out)
    assert next(r for r in recs if r["type"] == "run_started")["config"]["projection"] == method
    fitted = [r for r in recs if r["type"] == "projection_fitted"]
    assert [(r["method"], r["epoch"]) for r in fitted] == [(method, 1)]
    from hill_app.engine.branches import CheckpointTree

    tree = CheckpointTree(out / "checkpoints")
    assert tree.load(tree.nodes[-1]["uuid"])["projection"]["method"] == method


NONFINITE = {
    "lr-1e6": (["--lr", "1e6"], None, []),
    "update_optimizer-lr-100": (
        [],
        {"interventions": [{"epoch": 2, "commands": [{"command": "update_optimizer", "args": {"lr": 100}}]}]},
        ["update_optimizer"],
    ),
    "move_center-1e308": (
        [],
        {"interventions": [{"epoch": 2, "edits": [{"op": "move_center", "class": 3, "to": [1e308, -1e308]}]}]},
        ["set_latent_targets"],
    ),
}


@pytest.mark.parametrize("name", list(NONFINITE))
def test_a_non_finite_headless_run_stops_non_zero_with_a_record_naming_epoch_and_step(tmp_path, capsys, name):
    """Issue 13.3: the run pauses itself on a NaN/inf loss; with no human it stops (never waits forever, never
    plays the scheduled pause's script again), exit 1, a 'stopped' record and a last line naming epoch and step."""
    extra, script, script_commands = NONFINITE[name]
    out = tmp_path / "run"
    args = ["train", "--epochs", "3", "--pause-at", "2", "--seed", "0", "--device", "cpu", "--out", str(out), *extra]
    if script is not None:
        (tmp_path / "edits.json").write_text(json.dumps(script))
        args += ["--edits", str(tmp_path / "edits.json")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    recs = journal(out)
    stopped = [r for r in recs if r["type"] == "stopped"]
    assert len(stopped) == 1 and stopped[0]["cause"] == "nonfinite", stopped
    ep, step = stopped[0]["epoch"], stopped[0]["step"]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: training stopped at epoch {ep}, step {step}: ") and "non-finite" in last, last
    assert str(out / "journal.jsonl") in last
    nonfinite_pauses = [r for r in recs if r["type"] == "paused" and "non-finite" in r["reason"]]
    assert len(nonfinite_pauses) == 1 and nonfinite_pauses[0]["step"] == step
    # the scheduled pause's script was played once, not again at the non-finite pause
    ok = [r for r in recs if r["type"] == "command" and r.get("status") == "success" and r.get("source") == "script"]
    played = [r["command"] for r in ok if r["command"] in ("update_optimizer", "set_latent_targets")]
    assert played == script_commands
    assert any(r["type"] == "checkpoint" and r["uuid"] == stopped[0]["checkpoint"] for r in recs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] and summary["stop"]["cause"] == "nonfinite"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_exits_2(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--epochs", "2", "--pause-at", "none", "--device", "cuda", "--out", str(out)]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_out_that_is_a_file_exits_2(tmp_path, capsys):
    f = tmp_path / "not_a_folder"
    f.write_text("x")
    assert main(["train", "--epochs", "2", "--pause-at", "none", "--device", "cpu", "--out", str(f)]) == 2
    assert str(f) in capsys.readouterr().err


def test_unknown_dataset_is_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit) as ei:
        main(["train", "--dataset", "mnist", "--out", str(tmp_path / "m")])
    assert ei.value.code == 2


# ---------------------------------------------------------------- --resume


def start_like_the_cli(run_dir, edits_file, stop_when):
    """The reference's configuration and script, driven directly so the run can be stopped where we like."""
    cfg = RunConfig(dataset="digits", epochs=4, pause_at=[3], seed=0, device="cpu")
    events = EventChannel()
    box = {}

    def on(ev):
        if stop_when(ev):
            box["s"].submit("stop_training", {})

    events.subscribe(on)
    s = box["s"] = TrainingSession(cfg, run_dir, events=events)
    ivs = load_edits_file(edits_file, pause_at=[3], num_classes=10, view_size=len(s.view_idx))
    script = scripted_pause_handler(ivs)
    s.pause_handler = script
    (Path(run_dir) / "edits.json").write_text(Path(edits_file).read_text())
    return s


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, edits_file):
    """The reference's run, stopped in the middle of epoch 4, then continued with `train --resume`."""
    out = tmp_path_factory.mktemp("resume") / "run"
    s = start_like_the_cli(out, edits_file, lambda ev: ev.kind == "step" and ev.data["step"] == 60)
    first = s.run()
    rc = main(["train", "--resume", str(out)])
    return first, rc, out


def test_resume_continues_a_stopped_run_exactly(resumed, reference):
    first, rc, out = resumed
    _, ref_out = reference
    assert first["stopped_early"] is True and first["epochs"] == 3 and first["steps"] == 60
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    ref = json.loads((ref_out / "summary.json").read_text())
    assert summary["epochs"] == 4 and summary["steps"] == 72 and summary["stopped_early"] is False
    assert summary["test_accuracy"] == ref["test_accuracy"]
    assert summary["test_per_class_accuracy"] == ref["test_per_class_accuracy"]
    recs = journal(out)
    assert any(r["type"] == "resumed_after_crash" for r in recs)
    assert epochs(recs) == epochs(journal(ref_out))


def test_resumed_summary_counts_the_whole_run(resumed, reference):
    first, rc, out = resumed
    _, ref_out = reference
    summary = json.loads((out / "summary.json").read_text())
    ref = json.loads((ref_out / "summary.json").read_text())
    assert summary["edits_applied"] == ref["edits_applied"] == 3
    assert summary["wall_seconds"] > first["wall_seconds"]


def test_resume_after_a_stop_during_the_pause_applies_that_pauses_edits(tmp_path, reference, edits_file):
    _, ref_out = reference
    out = tmp_path / "run"
    s = start_like_the_cli(out, edits_file, lambda ev: False)
    s.pause_handler = lambda sess, info: sess.submit("stop_training", {})  # stopped at the pause, nothing done
    first = s.run()
    assert first["epochs"] == 2 and first["edits_applied"] == 0

    assert main(["train", "--resume", str(out)]) == 0
    recs = journal(out)
    assert any(r["type"] == "targets" for r in recs)
    assert epochs(recs) == epochs(journal(ref_out))


def test_resume_of_a_folder_without_a_run(tmp_path, capsys):
    rc = main(["train", "--resume", str(tmp_path / "empty")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "config.json" in err


def test_features_that_collapse_name_the_end_of_the_epoch_and_do_not_suggest_a_resume(tmp_path, capsys):
    """lr 3 on digits kills the units in epoch 1, so no 2D view can be fitted at its end. The message says so
    (the end of epoch 1, not 'epoch 2'), and since a resume from the same state would stop there again, it
    asks for a new run with a lower lr instead of suggesting one."""
    out = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--lr", "3", "--epochs", "3", "--pause-at", "", "--seed", "0"]
    assert main([*args, "--device", "cpu", "--out", str(out)]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    errors = [r for r in journal(out) if r["type"] == "error"]
    assert len(errors) == 1 and errors[0]["epoch"] == 1, errors
    assert last.startswith(f"error: training stopped at the end of epoch 1 (step {errors[0]['step']}): "), last
    assert "cannot fit a projection" in last and "lower --lr (this run: 3.0)" in last, last
    assert "--resume" not in last, last
