"""CIFAR-10 from the official python-format files, with a fixed stratified validation split.

Accepts the ``cifar-10-batches-py`` folder (under ``root`` or ``root`` itself, the layout torchvision uses)
or the ``cifar-10-python.tar.gz`` archive in ``root``, and can download that archive. The batches are
pickles, and unpickling runs code named by the file, so a restricted unpickler admits only what the
official files need (numpy array reconstruction); every other global is refused.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import DataBundle, DataError, carve_validation, check_size_spec, pick_training_subset, split_info
from .download import download_file, file_md5

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
NUM_CLASSES = 10
SPLIT_SEED = 1234  # fixed, so every run (whatever its training seed) sees the same validation split

try:  # numpy >= 1.26 / 2.x
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - older numpy
    from numpy.core.multiarray import _reconstruct as _np_reconstruct  # type: ignore[no-redef]
try:
    from numpy._core.numeric import _frombuffer as _np_frombuffer  # type: ignore[attr-defined]  # private, not in the stubs
except ImportError:  # pragma: no cover - older numpy
    from numpy.core.numeric import _frombuffer as _np_frombuffer  # type: ignore[no-redef]


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, ints and numpy arrays; refuses every other global.

    The official files are Python 2 pickles (byte strings, ``numpy.core.multiarray._reconstruct``); files
    re-saved by Python 3 with protocol 2 spell bytes as ``_codecs.encode(str, 'latin1')`` and with
    protocol 5 arrays as ``numpy._core.numeric._frombuffer``, so those are admitted too.
    """

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def _latin1_encode(self, obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        if not isinstance(obj, str) or str(encoding).lower().replace("-", "") != "latin1":
            raise DataError(
                f"{self._path}: refusing _codecs.encode with {type(obj).__name__}, {encoding!r} in the pickle"
            )
        return obj.encode("latin1")

    def find_class(self, module: str, name: str) -> Any:
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
            ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
            ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): self._latin1_encode,
            ("builtins", "bytes"): bytes,
            ("__builtin__", "bytes"): bytes,
        }
        obj = allowed.get((module, name))
        if obj is None:
            raise DataError(
                f"{self._path}: refusing to unpickle {module}.{name}; a CIFAR-10 batch holds "
                f"only dicts, lists, byte strings, ints and numpy arrays (is this file safe?)"
            )
        return obj


