"""The one declaration of every command: typed schemas, checks against the run's data and model, JSON Schema."""

import json
import re
from pathlib import Path

import pytest
import torch

from hill_app.engine import handlers
from hill_app.engine.commands import APPLIES, SPECS, CommandError, describe_commands
from hill_app.engine.config import RunConfig
from hill_app.engine.edits_file import EditsFileError, load_edits_file, parse_edits, scripted_pause_handler
from hill_app.engine.models import build_model

README = Path(__file__).resolve().parents[1] / "README.md"


def digits_context(**kw):
    model = build_model("digits_cnn", (1, 8, 8), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return handlers.context_for(model, opt, num_classes=10, n_train=1000, view_size=1000, **kw)


def test_every_command_is_declared_once_with_its_handler_and_a_json_schema():
    described = describe_commands()
    assert [d["name"] for d in described] == list(SPECS)
    for d in described:
        spec = SPECS[d["name"]]
        assert callable(spec.handler) and spec.handler.__name__ == d["name"]
        assert d["applies"] in APPLIES
        schema = d["args_schema"]
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["properties"]) == set(spec.schema.args)
        assert set(schema["required"]) == set(spec.required)
        json.dumps(d, allow_nan=False)  # servable as strict JSON


def test_the_readme_lists_exactly_the_declared_commands():
    text = README.read_text(encoding="utf-8")
    block = text[text.index("<!-- commands:begin -->") : text.index("<!-- commands:end -->")]
    listed = re.findall(r"^\| `([a-z_]+)` \|", block, flags=re.M)
    assert listed == list(SPECS), "regenerate the README's command table from describe_commands()"


@pytest.mark.parametrize(
    "name,args,needle",
    [
        ("update_dataset", {"action": "drop", "indices": [99999999999]}, "out of range"),
        ("update_dataset", {"action": "add", "path": "/nonexistent/file.txt"}, "cannot read"),
        ("update_dataset", {"action": "add", "path": "/dev/zero"}, "regular file"),
        ("update_dataset", {"action": "drop"}, "needs 'indices'"),
        ("load_checkpoint", {"uuid": "deadbeef"}, "no checkpoint"),
        ("set_latent_targets", {"edits": [{"op": "teleport"}]}, "unknown op"),
        ("set_latent_targets", {"edits": [{"op": "move_center", "class": 12, "to": [0, 0]}]}, "class"),
        ("update_dataset_runtime_hyperparameters", {"class_weights": [float("nan")] * 10}, "finite"),
        ("update_dataset_runtime_hyperparameters", {"class_weights": [1.0] * 3}, "list of 10"),
        ("update_optimizer", {"betas": [0.9, 0.99]}, "SGD has no hyperparameter 'betas'"),
        ("update_optimizer", {"lr": 0.1, "group": 3}, "group 3 does not exist"),
        ("model_layer_operation", {"layer_name": "nope", "operation": "freeze"}, "no layer named 'nope'"),
        ("set_alpha", {"alpha": 10**5000}, "2**63"),
    ],
)
def test_context_checks_refuse_what_would_fail_at_the_pause(name, args, needle):
    ctx = digits_context(checkpoint_uuids=frozenset(), check_files=True)
    with pytest.raises(CommandError, match=re.escape(needle)):
        SPECS[name].check_args(args, ctx)
    assert callable(SPECS[name].check_args)  # the same declaration without a context checks types only
    if name in ("update_dataset", "load_checkpoint") and needle not in ("needs 'indices'",):
        SPECS[name].check_args(args)  # state-dependent: left to the handler when nothing is known


def test_the_edits_file_is_checked_against_data_and_model_before_training(tmp_path):
    base = {
        "interventions": [
            {
                "epoch": 3,
                "commands": [{"command": "update_dataset", "args": {"action": "drop", "indices": [99999999999]}}],
            }
        ]
    }
    kw = dict(pause_at=[3], num_classes=10, view_size=1000)
    parse_edits(base, **kw)  # without a context only the shape is checked (as before)
    with pytest.raises(EditsFileError, match=r"interventions\[0\]\.commands\[0\].*out of range"):
        parse_edits(base, context=digits_context(), **kw)
    bad = tmp_path / "e.json"
    bad.write_text('{"interventions": [{"epoch": 3, "commands": [{"command": "set_alpha", "args": {"alpha": NaN}}]}]}')
    with pytest.raises(EditsFileError, match="NaN is not a number"):
        load_edits_file(bad, **kw)
    bad.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(EditsFileError, match="nested too deeply|not valid JSON"):
        load_edits_file(bad, **kw)
    bad.write_text('{"interventions": [{"epoch": ' + "9" * 5000 + "}]}")
    with pytest.raises(EditsFileError, match=str(bad)):
        load_edits_file(bad, **kw)


def test_set_latent_targets_with_resume_commits_and_resumes_in_one_command(tmp_path):
    from hill_app.engine.session import TrainingSession

    s = TrainingSession(RunConfig(epochs=2, pause_at=[], seed=0, device="cpu"), tmp_path / "run")
    s._end_of_epoch(s._train_epoch())
    s.paused = True
    cmd = s.submit(
        "set_latent_targets",
        {
            "edits": [{"op": "move_center", "class": 3, "to": [1.0, 0.0], "origin": "suggested:compactness"}],
            "resume": True,
        },
        source="window",
    )
    s._process_commands(at_epoch_boundary=True)
    assert cmd.status == "success", cmd.reason
    assert cmd.result["resumed"] is True and not s.paused and s.layout is not None
    recs = [json.loads(x) for x in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    targets = [r for r in recs if r["type"] == "targets"][-1]
    assert targets["edits"][0]["origin"] == "suggested:compactness"
    # not paused: the edits are committed and the result says nothing was resumed
    cmd2 = s.submit("set_latent_targets", {"edits": [], "resume": True})
    s._process_commands(at_epoch_boundary=True)
    assert cmd2.status == "success" and cmd2.result["resumed"] is False


class _Session:
    branch = "main"

    def __init__(self):
        self.calls = []

    def submit(self, command, args=None, source="user"):
        self.calls.append((command, args))


class _Info:
    def __init__(self, epoch, reason):
        self.epoch, self.reason = epoch, reason


def test_the_script_does_not_replay_its_edits_at_a_non_finite_pause_it_stops():
    ivs = parse_edits(
        {
            "interventions": [
                {
                    "epoch": 3,
                    "edits": [{"op": "merge", "classes": [1, 2]}],
                    "commands": [{"command": "update_optimizer", "args": {"lr": 100}}],
                }
            ]
        },
        pause_at=[3],
        num_classes=10,
        view_size=100,
    )
    h = scripted_pause_handler(ivs)
    s = _Session()
    h(s, _Info(3, "scheduled pause before epoch 3"))
    assert [c for c, _ in s.calls] == ["set_latent_targets", "update_optimizer", "resume_training"]
    s.calls.clear()
    h(s, _Info(3, "the loss or gradient became non-finite (NaN or inf) by step 80"))
    assert [c for c, _ in s.calls] == ["stop_training"] and "non-finite" in s.calls[0][1]["reason"]
    s.calls.clear()
    h(s, _Info(3, "scheduled pause before epoch 3"))  # the same pause again: the lr of 100 is not sent twice
    assert [c for c, _ in s.calls] == ["resume_training"]
