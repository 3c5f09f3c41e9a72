"""`hill-app compare`: arms, controls, paired results, the page, resume and parallel workers, on real
digits runs (a few epochs)."""

import argparse
import csv
import json
from pathlib import Path

import pytest

from hill_app.engine.journal import read_journal
from hill_app.studies import compare
from hill_app.studies.compare import CompareError, build_arms, early_pauses, parse_arm, parse_seeds, split_top

PAUSES = [25, 30, 35, 40]


def run_compare(*argv):
    p = argparse.ArgumentParser(prog="hill-app compare")
    compare.add_arguments(p)
    return compare.run(p.parse_args([str(a) for a in argv]))


def rows(out):
    with open(Path(out) / "runs.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_arm_grammar():
    assert split_top("a,b[pause_at=10,15;alpha=0],c+d:0.2") == ["a", "b[pause_at=10,15;alpha=0]", "c+d:0.2"]
    a = parse_arm("confused_pairs[ce_weight=full;edit_at=last2]", PAUSES)
    assert (a.kind, a.spec, a.overrides, a.edit_at) == (
        "strategy",
        "confused_pairs:0.5",
        {"ce_weight": "full"},
        [35, 40],
    )
    assert a.name == "confused_pairs:0.5[ce_weight=full;edit_at=last2]"
    e = parse_arm("null[pause_at=early]", PAUSES)
    assert e.kind == "null" and e.overrides["pause_at"] == [13, 18, 23, 28] == early_pauses(PAUSES)
    assert early_pauses([4, 7, 10]) == [2, 5, 8]
    m = parse_arm("selective_compactness:0.3+misplaced_points[label=mix]", PAUSES)
    assert m.spec == "selective_compactness:0.3+misplaced_points:0.5" and m.name == "mix"
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]


@pytest.mark.parametrize(
    "text, msg",
    [
        ("tighten", "unknown 'tighten'"),
        ("compactness[alpha=high]", "expected a number"),
        ("compactness[ce_weight=half]", "blend or full"),
        ("compactness[edit_at=33]", "not pauses of this arm"),
        ("compactness[speed=2]", "unknown option"),
        ("missing.json", "no such edits file"),
        ("compactness[alpha=0", "unbalanced"),
    ],
)
def test_bad_arms_name_the_problem(text, msg):
    with pytest.raises(CompareError, match=msg):
        build_arms(text, "none", PAUSES)


def test_controls_expand_for_plain_arms_only():
    arms = build_arms("compactness,misplaced_points[edit_at=last]", "null,alpha0,full,early", PAUSES)
    names = [a.name for a in arms]
    assert names == [
        "baseline",
        "compactness:0.5",
        "misplaced_points:0.5[edit_at=last]",
        "null",
        "compactness:0.5[alpha=0]",
        "compactness:0.5[ce_weight=full]",
        "null[ce_weight=full]",
        "compactness:0.5[pause_at=early]",
    ]
    with pytest.raises(CompareError, match="unknown ramp"):
        build_arms("compactness", "ramp", PAUSES)


def test_seeds_and_settings_errors(tmp_path):
    assert run_compare("digits_short", "--strategies", "compactness", "--seeds", "3-1", "--out", tmp_path) == 2
    assert run_compare("nope.toml", "--strategies", "compactness", "--out", tmp_path) == 2
    assert run_compare("digits_short", "--strategies", "compactness", "--set", "speed=3", "--out", tmp_path) == 2
    assert not (tmp_path / "runs.csv").exists()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """baseline, compactness, null, the alpha-0 control and an empty edits file on a moved schedule."""
    d = tmp_path_factory.mktemp("cmp")
    empty = d / "empty.json"
    empty.write_text(json.dumps({"interventions": []}))
    out = d / "out"
    code = run_compare(
        "digits_short",
        "--strategies",
        f"compactness,{empty}[pause_at=early;label=no edits, early]",
        "--controls",
        "null,alpha0",
        "--seeds",
        "0-1",
        "--set",
        "epochs=4",
        "--set",
        "pause_at=2,3",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--method",
        "both",
        "--out",
        out,
    )
    return code, out


def test_paired_results_and_exact_controls(small):
    code, out = small
    assert code == 0
    r = rows(out)
    arms = ["baseline", "compactness:0.5", "no edits, early", "null", "compactness:0.5[alpha=0]"]
    assert [x["arm"] for x in r] == [a for a in arms for _ in (0, 1)]
    assert all(x["status"] == "ok" for x in r)
    by = {(x["arm"], int(x["seed"])): x for x in r}
    for s in (0, 1):
        base = float(by[("baseline", s)]["test_accuracy"])
        # alpha 0 with the same edits, and pauses on another schedule without edits: exactly the baseline
        assert float(by[("compactness:0.5[alpha=0]", s)]["gain"]) == 0.0
        assert float(by[("no edits, early", s)]["gain"]) == 0.0
        g = float(by[("compactness:0.5", s)]["gain"])
        assert g == pytest.approx(float(by[("compactness:0.5", s)]["test_accuracy"]) - base)
        assert int(by[("compactness:0.5", s)]["commits"]) == 2 and int(by[("null", s)]["commits"]) == 2
        assert int(by[("baseline", s)]["commits"]) == 0


