"""Synthetic data of any shape: for benchmarks (CIFAR-10-shaped tensors on a GPU) and fast tests."""
from __future__ import annotations

import torch

from .base import DataBundle


def load_synthetic(n_train: int = 2000, n_val: int = 500, n_test: int = 500, shape: tuple[int, ...] = (3, 32, 32),
                   num_classes: int = 10, seed: int = 0) -> DataBundle:
    """Class-dependent uint8 images (a per-class mean pattern plus noise), so a model can learn them."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand((num_classes, *shape), generator=g) * 160 + 48

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        x = protos[y] + torch.randn((n, *shape), generator=g) * 40
        return x.clamp_(0, 255).to(torch.uint8), y.long()

    (trx, tr_y), (vx, vy), (tx, ty) = make(n_train), make(n_val), make(n_test)
    c = shape[0]
    bundle = DataBundle(
        name="synthetic", kind="image", class_names=[f"class {i}" for i in range(num_classes)],
        train_x=trx, train_y=tr_y, val_x=vx, val_y=vy, test_x=tx, test_y=ty,
        mean=torch.full((c,), 0.5), std=torch.full((c,), 0.25), augment="none",
        meta={"seed": seed},
    )
    bundle.validate()
    return bundle
