"""The HILL loss terms each move a model the right way on a fixed batch, and reduce to CE without edits; the
fused node (C or numpy on a CPU, tensor ops elsewhere) gives the values and gradients of the written-out formula."""

import importlib
import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hill_reference import reference_loss, reference_terms

from hill_app.losses import (
    LossWeights,
    TargetLayout,
    class_stats,
    hill_loss,
    hill_native,
    hill_terms,
    layout_from_points,
)

H = importlib.import_module("hill_app.losses.hill_loss")  # the module (the package exports a function of that name)

K, D, B = 3, 6, 60


def setup_problem(seed=0):
    torch.manual_seed(seed)
    x = torch.randn(B, D)
    y = torch.arange(B) % K
    x = x + F.one_hot(y, D).float() * 3.0  # classes start apart
    g = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.Tanh(), torch.nn.Linear(16, 8))
    head = torch.nn.Linear(8, K)
    P = torch.randn(2, 8) * 0.5  # frozen projection
    idx = torch.arange(B)
    return x, y, idx, g, head, P


def current_layout(g, P, x, y):
    with torch.no_grad():
        z = g(x) @ P.T
    return layout_from_points(z.numpy(), y.numpy(), K), z


def train_on_term(term, targets, steps=60, lr=0.02, seed=0):
    x, y, idx, g, head, P = setup_problem(seed)
    opt = torch.optim.Adam(g.parameters(), lr=lr)
    for _ in range(steps):
        z = g(x) @ P.T
        t = hill_terms(z, y, idx, targets)
        loss = t[term]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return g(x) @ P.T


def make_targets(layout, n=B):
    return layout.to_tensors(np.arange(n), n)


def test_center_term_moves_centroid_toward_target():
    x, y, idx, g, head, P = setup_problem()
    layout, z0 = current_layout(g, P, x, y)
    goal = layout.centers[1] + np.array([1.5, -1.0])
    layout.centers[1] = goal
    z1 = train_on_term(0, make_targets(layout))
    before = np.linalg.norm(z0[y == 1].mean(0).numpy() - goal)
    after = np.linalg.norm(z1[y == 1].mean(0).numpy() - goal)
    assert after < 0.3 * before
    # untouched classes were pinned where they stood
    for c in (0, 2):
        assert np.linalg.norm(z1[y == c].mean(0).numpy() - layout.centers[c]) < 0.3


def test_spread_term_moves_spread_toward_target():
    x, y, idx, g, head, P = setup_problem()
    layout, z0 = current_layout(g, P, x, y)
    goal = layout.spreads[2] * 0.4
    layout.spreads[2] = goal
    z1 = train_on_term(1, make_targets(layout))
    _, _, rms0 = class_stats(z0, y, K)
    _, _, rms1 = class_stats(z1, y, K)
    assert abs(rms1[2].item() - goal) < 0.3 * abs(rms0[2].item() - goal)


def test_separation_term_pushes_close_classes_apart_and_leaves_far_ones():
    x, y, idx, g, head, P = setup_problem()
    layout, z0 = current_layout(g, P, x, y)
    d0 = np.linalg.norm(layout.centers[0] - layout.centers[1])
    layout.sep_min[0, 1] = layout.sep_min[1, 0] = d0 + 2.0
    z1 = train_on_term(2, make_targets(layout))
    d1 = torch.linalg.norm(z1[y == 0].mean(0) - z1[y == 1].mean(0)).item()
    assert d1 > d0 + 1.0
    # a pair already farther apart than its target feels no force: zero loss, zero gradient
    layout2, _ = current_layout(g, P, x, y)
    layout2.sep_min[0, 1] = layout2.sep_min[1, 0] = d0 * 0.5
    z = (g(x) @ P.T).requires_grad_()
    t = hill_terms(z, y, idx, make_targets(layout2))
    assert t[2].item() == 0.0


