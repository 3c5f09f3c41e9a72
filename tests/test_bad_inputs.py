"""Bad inputs, property-based (issue 13.8, 13.9): the `hill-app train` options, the edits file and the data
loaders' files. Every case ends in one of:

* ``completed``: exit 0 and a finished run (summary.json);
* ``stopped``: exit 1 after training started and went non-finite (a valid but huge --lr): a 'stopped' journal
  record and a last line naming the epoch and the step;
* ``failed``: exit 1 after training started and failed otherwise (a large --lr that collapses the features, so
  no 2D view can be fitted): an 'error' journal record with the traceback, a last line naming the step;
* ``refused``: a non-zero exit with exactly one line on stderr that names the option or the file, shows the
  value (options) and says what is wrong in the user's terms (no Python exception names or internals), no
  traceback, and the folders left exactly as they were.

And "checked before training starts" means all of it: a script whose commands pass the check at the start
applies every one of them at its pause (none fails there).

Runs are in-process and short (digits, 1-2 epochs, CPU). Run with ``--hypothesis-show-statistics`` to see
how many cases ended which way.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from hill_app.cli import main
from hill_app.engine.journal import read_journal

# BAD_INPUTS_HUNT=N: N times the examples, a random seed each time (to look for new defects; the default run
# is derandomized, the same cases every time)
HUNT = int(os.environ.get("BAD_INPUTS_HUNT", "0"))
SETTINGS = dict(deadline=None, derandomize=not HUNT, suppress_health_check=[HealthCheck.too_slow], database=None)


def examples(n: int) -> int:
    return n * max(1, HUNT)


BASE = ["train", "--device", "cpu", "--seed", "0"]
# a refusal in the user's terms, never Python's own: no exception class names, no internals
PYTHON_WORDS = re.compile(
    r"\b[A-Z]\w*(Error|Exception)\b|NoneType|has no attribute|not subscriptable|unhashable|"
    r"int_max_str_digits|<class |object at 0x|positional argument|not supported between"
)


# ---------------------------------------------------------------- running and judging one case


def run_cli(argv: list[str]) -> tuple[int, str]:
    """main(argv) in this process: (exit code, stderr). argparse's own exits count as exit codes; warnings go
    to stderr as the CLI shows them (a data set's left-out subject is a line there)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: err.write(
            warnings.formatwarning(message, category, filename, lineno, line)
        )
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
    return rc, err.getvalue()


def folder_state(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
        for p in sorted(root.rglob("*"))
    }


def records(run: Path) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(read_journal(run / "journal.jsonl"))


def shows_value(line: str, value: str) -> bool:
    """The refusal shows the value as given (or as Python read it; long ones by a prefix or their size)."""
    v = value.strip()
    forms = {value, v, repr(value), repr(v)}
    for conv in (int, float):
        try:
            x = conv(v)
        except (ValueError, OverflowError):
            continue
        forms |= {str(x), repr(x)}
        if isinstance(x, float) and math.isfinite(x) and x == int(x):
            forms.add(str(int(x)))
    if any(f and f in line for f in forms):
        return True
    if "," in v and any(shows_value(line, part) for part in v.split(",") if part.strip()):
        return True  # a list (--pause-at) is shown by its offending items
    if len(v) > 40 and (v[:20] in line or "characters" in line or "bits" in line or "digits" in line):
        return True
    return v == "" and ("''" in line or "expected one argument" in line or "empty" in line)


TALLY: collections.Counter = collections.Counter()  # (test, ending) -> cases


@pytest.fixture(scope="module", autouse=True)
def tally():
    """BAD_INPUTS_TALLY=FILE: write how many cases ended which way, per test (the issue's closing figures)."""
    yield
    if os.environ.get("BAD_INPUTS_TALLY"):
        Path(os.environ["BAD_INPUTS_TALLY"]).write_text(
            json.dumps([[t, e, n] for (t, e), n in sorted(TALLY.items())], indent=1) + "\n"
        )


def judge(
    rc: int, err: str, run: Path, root: Path, before: dict[str, str], names: tuple[str, ...], value: str | None = None
) -> str:
    """Check one case's ending (see the module docstring) and return which it was."""
    ending = _judge(rc, err, run, root, before, names, value)
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split("[")[0].split(" ")[0]
    TALLY[(test, ending)] += 1
    return ending


