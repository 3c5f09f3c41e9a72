"""The model zoo keeps the contract the training engine relies on: (logits, features), head, dims, seeds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hill_app.engine.models import MODELS, build_model, default_model, global_max_pool

# Each model with an input shape it was built for (small where the model allows, to keep tests fast).
CASES = {
    "digits_cnn": ((1, 8, 8), 64),
    "airbench": ((3, 16, 16), 256),
    "cifar_cpu_fast": ((3, 16, 16), 256),
    "resnet18": ((3, 8, 8), 512),
    "pamap_cnn1d": ((27, 171), 128),
}


def _make(name: str, num_classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, CASES[name][0], num_classes)


def test_every_registered_model_is_tested_and_described() -> None:
    assert set(MODELS) == set(CASES)
    assert all(isinstance(d, str) and d and "\n" not in d for d in MODELS.values())


@pytest.mark.parametrize("name", sorted(CASES))
def test_shapes_and_attributes(name: str) -> None:
    shape, feature_dim = CASES[name]
    model = _make(name, num_classes=7)
    assert model.feature_dim == feature_dim
    assert model.num_classes == 7
    assert isinstance(model.head, nn.Linear)
    assert model.head.in_features == feature_dim and model.head.out_features == 7
    assert tuple(model.input_shape) == shape
    assert any(isinstance(m, (nn.Dropout, nn.modules.batchnorm._BatchNorm)) for m in model.modules())
    out = model(torch.randn(5, *shape))
    assert isinstance(out, tuple) and len(out) == 2
    logits, features = out
    assert logits.shape == (5, 7)
    assert features.shape == (5, feature_dim)


@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_are_head_of_features_in_eval(name: str) -> None:
    model = _make(name).eval()
    with torch.no_grad():
        logits, features = model(torch.randn(4, *CASES[name][0]))
        assert torch.allclose(logits, model.head(features), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_reach_the_first_layer(name: str) -> None:
    model = _make(name).train()
    logits, features = model(torch.randn(6, *CASES[name][0]))
    (F.cross_entropy(logits, torch.arange(6) % 10) + features.pow(2).mean()).backward()
    first = next(m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)))
    assert first.weight.requires_grad
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_initialisation_is_deterministic_under_a_seed(name: str) -> None:
    a, b, c = _make(name, seed=3), _make(name, seed=3), _make(name, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    x = torch.randn(3, *CASES[name][0])
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(x)[0], b(x)[0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_runs_without_torch_compile_in_train_and_eval(name: str) -> None:
    """Plain eager mode is enough: the engine must not depend on torch.compile being available."""
    model = _make(name)
    x = torch.randn(4, *CASES[name][0])
    for mode in (True, False):
        model.train(mode)
        logits, features = model(x)
        assert torch.isfinite(logits).all() and torch.isfinite(features).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_traces_as_one_graph(name: str) -> None:
    """No data-dependent Python in forward: dynamo captures it whole (backend='eager' needs no compiler)."""
    model = _make(name)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = torch.randn(4, *CASES[name][0])
    logits, _ = compiled(x)
    logits.sum().backward()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(compiled(x)[0], model(x)[0], atol=1e-5)


def test_airbench_takes_other_image_sizes_and_channels_last() -> None:
    torch.manual_seed(0)
    for hw in ((9, 9), (24, 40), (32, 32)):
        model = build_model("airbench", (3, *hw), 10)
        logits, features = model(torch.randn(2, 3, *hw))
        assert logits.shape == (2, 10) and features.shape == (2, 256)
    model = build_model("airbench", (3, 32, 32), 10).eval().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = model(x.contiguous(memory_format=torch.channels_last))[0]
        b = model(x)[0]
    assert torch.allclose(a, b, atol=1e-4)


def test_airbench_head_is_bias_free_and_batchnorm_follows_airbench() -> None:
    model = _make("airbench")
    assert model.head.bias is None
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(abs(m.momentum - 0.4) < 1e-9 and m.eps == 1e-12 for m in bns)


def test_unknown_model_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        build_model("vgg16", (3, 32, 32), 10)
    for name in MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "name,shape",
    [
        ("pamap_cnn1d", (3, 32, 32)),
        ("pamap_cnn1d", (27, 2)),
        ("digits_cnn", (27, 171)),
        ("airbench", (27, 171)),
        ("airbench", (3, 8, 8)),
        ("resnet18", (3, 4, 4)),
        ("digits_cnn", (1, 8, 8, 8)),
    ],
)
def test_mismatched_input_shape_is_a_value_error(name: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expects"):
        build_model(name, shape, 10)


def test_bad_num_classes_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        build_model("digits_cnn", (1, 8, 8), 0)


def test_default_model() -> None:
    assert default_model("digits") == "digits_cnn"
    assert default_model("cifar10") == "airbench"
    assert default_model("pamap2") == "pamap_cnn1d"
    assert default_model("synthetic", (3, 32, 32)) == "airbench"
    assert default_model("synthetic", (1, 8, 8)) == "digits_cnn"
    assert default_model("synthetic", (3, 16, 16)) == "digits_cnn"
    assert default_model("synthetic") == "digits_cnn"
    assert default_model("synthetic", (27, 171)) == "pamap_cnn1d"
    with pytest.raises(ValueError):
        default_model("imagenet")
    for ds, shape in (("digits", (1, 8, 8)), ("cifar10", (3, 32, 32)), ("pamap2", (27, 171))):
        build_model(default_model(ds), shape, 10)  # every default accepts its data set's shape


@pytest.fixture
def one_thread():
    """One intra-op thread: a model this small gains nothing from more, and on a busy shared CPU two
    OpenMP threads that spin-wait for each other can make this test ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_digits_cnn_learns_sklearn_digits(one_thread: None) -> None:
    from hill_app.datasets.digits import load_digits

    bundle = load_digits()
    x_train, y_train = bundle.normalize(bundle.train_x), bundle.train_y
    x_test, y_test = bundle.normalize(bundle.test_x), bundle.test_y
    torch.manual_seed(0)
    model = build_model("digits_cnn", bundle.input_shape, bundle.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(15):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            logits, _ = model(x_train[idx])
            loss = F.cross_entropy(logits, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x_test)[0].argmax(1) == y_test).float().mean().item()
    assert acc > 0.90, f"test accuracy {acc:.3f}"


