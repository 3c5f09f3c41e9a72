"""Checkpoints: written to a temporary name and renamed into place, loaded with weights_only=True."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from .files import atomic_write_bytes


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or belongs to another model; the message names the file."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt / unsafe files
        # torch's own text goes on to advise weights_only=False, which is unsafe for a file of unknown origin
        first = str(e).strip().split("\n")[0].split(". ")[0]
        raise CheckpointError(f"{path}: cannot load checkpoint safely ({type(e).__name__}: {first})") from e