def _judge(
    rc: int, err: str, run: Path, root: Path, before: dict[str, str], names: tuple[str, ...], value: str | None = None
) -> str:
    assert "Traceback" not in err, err[-3000:]
    if rc == 0:
        assert (run / "summary.json").is_file(), err[-2000:]
        summary = json.loads((run / "summary.json").read_text())
        assert not summary["stopped_early"], summary
        return "completed"
    lines = [x for x in err.splitlines() if x.strip()]
    if rc == 1 and (run / "journal.jsonl").is_file():
        recs = records(run)
        stopped = [r for r in recs if r["type"] == "stopped"]
        if stopped:  # a non-finite loss: the run paused itself and, headless, stopped
            assert len(stopped) == 1 and stopped[0]["cause"] == "nonfinite", (stopped, err[-2000:])
            want = f"error: training stopped at epoch {stopped[0]['epoch']}, step {stopped[0]['step']}: "
            assert lines[-1].startswith(want), (want, lines[-1])
            return "stopped"
        # training failed otherwise (e.g. a huge lr collapsed the features, so no 2D view can be fitted): the
        # journal holds the error and its traceback, the last line names the step and says so
        errors = [r for r in recs if r["type"] == "error"]
        assert len(errors) == 1, (recs[-3:], err[-2000:])
        step = errors[0]["step"]
        in_epoch = lines[-1].startswith("error: training stopped at epoch ") and f", step {step}: " in lines[-1]
        at_end = (
            lines[-1].startswith("error: training stopped at the end of epoch ") and f"(step {step}): " in lines[-1]
        )
        assert (in_epoch or at_end) and "record 'error'" in lines[-1], lines[-1]
        return "failed"
    assert rc == 2, (rc, err[-3000:])
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err[-3000:]}"
    line = lines[0]
    assert "error" in line, line
    assert any(n in line for n in names), (names, line)
    if value is not None:
        assert shows_value(line, value), (value[:80], line)
    assert not PYTHON_WORDS.search(line), line
    assert folder_state(root) == before, "a refused case changed the folder"
    return "refused"


@contextlib.contextmanager
def scratch():
    """A fresh folder per example (hypothesis runs many examples in one test call)."""
    d = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- the command line

NASTY = [
    "1e20",
    "-1e20",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1e400",
    "-1",
    "0",
    "-0",
    "0.0",
    "1e-320",
    "4.9e-324",
    "",
    " ",
    "abc",
    "0x10",
    "1_000",
    "\u0661\u0662",
    "9" * 5000,
    "9223372036854775808",
    "18446744073709551616",
    "1,2",
    "3.5",
    "None",
    "null",
    "true",
    "2 3",
    "+3",
    " 2 ",
    "1e20j",
    "0.999999",
    "1e-9",
    "-0.5",
    "1.0",
    "2",
    "1",
    "5",
    "0.5",
    "1796",
    "1797",
    "100000",
    "100001",
]
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
VALUES = st.one_of(st.sampled_from(NASTY), st.integers(-(2**70), 2**70).map(str), st.floats().map(repr), TEXT)
MODELS = ["digits_cnn", "airbench", "resnet18", "pamap_cnn1d", "nope", "", "DIGITS_CNN", "../digits_cnn"]
OPTIONS = {
    # option: (values, words its refusal must name)
    "--seed": (VALUES, ("seed",)),
    "--lr": (VALUES, ("lr",)),
    "--lam": (VALUES, ("lam",)),
    "--alpha": (VALUES, ("alpha",)),
    "--epochs": (VALUES, ("epochs",)),
    "--pause-at": (
        st.one_of(VALUES, st.lists(st.integers(-3, 2**66), max_size=3).map(lambda xs: ",".join(map(str, xs)))),
        ("pause-at", "pause_at"),
    ),
    "--model": (st.one_of(st.sampled_from(MODELS), TEXT), ("model",)),
    "--dataset": (
        st.one_of(st.sampled_from(["digits", "synthetic", "cifar10", "pamap2", "mnist", ""]), TEXT),
        ("dataset", "data_root", "--data-root"),
    ),
    "--val-size": (VALUES, ("val-size", "val_size")),
    "--train-size": (VALUES, ("train-size", "train_size")),
    "--batch-size": (VALUES, ("batch-size", "batch_size")),
    "--grad-clip": (VALUES, ("grad-clip", "grad_clip")),
}


def _cheap(option: str, value: str) -> bool:
    """Leave out values that would be valid and slow (many epochs, a huge model on the CPU)."""
    try:
        n = int(value)
    except ValueError:
        return True
    if option == "--epochs":
        return n <= 2
    return True


def check_option(option: str, value: str) -> str:
    values, names = OPTIONS[option]
    with scratch() as root:
        run = root / "run"
        epochs = [] if option == "--epochs" else ["--epochs", "2" if option == "--pause-at" else "1"]
        pause = [] if option == "--pause-at" else ["--pause-at", "none"]
        argv = [*BASE, *epochs, *pause, f"{option}={value}", "--out", str(run)]
        if option == "--model" and value == "resnet18":
            argv += ["--train-size", "100"]
        before = folder_state(root)
        rc, err = run_cli(argv)
        return judge(rc, err, run, root, before, names, value)


