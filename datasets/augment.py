"""Batched image augmentation done with tensor ops on the device that holds the data.

Small data sets live on the training device as whole tensors (airbench's loader is the model), so
augmentation must be vectorised: no Python loop over samples and no trip to the CPU. ``flip_crop`` is the
usual CIFAR-10 recipe: random horizontal flip, then a random translation by up to ``pad`` pixels with
reflect (or zero) padding, i.e. pad-and-random-crop back to the original size (pad 2 with reflect is
airbench94's, pad 4 with zeros the ResNet paper's; sources in docs/data.md).
"""

from __future__ import annotations

from typing import Literal

import torch


def _draw(n: int, high: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` random ints in [0, high) drawn from ``generator`` (on its own device), moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.randint(0, high, (n,), generator=generator, device=gen_device).to(device)


def _source_index(size: int, shift: torch.Tensor, pad: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample source positions (N, size) for output positions shifted by ``shift``, and a validity mask.

    Output position i reads input position i + shift; positions falling into the padding are reflected
    (``reflect``, like ``F.pad(mode='reflect')``, edge not repeated) or marked invalid (``zeros``).
    """
    pos = torch.arange(size, device=shift.device).unsqueeze(0) + shift.unsqueeze(1)
    if mode == "reflect":
        pos = pos.abs()
        pos = torch.where(pos > size - 1, 2 * (size - 1) - pos, pos)
        valid = torch.ones_like(pos, dtype=torch.bool)
    else:
        valid = (pos >= 0) & (pos < size)
        pos = pos.clamp(0, size - 1)
    return pos, valid


def flip_crop(
    x: torch.Tensor,
    pad: int = 2,
    generator: torch.Generator | None = None,
    mode: Literal["reflect", "zeros"] = "reflect",
) -> torch.Tensor:
    """Randomly mirror each image left-right and translate it by up to ``pad`` pixels in each direction.

    ``x`` is uint8 or float ``(N, C, H, W)`` on any device; the result has the same shape, dtype and device
    and is a new tensor. Each sample gets its own flip (p=0.5) and its own vertical and horizontal offsets,
    uniform in ``[-pad, pad]``, equivalent to padding by ``pad`` and cropping back at a random position.
    Deterministic for a given ``generator`` state (a generator on another device than ``x`` also works).
    """
    if x.dim() != 4:
        raise ValueError(f"flip_crop expects (N, C, H, W), got shape {tuple(x.shape)}")
    if mode not in ("reflect", "zeros"):
        raise ValueError(f"mode must be 'reflect' or 'zeros', got {mode!r}")
    n, c, h, w = x.shape
    if pad < 0 or (mode == "reflect" and pad >= min(h, w)):
        raise ValueError(f"pad must lie in [0, {min(h, w)}) for reflect padding of {h}x{w} images, got {pad}")
    if n == 0:
        return x.clone()
    dev = x.device
    flip = _draw(n, 2, generator, dev).bool()
    dy = _draw(n, 2 * pad + 1, generator, dev) - pad
    dx = _draw(n, 2 * pad + 1, generator, dev) - pad
    rows, row_ok = _source_index(h, dy, pad, mode)
    cols, col_ok = _source_index(w, dx, pad, mode)
    # Flip after cropping: mirroring the column lookup of the translated image.
    cols = torch.where(flip.unsqueeze(1), cols.flip(1), cols)
    col_ok = torch.where(flip.unsqueeze(1), col_ok.flip(1), col_ok)
    # Two gathers with broadcast (expanded, not materialised) index tensors: memory stays O(N*C*H*W) of x's dtype.
    out = x.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w))
    out = out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))
    if mode == "zeros" and pad > 0:
        ok = row_ok.view(n, 1, h, 1) & col_ok.view(n, 1, 1, w)
        out = out.masked_fill_(~ok, 0)
    return out
