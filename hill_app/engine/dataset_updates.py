"""update_dataset: drop training samples by index (masked, so indices stay stable) or add samples from a file."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from hill_app.datasets import DataError
from hill_app.datasets.samples_file import read_samples_file

from .commands import CommandError

if TYPE_CHECKING:
    from .session import TrainingSession


def drop_samples(s: "TrainingSession", indices: Any) -> dict[str, Any]:
    if not isinstance(indices, list) or not indices:
        raise CommandError("update_dataset: 'indices' must be a non-empty list of training-sample indices")
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < s.n_train:
            raise CommandError(f"update_dataset: index {i!r} is not a training sample (0..{s.n_train - 1})")
    new = s.active.clone()
    new[torch.tensor(indices)] = False
    if int(new.sum()) < s.config.batch_size:
        raise CommandError(f"update_dataset: dropping these would leave {int(new.sum())} samples, fewer than one "
                           f"batch ({s.config.batch_size})")
    s.active = new
    return {"dropped": len(set(indices)), "active": int(new.sum())}


def add_samples(s: "TrainingSession", path: str) -> dict[str, Any]:
    """Append samples; they get the next training indices, so earlier indices (and the view set) stay valid."""
    try:
        x, y = read_samples_file(s.data, path)
    except DataError as e:
        raise CommandError(f"update_dataset: {e}") from None
    first = s.n_train
    _append(s, x, y)
    s.added_files.append(str(path))
    s.active = torch.cat([s.active, torch.ones(len(y), dtype=torch.bool)])
    return {"added": len(y), "first_index": first, "n_train": s.n_train,
            "per_class": torch.bincount(y, minlength=s.data.num_classes).tolist()}


def sync_added_files(s: "TrainingSession", files: list[str]) -> None:
    """Make the training data hold exactly the base split plus ``files`` (restoring a checkpoint)."""
    if list(files) == s.added_files:
        return
    d = s.data
    d.train_x, d.train_y = d.train_x[:s.base_n_train], d.train_y[:s.base_n_train]
    s.train_x, s.train_y = s.train_x[:s.base_n_train], s.train_y[:s.base_n_train]
    s.n_train = s.base_n_train
    s.added_files = []
    for f in files:
        try:
            x, y = read_samples_file(s.data, f)
        except DataError as e:
            raise CommandError(f"the checkpoint's added samples cannot be read again: {e}") from None
        _append(s, x, y)
        s.added_files.append(f)


def _append(s: "TrainingSession", x: torch.Tensor, y: torch.Tensor) -> None:
    d = s.data
    d.train_x = torch.cat([d.train_x, x])
    d.train_y = torch.cat([d.train_y, y])
    s.train_x = torch.cat([s.train_x, x.to(s.device)])
    s.train_y = torch.cat([s.train_y, y.to(s.device)])
    s.n_train = len(d.train_y)
    s.commit_layout(s.layout)  # point targets are indexed by training sample: resize them
    s.train_step.invalidate()