def _unpickle(path: Path) -> dict:
    """Load one batch file as a dict with bytes keys, turning every failure into a DataError naming it."""
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, path).load()
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except Exception as e:  # the unpickler raises many kinds on truncated or corrupt input
        raise DataError(
            f"{path}: not a readable CIFAR-10 pickle (truncated or corrupt?): {type(e).__name__}: {e}"
        ) from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _get(d: dict, key: bytes, path: Path) -> Any:
    """A dict entry by bytes key (or its str twin, for files re-saved by Python 3)."""
    for k in (key, key.decode()):
        if k in d:
            return d[k]
    raise DataError(f"{path}: missing key {key!r}; found {sorted(map(repr, d))}")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch as (N, 3072) uint8 pixels and (N,) int64 labels, checked."""
    d = _unpickle(path)
    data = _get(d, b"data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = (
            f"shape {tuple(data.shape)} {data.dtype}" if isinstance(data, np.ndarray) else f"type {type(data).__name__}"
        )
        raise DataError(f"{path}: b'data' has {desc}, expected (N, 3072) uint8")
    raw_labels = _get(d, b"labels", path)
    try:
        labels = np.asarray(raw_labels)
    except Exception as e:
        raise DataError(f"{path}: b'labels' is not a list of ints: {e}") from e
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise DataError(f"{path}: b'labels' must be a flat list of ints, got {labels.dtype} with shape {labels.shape}")
    if labels.shape[0] != data.shape[0]:
        raise DataError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images in b'data'")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(
            f"{path}: labels must lie in 0..{NUM_CLASSES - 1}, found {int(labels.min())}..{int(labels.max())}"
        )
    return data, labels


def _read_meta(path: Path) -> list[str]:
    d = _unpickle(path)
    names = _get(d, b"label_names", path)
    if not isinstance(names, (list, tuple)) or len(names) != NUM_CLASSES:
        raise DataError(f"{path}: b'label_names' should list {NUM_CLASSES} class names, got {names!r:.200}")
    out = []
    for n in names:
        if isinstance(n, bytes):
            n = n.decode("utf-8", errors="replace")
        if not isinstance(n, str):
            raise DataError(f"{path}: b'label_names' holds {type(n).__name__}, expected byte strings")
        out.append(n)
    return out


def _looks_like_folder(p: Path) -> bool:
    return p.is_dir() and any((p / f).exists() for f in (META_FILE, TEST_FILE, TRAIN_FILES[0]))


def _extract(archive: Path, root: Path) -> Path:
    """Unpack the batches folder from the archive into ``root`` atomically, refusing unsafe members."""
    tmp = Path(tempfile.mkdtemp(prefix=".cifar10-extract-", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = []
                for m in tar.getmembers():
                    parts = Path(m.name).parts
                    if not parts or parts[0] != FOLDER_NAME:
                        continue
                    if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
                        raise DataError(f"{archive}: refusing unsafe archive member {m.name!r}")
                    members.append(m)
                if not any(Path(m.name).parts[-1] == META_FILE for m in members):
                    raise DataError(
                        f"{archive}: no {FOLDER_NAME}/{META_FILE} inside; expected the official CIFAR-10 python archive"
                    )
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tar.extractall(tmp, members=members)
        except DataError:
            raise
        except (tarfile.TarError, EOFError, OSError, ValueError) as e:
            raise DataError(
                f"{archive}: cannot extract (truncated or corrupt archive?): {type(e).__name__}: {e}"
            ) from e
        folder = root / FOLDER_NAME
        os.replace(tmp / FOLDER_NAME, folder)
        return folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_archive_md5(archive: Path, expected_md5: str | None) -> None:
    if expected_md5 is None:
        return
    actual = file_md5(archive)
    if actual.lower() != expected_md5.lower():
        raise DataError(
            f"{archive}: MD5 {actual}, expected {expected_md5}; the archive is corrupt or not the "
            f"official CIFAR-10 python archive (delete it and use --download for a fresh copy)"
        )


def find_cifar10(
    root: str | Path,
    download: bool = False,
    url: str = CIFAR10_URL,
    expected_md5: str | None = CIFAR10_MD5,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Return the ``cifar-10-batches-py`` folder for ``root``, extracting or downloading the archive if needed.

    Looks, in order, at ``root`` itself, ``root/cifar-10-batches-py``, ``root/cifar-10-python.tar.gz``;
    then downloads the archive from ``url`` when ``download`` is true.
    """
    root = Path(root).expanduser()
    if _looks_like_folder(root):
        return root
    folder = root / FOLDER_NAME
    if folder.is_dir():
        return folder
    archive = root / ARCHIVE_NAME
    if archive.is_file():
        _check_archive_md5(archive, expected_md5)
        return _extract(archive, root)
    if not download:
        raise DataError(
            f"CIFAR-10 not found: looked for {folder}/, for the batch files in {root}/ and for "
            f"{archive}; pass --download (download=True) to fetch it from {url}"
        )
    download_file(url, archive, expected_md5, progress=progress)
    return _extract(archive, root)


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) std of uint8 images scaled to [0, 1], exact via 256-bin histograms.

    Histograms avoid a float copy of the whole training set (hundreds of MB for CIFAR-10).
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = torch.bincount(x[:, c].reshape(-1), minlength=256).double()
        n = hist.sum()
        mean = (hist * values).sum() / n
        var = (hist * (values - mean) ** 2).sum() / max(float(n) - 1, 1.0)
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return torch.tensor(means, dtype=torch.float32), torch.tensor(stds, dtype=torch.float32)