@settings(max_examples=examples(40), **SETTINGS)
@given(data=st.data(), option=st.sampled_from(sorted(OPTIONS)))
def test_train_option_values(data, option):
    value = data.draw(OPTIONS[option][0], label=option)
    assume(_cheap(option, value))
    event(f"{option}: {check_option(option, value)}")


# the cases the issue names, always run
NAMED = [
    ("--seed", "1e20"),
    ("--seed", "9" * 5000),
    ("--seed", "-1"),
    ("--seed", "18446744073709551616"),
    ("--model", "nope"),
    ("--model", "airbench"),
    ("--model", "pamap_cnn1d"),
    ("--lam", "nan"),
    ("--lam", "inf"),
    ("--lam", "-1"),
    ("--lr", "inf"),
    ("--lr", "nan"),
    ("--lr", "-0.1"),
    ("--lr", "1e20"),
    ("--alpha", "nan"),
    ("--alpha", "1.5"),
    ("--epochs", "0"),
    ("--epochs", "1e20"),
    ("--epochs", "100001"),
    ("--pause-at", "1"),
    ("--pause-at", "99999999999999999999"),
    ("--pause-at", "2,x"),
    ("--val-size", "1e20"),
    ("--val-size", "0"),
    ("--val-size", "1797"),
    ("--val-size", "5000"),
    ("--val-size", "nan"),
    ("--val-size", "1.0"),
    ("--train-size", "0"),
    ("--train-size", "-5"),
    ("--train-size", "99999999999"),
    ("--train-size", "inf"),
    ("--dataset", "cifar10"),
    ("--dataset", "pamap2"),
    ("--batch-size", "1"),
    ("--batch-size", "99999999999"),
    ("--grad-clip", "0"),
    ("--grad-clip", "nan"),
]


@pytest.mark.parametrize("option,value", NAMED, ids=[f"{o}={v[:20]}" for o, v in NAMED])
def test_named_bad_options(option, value):
    assert check_option(option, value) in ("refused", "stopped", "failed", "completed")


# ---------------------------------------------------------------- the edits file