def test_point_term_moves_dropped_point_toward_its_position():
    x, y, idx, g, head, P = setup_problem()
    layout, z0 = current_layout(g, P, x, y)
    drop = np.array([2.0, 2.0])
    layout.points[7] = tuple(drop)
    z1 = train_on_term(3, make_targets(layout))
    assert np.linalg.norm(z1[7].numpy() - drop) < 0.3 * np.linalg.norm(z0[7].numpy() - drop)


def test_scale_term_pulls_rms_radius_back_to_one():
    x, y, idx, g, head, P = setup_problem()
    layout, z0 = current_layout(g, P, x, y)
    r0 = z0.pow(2).sum(1).mean().sqrt().item()
    assert layout.ref_radius == pytest.approx(r0), "the reference is the radius when the layout was taken"
    layout.ref_radius = 1.0
    targets = make_targets(layout)
    assert abs(r0 - 1.0) > 0.2, "the fixture should start away from radius 1"
    x_, y_, idx_, g_, head_, P_ = setup_problem()
    opt = torch.optim.Adam(g_.parameters(), lr=0.02)
    for _ in range(80):
        t = hill_terms(g_(x_) @ P_.T, y_, idx_, targets)
        loss = (1 - t[4]).abs()
        opt.zero_grad()
        loss.backward()
        opt.step()
    r1 = (g_(x_) @ P_.T).pow(2).sum(1).mean().sqrt().item()
    assert abs(r1 - 1.0) < 0.2 * abs(r0 - 1.0)


def test_no_targets_is_exactly_cross_entropy():
    x, y, idx, g, head, P = setup_problem()
    f = g(x)
    logits = head(f)
    loss, terms = hill_loss(logits, f @ P.T, y, idx, None, alpha=0.5, lam=0.1)
    assert torch.equal(loss, F.cross_entropy(logits, y))
    assert terms.shape == (6,) and torch.all(terms[1:] == 0)


def test_alpha_zero_is_exactly_cross_entropy_even_with_targets():
    x, y, idx, g, head, P = setup_problem()
    layout, _ = current_layout(g, P, x, y)
    layout.centers[0] += 3.0
    f = g(x)
    logits = head(f)
    loss, _ = hill_loss(logits, f @ P.T, y, idx, make_targets(layout), alpha=0.0, lam=0.1)
    assert torch.equal(loss, F.cross_entropy(logits, y))


def test_blend_matches_formula():
    x, y, idx, g, head, P = setup_problem()
    layout, _ = current_layout(g, P, x, y)
    layout.centers[0] += 1.0
    layout.spreads *= 0.5
    w = LossWeights(center=1.0, spread=2.0, sep=1.0, point=0.5)
    targets = layout.to_tensors(np.arange(B), B, weights=w)
    f = g(x)
    logits, z = head(f), f @ P.T
    loss, terms = hill_loss(logits, z, y, idx, targets, alpha=0.3, lam=0.2)
    ce, c, s, sep, pt, scale = terms.tolist()
    expected = 0.7 * ce + 0.3 * (c + 2 * s + sep + 0.5 * pt) + 0.2 * abs(1 - scale)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert c > 0 and s > 0


def test_terms_ignore_classes_absent_from_batch():
    x, y, idx, g, head, P = setup_problem()
    layout, _ = current_layout(g, P, x, y)
    layout.centers[2] += 5.0  # only class 2 is off target
    targets = make_targets(layout)
    keep = y != 2
    with torch.no_grad():
        t = hill_terms(g(x[keep]) @ P.T, y[keep], idx[keep], targets)
    assert t[0].item() == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(params=["native", "numpy", "torch"])
def path(request, monkeypatch):
    """Run a test through the CPU's C kernel, its numpy path and the tensor-op path (the one CUDA and compile
    use)."""
    if request.param == "native" and not hill_native.available()[0]:
        pytest.skip(f"the HILL C kernel cannot be built here: {hill_native.available()[1]}")
    monkeypatch.setattr(H, "CPU_KERNEL", request.param)
    return request.param