def test_global_max_pool_gradient_follows_one_index_not_an_equality_test() -> None:
    """Regression for NaN gradients of the compiled airbench net under bf16: the pool's backward must not find
    the maximum by comparing input and output (amax does, and splits the gradient among ties)."""
    x = torch.zeros(2, 3, 3, 3)
    x[:, :, 0, 0] = 1.0
    x[:, :, 2, 1] = 1.0  # a tie for the maximum in every map
    x.requires_grad_()
    out = global_max_pool(x)
    assert torch.equal(out.detach(), torch.ones(2, 3))
    out.sum().backward()
    g = x.grad.flatten(2)
    assert torch.equal(g.sum(2), torch.ones(2, 3))
    assert torch.equal((g != 0).sum(2), torch.ones(2, 3, dtype=torch.long))  # all of it to one element
    assert set(g.unique().tolist()) == {0.0, 1.0}


def test_cifar_cpu_fast_is_much_cheaper_than_airbench() -> None:
    """The CPU model's point: far fewer multiply-adds per image (counted from the conv shapes)."""

    def macs(model: nn.Module, shape: tuple[int, int, int]) -> int:
        total = 0

        def hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
            nonlocal total
            total += out.numel() // out.shape[0] * m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups

        hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
        model.eval()(torch.randn(1, *shape))
        for h in hs:
            h.remove()
        return total

    fast, air = (
        macs(build_model("cifar_cpu_fast", (3, 32, 32), 10), (3, 32, 32)),
        macs(build_model("airbench", (3, 32, 32), 10), (3, 32, 32)),
    )
    assert fast * 6 < air, (fast, air)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_airbench_compiled_under_bf16_autocast_has_finite_gradients() -> None:
    torch.manual_seed(0)
    model = build_model("airbench", (3, 32, 32), 10).cuda().to(memory_format=torch.channels_last)
    fwd = torch.compile(model)
    x = torch.randn(64, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, _ = fwd(x)
    F.cross_entropy(logits.float(), torch.arange(64, device="cuda") % 10).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
