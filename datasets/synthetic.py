"""Synthetic data of any shape: for benchmarks (CIFAR-10-shaped tensors on a GPU) and fast tests."""

from __future__ import annotations

import torch

from .base import DataBundle, carve_validation, check_size_spec, pick_training_subset, split_info

WHERE = "synthetic data"


def load_synthetic(
    n_train: int = 2000,
    n_val: int = 500,
    n_test: int = 500,
    shape: tuple[int, ...] = (3, 32, 32),
    num_classes: int = 10,
    seed: int = 0,
    val_size: int | float | None = None,
    train_size: int | float | None = None,
) -> DataBundle:
    """Class-dependent uint8 images (a per-class mean pattern plus noise), so a model can learn them.

    By default the validation split is ``n_val`` separately drawn images; with ``val_size`` it is carved
    (stratified, seeded) out of the ``n_train`` training images instead, as for the real data sets.
    """
    check_size_spec("val_size", val_size, WHERE)
    check_size_spec("train_size", train_size, WHERE)
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand((num_classes, *shape), generator=g) * 160 + 48

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        x = protos[y] + torch.randn((n, *shape), generator=g) * 40
        return x.clamp_(0, 255).to(torch.uint8), y.long()

    (trx, tr_y), (vx, vy), (tx, ty) = make(n_train), make(n_val), make(n_test)
    val_rule = f"default: {n_val} separately drawn images"
    if val_size is not None:
        rest, held, rule = carve_validation(tr_y, val_size, seed + 1, WHERE)
        vx, vy, trx, tr_y = trx[held], tr_y[held], trx[rest], tr_y[rest]
        val_rule = f"{rule} of the generated training images, stratified, seed {seed + 1}"
    train_rule = f"all {len(tr_y)} remaining images"
    if train_size is not None:
        keep, train_rule = pick_training_subset(tr_y, train_size, WHERE)
        trx, tr_y = trx[keep], tr_y[keep]
    c = shape[0]
    bundle = DataBundle(
        name="synthetic",
        kind="image",
        class_names=[f"class {i}" for i in range(num_classes)],
        train_x=trx,
        train_y=tr_y,
        val_x=vx,
        val_y=vy,
        test_x=tx,
        test_y=ty,
        mean=torch.full((c,), 0.5),
        std=torch.full((c,), 0.25),
        augment="none",
        meta={"seed": seed},
    )
    bundle.validate()
    bundle.split_info = split_info(bundle, val_rule, train_rule)
    return bundle