# raw JSON tokens json.dumps cannot write: substituted after dumping
RAW = {
    "__NAN__": "NaN",
    "__INF__": "Infinity",
    "__NINF__": "-Infinity",
    "__BIG__": "9" * 5000,
    "__1E400__": "1e400",
    "__NEG_BIG__": "-" + "9" * 5000,
}
NUMBERS = st.one_of(
    st.sampled_from(
        [
            0,
            -1,
            1,
            2,
            0.5,
            1e-9,
            0.999,
            1.0,
            3,
            100,
            101,
            1e308,
            -1e308,
            2**63,
            2**64,
            99999999999,
            True,
            None,
            "1",
            "",
            [],
            {},
            [0.9, 0.99],
            *RAW,
        ]
    ),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
INDICES = st.one_of(
    st.lists(
        st.one_of(st.integers(-3, 1200), st.integers(1169, 2**70), st.sampled_from(["3", 2.0, None, True, "__BIG__"])),
        max_size=4,
    ),
    st.sampled_from([[], "0", 5, None]),
)
LAYERS = ["body.0", "body.1", "body.2", "dropout", "head", "embed", "nope", "", "body.99", "body"]
EDIT_OPS = ["move_center", "scale_spread", "move_points", "merge", "separate", "strategy", "frobnicate", "", None]
EDIT_KEYS = ["class", "to", "factor", "indices", "classes", "min_distance", "name", "strength", "op", "bogus"]
EDIT_VALUES = st.one_of(
    NUMBERS,
    st.lists(NUMBERS, max_size=3),
    INDICES,
    st.sampled_from(["compactness", "confused_pairs", "nope", [3, 5], [3, 3], [0.2, -0.1]]),
)
EDIT = st.fixed_dictionaries(
    {"op": st.sampled_from(EDIT_OPS)}, optional={k: EDIT_VALUES for k in EDIT_KEYS if k != "op"}
)
VALID_EDITS = [
    {"op": "move_center", "class": 3, "to": [1.2, -0.4]},
    {"op": "scale_spread", "class": 3, "factor": 0.6},
    {"op": "separate", "classes": [3, 5], "min_distance": 1.5},
    {"op": "merge", "classes": [1, 7]},
    {"op": "move_points", "indices": [5, 9], "to": [0.2, -0.1]},
    {"op": "strategy", "name": "compactness", "strength": 0.4},
]
EDITS = st.lists(st.one_of(st.sampled_from(VALID_EDITS), EDIT), max_size=3)
OPT_ARGS = st.dictionaries(
    st.sampled_from(["lr", "momentum", "weight_decay", "betas", "eps", "dampening", "group", "nesterov"]),
    NUMBERS,
    max_size=3,
)
CLASS_WEIGHTS = st.one_of(
    st.lists(NUMBERS, min_size=0, max_size=12),
    st.lists(st.floats(0, 5), min_size=10, max_size=10),
    st.dictionaries(st.sampled_from(["0", "3", "9", "10", "-1", "x", "1.5"]), NUMBERS, max_size=3),
    st.sampled_from([None, [0] * 10, {str(c): 0 for c in range(10)}, [1] * 9 + ["__NAN__"]]),
)


def commands(files: dict[str, str]):
    """(command, args) pairs: the kinds the issue names, valid and not."""
    path = st.sampled_from(sorted(files.values()))
    return st.one_of(
        st.tuples(st.just("update_dataset"), st.fixed_dictionaries({"action": st.just("drop"), "indices": INDICES})),
        st.tuples(st.just("update_dataset"), st.fixed_dictionaries({"action": st.just("add"), "path": path})),
        st.tuples(
            st.just("update_dataset"),
            st.dictionaries(
                st.sampled_from(["action", "path", "indices", "x"]),
                st.one_of(st.sampled_from(["add", "drop"]), path, INDICES),
                max_size=3,
            ),
        ),
        st.tuples(st.just("load_checkpoint"), st.fixed_dictionaries({"uuid": st.one_of(TEXT, st.just("0" * 32))})),
        st.tuples(
            st.just("update_dataset_runtime_hyperparameters"), st.fixed_dictionaries({"class_weights": CLASS_WEIGHTS})
        ),
        st.tuples(st.just("update_optimizer"), OPT_ARGS),
        st.tuples(st.just("set_latent_targets"), st.fixed_dictionaries({"edits": EDITS})),
        st.tuples(
            st.sampled_from(["set_alpha", "set_lambda"]),
            st.dictionaries(st.sampled_from(["alpha", "lam", "x"]), NUMBERS, max_size=2),
        ),
        st.tuples(st.just("set_grad_clip"), st.fixed_dictionaries({"max_norm": NUMBERS})),
        st.tuples(
            st.just("model_layer_parameter_update"),
            st.fixed_dictionaries(
                {
                    "layer_name": st.sampled_from(LAYERS),
                    "param_name": st.sampled_from(["p", "momentum", "x"]),
                    "value": NUMBERS,
                }
            ),
        ),
        st.tuples(
            st.just("model_layer_operation"),
            st.fixed_dictionaries(
                {
                    "layer_name": st.sampled_from(LAYERS),
                    "operation": st.sampled_from(["reset_parameters", "freeze", "unfreeze", "explode"]),
                }
            ),
        ),
        st.tuples(st.sampled_from(["save_checkpoint", "do_evaluate"]), st.just({})),
        st.tuples(st.sampled_from(["nope", "resume_training", "pause_training", "__import__", ""]), st.just({})),
    )


# commands a script may well send (so that many files pass the check, and each of those must then apply)
VALID_COMMANDS = st.one_of(
    st.tuples(
        st.just("update_dataset"),
        st.fixed_dictionaries(
            {"action": st.just("drop"), "indices": st.lists(st.integers(0, 1168), min_size=1, max_size=5)}
        ),
    ),
    st.tuples(
        st.just("update_optimizer"),
        st.fixed_dictionaries(
            {"lr": st.floats(1e-4, 1.0)}, optional={"momentum": st.floats(0, 1), "weight_decay": st.floats(0, 0.01)}
        ),
    ),
    st.tuples(
        st.just("update_dataset_runtime_hyperparameters"),
        st.fixed_dictionaries(
            {
                "class_weights": st.one_of(
                    st.lists(st.floats(0, 5), min_size=9, max_size=9).map(lambda w: [*w, 1.0]),
                    st.dictionaries(st.integers(0, 9).map(str), st.floats(0, 5), max_size=4),
                    st.none(),
                )
            }
        ),
    ),
    st.tuples(st.just("set_alpha"), st.fixed_dictionaries({"alpha": st.floats(0, 1)})),
    st.tuples(st.just("set_lambda"), st.fixed_dictionaries({"lam": st.floats(0, 100)})),
    st.tuples(st.just("set_grad_clip"), st.fixed_dictionaries({"max_norm": st.one_of(st.none(), st.floats(0.1, 10))})),
    st.tuples(
        st.just("model_layer_parameter_update"),
        st.sampled_from(
            [
                {"layer_name": "dropout", "param_name": "p", "value": 0.3},
                {"layer_name": "body.1", "param_name": "momentum", "value": 0.2},
            ]
        ),
    ),
    st.tuples(
        st.just("model_layer_operation"),
        st.fixed_dictionaries(
            {
                "layer_name": st.sampled_from(["body.0", "body.1", "head", "embed", "body"]),
                "operation": st.sampled_from(["reset_parameters", "freeze", "unfreeze"]),
            }
        ),
    ),
    st.tuples(
        st.just("set_latent_targets"),
        st.fixed_dictionaries({"edits": st.lists(st.sampled_from(VALID_EDITS), max_size=3)}),
    ),
)


def edits_documents(files: dict[str, str]):
    """An edits file's text: mostly well-formed JSON with bad values in it, sometimes not JSON at all."""
    cmd = st.one_of(commands(files), VALID_COMMANDS, VALID_COMMANDS).map(lambda c: {"command": c[0], "args": c[1]})
    entry = st.fixed_dictionaries(
        {"epoch": st.sampled_from([2] * 16 + [1, 3, -1, 0, True, "2", 2.0, None, "__BIG__"])},
        optional={
            "edits": st.one_of(EDITS, st.lists(st.sampled_from(VALID_EDITS), max_size=3)),
            "commands": st.lists(cmd, max_size=3),
            "note": TEXT,
        },
    )
    odd_key = st.sampled_from([{}] * 8 + [{"bogus": 1}, {"edits": "x", "commands": {}}])
    doc = st.fixed_dictionaries(
        {"interventions": st.lists(st.tuples(entry, odd_key).map(lambda t: {**t[0], **t[1]}), min_size=1, max_size=2)},
        optional={"description": TEXT},
    )

    def dump(d: dict) -> str:
        text = json.dumps(d)
        for k, v in RAW.items():
            text = text.replace(json.dumps(k), v)
        return text

    raw = st.one_of(
        st.integers(10, 300_000).map(lambda n: "[" * n + "]" * n),
        st.integers(10, 100_000).map(lambda n: '{"interventions": ' + "[" * n + "]" * n + "}"),
        st.integers(10, 50_000).map(lambda n: '{"a": ' * n + "1" + "}" * n),
        st.sampled_from(
            [
                "",
                " ",
                "null",
                "[]",
                "{}",
                '{"interventions": {}}',
                "\ufeff{}",
                "{'a': 1}",
                '{"interventions": [{"epoch": 2}]} trailing',
                '{"interventions": [' + "9" * 5000 + "]}",
            ]
        ),
        TEXT,
    )
    return st.one_of(doc.map(dump), doc.map(dump), doc.map(dump), raw)


def _files(root: Path) -> dict[str, str]:
    """Files an add may name: a good optdigits file, a bad one, an empty one, a missing one, a folder, devices."""
    good = root / "more.tra"
    rng = np.random.default_rng(0)
    good.write_text("".join(",".join(map(str, [*rng.integers(0, 17, 64), c])) + "\n" for c in range(10)))
    (root / "bad.tra").write_text("1,2,3\n")
    (root / "big-label.tra").write_text(",".join(["0"] * 64 + ["10"]) + "\n")
    (root / "empty.tra").write_text("")
    (root / "a-folder").mkdir()
    return {
        k: str(v)
        for k, v in {
            "good": good,
            "bad": root / "bad.tra",
            "label": root / "big-label.tra",
            "empty": root / "empty.tra",
            "missing": root / "missing.tra",
            "folder": root / "a-folder",
            "zero": Path("/dev/zero"),
            "proc": Path("/proc/self/status"),
        }.items()
    }


def check_edits_text(text: str, root: Path) -> str:
    run = root / "run"
    edits = root / "edits.json"
    edits.write_bytes(text.encode("utf-8", "surrogatepass"))
    before = folder_state(root)
    rc, err = run_cli([*BASE, "--epochs", "2", "--pause-at", "2", "--edits", str(edits), "--out", str(run)])
    outcome = judge(rc, err, run, root, before, (str(edits),))
    if outcome == "completed":
        # checked before training: whatever passed the check was applied at the pause, none of it failed there
        failed = [
            (r["command"], r.get("reason"))
            for r in records(run)
            if r["type"] == "command" and r.get("source") == "script" and r.get("status") == "failed"
        ]
        assert not failed, failed
    return outcome


@settings(max_examples=examples(40), **SETTINGS)
@given(data=st.data())
def test_edits_files(data):
    with scratch() as root:
        text = data.draw(edits_documents(_files(root)).map(lambda t: t.replace(str(root), "{ROOT}")), label="edits")
        event(f"edits file: {check_edits_text(text.replace('{ROOT}', str(root)), root)}")


NAMED_EDITS = {
    "deeply-nested": "[" * 200_000 + "]" * 200_000,
    "5000-digit-epoch": '{"interventions": [{"epoch": ' + "9" * 5000 + "}]}",
    "5000-digit-index": '{"interventions": [{"epoch": 2, "commands": [{"command": "update_dataset", "args": '
    '{"action": "drop", "indices": [' + "9" * 5000 + "]}}]}]}",
    "wrong-type-edits": '{"interventions": [{"epoch": 2, "edits": {"op": "merge"}}]}',
    "unknown-op": '{"interventions": [{"epoch": 2, "edits": [{"op": "frobnicate"}]}]}',
    "unknown-op-inside-set_latent_targets": '{"interventions": [{"epoch": 2, "commands": [{"command": '
    '"set_latent_targets", "args": {"edits": [{"op": "frobnicate"}]}}]}]}',
    "nan-class-weights": '{"interventions": [{"epoch": 2, "commands": [{"command": '
    '"update_dataset_runtime_hyperparameters", "args": {"class_weights": '
    '[1, 1, 1, 1, 1, 1, 1, 1, 1, NaN]}}]}]}',
    "all-zero-class-weights-by-class": '{"interventions": [{"epoch": 2, "commands": [{"command": '
    '"update_dataset_runtime_hyperparameters", "args": {"class_weights": '
    + json.dumps({str(c): 0 for c in range(10)})
    + '}}]}]}',
    "betas-for-sgd": '{"interventions": [{"epoch": 2, "commands": [{"command": "update_optimizer", '
    '"args": {"betas": [0.9, 0.99]}}]}]}',
    "drop-out-of-range": '{"interventions": [{"epoch": 2, "commands": [{"command": "update_dataset", '
    '"args": {"action": "drop", "indices": [99999999999]}}]}]}',
    "unknown-checkpoint": '{"interventions": [{"epoch": 2, "commands": [{"command": "load_checkpoint", '
    '"args": {"uuid": "0123456789abcdef0123456789abcdef"}}]}]}',
    "missing-add-file": '{"interventions": [{"epoch": 2, "commands": [{"command": "update_dataset", '
    '"args": {"action": "add", "path": "{ROOT}/missing.tra"}}]}]}',
    "unreadable-add-file": '{"interventions": [{"epoch": 2, "commands": [{"command": "update_dataset", '
    '"args": {"action": "add", "path": "{ROOT}/bad.tra"}}]}]}',
    "add-a-device": '{"interventions": [{"epoch": 2, "commands": [{"command": "update_dataset", '
    '"args": {"action": "add", "path": "/dev/zero"}}]}]}',
    "reset-a-layer-without-parameters": '{"interventions": [{"epoch": 2, "commands": [{"command": '
    '"model_layer_operation", "args": {"layer_name": "dropout", '
    '"operation": "reset_parameters"}}]}]}',
    "momentum-0-for-nesterov-sgd": '{"interventions": [{"epoch": 2, "commands": [{"command": "update_optimizer", '
    '"args": {"momentum": 0}}]}]}',
    "good-add-then-drop-an-added-sample": '{"interventions": [{"epoch": 2, "commands": [{"command": "update_dataset", '
    '"args": {"action": "add", "path": "{ROOT}/more.tra"}}, {"command": '
    '"update_dataset", "args": {"action": "drop", "indices": [1170]}}]}]}',
}


@pytest.mark.parametrize("name", list(NAMED_EDITS))
def test_named_bad_edits_files(name, tmp_path):
    _files(tmp_path)
    outcome = check_edits_text(NAMED_EDITS[name].replace("{ROOT}", str(tmp_path)), tmp_path)
    assert outcome == ("completed" if name.startswith("good-") else "refused")


# ---------------------------------------------------------------- the data loaders' files: PAMAP2


def _pamap2_tables() -> dict[int, str]:
    import test_pamap2  # its writer of subject files in the exact on-disk format

    return {s: test_pamap2.standard_subject(s)[1] for s in test_pamap2.SUBJECTS}


TOKENS = [
    "inf",
    "-inf",
    "Infinity",
    "+Infinity",
    "1e400",
    "-1e400",
    "NaN",
    "nan",
    "1e300",
    "-1e7",
    "abc",
    "1,5",
    "0x10",
    "1e",
    "--1",
    "\u0661",
    "1e-400",
    "9" * 400,
    "1_0",
    "True",
]


@st.composite
def pamap2_damage(draw):
    """(subject, what was done, a function that does it to the Protocol folder)."""
    tables = _pamap2_tables()
    subject = draw(st.sampled_from(sorted(tables)))
    kind = draw(
        st.sampled_from(
            [
                "cell",
                "cell",
                "cell",
                "drop-column",
                "extra-column",
                "truncate",
                "garbage",
                "empty",
                "delete",
                "binary",
                "only-activity-0",
                "reversed-time",
                "crlf",
            ]
        )
    )
    lines = tables[subject].splitlines(keepends=True)
    row = draw(st.integers(0, len(lines) - 1))
    col = draw(st.integers(0, 53))
    token = draw(st.one_of(st.sampled_from(TOKENS), TEXT.filter(lambda t: t.strip() and " " not in t)))
    cut = draw(st.integers(0, len(tables[subject])))
    noise = draw(st.binary(min_size=1, max_size=64))

    def apply(protocol: Path) -> None:
        path = protocol / f"subject{subject}.dat"
        if kind == "delete":
            path.unlink()
            return
        out = list(lines)
        parts = out[row].split()
        if kind == "cell":
            parts[col] = token
        elif kind == "drop-column":
            del parts[col]
        elif kind == "extra-column":
            parts.insert(col, "1.0")
        out[row] = " ".join(parts) + "\n"
        text = "".join(out)
        if kind == "only-activity-0":
            text = "".join(" ".join([p[0], "0", *p[2:]]) + "\n" for p in (x.split() for x in lines))
        elif kind == "reversed-time":
            stamps = [x.split()[0] for x in lines][::-1]
            text = "".join(" ".join([t, *x.split()[1:]]) + "\n" for t, x in zip(stamps, lines))
        elif kind == "crlf":
            text = text.replace("\n", "\r\n")
        data = text.encode("utf-8", "surrogatepass")
        if kind == "truncate":
            data = data[:cut]
        elif kind == "garbage":
            data = data[:cut] + noise + data[cut:]
        elif kind == "empty":
            data = b""
        elif kind == "binary":
            data = noise * 50
        path.write_bytes(data)

    return subject, kind, apply


def check_pamap2(subject: int, apply, root: Path) -> str:
    protocol = root / "data" / "Protocol"
    protocol.mkdir(parents=True)
    for s, text in _pamap2_tables().items():
        (protocol / f"subject{s}.dat").write_text(text)
    apply(protocol)
    run = root / "run"
    before = folder_state(root)
    rc, err = run_cli(
        [
            *BASE,
            "--dataset",
            "pamap2",
            "--data-root",
            str(root / "data"),
            "--epochs",
            "1",
            "--pause-at",
            "none",
            "--out",
            str(run),
        ]
    )
    return judge(rc, err, run, root, before, (f"subject{subject}", "PAMAP2"))


@settings(max_examples=examples(30), **SETTINGS)
@given(damage=pamap2_damage())
def test_pamap2_files(damage):
    subject, kind, apply = damage
    with scratch() as root:
        event(f"PAMAP2 {kind}: {check_pamap2(subject, apply, root)}")


# ---------------------------------------------------------------- the data loaders' files: CIFAR-10


def write_cifar10(folder: Path, counts: list[int], n_test: int, classes: list[int], seed: int = 0) -> None:
    """A CIFAR-10 folder in the official format: ``counts`` images in data_batch_1..5, labels from ``classes``."""
    import test_cifar10  # its writer of the official (Python 2 pickle) batch format

    rng = np.random.default_rng(seed)
    files = {}
    first = 0
    for b, n in enumerate(counts):
        files[f"data_batch_{b + 1}"] = {
            b"batch_label": f"training batch {b + 1} of 5".encode(),
            b"labels": [int(rng.choice(classes)) for _ in range(n)],
            b"data": test_cifar10._image_rows(first, n, rng).reshape(n, 3072),
            b"filenames": [b"x.png"] * n,
        }
        first += n
    files["test_batch"] = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(rng.choice(classes)) for _ in range(n_test)],
        b"data": test_cifar10._image_rows(200, n_test, rng).reshape(n_test, 3072),
        b"filenames": [b"t.png"] * n_test,
    }
    files["batches.meta"] = {
        b"num_cases_per_batch": max(counts),
        b"label_names": test_cifar10.CLASSES,
        b"num_vis": 3072,
    }
    test_cifar10._write_folder(folder, files)