FULL_TRAIN = 50_000
FULL_VAL = 5_000  # the usual validation split of the full set (airbench, most papers: 45k / 5k)
SMALL_VAL_FRACTION = 0.1  # a smaller folder keeps the same tenth instead of a fixed 5,000


def default_val_size(n_train: int) -> int | float:
    """5,000 for the full 50,000 training images; a 0.1 fraction for a smaller folder (5,000 of 5,551 would
    leave 551 to train on, and a folder under 5,001 images could not load at all)."""
    return FULL_VAL if n_train >= FULL_TRAIN else SMALL_VAL_FRACTION


def load_cifar10(
    root: str | Path,
    download: bool = False,
    val_size: int | float | None = None,
    url: str = CIFAR10_URL,
    expected_md5: str | None = CIFAR10_MD5,
    progress: Callable[[int, int], None] | None = None,
    train_size: int | float | None = None,
) -> DataBundle:
    """Load CIFAR-10 as uint8 (N, 3, 32, 32) tensors: train minus a stratified validation split, and test.

    ``val_size`` is a count or a fraction of the training batches (None: :func:`default_val_size`);
    ``train_size`` a count or fraction of what remains, a stratified subset with a fixed seed. Both
    splits use fixed seeds so every run compares on the same images; mean/std come from the training
    split that is trained on. ``expected_md5`` checks the archive (None skips the check, e.g. for test
    archives); ``progress(bytes_done, total)`` reports a download. Every problem raises
    :class:`DataError` naming the file or folder.
    """
    folder = find_cifar10(root, download=download, url=url, expected_md5=expected_md5, progress=progress)
    missing = [f for f in (*TRAIN_FILES, TEST_FILE, META_FILE) if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 file {missing[0]} not found in {folder}/ (missing: {', '.join(missing)}; "
            f"expected data_batch_1..5, test_batch and batches.meta); delete the folder and use "
            f"--download or the official archive to restore it"
        )
    where = f"CIFAR-10 folder {folder}"
    check_size_spec("val_size", val_size, where)
    check_size_spec("train_size", train_size, where)
    class_names = _read_meta(folder / META_FILE)
    parts = [_read_batch(folder / f) for f in TRAIN_FILES]
    train_np = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    test_data, test_labels = _read_batch(folder / TEST_FILE)
    if len(test_labels) == 0:  # else the run would report a test accuracy of nan
        raise DataError(
            f"{folder / TEST_FILE}: holds no images; expected the test images (10000 in the official batch)"
        )
    n = labels.shape[0]
    given = val_size is not None
    spec: int | float = val_size if val_size is not None else default_val_size(n)
    rest, held, rule = carve_validation(labels, spec, SPLIT_SEED, where)
    if given:
        val_rule = f"{rule} of the images in data_batch_1..5"
    elif spec == FULL_VAL:
        val_rule = f"default: {FULL_VAL} of the {n} images in data_batch_1..5 (the full CIFAR-10)"
    else:
        val_rule = f"default for a folder under {FULL_TRAIN} training images: {rule} of the images in data_batch_1..5"
    val_rule += f", stratified, seed {SPLIT_SEED}"
    train_rule = f"all {rest.numel()} remaining images"
    if train_size is not None:
        keep, train_rule = pick_training_subset(labels[rest], train_size, where)
        rest = rest[keep]
    x = torch.from_numpy(train_np)
    train_x = x[rest]
    mean, std = _channel_stats(train_x)
    bundle = DataBundle(
        name="cifar10",
        kind="image",
        class_names=class_names,
        train_x=train_x,
        train_y=labels[rest],
        val_x=x[held],
        val_y=labels[held],
        test_x=torch.from_numpy(np.ascontiguousarray(test_data.reshape(-1, 3, 32, 32))),
        test_y=torch.from_numpy(test_labels),
        mean=mean,
        std=std,
        augment="flip_crop",
        meta={"source": str(folder), "val_size": int(held.numel()), "split_seed": SPLIT_SEED},
    )
    bundle.validate()
    bundle.split_info = split_info(bundle, val_rule, train_rule, n_train_batches=int(n))
    return bundle
