"""The one shape every data set takes once loaded: whole tensors, ready to move to the training device.

Small data sets live on the device as whole tensors (airbench's loader is the model), so a loader returns
plain tensors rather than a torch ``Dataset``: the engine batches, normalises and augments them itself.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
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
    split_info: dict = field(default_factory=dict)  # sizes and the rules that made them (see split_info())

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
                raise DataError(
                    f"{self.name}: {split} inputs have shape {tuple(x.shape[1:])}, "
                    f"expected {tuple(self.train_x.shape[1:])}"
                )
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


class DataWarning(UserWarning):
    """Data was left out at load (e.g. a PAMAP2 subject with no usable window); the message says which and why."""


SUBSET_SEED = 2468  # fixed: a given train_size picks the same images in every run, whatever the run seed

_SIZE_EXPECTED = "expected a count (an integer >= 1) or a fraction strictly between 0 and 1"


def check_size_spec(name: str, value: object, where: str) -> None:
    """Refuse a val_size / train_size that is neither None, a count >= 1, nor a fraction in (0, 1)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, numbers.Real)):
        raise DataError(f"{where}: {name}={value!r:.60}; {_SIZE_EXPECTED}")
    if isinstance(value, numbers.Integral):
        if int(value) < 1:
            raise DataError(f"{where}: {name}={int(value)}; {_SIZE_EXPECTED}")
        return
    v = float(value)
    if not 0.0 < v < 1.0:  # also refuses NaN and inf
        hint = " (write a count without a decimal point)" if v >= 1 and v.is_integer() else ""
        raise DataError(f"{where}: {name}={v!r}; {_SIZE_EXPECTED}{hint}")


def size_to_count(name: str, value: int | float, n: int) -> tuple[int, str]:
    """The count a size spec asks for out of ``n``, and how it was worked out (for split_info)."""
    if isinstance(value, numbers.Integral):
        return int(value), f"{int(value)} ({name}={int(value)}, a count)"
    k = int(round(float(value) * n))
    return k, f"{k} ({name}={float(value)!r} of {n})"


def allocate(
    sizes: Sequence[int] | np.ndarray, k: int, lo: Sequence[int] | np.ndarray, hi: Sequence[int] | np.ndarray
) -> np.ndarray:
    """Split ``k`` over groups in proportion to ``sizes`` (largest remainder), within ``lo..hi`` per group.

    Needs sum(lo) <= k <= sum(hi). Proportional shares that are whole numbers are kept exactly, so a
    balanced 50,000-image set asked for 5,000 gives 500 per class, as a per-class fraction would."""
    s = np.asarray(sizes, dtype=np.float64)
    lo_a, hi_a = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
    if not int(lo_a.sum()) <= k <= int(hi_a.sum()):
        raise ValueError(f"cannot allocate {k} within [{int(lo_a.sum())}, {int(hi_a.sum())}]")
    target = s * k / s.sum() if s.sum() > 0 else np.zeros_like(s)
    a = np.clip(np.floor(target + 1e-9).astype(np.int64), lo_a, hi_a)
    while a.sum() < k:  # ties go to the first group: deterministic
        a[int(np.argmax(np.where(a < hi_a, target - a, -np.inf)))] += 1
    while a.sum() > k:
        a[int(np.argmin(np.where(a > lo_a, target - a, np.inf)))] -= 1
    return a


def stratified_pick(labels: torch.Tensor, per_class: dict[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices split into (rest, picked) with ``per_class[c]`` random samples of class c picked.

    Draws exactly like :func:`stratified_split` (one permutation per class, classes in ascending order,
    one generator), so the same counts give the same split."""
    g = torch.Generator().manual_seed(seed)
    picked, rest = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        k = per_class.get(int(c), 0)
        picked.append(idx[:k])
        rest.append(idx[k:])
    if not picked:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty
    return torch.sort(torch.cat(rest)).values, torch.sort(torch.cat(picked)).values


def _class_counts(labels: torch.Tensor) -> tuple[list[int], np.ndarray]:
    classes, counts = torch.unique(labels, return_counts=True)
    return [int(c) for c in classes.tolist()], counts.numpy().astype(np.int64)


def carve_validation(
    labels: torch.Tensor, val_size: int | float, seed: int, where: str, unit: str = "images"
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train, val) indices into ``labels``: a stratified, seeded validation split of ``val_size``.

    Every class keeps at least one training sample; anything else is a DataError naming ``where``,
    the value and the largest one that fits."""
    check_size_spec("val_size", val_size, where)
    n = int(labels.numel())
    classes, counts = _class_counts(labels)
    k, rule = size_to_count("val_size", val_size, n)
    most = n - len(classes)
    if k < 1:
        raise DataError(
            f"{where}: val_size={val_size!r} is {k} of {n} {unit}; expected a validation split of "
            f"at least 1 (a larger fraction, or a count)"
        )
    if k > most:
        raise DataError(
            f"{where}: val_size={val_size!r} asks for {k} of the {n} training {unit}; expected at "
            f"most {most}, so that each of the {len(classes)} classes keeps a training sample"
        )
    alloc = allocate(counts, k, [0] * len(counts), counts - 1)
    rest, held = stratified_pick(labels, dict(zip(classes, alloc.tolist())), seed)
    return rest, held, rule


def pick_training_subset(
    labels: torch.Tensor, train_size: int | float, where: str, seed: int = SUBSET_SEED, unit: str = "images"
) -> tuple[torch.Tensor, str]:
    """Indices (sorted) of a stratified, seeded subset of ``train_size`` training samples, one class at least each."""
    check_size_spec("train_size", train_size, where)
    n = int(labels.numel())
    classes, counts = _class_counts(labels)
    m, rule = size_to_count("train_size", train_size, n)
    if m > n:
        raise DataError(
            f"{where}: train_size={train_size!r} but the training split holds {n} {unit} after the "
            f"validation split; expected at most {n} (or a fraction)"
        )
    if m < len(classes):
        raise DataError(
            f"{where}: train_size={train_size!r} is {m} of {n} {unit}; expected at least {len(classes)}, one per class"
        )
    alloc = allocate(counts, m, [1] * len(counts), counts)
    _, keep = stratified_pick(labels, dict(zip(classes, alloc.tolist())), seed)
    return keep, rule + f", stratified, seed {seed}"


def split_info(bundle: DataBundle, val_rule: str, train_rule: str, **extra: object) -> dict:
    """The resolved split sizes and the rules that made them (written into the run's config and journal)."""
    info = {
        "n_train": int(bundle.train_y.numel()),
        "n_val": int(bundle.val_y.numel()),
        "n_test": int(bundle.test_y.numel()),
        "val_size": int(bundle.val_y.numel()),
        "train_size": int(bundle.train_y.numel()),
        "val_rule": val_rule,
        "train_rule": train_rule,
    }
    info.update(extra)
    return info