@st.composite
def cifar10_folders(draw):
    """A CIFAR-10 folder with few images (per batch, per class), and the options to train on it."""
    counts = draw(st.lists(st.integers(0, 12), min_size=5, max_size=5))
    n_test = draw(st.integers(0, 6))
    classes = draw(st.sampled_from([list(range(10)), [0, 1], [3]]))
    seed = draw(st.integers(0, 2**16))
    val = draw(st.sampled_from([None, None, "1", "5", "0.5", "0.9", "100", "0.01", "49"]))
    train = draw(st.sampled_from([None, None, None, "1", "3", "0.5"]))
    options = ([f"--val-size={val}"] if val else []) + ([f"--train-size={train}"] if train else [])
    options += draw(st.sampled_from([[], [], ["--projection", "lda"]]))
    return counts, n_test, classes, seed, options


def check_cifar10(case, root: Path) -> str:
    counts, n_test, classes, seed, options = case
    data = root / "data" / "cifar-10-batches-py"
    write_cifar10(data, counts, n_test, classes, seed)
    run = root / "run"
    before = folder_state(root)
    rc, err = run_cli(
        [
            *BASE,
            "--dataset",
            "cifar10",
            "--data-root",
            str(data),
            "--model",
            "digits_cnn",
            "--epochs",
            "1",
            "--pause-at",
            "none",
            *options,
            "--out",
            str(run),
        ]
    )
    return judge(
        rc,
        err,
        run,
        root,
        before,
        ("CIFAR-10", str(data), "val_size", "train_size", "--val-size", "--train-size", "projection"),
    )


