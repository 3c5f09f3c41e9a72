"""The scikit-learn handwritten digits: the default data set, offline and seconds on a CPU."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits as _sk_load_digits

from .base import DataBundle, stratified_split

SPLIT_SEED = 1234  # fixed, so every run (whatever its training seed) sees the same splits


def load_digits(val_fraction: float = 0.15, test_fraction: float = 0.2) -> DataBundle:
    """1797 8x8 grey images, split stratified into train / val / test with a fixed seed.

    Pixels (0..16) are stored as uint8 scaled to 0..255, so every image data set shares one path.
    """
    raw = _sk_load_digits()
    x = torch.from_numpy(np.clip(raw.images * 16.0, 0, 255).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(raw.target.astype(np.int64))
    rest, test = stratified_split(y, test_fraction, SPLIT_SEED)
    train_rel, val_rel = stratified_split(y[rest], val_fraction / (1 - test_fraction), SPLIT_SEED + 1)
    train, val = rest[train_rel], rest[val_rel]
    xf = x[train].float() / 255.0
    bundle = DataBundle(
        name="digits", kind="image", class_names=[str(i) for i in range(10)],
        train_x=x[train], train_y=y[train], val_x=x[val], val_y=y[val], test_x=x[test], test_y=y[test],
        mean=xf.mean(dim=(0, 2, 3)), std=xf.std(dim=(0, 2, 3)),
        augment="none", meta={"source": "sklearn.datasets.load_digits"},
    )
    bundle.validate()
    return bundle
