"""Malformed commands thrown at a running (paused) session: none crashes it, none that fails changes it."""

import hashlib
import json
import threading
import time

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hill_app.engine.commands import SPECS
from hill_app.engine.config import RunConfig
from hill_app.engine.session import TrainingSession

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=8,
)
arg_names = st.sampled_from(sorted({k for s in SPECS.values() for k in [*s.required, *s.optional]})) | st.text(
    max_size=10
)
names = st.sampled_from(sorted(SPECS)) | st.text(max_size=20) | st.integers() | st.none()
args = st.none() | json_values | st.dictionaries(arg_names, json_values, max_size=4)


def fingerprint(s: TrainingSession) -> str:
    h = hashlib.sha256()
    for k, v in s.model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    groups = [{k: v for k, v in g.items() if k != "params"} for g in s.optimizer.param_groups]
    frozen = [n for n, p in s.model.named_parameters() if not p.requires_grad]
    dropout = [m.p for m in s.model.modules() if isinstance(m, torch.nn.Dropout)]
    bn = [m.momentum for m in s.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    other = [
        groups,
        s.alpha,
        s.lam,
        s.grad_clip,
        s.branch,
        s.step,
        s.epoch,
        s.paused,
        s.stop_requested,
        None if s.layout is None else s.layout.to_json(),
        int(s.active.sum()),
        frozen,
        dropout,
        bn,
        None if s.class_weights is None else s.class_weights.tolist(),
        None if s.projection is None else s.projection.weight.tolist(),
    ]
    h.update(json.dumps(other, default=str, sort_keys=True).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def paused_session(tmp_path_factory):
    s = TrainingSession(RunConfig(epochs=3, pause_at=[2], seed=0, device="cpu"), tmp_path_factory.mktemp("fuzz"))
    errors = []

    def run():
        try:
            s.run()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 300
    while not s.paused and time.monotonic() < deadline:
        time.sleep(0.02)
    assert s.paused
    yield s
    s.submit("stop_training", {})
    t.join(timeout=300)
    assert not t.is_alive() and not errors, errors
    assert s.finished


def wait_done(cmd, timeout=60):
    deadline = time.monotonic() + timeout
    while cmd.status not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(0.002)
    return cmd.status


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(name=names, a=args)
def test_malformed_commands_fail_cleanly_and_change_nothing(paused_session, name, a):
    s = paused_session
    if name in ("resume_training", "stop_training", "pause_training"):
        assume(a not in (None, {}))  # the well-formed control commands would legitimately change state
    before = fingerprint(s)
    cmd = s.submit(name, a)
    status = wait_done(cmd)
    assert status in ("success", "failed"), f"{name!r} {a!r} stuck in {status}"
    assert s.paused and not s.finished, "the session must still be running and paused"
    if status == "failed":
        assert isinstance(cmd.reason, str) and cmd.reason
        assert fingerprint(s) == before, f"failed command {name!r} {a!r} changed the session"


def test_specific_bad_commands_fail_with_reasons(paused_session):
    s = paused_session
    cases = [
        ("no_such_command", None, "unknown command"),
        ("update_optimizer", {"lr": -1}, "lr"),
        ("update_optimizer", {"lr": "fast"}, "lr"),
        ("update_optimizer", {"group": 7, "lr": 0.1}, "group 7"),
        ("update_optimizer", {"betas": [0.9, 0.99]}, "betas"),
        ("set_grad_clip", {}, "missing argument 'max_norm'"),
        ("load_checkpoint", {"uuid": "deadbeef"}, "no checkpoint"),
        ("model_layer_operation", {"layer_name": "__class__", "operation": "freeze"}, "no layer"),
        ("model_layer_operation", {"layer_name": "head", "operation": "delete"}, "expected one of"),
        ("model_layer_parameter_update", {"layer_name": "head", "param_name": "p", "value": 0.5}, "dropout"),
        (
            "model_layer_parameter_update",
            {"layer_name": "head", "param_name": "weight", "value": 0.5},
            "expected one of",
        ),
        ("set_latent_targets", {"edits": [{"op": "move_center", "class": 99, "to": [0, 0]}]}, "class 99"),
        ("set_alpha", {"alpha": 2}, "alpha"),
        ("update_dataset", {"action": "drop", "indices": [10**9]}, "not a training sample"),
        ("update_dataset_runtime_hyperparameters", {"class_weights": [1, 2]}, "10 numbers"),
    ]
    for name, a, expect in cases:
        before = fingerprint(s)
        cmd = s.submit(name, a)
        assert wait_done(cmd) == "failed", (name, a, cmd.status)
        assert expect in cmd.reason, (name, a, cmd.reason)
        assert fingerprint(s) == before