def test_loss_is_finite_for_single_sample_classes_and_coincident_centres(path):
    y = torch.tensor([0, 1, 1])
    z = torch.zeros(3, 2, requires_grad=True)
    layout = TargetLayout(
        centers=np.zeros((K, 2)),
        spreads=np.ones(K),
        sep_min=np.ones((K, K)) - np.eye(K),
        group=np.arange(K),
        ref_radius=1.0,
    )
    t = hill_terms(z, y, torch.arange(3), layout.to_tensors(np.arange(3), 3))
    t.sum().backward()
    assert torch.isfinite(t).all() and torch.isfinite(z.grad).all()


def random_problem(seed, n_train=400, classes=10, batch=64, dim=16):
    """A batch with every kind of target: moved and shrunk classes, two separations (one pair absent from
    some batches), dropped points, a class with one sample and a class with none."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes - 2, (batch,), generator=g)
    y[0] = classes - 2  # a single-sample class; class K-1 is absent
    idx = torch.randperm(n_train, generator=g)[:batch]
    w = torch.randn(2, dim, generator=g, dtype=torch.float64) * 0.3
    b = torch.randn(2, generator=g, dtype=torch.float64) * 0.1
    zall = torch.randn(n_train, dim, generator=g, dtype=torch.float64) @ w.T
    layout = layout_from_points(zall.numpy(), (torch.arange(n_train) % classes).numpy(), classes)
    layout.centers[1] += 0.5
    layout.spreads *= 0.7
    for a_, b_ in ((0, 1), (2, classes - 1)):
        layout.sep_min[a_, b_] = layout.sep_min[b_, a_] = 3.0
    for i in idx[:10].tolist():
        layout.points[i] = (0.0, 0.8)
    layout.metric = np.array([[1.3, 0.2], [0.2, 0.7]])
    return feats, y, idx, (w, b), layout.to_tensors(np.arange(n_train), n_train)


def _rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_terms_and_their_gradients_are_the_written_out_formula(path, seed):
    feats, y, idx, (w, b), targets = random_problem(seed)
    z = feats @ w.T + b
    g5 = torch.randn(5, dtype=torch.float64)
    z64 = z.clone().requires_grad_()
    want = reference_terms(z64, y, idx, targets)[:5]
    (want * g5).sum().backward()
    z32 = z.float().requires_grad_()
    got = hill_terms(z32, y, idx, targets)
    (got * g5.float()).sum().backward()
    assert _rel(got, want) < 1e-6
    assert _rel(z32.grad, z64.grad) < 1e-5
    assert want[2] > 0 and want[3] > 0  # the separation and the point terms are active


@pytest.mark.parametrize("ce_weight", ["blend", "full"])
@pytest.mark.parametrize("seed", [3, 4])
def test_loss_value_and_gradients_are_the_written_out_formula(path, seed, ce_weight):
    """hill_loss, as the step calls it (features and the frozen map, device scalars), against autograd through
    the definition, in float64: the loss, every reported term, and the gradients of features and logits."""
    feats, y, idx, (w, b), targets = random_problem(seed)
    logits = torch.randn(feats.shape[0], 10, dtype=torch.float64)
    weights = LossWeights(center=1.0, spread=2.0, sep=0.5, point=1.5)
    f64, l64 = feats.clone().requires_grad_(), logits.clone().requires_grad_()
    want, want_t = reference_loss(l64, f64 @ w.T + b, y, idx, targets, weights, 0.3, 0.2, ce_weight)
    want.backward()
    f32, l32 = feats.float().requires_grad_(), logits.float().requires_grad_()
    loss, stats = hill_loss(
        l32,
        f32,
        y,
        idx,
        targets,
        torch.tensor(0.3),
        torch.tensor(0.2),
        weights=weights,
        ce_weight=ce_weight,
        project=(w.float(), b.float()),
    )
    loss.backward()
    assert _rel(loss, want) < 1e-6
    assert _rel(stats[0], F.cross_entropy(logits, y)) < 1e-6
    assert _rel(stats[1:], want_t[:5]) < 1e-6
    assert _rel(f32.grad, f64.grad) < 1e-5
    assert _rel(l32.grad, l64.grad) < 1e-5


def test_under_torch_compile_the_loss_and_gradients_are_the_written_out_formula():
    """Traced by torch.compile, the device path computes its 2-wide products as sums (``_mm``); the eager
    backend runs exactly what was traced, so this pins that form against the definition."""
    feats, y, idx, (w, b), targets = random_problem(8)
    logits = torch.randn(feats.shape[0], 10, dtype=torch.float64)
    weights = LossWeights(center=1.0, spread=2.0, sep=0.5, point=1.5)
    f64, l64 = feats.clone().requires_grad_(), logits.clone().requires_grad_()
    want, want_t = reference_loss(l64, f64 @ w.T + b, y, idx, targets, weights, 0.3, 0.2, "blend")
    want.backward()
    traced = []

    def backend(gm, example_inputs):
        traced.append(gm)
        return gm.forward

    compiled = torch.compile(hill_loss, backend=backend, fullgraph=True)
    f32, l32 = feats.float().requires_grad_(), logits.float().requires_grad_()
    alpha, lam = torch.tensor(0.3), torch.tensor(0.2)
    loss, stats = compiled(l32, f32, y, idx, targets, alpha, lam, weights=weights, project=(w.float(), b.float()))
    loss.backward()
    products = {operator.matmul, torch.matmul, torch.mm, torch.addmm, torch.Tensor.matmul}
    nodes = [n for gm in traced for m in gm.modules() if isinstance(m, torch.fx.GraphModule) for n in m.graph.nodes]
    assert any(n.target is torch.Tensor.sum or n.target == "sum" for n in nodes)  # the traced node is in there
    assert not [n for n in nodes if n.target in products]
    assert _rel(loss, want) < 1e-6
    assert _rel(stats[1:], want_t[:5]) < 1e-6
    assert _rel(f32.grad, f64.grad) < 1e-5
    assert _rel(l32.grad, l64.grad) < 1e-5


def test_full_keeps_cross_entropy_at_weight_one(path):
    """C2: "full" is L = CE + alpha L_human + lam |1 - scale|, "blend" the paper's (1 - alpha) CE + ...: the two
    differ by exactly alpha CE, and CE's gradient is scaled by 1 and by (1 - alpha)."""
    feats, y, idx, (w, b), targets = random_problem(5)
    logits = torch.randn(feats.shape[0], 10)
    z = (feats @ w.T + b).float()
    out = {}
    for cw in ("blend", "full"):
        lg = logits.clone().requires_grad_()
        loss, stats = hill_loss(lg, z, y, idx, targets, 0.4, 0.1, ce_weight=cw)
        loss.backward()
        out[cw] = (loss.detach(), stats, lg.grad)
    ce = F.cross_entropy(logits, y)
    assert torch.equal(out["blend"][1], out["full"][1])
    assert torch.allclose(out["full"][0] - out["blend"][0], 0.4 * ce, rtol=1e-5, atol=1e-6)
    t = out["full"][1]
    direct = ce + 0.4 * (t[1] + t[2] + t[3] + t[4]) + 0.1 * (1 - t[5]).abs()
    assert torch.allclose(out["full"][0], direct, rtol=1e-5, atol=1e-6)
    assert torch.allclose(out["blend"][2], 0.6 * out["full"][2], rtol=1e-5, atol=1e-7)


