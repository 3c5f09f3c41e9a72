"""update_dataset: drop training samples by index (reversibly: they are masked, not deleted)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

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
    raise CommandError("update_dataset: adding samples from a file is not implemented yet; "
                       "only 'drop' is available in this version")
