"""Minimal reproduction: torch.compile (Inductor) of amax under bf16 gives NaN gradients; a max pool does not.

    python bench/nan_repro.py            # cuda where there is one, else cpu (each case compiles: ~10 s)

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
    h = (x * 1.7).to(torch.bfloat16)          # any bf16 tensor made inside the compiled graph
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


def main() -> int:
    device = sys.argv[1] if len(sys.argv) > 1 else ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"torch {torch.__version__}, {device}")
    print(f"  amax, eager:                                   {case(amax_pool, device, False)}")
    print(f"  amax, torch.compile:                           {case(amax_pool, device, True)}")
    print(f"  amax, torch.compile, emulate_precision_casts:  {case(amax_pool, device, True, emulate=True)}")
    print(f"  adaptive_max_pool2d (indices), torch.compile:  {case(index_pool, device, True)}")
    inductor_config.emulate_precision_casts = False
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
