"""Fetch a data file over HTTP(S) so that a half-finished or corrupt download never looks like a good one.

The bytes are streamed into a temporary file beside ``dest`` and hashed on the way; only when the MD5
matches is the file renamed into place (an atomic rename on one file system). Anything else (network
error, HTTP error, short transfer, wrong MD5, an exception raised by the progress callback to cancel)
removes the temporary file and leaves ``dest`` untouched.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .base import DataError

CHUNK_SIZE = 1 << 20


def file_md5(path: str | Path, chunk_size: int = CHUNK_SIZE) -> str:
    """The hex MD5 of a file, read in chunks so large archives do not need to fit in memory."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def download_file(
    url: str,
    dest: Path,
    expected_md5: str | None,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 30,
) -> Path:
    """Download ``url`` to ``dest``, checking its MD5, and return ``dest``.

    ``progress(bytes_done, total)`` is called after every chunk (``total`` is 0 when the server sends no
    length); it may raise to cancel. ``expected_md5=None`` skips the check. Errors raise :class:`DataError`
    naming the URL; the partial file is always removed.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise DataError(f"cannot download {url}: cannot write into {dest.parent}: {e}") from e
    tmp = Path(tmp_name)
    ok = False
    try:
        h = hashlib.md5()
        done = 0
        with os.fdopen(fd, "wb") as out:
            try:
                # A fresh opener per call, so proxy settings are read from the environment now.
                opener = urllib.request.build_opener()
                with opener.open(url, timeout=timeout) as resp:
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else 0
                    if progress is not None:
                        progress(0, total)
                    while True:
                        chunk = resp.read(CHUNK_SIZE)
                        if not chunk:
                            break
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
            except urllib.error.HTTPError as e:
                e.close()  # the error carries the open response; do not leak its socket
                raise DataError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
            except urllib.error.URLError as e:
                raise DataError(f"download of {url} failed: {e.reason}") from e
            except (OSError, http.client.HTTPException, ValueError) as e:
                raise DataError(f"download of {url} failed: {type(e).__name__}: {e}") from e
            if total and done != total:
                raise DataError(f"download of {url} failed: got {done} bytes, expected {total}")
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if expected_md5 is not None and actual.lower() != expected_md5.lower():
            raise DataError(
                f"download of {url} is corrupt: MD5 {actual}, expected {expected_md5} "
                f"(the partial file was deleted; try again)"
            )
        os.replace(tmp, dest)
        ok = True
        return dest
    finally:
        if not ok:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