def test_unknown_ce_weight_is_refused_with_the_value():
    feats, y, idx, (w, b), targets = random_problem(6)
    with pytest.raises(ValueError, match="'half'"):
        hill_loss(torch.randn(64, 10), (feats @ w.T + b).float(), y, idx, targets, 0.5, 0.1, ce_weight="half")


def test_the_cpu_kernels_and_the_tensor_path_agree(monkeypatch):
    feats, y, idx, (w, b), targets = random_problem(7)
    z = (feats @ w.T + b).float()
    out = {}
    for kernel in ("native", "numpy", "torch") if hill_native.available()[0] else ("numpy", "torch"):
        monkeypatch.setattr(H, "CPU_KERNEL", kernel)
        zz = z.clone().requires_grad_()
        t = hill_terms(zz, y, idx, targets)
        t.sum().backward()
        out[kernel] = (t.detach(), zz.grad)
    for kernel, (t, g) in out.items():
        assert torch.allclose(t, out["torch"][0], rtol=1e-5, atol=1e-6), kernel
        assert torch.allclose(g, out["torch"][1], rtol=1e-4, atol=1e-6), kernel


@pytest.mark.parametrize("ce_weight", ["blend", "full"])
def test_graphed_loss_body_gives_the_loss_and_its_gradients(ce_weight):
    """What GraphedHillLoss captures (eager CUDA steps) computes the loss and its gradients in one pass: on a
    CPU, without a graph, it must give hill_loss's value and the gradients autograd finds through it."""
    feats, y, idx, (w, b), targets = random_problem(8)
    feats, w, b = feats.float(), w.float(), b.float()
    logits = torch.randn(feats.shape[0], 10)
    weights = LossWeights(center=1.0, spread=2.0, sep=0.5, point=1.5)
    alpha, lam = torch.tensor(0.3), torch.tensor(0.2)
    lg, fx = logits.clone().requires_grad_(), feats.clone().requires_grad_()
    loss, stats = hill_loss(lg, fx, y, idx, targets, alpha, lam, weights=weights, ce_weight=ce_weight, project=(w, b))
    loss.backward()
    ce_val = F.cross_entropy(logits, y)
    got_loss, got_stats, gce, gx = H.GraphedHillLoss._body(
        ce_val, feats, y, idx, targets, alpha, lam, weights, ce_weight == "full", (w, b)
    )
    assert torch.allclose(got_loss, loss.detach(), rtol=1e-5, atol=1e-6)
    assert torch.allclose(got_stats, stats, rtol=1e-5, atol=1e-6)
    assert float(gce) == pytest.approx(1.0 if ce_weight == "full" else 0.7)
    assert torch.allclose(gx, fx.grad, rtol=1e-4, atol=1e-6)


