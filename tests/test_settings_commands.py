"""Settings commands (lr, alpha, clipping, pause, stop) apply between the batches of the end-of-epoch work,
in order with the other commands, and a replay or resume applies them at the same point."""

from pathlib import Path

from hill_app.engine.commands import END_OF_EPOCH, SPECS
from hill_app.engine.config import RunConfig
from hill_app.engine.journal import read_journal
from hill_app.engine.replay import replay_run
from hill_app.engine.session import TrainingSession


def at_last_step_of(epoch: int, session: TrainingSession, send) -> None:
    """Call ``send(session)`` from the training thread right after the last step of ``epoch`` (listeners run
    synchronously on the emitting thread), so the commands are queued when the end-of-epoch work starts."""
    done = {"sent": False}

    def listener(ev) -> None:
        d = ev.data
        if ev.kind == "step" and d["epoch"] == epoch and d["index_in_epoch"] == d["steps_in_epoch"]:
            if not done["sent"]:
                done["sent"] = True
                send(session)

    session.events.subscribe(listener)


def command_records(run: Path, name: str, status: str = "running") -> list[dict]:
    return [
        r
        for r in read_journal(run / "journal.jsonl")
        if r["type"] == "command" and r["command"] == name and r["status"] == status
    ]


def seq_of(run: Path, type_: str, **match) -> int:
    for r in read_journal(run / "journal.jsonl"):
        if r["type"] == type_ and all(r.get(k) == v for k, v in match.items()):
            return r["seq"]
    raise AssertionError(f"no {type_} record {match}")


def test_the_settings_commands_are_the_ones_that_touch_neither_model_nor_data():
    settings = {n for n, s in SPECS.items() if s.applies == "settings"}
    assert settings == {
        "update_optimizer",
        "set_grad_clip",
        "set_alpha",
        "set_lambda",
        "pause_training",
        "stop_training",
    }


def test_a_settings_command_applies_during_the_end_of_epoch_work_and_the_epoch_reports_what_it_trained_with(
    tmp_path,
):
    run = tmp_path / "run"
    s = TrainingSession(RunConfig(epochs=3, pause_at=[], seed=2, device="cpu"), run)
    old_lr = s.optimizer.param_groups[0]["lr"]
    at_last_step_of(2, s, lambda s: s.submit("update_optimizer", {"lr": 0.013}, source="script"))
    s.run()
    (rec,) = command_records(run, "update_optimizer")
    assert rec["phase"] == END_OF_EPOCH and rec["epoch"] == 2
    # applied before the epoch's evaluation was journaled, yet the epoch reports the lr it trained with
    assert rec["seq"] < seq_of(run, "epoch", epoch=2)
    assert [r["lr"] for r in read_journal(run / "journal.jsonl") if r["type"] == "epoch"] == [old_lr, old_lr, 0.013]


def test_another_command_first_in_the_queue_keeps_the_order(tmp_path):
    """A checkpoint asked for before an lr change must not see the new lr: the settings command waits."""
    run = tmp_path / "run"
    s = TrainingSession(RunConfig(epochs=3, pause_at=[], seed=2, device="cpu"), run)

    def send(s):
        s.submit("save_checkpoint", {"note": "before the lr change"}, source="script")
        s.submit("update_optimizer", {"lr": 0.013}, source="script")

    at_last_step_of(2, s, send)
    s.run()
    (ck,) = command_records(run, "save_checkpoint")
    (lr,) = command_records(run, "update_optimizer")
    assert "phase" not in ck and "phase" not in lr
    assert ck["seq"] < lr["seq"] and ck["step"] == lr["step"]
    assert seq_of(run, "epoch", epoch=2) < ck["seq"]


def forked_run(run: Path) -> None:
    """The lr changes during the end of epoch 2, whose checkpoint then holds it; a later fork loads that
    checkpoint, so the branch trains with the lr the checkpoint captured."""
    s = TrainingSession(RunConfig(epochs=4, pause_at=[4], checkpoint_every=1, seed=4, device="cpu"), run)
    at_last_step_of(2, s, lambda s: s.submit("update_optimizer", {"lr": 0.005}, source="script"))

    def handler(s, info):
        if s.branch == "main":  # the branch pauses before its epoch 4 too: fork once
            s.submit("update_optimizer", {"lr": 0.2})
            ck2 = next(n for n in s.tree.nodes if n["epoch"] == 2)
            s.submit("load_checkpoint", {"uuid": ck2["uuid"], "branch_name": "from-2"})
        s.submit("resume_training", {})

    s.pause_handler = handler
    s.run()


