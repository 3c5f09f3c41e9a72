"""What the HILL terms add to a compiled GPU step, kernel by kernel, for the device formula and its alternatives.

    python bench/gpu_hill_kernels.py [--epochs 8] [--variants twopass,gemm,sums]

The default CUDA mode (loss and model compiled, the step in one CUDA graph, bf16 autocast) on 50,000 synthetic
CIFAR-shaped images, batch 1024 (as bench/gpu_vs_airbench.py). Variants of the device path: ``sums``
(losses/hill_loss.py as it is: one pass over the batch, per-class sums of u, 1 and |u|^2 in one scatter, its
2-wide products as sums under torch.compile), ``gemm`` (the same with those products as GEMMs,
``SMALL_PRODUCTS_AS_SUMS`` off) and ``twopass`` (the formula before 2026-12-05, kept here: centroids first,
then a second pass for the squared deviations, products as sums). For each it times plain and HILL epochs
interleaved (CUDA graphs on, the users' path), then profiles one epoch of each with the graphs off, so that the
kernels show, and prints the kernels a HILL step adds.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_overhead import EngineVariant, Problem, time_interleaved  # noqa: E402

hl = importlib.import_module("hill_app.losses.hill_loss")
_EPS = hl._EPS


def _terms_twopass(
    u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, tt: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, tuple]:
    centers, spreads, class_mask, sep_min, sep_pairs, point_pos, point_mask, ref_radius = tt
    b, k = u.shape[0], centers.shape[0]
    s = u.new_zeros(k, 3).index_add_(0, y, F.pad(u, (0, 1), value=1.0))  # per-class sums and counts
    n = s[:, 2]
    ncl = n.clamp(min=1.0).unsqueeze(1)
    mu = s[:, :2] / ncl
    d = u - mu.index_select(0, y)
    ss = u.new_zeros(k).index_add_(0, y, (d * d).sum(1))
    rms = torch.sqrt(ss / ncl.squeeze(1) + _EPS)
    pres = (n > 0).to(u.dtype)
    has = pres * class_mask
    hs = (n > 1) * class_mask
    ec = mu - centers
    sr = rms - spreads
    dm = mu.unsqueeze(1) - mu.unsqueeze(0)
    dist = torch.sqrt((dm * dm).sum(2) + _EPS)
    pair = torch.outer(pres, pres) * sep_pairs
    short = (sep_min - dist).clamp(min=0.0)
    sp = short * pair
    pm = point_mask.index_select(0, idx)
    dp = u - point_pos.index_select(0, idx)
    num = torch.stack(
        [((ec * ec).sum(1) * has).sum(), (sr * sr * hs).sum(), (short * sp).sum(), ((dp * dp).sum(1) * pm).sum()]
    )
    den = torch.stack([has.sum(), hs.sum(), pair.sum(), pm.sum()]).clamp(min=1.0)
    r = torch.sqrt((u * u).sum() / b + _EPS)
    scale = r / ref_radius
    out = torch.cat([num / den, scale.view(1), (1.0 - scale).abs().view(1)])
    return out, (u, y, ncl, mu, d, rms, has, hs, ec, sr, dist, sp, pm, dp, den, r, ref_radius, scale)


def _grad_twopass(saved: tuple, g: torch.Tensor) -> torch.Tensor:
    u, y, ncl, mu, d, rms, has, hs, ec, sr, dist, sp, pm, dp, den, r, r0, scale = saved
    c = 2.0 * g[:4] / den
    w = sp / dist * -c[2]
    w = w + w.t()
    gmu = (c[0] * has).unsqueeze(1) * ec + w.sum(1, keepdim=True) * mu - hl._mm(w, mu)
    cr = (c[1] * hs * sr / rms).unsqueeze(1)
    per = (torch.cat([gmu, cr], 1) / ncl).index_select(0, y)
    gs = (g[4] + g[5] * torch.sign(scale - 1.0)) / (u.shape[0] * r * r0)
    return per[:, :2] + per[:, 2:] * d + (c[3] * pm).unsqueeze(1) * dp + gs * u


CURRENT = (hl._terms_torch, hl._grad_torch)
VARIANTS = {  # name: (terms, gradient, SMALL_PRODUCTS_AS_SUMS)
    "gemm": (*CURRENT, False),
    "sums": (*CURRENT, True),
    "twopass": (_terms_twopass, _grad_twopass, True),
}


def kernels(v: EngineVariant) -> tuple[collections.Counter, dict[str, float], int]:
    """One profiled epoch with the CUDA graphs off: kernel counts and GPU microseconds by name, per step."""
    from torch.profiler import ProfilerActivity, profile

    v.s.train_step.cuda_graphs = False
    v.epoch()  # warm (the step without a graph)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        v.epoch()
        torch.cuda.synchronize()
    v.s.train_step.cuda_graphs = None
    count: collections.Counter = collections.Counter()
    us: dict[str, float] = collections.defaultdict(float)
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            name = e.name[:90]
            count[name] += 1
            us[name] += e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
    return count, us, v.s.config.batch_size and (v.s.n_train // v.s.config.batch_size)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--variants", default="twopass,gemm,sums")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    torch._dynamo.config.cache_size_limit = 64
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = 64
    dev = torch.device("cuda")
    prob = Problem(dev, 1024, 50000)
    root = Path(tempfile.mkdtemp(prefix="hill-kernels-"))
    print(f"{torch.cuda.get_device_name(dev)} | torch {torch.__version__} | batch 1024, {prob.steps} steps/epoch")
    plain = EngineVariant(prob, True, None, False, root / "plain")
    base = kernels(plain)
    for name in [v.strip() for v in a.variants.split(",") if v.strip()]:
        hl._terms_torch, hl._grad_torch, hl.SMALL_PRODUCTS_AS_SUMS = VARIANTS[name]
        t0 = time.perf_counter()
        hill = EngineVariant(prob, True, None, True, root / f"hill-{name}")
        times = time_interleaved({"plain": plain.epoch, "hill": hill.epoch}, 2, a.epochs, dev)
        med = {k: statistics.median(v) for k, v in times.items()}
        per_step = (med["hill"] - med["plain"]) / prob.steps * 1e6
        first = hill.first
        print(
            f"\n[{name}] graphed: plain {prob.images / med['plain']:,.0f} img/s, HILL {prob.images / med['hill']:,.0f}"
            f" img/s, HILL/plain {med['hill'] / med['plain']:.4f} (+{per_step:.0f} us a step; epochs "
            + ", ".join(f"{x * 1e3:.1f}" for x in times["hill"])
            + f" ms); epoch-1 loss {first['train_loss']:.4f} finite "
            f"{all(math.isfinite(x) for k, x in first.items() if k.startswith('train_'))}; graphed "
            f"{hill.s.train_step.graphed} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        cnt, us, steps = kernels(hill)
        extra_n = sum(cnt.values()) / steps - sum(base[0].values()) / base[2]
        extra_us = sum(us.values()) / steps - sum(base[1].values()) / base[2]
        print(f"  ungraphed: +{extra_n:.1f} kernels and +{extra_us:.1f} GPU us a step; kernels the HILL step adds:")
        rows = []
        for k in cnt:
            dn = cnt[k] / steps - base[0].get(k, 0) / base[2]
            dt = us[k] / steps - base[1].get(k, 0.0) / base[2]
            if dn > 0.5:
                rows.append((dt, dn, k))
        for dt, dn, k in sorted(rows, reverse=True)[:40]:
            print(f"    {dn:4.1f} x {dt:7.1f} us  {k}")
        hill.s.journal.close()
        del hill
        torch.cuda.empty_cache()
    hl._terms_torch, hl._grad_torch, hl.SMALL_PRODUCTS_AS_SUMS = VARIANTS["sums"]
    return 0


if __name__ == "__main__":
    sys.exit(main())
