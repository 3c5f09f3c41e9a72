"""The HILL terms written out as plain autograd formulas: the definition that the loss's fused forward and
hand-written backward (losses/hill_loss.py, torch and numpy paths) are checked against."""

import torch
import torch.nn.functional as F

EPS = 1e-8


def reference_terms(z, y, idx, targets):
    """(center, spread, sep, point, scale, |1 - scale|) by autograd-traceable torch ops, in z's dtype."""
    dt = z.dtype
    t = {
        k: getattr(targets, k).to(dt)
        for k in ("centers", "spreads", "class_mask", "sep_min", "point_pos", "point_mask", "ref_radius", "metric")
    }
    u = z @ t["metric"].t()
    k = t["centers"].shape[0]
    counts = torch.zeros(k, dtype=dt).index_add_(0, y, torch.ones_like(u[:, 0]))
    mu = torch.zeros(k, 2, dtype=dt).index_add_(0, y, u) / counts.clamp(min=1.0).unsqueeze(1)
    ss = torch.zeros(k, dtype=dt).index_add_(0, y, (u - mu[y]).pow(2).sum(dim=1))
    rms = torch.sqrt(ss / counts.clamp(min=1.0) + EPS)
    present = (counts > 0).to(dt) * t["class_mask"]
    center = ((mu - t["centers"]).pow(2).sum(dim=1) * present).sum() / present.sum().clamp(min=1.0)
    has_spread = (counts > 1).to(dt) * t["class_mask"]
    spread = ((rms - t["spreads"]).pow(2) * has_spread).sum() / has_spread.sum().clamp(min=1.0)
    d = torch.sqrt((mu.unsqueeze(0) - mu.unsqueeze(1)).pow(2).sum(dim=2) + EPS)
    pair = (counts > 0).to(dt)
    pair = torch.triu(pair.unsqueeze(0) * pair.unsqueeze(1) * (t["sep_min"] > 0).to(dt), diagonal=1)
    sep = (F.relu(t["sep_min"] - d).pow(2) * pair).sum() / pair.sum().clamp(min=1.0)
    pm = t["point_mask"][idx]
    point = ((u - t["point_pos"][idx]).pow(2).sum(dim=1) * pm).sum() / pm.sum().clamp(min=1.0)
    scale = torch.sqrt(u.pow(2).sum(dim=1).mean() + EPS) / t["ref_radius"]
    return torch.stack([center, spread, sep, point, scale, (1.0 - scale).abs()])


def reference_loss(logits, z, y, idx, targets, weights, alpha, lam, ce_weight="blend"):
    """The global loss from its definition: (1 - alpha) CE (or CE for "full") + alpha L_human + lam |1 - scale|."""
    ce = F.cross_entropy(logits, y)
    t = reference_terms(z, y, idx, targets)
    human = weights.center * t[0] + weights.spread * t[1] + weights.sep * t[2] + weights.point * t[3]
    ce_coef = 1.0 if ce_weight == "full" else 1.0 - alpha
    return ce_coef * ce + alpha * human + lam * t[5], t