def test_a_class_of_coincident_points_has_a_finite_spread_and_gradient(path):
    """The spread comes from sum |u|^2 / n - |mu|^2 in one pass; for a class of identical points rounding can
    make that slightly negative, and the clamp at 0 must keep the root and its gradient finite."""
    pts = torch.tensor([[-2.711764335632324, -1.7418513298034668], [-3.710681438446045, -2.5181517601013184]])
    pts = torch.cat([pts, torch.tensor([[-2.062119960784912, 2.523751735687256]])])  # float32: var < 0 unclamped
    y = torch.tensor([0] * 8 + [1] * 6 + [2] * 6)
    z = pts[y].clone().requires_grad_()
    layout = TargetLayout(
        centers=pts.double().numpy(),
        spreads=np.full(K, 0.5),
        sep_min=np.zeros((K, K)),
        group=np.arange(K),
        ref_radius=1.0,
    )
    targets = layout.to_tensors(np.arange(len(y)), len(y))
    t = hill_terms(z, y, torch.arange(len(y)), targets)
    t.sum().backward()
    want = reference_terms(z.detach().double().requires_grad_(), y, torch.arange(len(y)), targets)
    assert torch.isfinite(t).all() and torch.isfinite(z.grad).all()
    assert abs(float(t[1]) - float(want[1])) < 1e-3 * float(want[1])  # (0 - 0.5)^2: every class has rms ~ 0
