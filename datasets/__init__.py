"""Data sets: digits (default, offline), CIFAR-10, PAMAP2 and synthetic, each loaded as whole tensors.

``DATASET_NAMES`` is the one list of names (the run configuration and the command line check against it).
Importing this package is light: the loaders, torch and the names below from ``base`` load on first use, so
the command line offers the names without importing torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import DataBundle, DataError, DataWarning, stratified_split

__all__ = ["DataBundle", "DataError", "DataWarning", "stratified_split", "load_dataset", "DATASET_NAMES"]

DATASET_NAMES = ("digits", "cifar10", "pamap2", "synthetic")
_FROM_BASE = frozenset({"DataBundle", "DataError", "DataWarning", "stratified_split"})


def __getattr__(name: str) -> Any:
    if name in _FROM_BASE:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_dataset(
    name: str,
    root: str | Path | None = None,
    download: bool = False,
    synthetic_size: int = 2000,
    seed: int = 0,
    val_size: int | float | None = None,
    train_size: int | float | None = None,
) -> DataBundle:
    """One entry for every data set, so the engine and the GUI never special-case a loader.

    ``val_size`` / ``train_size``: a count (int >= 1), a fraction (0 < float < 1) or None (the data set's
    default split, all of the training split). The bundle's ``split_info`` says what was used and why.
    """
    from .base import DataError, check_size_spec

    for key, value in (("val_size", val_size), ("train_size", train_size)):
        check_size_spec(key, value, f"{name}")
    if name == "digits":
        from .digits import load_digits

        return load_digits(val_size=val_size, train_size=train_size)
    if name == "synthetic":
        from .synthetic import load_synthetic

        return load_synthetic(n_train=synthetic_size, seed=seed, val_size=val_size, train_size=train_size)
    if name in ("cifar10", "pamap2"):
        if root is None:
            raise DataError(f"{name}: no data folder given (use --data-root)")
        root = Path(root).expanduser()
        if name == "cifar10":
            from .cifar10 import load_cifar10

            return load_cifar10(root, download=download, val_size=val_size, train_size=train_size)
        from .pamap2 import load_pamap2

        if download:
            raise DataError("pamap2: downloading is not offered; put the Protocol/*.dat files under the data folder")
        return load_pamap2(root, val_size=val_size, train_size=train_size)
    raise DataError(f"unknown data set {name!r}; expected one of {', '.join(DATASET_NAMES)}")