def test_replay_applies_them_at_the_same_point_so_a_fork_from_that_checkpoint_matches(tmp_path):
    run = tmp_path / "run"
    forked_run(run)
    recs = list(read_journal(run / "journal.jsonl"))
    branch_epochs = [r for r in recs if r["type"] == "epoch" and r["branch"] == "from-2"]
    assert [r["lr"] for r in branch_epochs] == [0.005, 0.005]  # the checkpoint's lr, not the 0.2 before the fork
    _, diffs = replay_run(run, tmp_path / "replay")
    assert diffs == []
    (rep,) = command_records(tmp_path / "replay", "update_optimizer", "running")[:1]
    assert rep["phase"] == END_OF_EPOCH


class Crash(BaseException):
    """Ends the run where it is raised, as a kill would (run() journals an error record and re-raises)."""


def test_resume_after_a_crash_re_applies_them_at_the_same_point(tmp_path):
    """Crash right after a settings command applied during the end of epoch 2 (before that epoch's record and
    checkpoint), resume, and compare with the uninterrupted run."""
    cfg = RunConfig(epochs=4, pause_at=[], checkpoint_every=1, seed=4, device="cpu")
    ref = tmp_path / "ref"
    s = TrainingSession(cfg, ref)
    at_last_step_of(2, s, lambda s: s.submit("set_alpha", {"alpha": 0.25}, source="script"))
    s.run()

    run = tmp_path / "run"
    s = TrainingSession(cfg, run)
    at_last_step_of(2, s, lambda s: s.submit("set_alpha", {"alpha": 0.25}, source="script"))

    def crash(ev) -> None:
        if ev.kind == "command" and ev.data["command"] == "set_alpha" and ev.data["status"] == "success":
            raise Crash()

    s.events.subscribe(crash)
    try:
        s.run()
    except Crash:
        pass
    assert [r["epoch"] for r in read_journal(run / "journal.jsonl") if r["type"] == "epoch"] == [1]
    TrainingSession(RunConfig.load(run / "config.json"), run, resume=True).run()
    (again,) = [r for r in command_records(run, "set_alpha") if r["source"] == "replay"]
    assert again["phase"] == END_OF_EPOCH and again["epoch"] == 2
    metrics = [
        {k: v for k, v in r.items() if k not in ("seq", "time", "epoch_seconds", "images_per_s")}
        for p in (ref, run)
        for r in read_journal(p / "journal.jsonl")
        if r["type"] == "epoch"
    ]
    assert metrics[4:] == metrics[:4] and len(metrics) == 8


def during_the_evaluation_of(epoch: int, session: TrainingSession, send) -> None:
    """Call ``send(session)`` when the validation pass of ``epoch``'s end starts, so the command arrives in the
    middle of the end-of-epoch work (after the first settings point has passed)."""
    real = session.evaluate
    done = {"sent": False}

    def evaluate(split="val", between=None):
        if split == "val" and session.in_end_of_epoch and session.epoch == epoch and not done["sent"]:
            done["sent"] = True
            send(session)
        return real(split, between)

    session.evaluate = evaluate  # type: ignore[method-assign]


def reset_head(s: TrainingSession) -> None:
    s.submit("model_layer_operation", {"layer_name": "head", "operation": "reset_parameters"}, source="script")


def test_a_step_command_during_the_evaluation_applies_at_once_and_the_epoch_is_evaluated_again(tmp_path):
    """Resetting the classifier mid-evaluation: applied before the epoch's record (phase end_of_epoch), and
    that record measures the reset model, as a replay (which applies it before its one evaluation) does too."""
    cfg = RunConfig(epochs=4, pause_at=[], checkpoint_every=1, seed=6, device="cpu")
    run = tmp_path / "run"
    s = TrainingSession(cfg, run)
    during_the_evaluation_of(3, s, reset_head)
    s.run()
    (rec,) = command_records(run, "model_layer_operation")
    assert rec["phase"] == END_OF_EPOCH and rec["epoch"] == 3 and rec["seq"] < seq_of(run, "epoch", epoch=3)
    acc = {r["epoch"]: r["val_accuracy"] for r in read_journal(run / "journal.jsonl") if r["type"] == "epoch"}
    assert acc[2] > 0.8 and acc[3] < 0.5, acc  # epoch 3's record is of the reset head, not of the trained one
    _, diffs = replay_run(run, tmp_path / "replay")
    assert diffs == []


def test_a_checkpoint_asked_for_during_the_evaluation_waits_for_the_epoch_record(tmp_path):
    run = tmp_path / "run"
    s = TrainingSession(RunConfig(epochs=3, pause_at=[], seed=2, device="cpu"), run)
    during_the_evaluation_of(2, s, lambda s: s.submit("save_checkpoint", {"note": "mid"}, source="script"))
    s.run()
    (ck,) = command_records(run, "save_checkpoint")
    assert "phase" not in ck and seq_of(run, "epoch", epoch=2) < ck["seq"]
    node = next(r for r in read_journal(run / "journal.jsonl") if r["type"] == "checkpoint" and r["note"] == "mid")
    assert node["epoch"] == 2 and node["metrics"]["val_accuracy"] > 0  # holds the epoch's own record
