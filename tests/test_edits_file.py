"""The edits file: shipped examples parse, malformed files are refused naming the entry, the script plays."""

import json
from pathlib import Path

import pytest

import hill_app
from hill_app.engine.edits_file import (
    EditsFileError,
    Intervention,
    load_edits_file,
    parse_edits,
    scripted_pause_handler,
)

PROTOCOL = [25, 30, 35, 40]
DIGITS = dict(pause_at=PROTOCOL, num_classes=10, view_size=1169)
EXAMPLES = sorted((Path(hill_app.__file__).parent / "examples").glob("*.json"))


def write(tmp_path, obj, name="edits.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def good_entry(epoch=25, **kw):
    e = {
        "epoch": epoch,
        "edits": [{"op": "move_center", "class": 3, "to": [1.2, -0.4]}],
        "commands": [{"command": "update_optimizer", "args": {"lr": 0.01}}],
    }
    e.update(kw)
    return e


def refuse(tmp_path, obj, **kw):
    p = write(tmp_path, obj)
    with pytest.raises(EditsFileError) as ei:
        load_edits_file(p, **{**DIGITS, **kw})
    return str(ei.value), p


def test_examples_ship():
    names = {p.name for p in EXAMPLES}
    assert {"all_ops.json", "digits_edits.json"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_parse_for_the_default_protocol(path):
    ivs = load_edits_file(path, **DIGITS)
    assert ivs, "an example with no interventions"
    assert all(iv.epoch in PROTOCOL for iv in ivs)
    assert [iv.epoch for iv in ivs] == sorted(iv.epoch for iv in ivs)
    assert sum(len(iv.edits) for iv in ivs) > 0


def test_all_ops_example_uses_every_op():
    path = next(p for p in EXAMPLES if p.name == "all_ops.json")
    ivs = load_edits_file(path, **DIGITS)
    from hill_app.losses import EDIT_OPS

    assert {e["op"] for iv in ivs for e in iv.edits} == set(EDIT_OPS)


def test_digits_example_content():
    path = next(p for p in EXAMPLES if p.name == "digits_edits.json")
    ivs = load_edits_file(path, **DIGITS)
    assert [iv.epoch for iv in ivs] == PROTOCOL
    assert ivs[0].commands == [{"command": "update_optimizer", "args": {"lr": 0.02}}]


def test_parse_returns_interventions_sorted_by_epoch():
    data = {"interventions": [good_entry(35), good_entry(25, commands=[]), {"epoch": 30}]}
    ivs = parse_edits(data, **DIGITS)
    assert [iv.epoch for iv in ivs] == [25, 30, 35]
    assert ivs[1].edits == [] and ivs[1].commands == []
    assert ivs[0].edits == [{"op": "move_center", "class": 3, "to": [1.2, -0.4]}]


def test_invalid_json_names_line_and_column(tmp_path):
    msg, p = refuse(tmp_path, '{"interventions": [\n  {"epoch": 25,, "edits": []}\n]}')
    assert str(p) in msg
    assert "line 2 column" in msg
    assert "not valid JSON" in msg


def test_missing_file_is_refused_naming_it(tmp_path):
    with pytest.raises(EditsFileError, match="nope.json"):
        load_edits_file(tmp_path / "nope.json", **DIGITS)


@pytest.mark.parametrize("obj", [{}, {"interventions": {}}, [], {"interventions": None}])
def test_missing_interventions(tmp_path, obj):
    msg, p = refuse(tmp_path, obj)
    assert str(p) in msg and "'interventions'" in msg


def test_unknown_top_level_key(tmp_path):
    msg, _ = refuse(tmp_path, {"interventions": [], "interventons": []})
    assert "interventons" in msg


def test_epoch_not_a_pause_epoch(tmp_path):
    msg, _ = refuse(tmp_path, {"interventions": [good_entry(25), good_entry(26)]})
    assert "interventions[1]" in msg and "epoch 26 is not a pause epoch" in msg and "25, 30, 35, 40" in msg


@pytest.mark.parametrize("ep", ["25", 25.0, True, None])
def test_epoch_not_an_integer(tmp_path, ep):
    msg, _ = refuse(tmp_path, {"interventions": [good_entry(ep)]})
    assert "interventions[0]" in msg and "'epoch' must be an integer" in msg


def test_duplicate_epoch(tmp_path):
    msg, _ = refuse(tmp_path, {"interventions": [good_entry(25), good_entry(30), good_entry(25)]})
    assert "interventions[2]" in msg and "second intervention for epoch 25" in msg


def test_bad_edit_names_the_entry_and_edit(tmp_path):
    entry = good_entry(
        30, edits=[{"op": "move_center", "class": 3, "to": [0, 0]}, {"op": "scale_spread", "class": 3, "factor": -1}]
    )
    msg, p = refuse(tmp_path, {"interventions": [entry]})
    assert "interventions[0].edits[1]" in msg
    assert "'factor'" in msg
    assert str(p) in msg


def test_edit_naming_a_point_outside_the_view_set(tmp_path):
    entry = good_entry(25, edits=[{"op": "move_points", "indices": [12, 5000], "to": [0, 0]}])
    msg, _ = refuse(tmp_path, {"interventions": [entry]})
    assert "interventions[0].edits[0]" in msg and "5000" in msg and "0..1168" in msg


def test_edits_not_a_list(tmp_path):
    msg, _ = refuse(tmp_path, {"interventions": [good_entry(25, edits={"op": "merge"})]})
    assert "interventions[0]" in msg and "'edits' must be a list" in msg


def test_unknown_entry_key(tmp_path):
    msg, _ = refuse(tmp_path, {"interventions": [good_entry(25, edit=[])]})
    assert "interventions[0]" in msg and "'edit'" in msg


def test_unknown_command(tmp_path):
    entry = good_entry(
        25, commands=[{"command": "update_optimizer", "args": {"lr": 0.1}}, {"command": "format_disk", "args": {}}]
    )
    msg, _ = refuse(tmp_path, {"interventions": [entry]})
    assert "interventions[0].commands[1]" in msg and "unknown command 'format_disk'" in msg


@pytest.mark.parametrize(
    "cmd,needle",
    [
        ({"command": "update_optimizer", "args": {"lr": -1}}, "'lr'"),
        ({"command": "update_optimizer", "args": {"learning_rate": 0.1}}, "unknown argument 'learning_rate'"),
        ({"command": "set_alpha", "args": {}}, "missing argument 'alpha'"),
        ({"command": "set_alpha", "args": {"alpha": 2}}, "'alpha'"),
        ({"command": "set_alpha", "args": [0.5]}, "args must be a JSON object"),
        ({"command": 7}, "expected"),
        ("update_optimizer", "expected"),
    ],
)
def test_bad_command_args(tmp_path, cmd, needle):
    msg, _ = refuse(tmp_path, {"interventions": [good_entry(35, commands=[cmd])]})
    assert "interventions[0].commands[0]" in msg and needle in msg


@pytest.mark.parametrize("name", ["pause_training", "resume_training"])
def test_pause_and_resume_commands_are_refused(tmp_path, name):
    msg, _ = refuse(tmp_path, {"interventions": [good_entry(25, commands=[{"command": name, "args": {}}])]})
    assert "interventions[0].commands[0]" in msg and name in msg and "implied" in msg


def test_num_classes_is_checked_against_the_data_set(tmp_path):
    entry = good_entry(25, edits=[{"op": "merge", "classes": [3, 9]}])
    p = write(tmp_path, {"interventions": [entry]})
    assert load_edits_file(p, **DIGITS)[0].edits[0]["classes"] == [3, 9]
    with pytest.raises(EditsFileError, match="class 9 does not exist"):
        load_edits_file(p, pause_at=PROTOCOL, num_classes=6, view_size=100)


# ---------------------------------------------------------------- the scripted participant


class FakeSession:
    def __init__(self):
        self.calls = []

    def submit(self, command, args=None, source="user"):
        self.calls.append((command, args, source))


class Info:
    def __init__(self, epoch):
        self.epoch = epoch


def test_scripted_pause_handler_submits_edits_then_commands_then_resume():
    ivs = parse_edits(
        {
            "interventions": [
                {
                    "epoch": 25,
                    "edits": [
                        {"op": "merge", "classes": [3, 5]},
                        {"op": "strategy", "name": "compactness", "strength": 0.4},
                    ],
                    "commands": [
                        {"command": "update_optimizer", "args": {"lr": 0.02}},
                        {"command": "set_alpha", "args": {"alpha": 0.3}},
                    ],
                },
                {"epoch": 30, "commands": [{"command": "save_checkpoint"}]},
            ]
        },
        **DIGITS,
    )
    handler = scripted_pause_handler(ivs)

    s = FakeSession()
    handler(s, Info(25))
    assert s.calls == [
        (
            "set_latent_targets",
            {"edits": [{"op": "merge", "classes": [3, 5]}, {"op": "strategy", "name": "compactness", "strength": 0.4}]},
            "script",
        ),
        ("update_optimizer", {"lr": 0.02}, "script"),
        ("set_alpha", {"alpha": 0.3}, "script"),
        ("resume_training", {}, "script"),
    ]

    s = FakeSession()
    handler(s, Info(30))  # no edits: no set_latent_targets; missing args become {}
    assert s.calls == [("save_checkpoint", {}, "script"), ("resume_training", {}, "script")]

    s = FakeSession()
    handler(s, Info(35))  # a pause with no intervention still resumes
    assert s.calls == [("resume_training", {}, "script")]


def test_scripted_pause_handler_with_no_script_only_resumes():
    s = FakeSession()
    scripted_pause_handler([])(s, Info(3))
    assert s.calls == [("resume_training", {}, "script")]


def test_intervention_defaults():
    iv = Intervention(5)
    assert iv.edits == [] and iv.commands == []