@settings(max_examples=examples(30), **SETTINGS)
@given(case=cifar10_folders())
def test_cifar10_folders_with_few_images(case):
    with scratch() as root:
        event(f"CIFAR-10 ({'under' if sum(case[0]) < 20 else 'over'} 20 training images): {check_cifar10(case, root)}")


NAMED_CIFAR10 = {  # (counts, test images, classes, options, ending)
    "fewer-images-than-the-validation-split": ([2] * 5, 5, list(range(10)), ["--val-size", "49"], "refused"),
    "no-training-images": ([0] * 5, 5, list(range(10)), [], "refused"),
    "one-image-left-to-train-on": ([6] * 5, 5, list(range(10)), ["--train-size", "1"], "refused"),
    "two-images-left-for-the-view": ([1, 3, 10, 5, 2], 3, [3], ["--val-size", "5", "--train-size", "2"], "refused"),
    "lda-with-two-classes": ([6] * 5, 5, [0, 1], ["--projection", "lda"], "refused"),
    "no-test-images": ([6] * 5, 0, list(range(10)), [], "refused"),
    "one-class": ([6] * 5, 5, [3], [], "completed"),
    "thirty-images": ([6] * 5, 5, list(range(10)), [], "completed"),
}


@pytest.mark.parametrize("name", list(NAMED_CIFAR10))
def test_named_cifar10_folders(name, tmp_path):
    counts, n_test, classes, options, ending = NAMED_CIFAR10[name]
    assert check_cifar10((counts, n_test, classes, 0, options), tmp_path) == ending


