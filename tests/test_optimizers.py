"""The run's optimisers (hill_app/engine/optimizers.py): torch's arithmetic and state dicts, bit for bit, without
torch._dynamo being imported by a CPU run."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from hill_app.engine import optimizers

KINDS = {
    "sgd": (optimizers.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)),
    "adam": (optimizers.Adam, torch.optim.Adam, dict(lr=1e-3, weight_decay=5e-4)),
    "adamw": (optimizers.AdamW, torch.optim.AdamW, dict(lr=1e-3, weight_decay=5e-2)),
}


def _model(seed: int, device: str = "cpu") -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).to(device)


def _train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: range) -> None:
    device = next(model.parameters()).device
    for i in steps:
        g = torch.Generator().manual_seed(i)
        x, y = torch.randn(16, 6, generator=g).to(device), torch.randint(0, 3, (16,), generator=g).to(device)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _same_state(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        sa, sb = a["state"][k], b["state"][k]
        assert sa.keys() == sb.keys()
        for n in sa:
            assert torch.equal(torch.as_tensor(sa[n]), torch.as_tensor(sb[n])), (k, n)


@pytest.mark.parametrize("kind", list(KINDS))
def test_same_trajectory_and_state_as_torch_and_checkpoints_load_across(kind):
    ours_cls, torch_cls, kw = KINDS[kind]
    m1, m2 = _model(0), _model(0)
    o1, o2 = ours_cls(m1.parameters(), **kw), torch_cls(m2.parameters(), **kw)
    _train(m1, o1, range(5))
    _train(m2, o2, range(5))
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(p, q)
        assert p.grad is not None and q.grad is not None  # zero_grad(set_to_none) then backward: set again
    _same_state(o1.state_dict(), o2.state_dict())

    # a checkpoint of either continues in the other exactly as in itself
    m3, m4 = _model(1), _model(1)
    m3.load_state_dict(m1.state_dict())
    m4.load_state_dict(m2.state_dict())
    o3, o4 = torch_cls(m3.parameters(), **kw), ours_cls(m4.parameters(), **kw)
    o3.load_state_dict(copy.deepcopy(o1.state_dict()))  # a copy, as a checkpoint file is: loading aliases
    o4.load_state_dict(copy.deepcopy(o2.state_dict()))
    for model, opt in ((m1, o1), (m2, o2), (m3, o3), (m4, o4)):
        _train(model, opt, range(5, 9))
    for ps in zip(m1.parameters(), m2.parameters(), m3.parameters(), m4.parameters(), strict=True):
        assert all(torch.equal(ps[0], q) for q in ps[1:])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.cuda
@pytest.mark.parametrize("kind", list(KINDS))
def test_on_cuda_the_same_trajectory_as_torch_also_captured_in_a_cuda_graph(kind):
    """On CUDA torch takes its multi-tensor path, and the engine captures the step in a CUDA graph."""
    ours_cls, torch_cls, kw = KINDS[kind]
    if kind != "sgd":
        kw = {**kw, "capturable": True}
    m1, m2 = _model(0, "cuda"), _model(0, "cuda")
    o1, o2 = ours_cls(m1.parameters(), **kw), torch_cls(m2.parameters(), **kw)
    _train(m1, o1, range(3))
    _train(m2, o2, range(3))
    graphs = []
    for o in (o1, o2):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            o.step()  # warm-up on the capture stream, as the engine does
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            o.step()
        graphs.append(graph)
    for _ in range(3):
        for graph in graphs:
            graph.replay()
    torch.cuda.synchronize()
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(p, q)
    _same_state(o1.state_dict(), o2.state_dict())


def test_zero_grad_without_set_to_none_zeroes_in_place():
    m = _model(0)
    opt = optimizers.SGD(m.parameters(), lr=0.1)
    _train(m, opt, range(1))
    grads = [p.grad for p in m.parameters()]
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is g and not g.any() for p, g in zip(m.parameters(), grads, strict=True))


def test_a_cpu_run_with_checkpoints_and_a_replay_does_not_import_torch_dynamo(tmp_path):
    run = tmp_path / "r"
    code = (
        "import sys; from hill_app.cli import main; "
        "from hill_app.engine.replay import replay_run; "
        "rc = main(['train', '--epochs', '2', '--pause-at', 'none', '--device', 'cpu', '--checkpoint-every', '1', "
        f"'--optimizer', 'adam', '--out', {str(run)!r}]); "
        f"_, diffs = replay_run({str(run)!r}, {str(tmp_path / 'replay')!r}); "
        "print('DIFFS', diffs); print('DYNAMO', 'torch._dynamo' in sys.modules); sys.exit(rc)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DIFFS []" in r.stdout
    assert "DYNAMO False" in r.stdout
