"""Each interactive-training command on a real digits session: it does what it says, or fails saying why."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_digits

from hill_app.engine.config import RunConfig
from hill_app.engine.journal import read_journal
from hill_app.engine.session import TrainingSession


@pytest.fixture
def session(tmp_path):
    s = TrainingSession(RunConfig(epochs=3, pause_at=[], seed=0, device="cpu"), tmp_path / "run")
    s._end_of_epoch(s._train_epoch())  # one epoch: projection fitted, a checkpointable state
    return s


def apply(s, name, args):
    cmd = s.submit(name, args)
    s._process_commands(at_epoch_boundary=True)
    assert cmd.status in ("success", "failed")
    return cmd


def statuses(run_dir, uuid):
    return [
        r["status"] for r in read_journal(run_dir / "journal.jsonl") if r["type"] == "command" and r["uuid"] == uuid
    ]


def test_status_sequence_is_journaled(session):
    cmd = apply(session, "set_alpha", {"alpha": 0.3})
    assert cmd.status == "success" and session.alpha == 0.3
    assert statuses(session.run_dir, cmd.uuid) == ["requested", "pending", "running", "success"]
    bad = apply(session, "set_alpha", {"alpha": 3})
    assert statuses(session.run_dir, bad.uuid) == ["requested", "failed"] and "alpha" in bad.reason


def test_update_optimizer_per_group_and_unknown_names(session):
    ok = apply(session, "update_optimizer", {"lr": 0.003, "momentum": 0.5, "weight_decay": 0.0, "group": 0})
    g = session.optimizer.param_groups[0]
    assert ok.status == "success" and (g["lr"], g["momentum"], g["weight_decay"]) == (0.003, 0.5, 0.0)
    assert ok.result["old"]["lr"] == 0.05
    assert "betas" in apply(session, "update_optimizer", {"betas": [0.9, 0.99]}).reason  # SGD has none
    assert "at least one" in apply(session, "update_optimizer", {}).reason


def test_grad_clip_bounds_the_update_and_norm_is_reported(session):
    seen = []
    session.events.subscribe(lambda ev: ev.kind == "step" and seen.append(ev.data["grad_norms"]))
    assert apply(session, "set_grad_clip", {"max_norm": 1e-3}).status == "success"
    before = [p.detach().clone() for p in session.model.parameters()]
    session.optimizer.param_groups[0]["momentum"] = 0.0
    session.optimizer.param_groups[0]["nesterov"] = False
    session.optimizer.param_groups[0]["weight_decay"] = 0.0
    session.optimizer.state.clear()
    lr = session.optimizer.param_groups[0]["lr"]
    idx = torch.arange(64)
    session._train_step(idx)
    delta = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(session.model.parameters(), before)))
    assert float(delta) <= lr * 1e-3 * 1.01  # plain SGD step with the clipped gradient
    session._train_epoch()
    assert len(seen) == 18 and all(len(g) == 1 and math.isfinite(g[0]) and g[0] > 0 for g in seen)
    assert apply(session, "set_grad_clip", {"max_norm": None}).status == "success" and session.grad_clip is None


def test_layer_operations(session):
    head = session.model.head
    assert apply(session, "model_layer_operation", {"layer_name": "head", "operation": "freeze"}).status == "success"
    w = head.weight.detach().clone()
    session._train_epoch()
    assert torch.equal(head.weight, w) and not head.weight.requires_grad
    assert apply(session, "model_layer_operation", {"layer_name": "head", "operation": "unfreeze"}).status == "success"
    torch.manual_seed(0)
    assert (
        apply(session, "model_layer_operation", {"layer_name": "head", "operation": "reset_parameters"}).status
        == "success"
    )
    assert not torch.equal(head.weight, w)
    drop = next(n for n, m in session.model.named_modules() if isinstance(m, torch.nn.Dropout))
    bn = next(n for n, m in session.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert (
        apply(session, "model_layer_parameter_update", {"layer_name": drop, "param_name": "p", "value": 0.3}).status
        == "success"
    )
    assert dict(session.model.named_modules())[drop].p == 0.3
    assert (
        apply(
            session, "model_layer_parameter_update", {"layer_name": bn, "param_name": "momentum", "value": 0.2}
        ).status
        == "success"
    )
    assert dict(session.model.named_modules())[bn].momentum == 0.2
    assert (
        "batch-norm"
        in apply(
            session, "model_layer_parameter_update", {"layer_name": drop, "param_name": "momentum", "value": 0.2}
        ).reason
    )


def test_update_dataset_drop_add_and_class_weights(session, tmp_path):
    n0 = session.n_train
    assert apply(session, "update_dataset", {"action": "drop", "indices": [0, 1, 2]}).status == "success"
    assert int(session.active.sum()) == n0 - 3
    order = session._epoch_order()
    assert not set(order.tolist()) & {0, 1, 2}
    # add 20 samples from a file in the UCI optdigits format
    raw = sk_digits()
    rows = [",".join(map(str, list(raw.data[i].astype(int)) + [int(raw.target[i])])) for i in range(20)]
    f = tmp_path / "extra.tra"
    f.write_text("\n".join(rows) + "\n")
    cmd = apply(session, "update_dataset", {"action": "add", "path": str(f)})
    assert cmd.status == "success", cmd.reason
    assert session.n_train == n0 + 20 and session.train_x.shape[0] == n0 + 20
    assert torch.equal(session.train_y[n0:], torch.tensor(raw.target[:20]))
    assert torch.equal(session.train_x[n0], torch.tensor(np.clip(raw.images[0] * 16, 0, 255), dtype=torch.uint8)[None])
    session._train_epoch()  # trains with the new samples
    bad = tmp_path / "bad.tra"
    bad.write_text("1,2,3\n")
    assert "line 1: 3 values" in apply(session, "update_dataset", {"action": "add", "path": str(bad)}).reason
    # class weights: only class 4 is sampled
    w = [0.0] * 10
    w[4] = 1.0
    assert apply(session, "update_dataset_runtime_hyperparameters", {"class_weights": w}).status == "success"
    assert set(session.data.train_y[session._epoch_order()].tolist()) == {4}
    assert "10 numbers" in apply(session, "update_dataset_runtime_hyperparameters", {"class_weights": [1]}).reason


def test_checkpoint_with_added_samples_restores_the_data(session, tmp_path):
    raw = sk_digits()
    f = tmp_path / "extra.tra"
    f.write_text(
        "\n".join(",".join(map(str, list(raw.data[i].astype(int)) + [int(raw.target[i])])) for i in range(5)) + "\n"
    )
    before = apply(session, "save_checkpoint", {}).result["uuid"]
    apply(session, "update_dataset", {"action": "add", "path": str(f)})
    after = apply(session, "save_checkpoint", {}).result["uuid"]
    n0 = session.base_n_train
    assert apply(session, "load_checkpoint", {"uuid": before}).status == "success"
    assert session.n_train == n0 and session.active.numel() == n0
    assert apply(session, "load_checkpoint", {"uuid": after, "branch_name": "with-extra"}).status == "success"
    assert session.n_train == n0 + 5 and session.branch == "with-extra"


def test_evaluate_hill_commands_and_refit(session):
    ev = apply(session, "do_evaluate", {"split": "test"})
    assert ev.status == "success" and 0.5 < ev.result["test_accuracy"] <= 1
    w = session.projection.weight.clone()
    assert (
        apply(session, "set_latent_targets", {"edits": [{"op": "scale_spread", "class": 1, "factor": 0.5}]}).status
        == "success"
    )
    assert "clear them first" in apply(session, "refit_projection", {}).reason
    assert apply(session, "clear_latent_targets", {}).status == "success" and session.layout is None
    assert apply(session, "refit_projection", {"method": "lda"}).status == "success"
    assert session.projection.method == "lda" and not torch.equal(session.projection.weight, w)
    assert apply(session, "set_lambda", {"lam": 0.5}).status == "success" and session.lam == 0.5


def test_checkpoint_of_another_model_fails_and_training_goes_on(session, tmp_path):
    other = TrainingSession(
        RunConfig(dataset="synthetic", epochs=1, pause_at=[], device="cpu", synthetic_size=200, model="digits_cnn"),
        tmp_path / "other",
    )
    state = other.checkpoint_state()
    node = session.tree.add(state, branch="x", parent=None, step=0, epoch=0, metrics={})
    cmd = apply(session, "load_checkpoint", {"uuid": node["uuid"]})
    assert cmd.status == "failed" and "this run has" in cmd.reason
    assert session.branch == "main"
    assert session._train_epoch() is not None


def test_nan_loss_pauses_and_says_so(session):
    logs = []
    session.events.subscribe(lambda ev: ev.kind == "log" and logs.append(ev.data["message"]))
    session.optimizer.param_groups[0]["lr"] = 1e30
    session.report_every = 1
    paused = []
    session._pause = lambda reason: (paused.append(reason), setattr(session, "paused", False))
    for _ in range(3):
        session._train_epoch()
        if paused:
            break
    assert paused and "non-finite" in paused[0]
    assert any("non-finite" in m for m in logs)
