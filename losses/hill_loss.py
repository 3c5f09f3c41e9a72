"""The HILL loss: pull the model's own latent layout toward the user's edited one.

The terms are one autograd node (:class:`_HillLossTorch`; :class:`_HillLossCpu` on a CPU) with a
hand-written backward: a few dozen tensor ops with fixed shapes (index_add, masks, no boolean indexing, no
Python loop over classes or samples), so torch.compile and CUDA graphs take it as it is, and eager mode
launches a fraction of the kernels that autograd through the same formula would. On a CPU outside
torch.compile the same formula runs in float64, in one call into C (:mod:`hill_native`) or, where that
cannot be built, in numpy, whose small-array calls cost a fraction of torch's dispatch (docs/speed.md has the
numbers). The formula itself is written out in tests/hill_reference.py, which pins every path against
autograd.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import hill_native

TERM_NAMES = ("ce", "center", "spread", "sep", "point", "scale")
CE_WEIGHTS = ("blend", "full")
_EPS = 1e-8


@dataclass
class LossWeights:
    """Weights of the human terms inside L_human."""

    center: float = 1.0
    spread: float = 1.0
    sep: float = 1.0
    point: float = 1.0


@dataclass
class LatentTargets:
    """The teacher layout as tensors on the training device, in *loss space* ``u = z @ metric.T``.

    The loss space measures a displacement on screen by the feature change it takes, in units of the
    features' RMS radius (see :func:`hill_app.losses.targets.with_metric`), so one drag asks the same of the
    network whatever the projection's gain along that direction. ``centers`` (K, 2) and ``spreads`` (K,)
    are per-class targets; ``class_mask`` (K,) is 1 for classes that have targets; ``sep_min`` (K, K) is
    the minimum centre distance per pair (0: none). ``point_pos`` (N_train, 2) and ``point_mask``
    (N_train,) hold drop positions of individually moved training samples, indexed by training-sample
    index so a batch gathers them without a lookup. ``ref_radius`` is the view set's RMS radius in loss
    space when the targets were committed: the scale term holds the batch radius there, so compactness
    cannot be had by shrinking everything. ``sep_pairs`` (derived) marks each pair with a separation
    target once (upper triangle).
    """

    centers: torch.Tensor
    spreads: torch.Tensor
    class_mask: torch.Tensor
    sep_min: torch.Tensor
    point_pos: torch.Tensor
    point_mask: torch.Tensor
    ref_radius: torch.Tensor
    metric: torch.Tensor
    weights: LossWeights = field(default_factory=LossWeights)
    sep_pairs: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.sep_pairs = torch.triu((self.sep_min > 0).to(self.sep_min.dtype), diagonal=1)

    def to(self, device: torch.device | str) -> LatentTargets:
        return LatentTargets(
            self.centers.to(device),
            self.spreads.to(device),
            self.class_mask.to(device),
            self.sep_min.to(device),
            self.point_pos.to(device),
            self.point_mask.to(device),
            self.ref_radius.to(device),
            self.metric.to(device),
            self.weights,
        )


def class_stats(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class (counts, centroids (K,2), RMS distance to centroid (K,)) of a batch, fully batched."""
    counts = torch.zeros(num_classes, device=z.device, dtype=z.dtype).index_add_(0, y, torch.ones_like(z[:, 0]))
    sums = torch.zeros(num_classes, z.shape[1], device=z.device, dtype=z.dtype).index_add_(0, y, z)
    mu = sums / counts.clamp(min=1.0).unsqueeze(1)
    dev2 = (z - mu[y]).pow(2).sum(dim=1)
    ss = torch.zeros(num_classes, device=z.device, dtype=z.dtype).index_add_(0, y, dev2)
    rms = torch.sqrt(ss / counts.clamp(min=1.0) + _EPS)
    return counts, mu, rms


