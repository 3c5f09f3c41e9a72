"""The train step (engine/step.py): its stats, clipping, the plain-CE case, invalidation, and on CUDA that the
compiled and graph-captured step trains like the eager one."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hill_reference import reference_loss

from hill_app.engine.config import RunConfig
from hill_app.engine.session import TrainingSession
from hill_app.engine.step import STEP_STATS
from hill_app.losses import combine_terms

EDITS = [
    {"op": "strategy", "name": "compactness", "strength": 0.5},
    {"op": "separate", "classes": [0, 1], "min_distance": 1.0},
    {"op": "move_points", "indices": list(range(0, 64, 2)), "to": [0.0, 0.8]},
]
S = {k: i for i, k in enumerate(STEP_STATS)}


def make_session(tmp_path, name="run", **cfg):
    base = {"dataset": "digits", "device": "cpu", "epochs": 3, "pause_at": [], "seed": 0}
    base.update(cfg)
    return TrainingSession(RunConfig(**base), tmp_path / name)


def commit(s, edits=EDITS):
    if s.projection is None:
        s.fit_projection()
    cmd = s.submit("set_latent_targets", {"edits": edits})
    s._process_commands(at_epoch_boundary=True)
    assert cmd.status == "success", cmd.reason
    assert s.targets is not None


def batches(s, n):
    """The next ``n`` batches of training-sample indices, the way an epoch draws them (over epochs if need be)."""
    bs = s.config.batch_size
    out = []
    while len(out) < n:
        order = s._epoch_order()
        out += [order[i * bs : (i + 1) * bs].to(s.device) for i in range(min(n - len(out), order.numel() // bs))]
    return out


def run(s, idxs):
    return torch.stack([s._train_step(i) for i in idxs])


def test_stats_are_the_documented_ones(tmp_path):
    s = make_session(tmp_path)
    (idx,) = batches(s, 1)
    st = s._train_step(idx)
    assert st.shape == (len(STEP_STATS),) == (9,)
    assert st.dtype == torch.float32
    assert torch.isfinite(st).all()
    assert st[S["ce"]] > 0 and st[S["grad_norm"]] > 0
    correct = float(st[S["correct"]])
    assert correct == int(correct) and 0 <= correct <= idx.numel()


def test_no_targets_terms_zero_and_loss_is_ce_exactly(tmp_path):
    s = make_session(tmp_path)
    st = run(s, batches(s, 3))
    assert torch.equal(st[:, S["loss"]], st[:, S["ce"]])
    for k in ("center", "spread", "sep", "point", "scale"):
        assert (st[:, S[k]] == 0).all(), k


def test_alpha_zero_with_targets_is_plain_ce(tmp_path):
    s = make_session(tmp_path)
    commit(s)
    s.alpha = 0.0
    st = run(s, batches(s, 2))
    assert torch.equal(st[:, S["loss"]], st[:, S["ce"]])
    assert (st[:, 2:7] == 0).all()


def test_hill_loss_is_the_documented_blend(tmp_path):
    s = make_session(tmp_path)
    commit(s)
    for alpha, lam in ((0.5, 0.1), (0.8, 0.3)):  # a change of alpha/lambda takes effect at the next step
        s.alpha, s.lam = alpha, lam
        st = s._train_step(batches(s, 1)[0])
        assert st[S["center"]] > 0 and st[S["scale"]] > 0
        want = combine_terms(st[S["ce"]], st[2:7], s.weights, alpha, lam)
        assert torch.allclose(st[S["loss"]], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ce_weight", ["blend", "full"])
def test_step_trains_on_the_written_out_loss(tmp_path, ce_weight):
    """The loss the step reports and the gradients it applies are those of the loss's definition (autograd in
    float64 through tests/hill_reference.py) on the same batch, for both C2 options (config.ce_weight)."""
    s = make_session(tmp_path, ce_weight=ce_weight) if _has_ce_weight() else make_session(tmp_path)
    s.config.ce_weight = ce_weight  # until RunConfig has the field: the step reads it with a "blend" default
    commit(s)
    s.model.dropout.p = 0.0
    s.alpha, s.lam = 0.4, 0.2
    idx = batches(s, 1)[0]
    ref = copy.deepcopy(s.model).double()
    x = s._prep(s.train_x[idx], augment=False).double()
    logits, feats = ref(x)
    z = feats @ s.projection.weight.double().t() + s.projection.bias.double()
    want, terms = reference_loss(logits, z, s.train_y[idx], idx, s.targets, s.weights, 0.4, 0.2, ce_weight)
    want.backward()
    want = float(want)
    st = s._train_step(idx)
    assert abs(float(st[S["loss"]]) - want) < 1e-4 * abs(want)
    assert torch.allclose(st[S["center"] : S["scale"] + 1].double(), terms[:5].detach(), rtol=1e-4, atol=1e-6)
    assert float(st[S["ce"]]) == pytest.approx(float(F.cross_entropy(logits, s.train_y[idx])), rel=1e-4)
    got = [p.grad for p in s.model.parameters() if p.grad is not None]
    exp = [p.grad for p in ref.parameters() if p.grad is not None]
    assert len(got) == len(exp) > 0
    for a, b in zip(got, exp):
        assert torch.allclose(a.double(), b, rtol=1e-3, atol=1e-5), (a.flatten()[:4], b.flatten()[:4])


def _has_ce_weight() -> bool:
    return "ce_weight" in RunConfig.__dataclass_fields__


def test_full_and_blend_differ_by_alpha_ce_at_the_same_state(tmp_path):
    out = {}
    for cw in ("blend", "full"):
        s = make_session(tmp_path, cw)
        s.config.ce_weight = cw
        commit(s)
        out[cw] = s._train_step(batches(s, 1)[0])
    b, f = out["blend"], out["full"]
    assert torch.equal(b[1:7], f[1:7])  # same weights, batch and terms before the update
    assert torch.allclose(f[S["loss"]] - b[S["loss"]], s.alpha * b[S["ce"]], rtol=1e-5, atol=1e-6)


def test_unknown_ce_weight_fails_with_the_value(tmp_path):
    s = make_session(tmp_path)
    s.config.ce_weight = "half"
    with pytest.raises(ValueError, match="'half'"):
        s._train_step(batches(s, 1)[0])


def test_grad_clip_bounds_the_applied_update(tmp_path):
    max_norm = 1e-3
    s = make_session(tmp_path, grad_clip=max_norm)
    g = s.optimizer.param_groups[0]
    lr, m, wd = g["lr"], g["momentum"], g["weight_decay"]
    assert g["nesterov"] and m > 0
    before = [p.detach().clone() for p in s.model.parameters()]
    st = s._train_step(batches(s, 1)[0])
    assert st[S["grad_norm"]] > 10 * max_norm  # the reported norm is the one before clipping
    grads = [p.grad for p in s.model.parameters() if p.grad is not None]
    assert float(torch.nn.utils.get_total_norm(grads)) <= max_norm * (1 + 1e-4)
    # first Nesterov SGD step from empty state: p -= lr * (1 + m) * (g_clipped + wd * p)
    applied = [
        ((b - p.detach()) / (lr * (1 + m)) - wd * b) for b, p in zip(before, s.model.parameters()) if p.grad is not None
    ]
    assert float(torch.nn.utils.get_total_norm(applied)) <= max_norm * (1 + 1e-3)


def test_cpu_runs_are_bit_for_bit_identical(tmp_path):
    out = []
    for name in ("a", "b"):
        s = make_session(tmp_path, name, grad_clip=1.0)
        st = run(s, batches(s, 3))
        commit(s)
        st = torch.cat([st, run(s, batches(s, 3))])
        out.append((st, [p.detach().clone() for p in s.model.parameters()]))
    assert torch.isfinite(out[0][0]).all()
    assert torch.equal(out[0][0], out[1][0])
    assert all(torch.equal(a, b) for a, b in zip(out[0][1], out[1][1]))


def test_invalidate_forgets_compiled_and_results_stay_exact(tmp_path):
    # one session after the other: each seeds the global RNG that dropout draws from
    eager = make_session(tmp_path, "eager")
    a = run(eager, batches(eager, 4))
    comp = make_session(tmp_path, "comp", compile=True)
    comp.train_step.compile_options = {"backend": "eager"}  # dynamo tracing without codegen: fast and exact
    idxs = batches(comp, 4)
    b = run(comp, idxs[:2])
    assert comp.train_step._loss_c is not None
    comp.train_step.invalidate()
    assert comp.train_step._loss_c is None and comp.train_step._captured is None
    b = torch.cat([b, run(comp, idxs[2:])])
    assert torch.equal(a, b)


def test_alpha_change_does_not_recompile(tmp_path):
    compiles = []

    def counting(gm, example_inputs):
        compiles.append(gm)
        return gm.forward

    s = make_session(tmp_path, compile=True)
    s.train_step.compile_options = {"backend": counting}
    commit(s)
    torch._dynamo.reset()
    idxs = batches(s, 3)
    s._train_step(idxs[0])
    n = len(compiles)
    assert n >= 1  # the loss region
    s.alpha, s.lam = 0.3, 0.7
    st = s._train_step(idxs[1])
    assert len(compiles) == n
    want = combine_terms(st[S["ce"]], st[2:7], s.weights, 0.3, 0.7)
    assert torch.allclose(st[S["loss"]], want, rtol=1e-5, atol=1e-6)


def test_alpha_and_lambda_keep_their_device_tensors(tmp_path):
    s = make_session(tmp_path)
    a = s.train_step._scalar("alpha", 0.5)
    assert s.train_step._scalar("alpha", 0.5) is a  # one address for the life of the step: graphs read it there
    assert s.train_step._scalar("alpha", 0.25) is a and float(a) == 0.25


def test_frozen_layer_stays_put(tmp_path):
    s = make_session(tmp_path)
    s._train_step(batches(s, 1)[0])
    cmd = s.submit("model_layer_operation", {"layer_name": "head", "operation": "freeze"})
    s._process_commands(at_epoch_boundary=False)
    assert cmd.status == "success", cmd.reason
    head = [p.detach().clone() for p in s.model.head.parameters()]
    body = [p.detach().clone() for p in s.model.body.parameters()]
    st = run(s, batches(s, 2))
    assert torch.isfinite(st).all()
    assert all(torch.equal(a, p) for a, p in zip(head, s.model.head.parameters()))
    assert not all(torch.equal(a, p) for a, p in zip(body, s.model.body.parameters()))


# ---------------------------------------------------------------- CUDA (skipped where there is none)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _cuda_pair(tmp_path, compile_model=False):
    """An eager and a compiled (graph-captured) session from the same weights: dropout off, small lr and a clip,
    so that HILL on digits cannot blow up and any non-finite value points at the step, not the dynamics.

    With ``compile_model`` False the compiled side runs the model's forward eager, so both sides see the same
    bf16 features and the loss (compiled, in the step's graph) can be compared at 1e-3; a compiled model
    rounds bf16 intermediates differently (test_cuda_compiled_model_trains_like_the_eager_one)."""
    out = []
    for name, comp in (("eager", False), ("compiled", True)):
        s = make_session(tmp_path, name, device="cuda", compile=comp, lr=0.01, grad_clip=1.0)
        s.model.dropout.p = 0.0
        if comp:
            s.train_step.compile_model = compile_model
        s.train_step.invalidate()
        out.append(s)
    out[1].model.load_state_dict(out[0].model.state_dict())
    return out


@cuda
@pytest.mark.cuda
def test_cuda_compiled_step_follows_the_eager_trajectory(tmp_path):
    eager, comp = _cuda_pair(tmp_path)
    idxs = batches(eager, 12)
    a, b = run(eager, idxs), run(comp, idxs)
    rel = (a[:, :2] - b[:, :2]).abs() / a[:, :2].abs().clamp(min=1e-6)
    assert rel[0].max() < 1e-2, (a, b)
    assert rel.max() < 5e-2, (a, b)
    assert comp.train_step.captures >= 1, comp.train_step._graph_error
    assert comp.train_step.graphed
    # HILL on, same weights, optimiser state and targets on both sides: a recapture follows (after the
    # warm-up steps), and the terms agree at the first step, the losses over all of them
    for s in (eager, comp):
        commit(s)
    comp.model.load_state_dict(eager.model.state_dict())
    comp.optimizer.load_state_dict(copy.deepcopy(eager.optimizer.state_dict()))
    comp.targets = copy.deepcopy(eager.targets)
    comp.projection = eager.projection.to("cuda")
    idxs = batches(eager, 8)
    a, b = run(eager, idxs), run(comp, idxs)
    assert comp.train_step.captures >= 2 and comp.train_step.graphed
    assert torch.allclose(a[0, :7], b[0, :7], rtol=1e-3, atol=1e-5), (a[0], b[0])
    rel = (a[:, :2] - b[:, :2]).abs() / a[:, :2].abs().clamp(min=1e-6)
    assert rel.max() < 5e-2, (a, b)


@cuda
@pytest.mark.cuda
def test_cuda_compiled_model_trains_like_the_eager_one(tmp_path):
    """The default on CUDA: the model compiled too. Same weights and batches: the losses stay close (bf16
    rounding differs inside Inductor's fused kernels), nothing goes non-finite, and the step is one graph."""
    eager, comp = _cuda_pair(tmp_path, compile_model=None)
    assert comp.train_step.model_compiled
    idxs = batches(eager, 12)
    a, b = run(eager, idxs), run(comp, idxs)
    assert torch.isfinite(b).all(), b
    rel = (a[:, :2] - b[:, :2]).abs() / a[:, :2].abs().clamp(min=1e-6)
    assert rel.max() < 5e-2, (a, b)
    assert comp.train_step.captures >= 1 and comp.train_step.graphed, comp.train_step._graph_error
    for s in (eager, comp):
        commit(s)
    st = run(comp, batches(comp, 8))
    assert torch.isfinite(st).all() and (st[:, S["center"]] > 0).all(), st


@cuda
@pytest.mark.cuda
def test_cuda_graph_sees_alpha_and_recaptures_on_lr_change(tmp_path):
    _, s = _cuda_pair(tmp_path)
    commit(s)
    idxs = batches(s, 16)
    st = run(s, idxs[:5])
    assert torch.isfinite(st).all(), st
    n = s.train_step.captures
    assert n >= 1 and s.train_step.graphed, s.train_step._graph_error
    s.alpha, s.lam = 0.2, 0.4
    st = s._train_step(idxs[5])
    assert s.train_step.captures == n  # alpha/lambda are device scalars: no recapture
    want = combine_terms(st[S["ce"]], st[2:7], s.weights, 0.2, 0.4)
    assert torch.allclose(st[S["loss"]], want, rtol=1e-4, atol=1e-5)
    cmd = s.submit("update_optimizer", {"lr": 0.005})
    s._process_commands(at_epoch_boundary=False)
    assert cmd.status == "success"
    # a change soon after a capture doubles the warm-up (3 -> 6 ordinary steps), then it captures again
    st = run(s, idxs[6:14])
    assert torch.isfinite(st).all(), st
    assert s.train_step.captures == n + 1 and s.train_step.graphed
    s.train_step.invalidate()
    assert not s.train_step.graphed
    st = run(s, idxs[14:])
    assert torch.isfinite(st).all(), st


@cuda
@pytest.mark.cuda
def test_cuda_eager_step_with_the_graphed_loss_matches_the_ordinary_one(tmp_path):
    """An eager CUDA step replays the HILL loss from its own graph: same stats and gradients as without it."""
    out = []
    for name, on in (("plain", False), ("graphed", True)):
        s = make_session(tmp_path, name, device="cuda", compile=False, lr=0.01, grad_clip=1.0)
        s.model.dropout.p = 0.0
        s.train_step.graph_loss = on
        commit(s)
        out.append(s)
    out[1].model.load_state_dict(out[0].model.state_dict())
    out[1].targets = copy.deepcopy(out[0].targets)
    out[1].projection = out[0].projection.to("cuda")
    for i, idx in enumerate(batches(out[0], 4)):
        a, b = out[0]._train_step(idx), out[1]._train_step(idx)
        assert torch.allclose(a[:7], b[:7], rtol=1e-3, atol=1e-5), (i, a, b)
        if i == 0:
            for p, q in zip(out[0].model.parameters(), out[1].model.parameters()):
                assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-6)
    assert out[1].train_step._graphed_loss is not None and out[1].train_step._graphed_loss.captures == 1, out[
        1
    ].train_step._graphed_loss_error
    assert out[0].train_step._graphed_loss is None