# ---------------------------------------------------------------- a damaged snapshots.h5, then --resume

_STOPPED: dict[str, Path] = {}


def stopped_run() -> tuple[Path, dict]:
    """A run stopped in epoch 3 (after a pause, with snapshots), kept for the module, and the summary of the
    same run uninterrupted."""
    if "run" not in _STOPPED:
        from hill_app.engine.config import RunConfig
        from hill_app.engine.events import EventChannel
        from hill_app.engine.session import TrainingSession

        base = Path(tempfile.mkdtemp(prefix="bad-inputs-stopped-"))
        cfg = RunConfig(epochs=3, pause_at=[2], seed=0, device="cpu", checkpoint_every=1)
        assert (
            run_cli([*BASE, "--epochs", "3", "--pause-at", "2", "--checkpoint-every", "1", "--out", str(base / "ref")])[
                0
            ]
            == 0
        )
        events = EventChannel()
        box = {}
        events.subscribe(
            lambda ev: ev.kind == "step" and ev.data["step"] == 45 and box["s"].submit("stop_training", {})
        )
        box["s"] = TrainingSession(
            cfg, base / "run", events=events, pause_handler=lambda s, info: s.submit("resume_training", {})
        )
        assert box["s"].run()["stopped_early"]
        _STOPPED["run"], _STOPPED["ref"] = base / "run", base / "ref"
    return _STOPPED["run"], json.loads((_STOPPED["ref"] / "summary.json").read_text())


