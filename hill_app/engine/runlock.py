"""One process per run folder: an OS file lock on RUN/.lock, held for the life of the session.

The lock is ``flock`` on an open file, so the kernel drops it when the process dies, however it dies: a
killed run never leaves a folder locked. The holder writes its pid into the file so that a refusal can
name it.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from .config import ConfigError

LOCK_NAME = ".lock"


class RunLockedError(ConfigError):
    """Another process holds the run folder; the message names the folder and the holder's pid."""


class RunLock:
    """An exclusive lock on a run folder. ``RunLock.acquire(folder)`` or RunLockedError."""

    def __init__(self, folder: Path, fd: int):
        self.folder = Path(folder)
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, folder: str | Path) -> RunLock:
        folder = Path(folder)
        path = folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                f"{folder}: the run folder is in use by process {holder_pid(folder)} "
                f"(a train, --resume or window on it); wait for it to end or stop it"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(folder, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the folder back (idempotent). The pid is left in the file; only the lock tells who holds it."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __del__(self) -> None:  # an abandoned session must not keep its folder locked
        try:
            self.release()
        except Exception:
            pass


def holder_pid(folder: str | Path, wait: float = 1.0) -> str:
    """The pid written by the holder (it writes it right after locking: wait a moment for it)."""
    path = Path(folder) / LOCK_NAME
    deadline = time.monotonic() + wait
    while True:
        try:
            text = path.read_text().strip()
        except OSError:
            text = ""
        if text.isdigit() or time.monotonic() > deadline:
            return text or "unknown"
        time.sleep(0.02)