def test_summary_page_and_json(small):
    _, out = small
    with open(out / "summary.csv", newline="") as f:
        summ = list(csv.DictReader(f))
    methods = {x["method"] for x in summ}
    assert methods == {"paired t", "percentile bootstrap (10000 resamples, seed 0)"}
    a0 = next(x for x in summ if x["arm"] == "compactness:0.5[alpha=0]" and x["method"] == "paired t")
    assert float(a0["gain_mean"]) == 0.0 and a0["n_pairs"] == "2"
    page = (out / "index.html").read_text()
    assert "paired t" in page and "includes zero" in page and "<svg" in page and "seed 1" in page
    doc = json.loads((out / "compare.json").read_text())
    assert doc["seeds"] == [0, 1] and doc["config"]["epochs"] == 4 and doc["config"]["pause_at"] == [2, 3]
    assert {a["name"] for a in doc["arms"]} >= {"baseline", "null"}


def test_each_run_states_its_arm_in_config_and_journal(small):
    _, out = small
    run = out / "runs" / "compactness_0.5_alpha=0_" / "seed1"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["alpha"] == 0.0 and cfg["seed"] == 1
    recs = list(read_journal(run / "journal.jsonl"))
    arm = next(r for r in recs if r["type"] == "compare_arm")
    assert arm["arm"]["overrides"] == {"alpha": 0.0}
    commits = [
        r for r in recs if r["type"] == "command" and r["command"] == "set_latent_targets" and r["status"] == "success"
    ]
    assert len(commits) == 2 and commits[0]["source"] == "script:compare:compactness:0.5[alpha=0]"
    targets = [r for r in recs if r["type"] == "targets"]
    assert len(targets) == 2 and targets[0]["edits"][0]["origin"] == "suggested:compactness"
    assert not (run / "checkpoints").exists()
    early = json.loads((out / "runs" / "no_edits_early" / "seed0" / "config.json").read_text())
    assert early["pause_at"] == [2] and early["epochs"] == 4  # early_pauses([2, 3]) keeps what stays >= 2


def test_resume_skips_finished_runs_and_a_second_run_is_refused(small, capsys):
    _, out = small
    before = (out / "runs.csv").read_text()
    assert (
        run_compare(
            "digits_short",
            "--strategies",
            "compactness",
            "--seeds",
            "0-1",
            "--set",
            "epochs=4",
            "--set",
            "pause_at=2,3",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--out",
            out,
        )
        == 2
    )
    assert "already holds a comparison" in capsys.readouterr().err
    assert (out / "runs.csv").read_text() == before


def test_time_budget_stops_starting_runs(tmp_path):
    out = tmp_path / "o"
    code = run_compare(
        "digits_short",
        "--strategies",
        "compactness",
        "--seeds",
        "0",
        "--set",
        "epochs=3",
        "--set",
        "pause_at=2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--time-budget",
        "0",
        "--out",
        out,
    )
    assert code == 0
    page = (out / "index.html").read_text()
    assert "0 of 3 runs finished" in page and "time-budget" in page


def test_refused_edits_fail_the_run_instead_of_passing_as_a_baseline(tmp_path):
    bad = tmp_path / "bad.json"  # digits' view set is the whole training split: index 5000 does not exist
    bad.write_text(
        json.dumps({"interventions": [{"epoch": 2, "edits": [{"op": "move_points", "indices": [5000], "to": [0, 0]}]}]})
    )
    code = run_compare(
        "digits_short",
        "--strategies",
        bad,
        "--seeds",
        "0",
        "--set",
        "epochs=3",
        "--set",
        "pause_at=2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        tmp_path / "o",
    )
    assert code == 2  # caught before any run: the file is checked against the real view set


@pytest.mark.slow
def test_parallel_workers_give_the_same_numbers_as_in_process(small, tmp_path):
    _, out0 = small
    out = tmp_path / "par"
    code = run_compare(
        "digits_short",
        "--strategies",
        "compactness",
        "--controls",
        "none",
        "--seeds",
        "1",
        "--set",
        "epochs=4",
        "--set",
        "pause_at=2,3",
        "--workers",
        "2",
        "--device",
        "cpu",
        "--out",
        out,
    )
    assert code == 0
    serial = {(x["arm"], x["seed"]): x["test_accuracy"] for x in rows(out0)}
    par = {(x["arm"], x["seed"]): x["test_accuracy"] for x in rows(out)}
    assert par == {k: serial[k] for k in par} and len(par) == 2
