"""The scikit-learn handwritten digits: the default data set, offline and seconds on a CPU."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .base import DataBundle, carve_validation, check_size_spec, pick_training_subset, split_info, stratified_split

SPLIT_SEED = 1234  # fixed, so every run (whatever its training seed) sees the same splits
WHERE = "digits (sklearn.datasets.load_digits)"


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits file, read as its ``load_digits`` reads it, without importing scikit-learn (0.9 s)."""
    spec = importlib.util.find_spec("sklearn")
    where = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(where[0]) / "datasets" / "data" / "digits.csv.gz" if where else None
    if path is None or not path.is_file():  # another layout: the library's own loader
        from sklearn.datasets import load_digits as sk_load_digits

        raw = sk_load_digits()
        return raw.images, raw.target
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def load_digits(
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    val_size: int | float | None = None,
    train_size: int | float | None = None,
) -> DataBundle:
    """1797 8x8 grey images, split stratified into train / val / test with a fixed seed.

    The test split is always ``test_fraction``. The validation split is ``val_fraction`` of all images
    (today's default) or, when ``val_size`` is given, a count or fraction of the non-test images;
    ``train_size`` then keeps a stratified, seeded subset of the rest. Pixels (0..16) are stored as uint8
    scaled to 0..255, so every image data set shares one path.
    """
    check_size_spec("val_size", val_size, WHERE)
    check_size_spec("train_size", train_size, WHERE)
    images, target = _read_digits()
    x = torch.from_numpy(np.clip(images * 16.0, 0, 255).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(target.astype(np.int64))
    rest, test = stratified_split(y, test_fraction, SPLIT_SEED)
    if val_size is None:
        train_rel, val_rel = stratified_split(y[rest], val_fraction / (1 - test_fraction), SPLIT_SEED + 1)
        val_rule = (
            f"default: {val_fraction:g} of all {len(y)} images (per class, rounded), stratified, seed {SPLIT_SEED + 1}"
        )
    else:
        train_rel, val_rel, rule = carve_validation(y[rest], val_size, SPLIT_SEED + 1, WHERE)
        val_rule = f"{rule} of the non-test images, stratified, seed {SPLIT_SEED + 1}"
    train, val = rest[train_rel], rest[val_rel]
    train_rule = f"all {len(train)} remaining images"
    if train_size is not None:
        keep, train_rule = pick_training_subset(y[train], train_size, WHERE)
        train = train[keep]
    xf = x[train].float() / 255.0
    bundle = DataBundle(
        name="digits",
        kind="image",
        class_names=[str(i) for i in range(10)],
        train_x=x[train],
        train_y=y[train],
        val_x=x[val],
        val_y=y[val],
        test_x=x[test],
        test_y=y[test],
        mean=xf.mean(dim=(0, 2, 3)),
        std=xf.std(dim=(0, 2, 3)),
        augment="none",
        meta={"source": "sklearn.datasets.load_digits"},
    )
    bundle.validate()
    bundle.split_info = split_info(bundle, val_rule, train_rule)
    return bundle
