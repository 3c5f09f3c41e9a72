"""The training step, kept apart from the session so it can be fused (torch.compile) without the session
knowing. It reads the session's current state (model, optimiser, projection, targets, alpha, lambda, clip)
and returns one stats tensor per step, so the loop needs one device sync per report, not per step.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from hill_app.losses import combine_terms, hill_terms

if TYPE_CHECKING:
    from .session import TrainingSession

# order of the values in the stats tensor a step returns
STEP_STATS = ("loss", "ce", "center", "spread", "sep", "point", "scale", "grad_norm", "correct")


class TrainStep:
    def __init__(self, session: "TrainingSession"):
        self.s = session
        self._compiled = None

    def invalidate(self) -> None:
        """Forget compiled graphs (after a layer was frozen, reset or a checkpoint loaded)."""
        self._compiled = None

    def _impl(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, hill: bool,
              alpha: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        s = self.s
        with s.autocast:
            logits, feats = s.model(x)
        ce = F.cross_entropy(logits.float(), y)
        zero = ce.detach() * 0.0
        if hill:
            t = hill_terms(s.projection(feats.float()), y, idx, s.targets)
            loss = combine_terms(ce, t, s.weights, alpha, lam)
            terms = [t[0], t[1], t[2], t[3], t[4]]
        else:
            loss = ce
            terms = [zero] * 5
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in s.model.parameters() if p.grad is not None]
        gn = torch.nn.utils.get_total_norm(grads) if grads else zero
        if s.grad_clip is not None and grads:
            torch.nn.utils.clip_grads_with_norm_([p for p in s.model.parameters() if p.grad is not None],
                                                 s.grad_clip, gn)
        s.optimizer.step()
        correct = (logits.argmax(dim=1) == y).sum().float()
        return torch.stack([loss.detach(), ce.detach(), *[t.detach() for t in terms], gn.detach().float(), correct])

    def __call__(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        s = self.s
        hill = s.targets is not None and s.alpha > 0 and s.projection is not None
        fn = self._impl
        if s.config.compile:
            if self._compiled is None:
                self._compiled = torch.compile(self._impl)
            fn = self._compiled
        alpha = torch.tensor(s.alpha, device=s.device)
        lam = torch.tensor(s.lam, device=s.device)
        return fn(x, y, idx, hill, alpha, lam)