def check_snapshots(damage, root: Path) -> str:
    src, ref = stopped_run()
    run = root / "run"
    shutil.copytree(src, run)
    snap = run / "snapshots.h5"
    damage(snap)
    before = folder_state(root)
    rc, err = run_cli(["train", "--resume", str(run)])
    outcome = judge(rc, err, run, root, before, ("snapshots.h5",))
    if outcome == "completed":  # the snapshots are for analysis: the training is the same
        summary = json.loads((run / "summary.json").read_text())
        assert summary["test_accuracy"] == ref["test_accuracy"] and summary["epochs"] == 3
    return outcome


@st.composite
def snapshot_damage(draw):
    size = stopped_run()[0].joinpath("snapshots.h5").stat().st_size
    kind = draw(st.sampled_from(["truncate", "flip", "flip", "zero-block", "append", "random", "delete", "empty"]))
    at = draw(st.integers(0, size - 1))
    flips = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)), min_size=1, max_size=8))
    length = draw(st.integers(1, 4096))

    def damage(p: Path) -> None:
        data = bytearray(p.read_bytes())
        if kind == "delete":
            p.unlink()
            return
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip":
            for i, x in flips:
                data[i] ^= x
        elif kind == "zero-block":
            data[at : at + length] = bytes(len(data[at : at + length]))
        elif kind == "append":
            data += os.urandom(length)
        elif kind == "random":
            data = bytearray(os.urandom(len(data)))
        elif kind == "empty":
            data = bytearray()
        p.write_bytes(bytes(data))

    return kind, damage


@settings(max_examples=examples(25), **SETTINGS)
@given(case=snapshot_damage())
def test_resume_with_a_damaged_snapshots_file(case):
    kind, damage = case
    with scratch() as root:
        event(f"snapshots.h5 {kind}: {check_snapshots(damage, root)}")
