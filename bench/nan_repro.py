"""Minimal reproduction: torch.compile (Inductor) of amax under bf16 gives NaN gradients; a max pool does not.

    python bench/nan_repro.py            # cuda where there is one, else cpu (each case compiles: ~10 s)
    python bench/nan_repro.py cuda --net # also the airbench net itself, compiled under bf16 autocast

amax's backward spreads the gradient over the elements equal to the maximum (``grad / count(x == amax(x))``).
In eager mode both sides of that comparison are the same bf16 tensor. Inductor fuses the bf16 producer into
the kernels and keeps its value in fp32 (it elides the round trip through bf16), while the saved maximum was
rounded to bf16: no element compares equal, the count is 0 and the gradient 0/0. In the airbench net the global
pool's NaN then reaches every layer from the first step, with a finite loss. Inductor's
``emulate_precision_casts`` (rounding as eager does) removes it; hill-app's models use a max pool with indices
(``engine.models.global_max_pool``), whose backward follows the saved index.
"""

from __future__ import annotations

import sys

import torch
import torch._inductor.config as inductor_config
import torch.nn.functional as F


def amax_pool(x: torch.Tensor) -> torch.Tensor:
    h = (x * 1.7).to(torch.bfloat16)  # any bf16 tensor made inside the compiled graph
    return h.amax(dim=(2, 3)).float().sum()


def index_pool(x: torch.Tensor) -> torch.Tensor:
    h = (x * 1.7).to(torch.bfloat16)
    return F.adaptive_max_pool2d(h, 1).float().sum()


def case(fn, device: str, compiled: bool, emulate: bool = False) -> str:
    inductor_config.emulate_precision_casts = emulate
    torch._dynamo.reset()
    x = torch.randn(4, 16, 4, 4, device=device, generator=torch.Generator(device).manual_seed(0), requires_grad=True)
    (torch.compile(fn) if compiled else fn)(x).backward()
    g = x.grad
    return f"{int(g.isnan().sum())}/{g.numel()} NaN gradients"


def net_case(device: str, pool: str, emulate: bool = False) -> str:
    """The airbench net itself, compiled, one bf16-autocast step: how many parameters get non-finite grads."""
    from hill_app.engine.models import AirbenchNet

    class AmaxNet(AirbenchNet):  # the global pool as it was: amax
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.layers(self.activ(self.whiten(x)))
            features = x.amax(dim=(2, 3)) * self.scaling_factor
            return self.head(features), features

    inductor_config.emulate_precision_casts = emulate
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = (AmaxNet if pool == "amax" else AirbenchNet)(3, 10).to(device).to(memory_format=torch.channels_last)
    x = torch.randn(256, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device, dtype=torch.bfloat16):
        logits, _ = torch.compile(model)(x)
    loss = F.cross_entropy(logits.float(), torch.arange(256, device=device) % 10)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    bad = sum(1 for p in params if not torch.isfinite(p.grad).all())
    return f"loss {loss.item():.4f}, {bad}/{len(params)} parameters with non-finite gradients"


def main() -> int:
    device = sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"torch {torch.__version__}, {device}")
    if "--net" in sys.argv:
        print(f"  airbench net, amax pool, compiled, bf16:                 {net_case(device, 'amax')}")
        print(f"  airbench net, amax pool, compiled, bf16, emulate casts:  {net_case(device, 'amax', True)}")
        print(f"  airbench net, global_max_pool (indices), compiled, bf16: {net_case(device, 'index')}")
    print(f"  amax, eager:                                   {case(amax_pool, device, False)}")
    print(f"  amax, torch.compile:                           {case(amax_pool, device, True)}")
    print(f"  amax, torch.compile, emulate_precision_casts:  {case(amax_pool, device, True, emulate=True)}")
    print(f"  adaptive_max_pool2d (indices), torch.compile:  {case(index_pool, device, True)}")
    inductor_config.emulate_precision_casts = False
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
