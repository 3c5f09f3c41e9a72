"""The one shape every data set takes once loaded: whole tensors, ready to move to the training device.

Small data sets live on the device as whole tensors (airbench's loader is the model), so a loader returns
plain tensors rather than a torch ``Dataset``: the engine batches, normalises and augments them itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch


class DataError(Exception):
    """A data file is missing, malformed or corrupt. The message names the file and what was expected."""


@dataclass
class DataBundle:
    """Train / validation / test splits of one data set.

    ``*_x`` holds images as uint8 ``(N, C, H, W)`` or signal windows as float32 ``(N, C, T)``;
    ``*_y`` holds int64 class indices in ``[0, len(class_names))``. ``mean`` and ``std`` are per-channel
    statistics applied by :meth:`normalize` (for uint8 images after scaling to [0, 1]).
    """

    name: str
    kind: Literal["image", "signal"]
    class_names: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    augment: Literal["none", "flip_crop"] = "none"
    meta: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Turn a stored batch into the float input the model expects (works on any device)."""
        mean = self.mean.to(x.device)
        std = self.std.to(x.device)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return (x.float() - mean.view(shape)) / std.view(shape)

    def validate(self) -> None:
        """Check the invariants every loader promises; raise DataError naming the broken one."""
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.shape[0] != y.shape[0]:
                raise DataError(f"{self.name}: {split} split has {x.shape[0]} inputs but {y.shape[0]} labels")
            if y.dtype != torch.int64:
                raise DataError(f"{self.name}: {split} labels must be int64, got {y.dtype}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise DataError(f"{self.name}: {split} labels outside [0, {self.num_classes})")
            if x.shape[1:] != self.train_x.shape[1:]:
                raise DataError(f"{self.name}: {split} inputs have shape {tuple(x.shape[1:])}, "
                                f"expected {tuple(self.train_x.shape[1:])}")
        if self.mean.numel() != self.train_x.shape[1] or self.std.numel() != self.train_x.shape[1]:
            raise DataError(f"{self.name}: mean/std need one value per channel ({self.train_x.shape[1]})")


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (rest, held_out) with ``fraction`` of every class held out, reproducibly."""
    g = torch.Generator().manual_seed(seed)
    held, rest = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        k = int(round(idx.numel() * fraction))
        held.append(idx[:k])
        rest.append(idx[k:])
    return torch.sort(torch.cat(rest)).values, torch.sort(torch.cat(held)).values