# ------------------------------------------------------------------------------------------------------
# the terms as one autograd node
#
# With u the batch in loss space, mu_k / n_k / rms_k the per-class centroid / count / RMS spread and
# P_* the number of classes, pairs or points a term averages over (at least 1):
#   center = sum_k has_k |mu_k - c_k|^2 / P_c                       has_k: class k in the batch, with a target
#   spread = sum_k hs_k (rms_k - s_k)^2 / P_s                       hs_k: at least 2 samples of k
#   sep    = sum_{k<l} pair_kl relu(m_kl - |mu_k - mu_l|)^2 / P_sep pair_kl: both present, m_kl > 0
#   point  = sum_i pm_i |u_i - p_i|^2 / P_p
#   scale  = sqrt(mean_i |u_i|^2) / r_0,   dev = |1 - scale|
# Gradients: d mu_k / d u_i = 1/n_k and d rms_k / d u_i = (u_i - mu_k) / (n_k rms_k) for i in class k,
# d|mu_k - mu_l| / d mu_k = (mu_k - mu_l) / |mu_k - mu_l|, d scale / d u_i = u_i / (B r r_0).


CPU_KERNELS = ("native", "numpy", "torch")
CPU_KERNEL: str | None = None  # the default of hill_loss's cpu_kernel; tests set it to run each path


def cpu_kernel(requested: str | None = None) -> str:
    """The CPU path's kernel: ``requested`` (or :data:`CPU_KERNEL`) if given, else the C kernel where it can
    be built (:func:`hill_native.available`), else numpy. "torch" runs the device path's tensor ops."""
    k = requested or CPU_KERNEL
    if k is None:
        return "native" if hill_native.available()[0] else "numpy"
    if k not in CPU_KERNELS:
        raise ValueError(f"cpu_kernel: expected one of {', '.join(CPU_KERNELS)}, got {k!r}")
    if k == "native" and not hill_native.available()[0]:
        raise RuntimeError(f"cpu_kernel 'native': the HILL C kernel is not available ({hill_native.available()[1]})")
    return k


SMALL_PRODUCTS_AS_SUMS = True  # bench/gpu_hill_kernels.py switches it off to measure what it saves


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b``; under torch.compile as products and a sum, which Inductor fuses into the kernels around it.

    The device path's products are 2 wide (the map into loss space and the gradient back), and for those
    cuBLAS launches split-K GEMMs that cost an H200 step more than all the terms' other kernels together
    (docs/speed.md, bench/gpu_hill_kernels.py). Eager, one GEMM is the cheaper launch.
    """
    if SMALL_PRODUCTS_AS_SUMS and torch.compiler.is_compiling():
        return (a.unsqueeze(-1) * b.unsqueeze(0)).sum(-2)
    return a @ b


def _loss_map(
    metric: torch.Tensor, project: tuple[torch.Tensor, torch.Tensor] | None, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, c) with loss-space u = x A^T + c: the frozen map (if any) folded into the metric, so one product."""
    if project is None:
        return metric, metric.new_zeros(metric.shape[0])
    w, b = project[0].to(like), project[1].to(like)
    return _mm(metric, w), (metric * b).sum(1)


def _target_tensors(t: LatentTargets) -> tuple[torch.Tensor, ...]:
    return t.centers, t.spreads, t.class_mask, t.sep_min, t.sep_pairs, t.point_pos, t.point_mask, t.ref_radius


def _terms_torch(
    u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, tt: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, tuple]:
    """The terms from one pass over the batch: per-class sums of u, 1 and |u|^2 in one scatter, the spread
    from ``sum |u|^2 / n - |mu|^2`` (clamped at 0) and the batch radius from the same sums. Fewest kernels
    and GPU time of the formulations measured; on an H100 Inductor fused the two-pass formula's product into
    one slow reduction (docs/speed.md, bench/gpu_hill_kernels.py)."""
    centers, spreads, class_mask, sep_min, sep_pairs, point_pos, point_mask, ref_radius = tt
    b, k = u.shape[0], centers.shape[0]
    q = (u * u).sum(1, keepdim=True)
    s = u.new_zeros(k, 4).index_add_(0, y, torch.cat([u, torch.ones_like(q), q], 1))
    n = s[:, 2]
    ncl = n.clamp(min=1.0)
    mu = s[:, :2] / ncl.unsqueeze(1)
    var = (s[:, 3] / ncl - (mu * mu).sum(1)).clamp(min=0.0)
    rms = torch.sqrt(var + _EPS)
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
    r = torch.sqrt(s[:, 3].sum() / b + _EPS)
    scale = r / ref_radius
    out = torch.cat([num / den, scale.view(1), (1.0 - scale).abs().view(1)])
    return out, (u, y, ncl, mu, rms, has, hs, ec, sr, dist, sp, pm, dp, den, r, ref_radius, scale)


