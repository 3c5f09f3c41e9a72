"""Extra labelled samples from a file in the data set's own format, for adding data mid-training.

digits: the UCI optdigits text format (64 comma-separated pixel counts 0..16, then the class, per line);
CIFAR-10: one batch pickle like ``data_batch_1``; PAMAP2: one ``subjectNNN.dat`` recording, cut into
windows like the training data and z-scored with the training statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import DataBundle, DataError


def read_samples_file(bundle: DataBundle, path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples in the bundle's stored form (same dtype and shape as ``bundle.train_x``) and their labels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if bundle.name == "digits":
        x, y = _read_optdigits(path)
    elif bundle.name == "cifar10":
        from .cifar10 import _read_batch

        data, labels = _read_batch(path)
        x, y = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)
    elif bundle.name == "pamap2":
        x, y = _read_pamap2(bundle, path)
    else:
        raise DataError(f"{bundle.name}: adding samples from a file is not supported for this data set")
    if x.shape[1:] != bundle.train_x.shape[1:]:
        raise DataError(f"{path}: samples have shape {tuple(x.shape[1:])}, expected {tuple(bundle.train_x.shape[1:])}")
    if len(y) == 0:
        raise DataError(f"{path}: no samples in the file")
    if int(y.min()) < 0 or int(y.max()) >= bundle.num_classes:
        raise DataError(f"{path}: labels must lie in 0..{bundle.num_classes - 1}")
    return x.to(bundle.train_x.dtype), y.long()


def _read_optdigits(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(",")
        if len(parts) != 65:
            raise DataError(f"{path} line {lineno}: {len(parts)} values, expected 65 (64 pixels 0..16 and a class)")
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise DataError(f"{path} line {lineno}: non-integer value; expected 64 pixels 0..16 and a class") from None
        if min(vals[:64]) < 0 or max(vals[:64]) > 16:
            raise DataError(f"{path} line {lineno}: pixel values must lie in 0..16")
        rows.append(vals)
    a = np.array(rows, dtype=np.int64).reshape(-1, 65)
    x = np.clip(a[:, :64] * 16, 0, 255).astype(np.uint8).reshape(-1, 1, 8, 8)
    return torch.from_numpy(x), torch.from_numpy(a[:, 64])


def _read_pamap2(bundle: DataBundle, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from .pamap2 import RAW_HZ, _subject_windows, parse_subject_file, why_no_windows

    meta = bundle.meta
    win, step = int(meta["window_length"]), int(meta["window_step"])
    stride = int(round(RAW_HZ / float(meta["hz"])))
    data = parse_subject_file(path)
    stream, starts, labels = _subject_windows(path, data, win, step, stride)
    if len(starts) == 0:
        raise DataError(f"{path}: no samples in the file: {why_no_windows(path, data, win, stride)}")
    mean = np.asarray(meta["raw_mean"], dtype=np.float32)
    std = np.asarray(meta["raw_std"], dtype=np.float32)
    stream = ((stream - mean) / std).astype(np.float32)
    s = torch.from_numpy(stream)
    windows = s.unfold(0, win, 1)[torch.from_numpy(starts)] if len(starts) else torch.zeros((0, s.shape[1], win))
    return windows.contiguous(), torch.from_numpy(labels)
