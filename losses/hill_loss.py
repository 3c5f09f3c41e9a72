"""The HILL loss: pull the model's own latent layout toward the user's edited one.

Everything is computed batched with fixed shapes (index_add, masks, no boolean indexing and no Python
loop over classes or samples), so the step can be captured by torch.compile / CUDA graphs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

TERM_NAMES = ("ce", "center", "spread", "sep", "point", "scale")
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
    cannot be had by shrinking everything.
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

    def to(self, device: torch.device | str) -> "LatentTargets":
        return LatentTargets(
            self.centers.to(device), self.spreads.to(device), self.class_mask.to(device),
            self.sep_min.to(device), self.point_pos.to(device), self.point_mask.to(device),
            self.ref_radius.to(device), self.metric.to(device), self.weights,
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


def hill_terms(z: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, targets: LatentTargets) -> torch.Tensor:
    """The human terms (center, spread, sep, point) and the batch scale, stacked into one tensor of 5.

    ``z`` (B, 2) is the projected batch, ``y`` its labels and ``idx`` its training-sample indices.
    Each term is a mean over the classes / pairs / points present in the batch (0 where none is) of
    squared distances in loss space.
    """
    z = z.float() @ targets.metric.t()
    k = targets.centers.shape[0]
    counts, mu, rms = class_stats(z, y, k)
    present = (counts > 0).to(z.dtype) * targets.class_mask
    center = ((mu - targets.centers).pow(2).sum(dim=1) * present).sum() / present.sum().clamp(min=1.0)
    has_spread = (counts > 1).to(z.dtype) * targets.class_mask
    spread = ((rms - targets.spreads).pow(2) * has_spread).sum() / has_spread.sum().clamp(min=1.0)
    d = torch.sqrt((mu.unsqueeze(0) - mu.unsqueeze(1)).pow(2).sum(dim=2) + _EPS)
    pair = (counts > 0).to(z.dtype)
    pair = pair.unsqueeze(0) * pair.unsqueeze(1) * (targets.sep_min > 0).to(z.dtype)
    pair = torch.triu(pair, diagonal=1)
    sep = (F.relu(targets.sep_min - d).pow(2) * pair).sum() / pair.sum().clamp(min=1.0)
    pm = targets.point_mask[idx].to(z.dtype)
    point = ((z - targets.point_pos[idx]).pow(2).sum(dim=1) * pm).sum() / pm.sum().clamp(min=1.0)
    scale = torch.sqrt(z.pow(2).sum(dim=1).mean() + _EPS) / targets.ref_radius
    return torch.stack([center, spread, sep, point, scale])


def combine_terms(ce: torch.Tensor, t: torch.Tensor, weights: LossWeights, alpha: float | torch.Tensor,
                  lam: float | torch.Tensor) -> torch.Tensor:
    """L_global = (1 - alpha) CE + alpha L_human + lam |1 - scale| from CE and the stacked hill_terms."""
    human = weights.center * t[0] + weights.spread * t[1] + weights.sep * t[2] + weights.point * t[3]
    return (1.0 - alpha) * ce + alpha * human + lam * (1.0 - t[4]).abs()


def hill_loss(logits: torch.Tensor, z: torch.Tensor | None, y: torch.Tensor, idx: torch.Tensor,
              targets: LatentTargets | None, alpha: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The global loss and its terms (6, in TERM_NAMES order).

    With no targets committed, or alpha == 0, the loss is exactly cross-entropy and nothing else is
    computed: the scale term exists only to stop the network from satisfying the human terms by
    shrinking everything, so it is active only together with them (this makes alpha = 0 plain training).
    """
    ce = F.cross_entropy(logits.float(), y)
    if targets is None or z is None or alpha == 0.0:
        zero = ce.detach() * 0.0
        return ce, torch.stack([ce.detach(), zero, zero, zero, zero, zero])
    t = hill_terms(z, y, idx, targets)
    loss = combine_terms(ce, t, targets.weights, alpha, lam)
    return loss, torch.cat([ce.detach().unsqueeze(0), t.detach()])