def _grad_torch(saved: tuple, g: torch.Tensor) -> torch.Tensor:
    """d(g . terms)/du. Per class k the batch gradient is ``gmu_k / n_k + (cr_k / n_k) (u_i - mu_k)``: one
    (K, 3) table gathered by the labels, plus the moved points' and the scale's own terms."""
    u, y, ncl, mu, rms, has, hs, ec, sr, dist, sp, pm, dp, den, r, r0, scale = saved
    c = 2.0 * g[:4] / den
    w = sp / dist * -c[2]
    w = w + w.t()
    gmu = (c[0] * has).unsqueeze(1) * ec + w.sum(1, keepdim=True) * mu - _mm(w, mu)
    cr = c[1] * hs * sr / rms / ncl
    gs = (g[4] + g[5] * torch.sign(scale - 1.0)) / (u.shape[0] * r * r0)
    table = torch.cat([gmu / ncl.unsqueeze(1) - cr.unsqueeze(1) * mu, (cr + gs).unsqueeze(1)], 1)
    per = table.index_select(0, y)
    return per[:, :2] + per[:, 2:] * u + (c[3] * pm).unsqueeze(1) * dp


def _numpy_constants(targets: LatentTargets, project: tuple[torch.Tensor, torch.Tensor] | None) -> tuple:
    """The targets (and the frozen map folded into the metric) as arrays and Python floats, cached on the
    targets: committed targets and a frozen projection do not change, and a step should not convert them
    again. The map is kept as float32 tensors with a third output that is always 1 (``[u, 1] = x A^T + c``),
    so one matrix product gives the batch in loss space and, through the one-hot matrix, the class counts."""
    key = None if project is None else (project[0].data_ptr(), project[0]._version, project[1]._version)
    cached = getattr(targets, "_numpy", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    m = targets.metric.double().numpy()
    a, c = (m, np.zeros(2)) if project is None else (m @ project[0].double().numpy(), m @ project[1].double().numpy())
    at_aug = np.zeros((a.shape[1], 3))
    at_aug[:, :2] = a.T
    k = targets.centers.shape[0]
    sep_min = targets.sep_min.double().numpy()
    pairs = targets.sep_pairs.double().numpy()
    consts = (
        a.astype(np.float32),
        torch.from_numpy(at_aug.astype(np.float32)),
        torch.tensor([c[0], c[1], 1.0], dtype=torch.float32),
        np.eye(k),
        targets.centers.double().tolist(),
        targets.spreads.double().tolist(),
        targets.class_mask.double().tolist(),
        [(i, j, float(sep_min[i, j]), float(pairs[i, j])) for i, j in zip(*np.nonzero(pairs))],
        targets.point_pos.double().numpy(),
        targets.point_mask.double().numpy(),
        float(targets.ref_radius),
    )
    targets._numpy = (key, consts)  # type: ignore[attr-defined]  # a cache that travels with the targets
    return consts


def _native_constants(
    targets: LatentTargets, project: tuple[torch.Tensor, torch.Tensor] | None
) -> hill_native.Constants:
    """The targets and the folded map for the C kernel, cached on the targets as :func:`_numpy_constants` is."""
    key = None if project is None else (project[0].data_ptr(), project[0]._version, project[1]._version)
    cached = getattr(targets, "_native", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    m = targets.metric.double()
    if project is None:
        a, c = m, torch.zeros(2, dtype=torch.float64)
    else:
        a, c = m @ project[0].double(), m @ project[1].double()
    consts = hill_native.Constants(a.numpy(), c.numpy(), targets)
    targets._native = (key, consts)  # type: ignore[attr-defined]
    return consts


def _terms_numpy(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, consts: tuple) -> tuple[list[float], tuple]:
    """The terms of :func:`_terms_torch`, in float64 after the map (one float32 product in torch, as on the
    device path): the per-sample work in a few numpy calls (per-class sums as products with the batch's
    one-hot matrix), the per-class, per-pair and per-moved-point work (a handful of values) in Python floats.
    Right after the model's forward pass the caches hold the model, and each numpy call then costs several
    times what it costs in a loop (docs/speed.md): fewer calls is what counts. The spread uses
    sum |u|^2 / n - |mu|^2 (float64, clamped at 0) instead of a second pass over the batch."""
    _, at_aug, c_aug, eye, centers, spreads, class_mask, sep, point_pos, point_mask, r0 = consts
    b = x.shape[0]
    ua = torch.addmm(c_aug, x.detach(), at_aug).double().numpy()  # [u, 1] per sample
    yn = y.numpy()
    oh = eye.take(yn, 0)
    m1 = (oh.T @ ua).tolist()  # per class: sum of u (2), count
    m2 = (oh.T @ (ua * ua)).tolist()  # per class: sum of u_x^2, u_y^2
    cls = []  # per class: n (at least 1), mu, rms, has, hs, ec, sr
    num_c = num_s = den_c = den_s = sum_q = 0.0
    for k, (sx, sy, n) in enumerate(m1):
        ncl = n if n > 1.0 else 1.0
        mx, my = sx / ncl, sy / ncl
        q = m2[k][0] + m2[k][1]
        sum_q += q
        var = q / ncl - (mx * mx + my * my)
        rms = math.sqrt((var if var > 0.0 else 0.0) + _EPS)
        has = class_mask[k] if n > 0.0 else 0.0
        hs = class_mask[k] if n > 1.0 else 0.0
        ecx, ecy = mx - centers[k][0], my - centers[k][1]
        sr = rms - spreads[k]
        num_c += has * (ecx * ecx + ecy * ecy)
        den_c += has
        num_s += hs * sr * sr
        den_s += hs
        cls.append((ncl, mx, my, rms, has, hs, ecx, ecy, sr))
    num_sep = den_sep = 0.0
    short_pairs = []  # (k, l, weight * short / dist, mu_k - mu_l)
    for k, l_, m, wpair in sep:
        if m1[k][2] > 0.0 and m1[l_][2] > 0.0:
            dx, dy = cls[k][1] - cls[l_][1], cls[k][2] - cls[l_][2]
            dist = math.sqrt(dx * dx + dy * dy + _EPS)
            short = m - dist
            den_sep += wpair
            if short > 0.0:
                num_sep += wpair * short * short
                short_pairs.append((k, l_, wpair * short / dist, dx, dy))
    idn = idx.numpy()
    pm = point_mask[idn]
    moved = []  # (row in the batch, weight, u - p)
    num_p = den_p = 0.0
    for i in pm.nonzero()[0].tolist():
        w, (px, py) = float(pm[i]), point_pos[idn[i]].tolist()
        dx, dy = float(ua[i, 0]) - px, float(ua[i, 1]) - py
        num_p += w * (dx * dx + dy * dy)
        den_p += w
        moved.append((i, w, dx, dy))
    r = math.sqrt(sum_q / b + _EPS)
    scale = r / r0
    den = (max(den_c, 1.0), max(den_s, 1.0), max(den_sep, 1.0), max(den_p, 1.0))
    out = [num_c / den[0], num_s / den[1], num_sep / den[2], num_p / den[3], scale, abs(1.0 - scale)]
    return out, (ua, yn, cls, short_pairs, moved, den, r, r0, scale, consts[0])


def _grad_numpy(saved: tuple, g: Sequence[float]) -> np.ndarray:
    """d(g . terms)/dx for the terms of :func:`_terms_numpy`, as a float32 tensor. Per class k the batch
    gradient is ``gmu_k / n_k + (cr_k / n_k) (u_i - mu_k)``: one (K, 3) table gathered by the labels."""
    ua, yn, cls, short_pairs, moved, den, r, r0, scale, a = saved
    c0, c1, c2, c3 = (2.0 * float(g[i]) / den[i] for i in range(4))
    gm = [[c0 * h * ex, c0 * h * ey] for (_, _, _, _, h, _, ex, ey, _) in cls]
    for k, l_, ws, dx, dy in short_pairs:  # d relu(m - |mu_k - mu_l|)^2 / d mu_k = -2 short (mu_k - mu_l) / dist
        w = -c2 * ws
        gm[k][0] += w * dx
        gm[k][1] += w * dy
        gm[l_][0] -= w * dx
        gm[l_][1] -= w * dy
    sign = 1.0 if scale > 1.0 else (-1.0 if scale < 1.0 else 0.0)
    gs = (float(g[4]) + float(g[5]) * sign) / (ua.shape[0] * r * r0)  # the scale terms: gs * u_i for every i
    rows = []
    for (ncl, mx, my, rms, _, hs, _, _, sr), (gx_, gy_) in zip(cls, gm):
        cr = c1 * hs * sr / rms / ncl
        rows.append((gx_ / ncl - cr * mx, gy_ / ncl - cr * my, cr + gs))
    per = np.array(rows).take(yn, 0)  # each sample's class row
    gu = per[:, :2] + per[:, 2:] * ua[:, :2]
    for i, w, dx, dy in moved:
        gu[i, 0] += c3 * w * dx
        gu[i, 1] += c3 * w * dy
    return gu.astype(np.float32) @ a


class _HillLossCpu(torch.autograd.Function):
    """The CPU path: one autograd node, float64 inside, its own backward; the arithmetic in one C call
    (:mod:`hill_native`) or, where that cannot be built, in numpy.

    Returns the loss and the stats (ce, center, spread, sep, point, scale), each differentiable. ``x`` is the
    projected batch z, or with ``project = (W, b)`` the features that map to it (z = x W^T + b), so the
    projection's product and its gradient happen inside the node too.
    """

    @staticmethod
    def forward(
        ctx,
        ce: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,  # type: ignore[override]
        alpha: float,
        lam: float,
        weights: LossWeights,
        full: bool,
        consts: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w = weights
        coef = (alpha * w.center, alpha * w.spread, alpha * w.sep, alpha * w.point, 0.0, lam)
        # d loss / dx now, while what it reads is in the cache; the backward only scales it
        if isinstance(consts, hill_native.Constants):
            ctx.saved = (x.detach(), y, idx, consts)
            t, ctx.gx_loss = hill_native.terms_grad(x.detach(), y, idx, consts, coef if any(coef) else None)
        else:
            t, ctx.saved = _terms_numpy(x, y, idx, consts)
            ctx.gx_loss = torch.from_numpy(_grad_numpy(ctx.saved, coef)) if any(coef) else None
        cef = float(ce)
        ctx.ce_coef = 1.0 if full else 1.0 - alpha
        ctx.set_materialize_grads(False)
        loss = ctx.ce_coef * cef + sum(c * v for c, v in zip(coef, t))
        stats = np.empty(6, dtype=np.float32)
        stats[0], stats[1:] = cef, t[:5]
        return torch.scalar_tensor(loss, dtype=torch.float32), torch.from_numpy(stats)  # (torch.tensor: 2x slower)

    @staticmethod
    def backward(ctx, gl: torch.Tensor | None, gs: torch.Tensor | None) -> tuple:  # type: ignore[override]
        # the loss's gradient times its upstream gradient, plus each reported term's own
        gx = None
        gce = 0.0
        if gl is not None:
            gln = float(gl)
            gce = gln * ctx.ce_coef
            if ctx.gx_loss is not None:
                gx = ctx.gx_loss if gln == 1.0 else ctx.gx_loss * gln
        if gs is not None:
            gsn = gs.tolist()
            gce += gsn[0]
            g = (*gsn[1:], 0.0)
            if isinstance(ctx.saved[-1], hill_native.Constants):
                xs, ys, ids, cs = ctx.saved
                gt = hill_native.terms_grad(xs, ys, ids, cs, g)[1]
            else:
                gt = torch.from_numpy(_grad_numpy(ctx.saved, g))
            gx = gt if gx is None else gx + gt
        return (torch.scalar_tensor(gce, dtype=torch.float32), gx) + (None,) * 7


# Function.apply binds the arguments to forward's signature and maps a pytree over them for functorch before
# it calls the C++ apply: ~20 us a step, a tenth of the CPU HILL step's cost. The node takes no functorch
# transform (numpy and C inside), so it calls the C++ apply directly.
_apply_cpu = super(torch.autograd.Function, _HillLossCpu).apply


class _HillLossTorch(torch.autograd.Function):
    """The device path (and the path torch.compile traces): the same 7 values as one tensor (loss, then the
    6 terms), each differentiable, from tensor ops only, so that CUDA graphs capture it. ``x`` maps to loss
    space as ``x a^T + c`` (:func:`_loss_map`)."""

    @staticmethod
    def forward(
        ctx,
        ce: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,  # type: ignore[override]
        alpha: torch.Tensor,
        lam: torch.Tensor,
        wc: float,
        ws: float,
        wsep: float,
        wp: float,
        full: bool,
        a: torch.Tensor,
        c: torch.Tensor,
        *tt: torch.Tensor,
    ) -> torch.Tensor:
        ctx.w, ctx.full = (wc, ws, wsep, wp), full
        t, saved = _terms_torch(_mm(x, a.t()) + c, y, idx, tt)
        ctx.save_for_backward(alpha, lam, a, *saved)
        loss = combine_terms(ce, t, LossWeights(wc, ws, wsep, wp), alpha, lam, "full" if full else "blend")
        return torch.cat([loss.view(1), t])

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple:  # type: ignore[override]
        wc, ws, wsep, wp = ctx.w
        alpha, lam, a, *saved = ctx.saved_tensors
        gl = g[0]
        coef = torch.stack([alpha * wc, alpha * ws, alpha * wsep, alpha * wp, torch.zeros_like(alpha), lam])
        gx = _mm(_grad_torch(tuple(saved), g[1:] + gl * coef.to(g.dtype)), a)
        gce = gl if ctx.full else gl * (1.0 - alpha)
        return (gce, gx) + (None,) * 19


def _hill_node(
    ce: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    idx: torch.Tensor,
    targets: LatentTargets,
    alpha: float | torch.Tensor,
    lam: float | torch.Tensor,
    weights: LossWeights,
    ce_weight: str,
    project: tuple[torch.Tensor, torch.Tensor] | None = None,
    kernel: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, stats: ce and the 5 terms) through the one node that fits the device."""
    if ce_weight not in CE_WEIGHTS:
        raise ValueError(f"ce_weight: expected one of {', '.join(CE_WEIGHTS)}, got {ce_weight!r}")
    x = x.float()
    full = ce_weight == "full"
    if x.device.type == "cpu" and not torch.compiler.is_compiling():
        k = cpu_kernel(kernel)
        if k != "torch":
            consts = _native_constants(targets, project) if k == "native" else _numpy_constants(targets, project)
            return _apply_cpu(ce, x, y, idx, float(alpha), float(lam), weights, full, consts)
    a, c = _loss_map(targets.metric, project, x)
    # constants as device scalars: torch.full is a fill, not a host copy, so a CUDA graph can capture it
    alpha = alpha if isinstance(alpha, torch.Tensor) else torch.full((), float(alpha), device=x.device)
    lam = lam if isinstance(lam, torch.Tensor) else torch.full((), float(lam), device=x.device)
    out = _HillLossTorch.apply(
        ce,
        x,
        y,
        idx,
        alpha,
        lam,
        float(weights.center),
        float(weights.spread),
        float(weights.sep),
        float(weights.point),
        full,
        a,
        c,
        *_target_tensors(targets),
    )
    return out[0], torch.cat([ce.detach().view(1), out[1:6]])


def hill_terms(z: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, targets: LatentTargets) -> torch.Tensor:
    """The human terms (center, spread, sep, point) and the batch scale, stacked into one tensor of 5.

    ``z`` (B, 2) is the projected batch, ``y`` its labels and ``idx`` its training-sample indices.
    Each term is a mean over the classes / pairs / points present in the batch (0 where none is) of
    squared distances in loss space. Differentiable in ``z``: the same node the loss trains through.
    """
    zero = z.new_zeros((), dtype=torch.float32)
    return _hill_node(zero, z, y, idx, targets, 0.0, 0.0, targets.weights, "blend")[1][1:]


def combine_terms(ce: Any, t: Any, weights: LossWeights, alpha: Any, lam: Any, ce_weight: str = "blend") -> Any:
    """L from CE and the stacked terms (center, spread, sep, point, scale[, |1 - scale|]).

    ``ce_weight`` "blend" is the paper's L = (1 - alpha) CE + alpha L_human + lam |1 - scale|; "full" keeps
    CE at weight 1: L = CE + alpha L_human + lam |1 - scale|. Works on tensors and on numpy floats.
    """
    if ce_weight not in CE_WEIGHTS:
        raise ValueError(f"ce_weight: expected one of {', '.join(CE_WEIGHTS)}, got {ce_weight!r}")
    human = weights.center * t[0] + weights.spread * t[1] + weights.sep * t[2] + weights.point * t[3]
    dev = t[5] if len(t) > 5 else abs(1.0 - t[4])
    ce_part = ce if ce_weight == "full" else (1.0 - alpha) * ce
    return ce_part + alpha * human + lam * dev


def hill_loss(
    logits: torch.Tensor,
    z: torch.Tensor | None,
    y: torch.Tensor,
    idx: torch.Tensor,
    targets: LatentTargets | None,
    alpha: float | torch.Tensor,
    lam: float | torch.Tensor,
    *,
    weights: LossWeights | None = None,
    ce_weight: str = "blend",
    project: tuple[torch.Tensor, torch.Tensor] | None = None,
    cpu_kernel: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The global loss the training step trains on, and its terms (6, in TERM_NAMES order, detached).

    ``z`` is the projected batch (B, 2); with ``project = (weight, bias)`` it is the features (B, D) that the
    frozen map takes to ``features @ weight.T + bias``. With no targets committed (``targets`` or ``z``
    None), or a float alpha == 0, the loss is exactly cross-entropy and nothing else is computed: the scale
    term exists only to stop the network from satisfying the human terms by shrinking everything, so it is
    active only together with them (this makes alpha = 0 plain training). ``weights`` default to
    ``targets.weights``; ``ce_weight`` as in :func:`combine_terms`. ``alpha`` and ``lam`` may be device
    scalars (the step keeps them so, so that changing them neither recompiles nor recaptures).
    ``cpu_kernel`` picks the CPU path's arithmetic (:func:`cpu_kernel`); a run records it, since the C
    kernel and numpy round differently and exact replay needs the same one.
    """
    if ce_weight not in CE_WEIGHTS:
        raise ValueError(f"ce_weight: expected one of {', '.join(CE_WEIGHTS)}, got {ce_weight!r}")
    ce = F.cross_entropy(logits.float(), y)
    if targets is None or z is None or (not isinstance(alpha, torch.Tensor) and alpha == 0.0):
        return ce, torch.cat([ce.detach().view(1), ce.new_zeros(5)])
    loss, stats = _hill_node(
        ce, z, y, idx, targets, alpha, lam, weights if weights is not None else targets.weights, ce_weight, project,
        cpu_kernel,
    )  # fmt: skip
    return loss, stats.detach()


class _Replayed(torch.autograd.Function):
    """The loss from a replayed graph; its backward scales the gradients the graph computed with it."""

    @staticmethod
    def forward(
        ctx,
        ce: torch.Tensor,
        x: torch.Tensor,
        graphed: GraphedHillLoss,  # type: ignore[override]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss, stats, gce, gx = graphed.replay(ce, x)
        ctx.save_for_backward(gce, gx)
        ctx.mark_non_differentiable(stats)
        return loss, stats

    @staticmethod
    def backward(ctx, gl: torch.Tensor, _gs: torch.Tensor | None) -> tuple:  # type: ignore[override]
        gce, gx = ctx.saved_tensors
        return gl * gce, gl * gx, None


class GraphedHillLoss:
    """:func:`hill_loss` for a step that runs eager on CUDA: the HILL part captured once in a CUDA graph.

    In eager mode a GPU step is bound by kernel launches from Python, and the HILL terms are about a hundred
    tiny kernels: the graph replays them as one launch. It computes the loss, the stats and, in the same pass,
    the gradients for an upstream gradient of 1 (``_terms_torch``/``_grad_torch``, the device path's own
    formula); backward scales them. Everything the graph reads by address (the batch, copied into static
    buffers; alpha and lam, device scalars updated in place; the targets and the frozen map) or by value (the
    weights, ce_weight, shapes) is in its key; a change captures again. The stats are not differentiable here.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._static: dict[str, torch.Tensor] = {}
        self._graph: torch.cuda.CUDAGraph | None = None
        self._refs: tuple = ()
        self.captures = 0

    @staticmethod
    def _body(
        ce: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        targets: LatentTargets,
        alpha: torch.Tensor,
        lam: torch.Tensor,
        w: LossWeights,
        full: bool,
        project: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, ...]:
        a, c = _loss_map(targets.metric, project, x)
        t, saved = _terms_torch(_mm(x, a.t()) + c, y, idx, _target_tensors(targets))
        loss = combine_terms(ce, t, w, alpha, lam, "full" if full else "blend")
        coef = torch.stack(
            [alpha * w.center, alpha * w.spread, alpha * w.sep, alpha * w.point, torch.zeros_like(alpha), lam]
        )
        gx = _mm(_grad_torch(saved, coef), a)
        gce = torch.ones_like(alpha) if full else 1.0 - alpha
        return loss, torch.cat([ce.view(1), t[:5]]), gce, gx

    def _capture(
        self,
        key: tuple,
        refs: tuple,
        ce: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        args: tuple,
    ) -> None:
        self._graph = None
        st = {"ce": ce.detach().clone(), "x": x.detach().clone(), "y": y.clone(), "idx": idx.clone()}
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.no_grad(), torch.cuda.stream(side):  # warm-up on the capture stream (lazy cuBLAS state)
            self._body(st["ce"], st["x"], st["y"], st["idx"], *args)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph, stream=side):
            st["loss"], st["stats"], st["gce"], st["gx"] = self._body(st["ce"], st["x"], st["y"], st["idx"], *args)
        self._graph, self._static, self._key, self._refs = graph, st, key, refs
        self.captures += 1

    def replay(self, ce: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        st = self._static
        st["ce"].copy_(ce.detach())
        st["x"].copy_(x.detach())
        assert self._graph is not None  # __call__ captures before it replays
        self._graph.replay()
        return st["loss"].clone(), st["stats"].clone(), st["gce"].clone(), st["gx"].clone()

    def __call__(
        self,
        logits: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        targets: LatentTargets,
        alpha: torch.Tensor,
        lam: torch.Tensor,
        *,
        weights: LossWeights,
        ce_weight: str,
        project: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if ce_weight not in CE_WEIGHTS:
            raise ValueError(f"ce_weight: expected one of {', '.join(CE_WEIGHTS)}, got {ce_weight!r}")
        ce = F.cross_entropy(logits.float(), y)
        x = x.float()
        if project is not None:
            project = (project[0].to(x), project[1].to(x))
        tt = _target_tensors(targets) + (targets.metric,) + (project or ())
        w = (float(weights.center), float(weights.spread), float(weights.sep), float(weights.point))
        key = (
            tuple(x.shape),
            tuple(x.stride()),
            tuple(y.shape),
            tuple(idx.shape),
            x.device,
            w,
            ce_weight,
            alpha.data_ptr(),
            lam.data_ptr(),
            tuple(v.data_ptr() for v in tt),
        )
        if key != self._key:
            self._capture(
                key,
                (targets, project, alpha, lam),
                ce,
                x,
                y,
                idx,
                (targets, alpha, lam, LossWeights(*w), ce_weight == "full", project),
            )
        st = self._static
        st["y"].copy_(y)
        st["idx"].copy_(idx)
        return _Replayed.apply(ce, x, self)
