"""The training split as it trains: one owner for the samples on the CPU and on the device, the active mask and
the files added while running, so that nothing else keeps tensors in lock-step."""

from __future__ import annotations

import torch

from hill_app.datasets import DataBundle


class TrainingData:
    """``bundle.train_x/y`` (CPU, what hover pictures and checkpoints see) and ``x``/``y`` (on the device, what
    batches are cut from) always hold the same samples; indices never change, dropped samples are masked."""

    def __init__(self, bundle: DataBundle, device: torch.device) -> None:
        self.bundle = bundle
        self.device = device
        self.x, self.y = bundle.train_x.to(device), bundle.train_y.to(device)
        self.base_n = int(bundle.train_x.shape[0])  # the loaded split, before any added file
        self.added_files: list[str] = []  # in the order they were added (RUN/added/<sha256>)
        self.active = torch.ones(self.base_n, dtype=torch.bool)

    @property
    def n(self) -> int:
        """Training samples, dropped ones included (their indices stay valid)."""
        return int(self.bundle.train_y.shape[0])

    def append(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """Add samples at the next indices (active); returns the first new index."""
        first = self.n
        b = self.bundle
        b.train_x, b.train_y = torch.cat([b.train_x, x]), torch.cat([b.train_y, y])
        self.x, self.y = torch.cat([self.x, x.to(self.device)]), torch.cat([self.y, y.to(self.device)])
        return first

    def truncate_to_base(self) -> None:
        """Back to the loaded split: every added file's samples removed (the mask is the caller's to restore)."""
        b, n = self.bundle, self.base_n
        b.train_x, b.train_y = b.train_x[:n], b.train_y[:n]
        self.x, self.y = self.x[:n], self.y[:n]
        self.added_files = []
