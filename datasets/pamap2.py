"""PAMAP2 physical-activity monitoring: 27 IMU channels cut into labelled windows, split by subject.

The usual deep-learning recipe (DESIGN.md, "Data"): the +-16g accelerometer, gyroscope and magnetometer of
the hand, chest and ankle IMUs; NaNs interpolated; 100 Hz downsampled to about 33 Hz; 5.12 s windows with a
1 s step that never straddle an activity change or a recording gap; split by subject; z-scored with
training statistics. Parsing the nine ~150 MB text files takes seconds, so the result is cached and a
second load only reads one ``.npz``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .base import DataBundle, DataError

N_COLUMNS = 54
RAW_HZ = 100.0
MAX_GAP_S = 0.5  # a larger jump in timestamps ends a segment: no window spans it
CACHE_VERSION = 1  # bump whenever the processing below changes, so old caches are rebuilt

ACTIVITY_IDS = (1, 2, 3, 4, 5, 6, 7, 12, 13, 16, 17, 24)
CLASS_NAMES = ["lying", "sitting", "standing", "walking", "running", "cycling", "Nordic walking",
               "ascending stairs", "descending stairs", "vacuum cleaning", "ironing", "rope jumping"]

# Column layout: 0 timestamp, 1 activityID, 2 heart rate, then 17 columns per IMU starting at 3, 20, 37:
# +0 temperature, +1..3 acc +-16g, +4..6 acc +-6g, +7..9 gyro, +10..12 magnetometer, +13..16 orientation.
_IMUS = (("hand", 3), ("chest", 20), ("ankle", 37))
_SENSORS = (("acc16", 1), ("gyro", 7), ("mag", 10))
CHANNEL_COLUMNS = [base + off + i for _, base in _IMUS for _, off in _SENSORS for i in range(3)]
CHANNEL_NAMES = [f"{imu}_{sensor}_{axis}" for imu, _ in _IMUS for sensor, _ in _SENSORS for axis in "xyz"]

_SUBJECT_RE = re.compile(r"^subject(\d+)\.dat$")
_LABEL_OF = {a: i for i, a in enumerate(ACTIVITY_IDS)}


def load_pamap2(root: str | Path, cache_dir: str | Path | None = None, val_subjects: Iterable[int] = (105,),
                test_subjects: Iterable[int] = (106,), window_s: float = 5.12, step_s: float = 1.0,
                target_hz: float = 100 / 3) -> DataBundle:
    """Load PAMAP2 ``Protocol/subject1xx.dat`` as float32 windows ``(N, 27, T)``, already z-scored.

    ``root`` is the data set folder holding ``Protocol/`` (or the ``Protocol`` folder itself). Subjects in
    ``val_subjects`` / ``test_subjects`` form those splits, every other subject file present is training
    data. The windows are normalised with training statistics, so ``mean``/``std`` are zeros/ones; the raw
    statistics are kept in ``meta['raw_mean']``/``meta['raw_std']`` for normalising new recordings.
    Results are cached in ``cache_dir`` (default ``root/.hill_cache``) keyed by the files and parameters.
    """
    val_subjects = tuple(sorted(int(s) for s in val_subjects))
    test_subjects = tuple(sorted(int(s) for s in test_subjects))
    if set(val_subjects) & set(test_subjects):
        raise ValueError(f"PAMAP2: subjects {sorted(set(val_subjects) & set(test_subjects))} "
                         "are in both the validation and the test split")
    if window_s <= 0 or step_s <= 0 or target_hz <= 0:
        raise ValueError("PAMAP2: window_s, step_s and target_hz must be positive")
    factor = RAW_HZ / target_hz
    stride = int(round(factor))
    if stride < 1 or abs(factor - stride) > 1e-6 * factor:
        raise ValueError(f"PAMAP2: target_hz={target_hz} must be 100 Hz divided by a whole number")
    hz = RAW_HZ / stride
    win = int(round(window_s * target_hz))
    step = max(1, int(round(step_s * target_hz)))
    if win < 1:
        raise ValueError(f"PAMAP2: window_s={window_s} is shorter than one sample at {hz:.3g} Hz")

    root = Path(root)
    protocol = _find_protocol_dir(root)
    files = _subject_files(protocol)
    present = set(files)
    for split, wanted in (("validation", val_subjects), ("test", test_subjects)):
        missing = [s for s in wanted if s not in present]
        if missing:
            raise DataError(f"PAMAP2: the {split} split is empty: subject(s) {missing} missing "
                            f"(no {', '.join(f'subject{s}.dat' for s in missing)} in {protocol})")
    train_subjects = tuple(s for s in sorted(present) if s not in val_subjects and s not in test_subjects)
    if not train_subjects:
        raise DataError(f"PAMAP2: the training split is empty: every subject file in {protocol} "
                        f"({sorted(present)}) is a validation or test subject")

    params = {"version": CACHE_VERSION, "val": val_subjects, "test": test_subjects, "window_s": window_s,
              "step_s": step_s, "target_hz": target_hz}
    key = _cache_key(files, params)
    cache_path = Path(cache_dir) if cache_dir is not None else root / ".hill_cache"
    cache_file = cache_path / f"pamap2-{key[:20]}.npz"
    splits = {"train": train_subjects, "val": val_subjects, "test": test_subjects}

    arrays = _read_cache(cache_file, key, win) if cache_file.exists() else None
    from_cache = arrays is not None
    if arrays is None:
        arrays = _build(files, splits, win, step, stride)
        arrays["key"] = np.array(key)
        _write_cache(cache_file, arrays)

    stream = torch.from_numpy(arrays["stream"])
    windows = stream.unfold(0, win, 1)  # (L - win + 1, 27, win), a view: indexing below copies
    out: dict[str, torch.Tensor] = {}
    meta: dict = {"source": str(protocol), "channel_names": list(CHANNEL_NAMES), "window_length": win,
                  "window_step": step, "hz": hz, "subjects": {k: list(v) for k, v in splits.items()},
                  "raw_mean": arrays["mean"].tolist(), "raw_std": arrays["std"].tolist(),
                  "cache_file": str(cache_file), "from_cache": from_cache}
    for split in splits:
        starts = torch.from_numpy(arrays[f"{split}_starts"])
        out[f"{split}_x"] = windows[starts] if starts.numel() else torch.zeros((0, len(CHANNEL_NAMES), win))
        out[f"{split}_y"] = torch.from_numpy(arrays[f"{split}_y"])
        meta[f"{split}_subjects_per_window"] = torch.from_numpy(arrays[f"{split}_subject"])
    bundle = DataBundle(
        name="pamap2", kind="signal", class_names=list(CLASS_NAMES),
        mean=torch.zeros(len(CHANNEL_NAMES)), std=torch.ones(len(CHANNEL_NAMES)),
        augment="none", meta=meta, **out,
    )
    bundle.validate()
    return bundle


# ----------------------------------------------------------------------------------------------- files

def _find_protocol_dir(root: Path) -> Path:
    """Accept the data set folder, the ``Protocol`` folder itself, or the folder above the unzipped set."""
    candidates = [root / "Protocol", root, root / "PAMAP2_Dataset" / "Protocol"]
    for c in candidates:
        if c.is_dir() and any(_SUBJECT_RE.match(p.name) for p in c.iterdir()):
            return c
    looked = ", ".join(str(c) for c in candidates)
    if not root.exists():
        raise DataError(f"PAMAP2: folder {root} does not exist (expected it to hold Protocol/subject101.dat ...)")
    raise DataError(f"PAMAP2: no Protocol/subject1xx.dat files found; looked in {looked}")


def _subject_files(protocol: Path) -> dict[int, Path]:
    files = {}
    for p in sorted(protocol.iterdir()):
        m = _SUBJECT_RE.match(p.name)
        if m and p.is_file():
            files[int(m.group(1))] = p
    return files


def _cache_key(files: dict[int, Path], params: dict) -> str:
    """Hash of what the windows depend on: every file's name, size and mtime, and every parameter."""
    stats = []
    for s in sorted(files):
        st = files[s].stat()
        stats.append([files[s].name, st.st_size, st.st_mtime_ns])
    blob = json.dumps({"files": stats, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_subject_file(path: Path) -> np.ndarray:
    """Parse one ``subject1xx.dat`` into a float64 ``(rows, 54)`` array, ``NaN`` literals as NaN.

    numpy's C reader does ~300k rows a second; its error messages count rows inconsistently, so on any
    failure a plain line-by-line scan finds the first bad line and reports it by its 1-based line number.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": handled below
            data = np.loadtxt(path, dtype=np.float64, comments=None, ndmin=2)
    except ValueError as e:  # includes UnicodeDecodeError: the scan reports the line either way
        hint = re.search(r"at row (\d+)", str(e))
        if hint:  # numpy's row count is only a hint (0- or 1-based, blank lines skipped): check from there
            _scan_for_bad_line(path, first_row=max(0, int(hint.group(1)) - 2))
        _scan_for_bad_line(path)
        raise DataError(f"{path.name}: could not be parsed as {N_COLUMNS} numeric columns ({e})") from None
    if data.shape[0] == 0:
        raise DataError(f"{path.name}: the file holds no rows (expected {N_COLUMNS} numbers per line)")
    if data.shape[1] != N_COLUMNS:
        _scan_for_bad_line(path)
        raise DataError(f"{path.name}: {data.shape[1]} columns, expected {N_COLUMNS}")
    return data


def _scan_for_bad_line(path: Path, first_row: int = 0) -> None:
    """Raise DataError for the first line that is not 54 numbers (the slow path, errors only).

    Lines before data row ``first_row`` are only counted, not checked (a full check takes ~5 s a file)."""
    row = -1
    with open(path, "r", encoding="ascii", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            row += 1
            if row < first_row:
                continue
            if len(tokens) != N_COLUMNS:
                raise DataError(f"{path.name} line {lineno}: {len(tokens)} columns, expected {N_COLUMNS}")
            for col, tok in enumerate(tokens, 1):
                try:
                    if "_" in tok:  # Python accepts 1_000, numpy does not
                        raise ValueError
                    float(tok)
                except ValueError:
                    raise DataError(f"{path.name} line {lineno}, column {col}: {tok[:40]!r} is not a number "
                                    "(expected a decimal number or NaN)") from None


def _line_of_row(path: Path, row: int) -> int:
    """1-based line number of data row ``row`` (blank lines are skipped by the parser)."""
    with open(path, "r", encoding="ascii", errors="replace") as f:
        seen = -1
        for lineno, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == row:
                    return lineno
    return row + 1


# ------------------------------------------------------------------------------------------ processing

def _interpolate_nans(x: np.ndarray) -> bool:
    """Fill NaNs in each column of ``x`` in place, linearly by sample; edges take the nearest valid value.

    Returns False if some column has no valid value at all (it is left as zeros)."""
    ok = True
    idx = np.arange(x.shape[0])
    for c in range(x.shape[1]):
        col = x[:, c]
        bad = np.isnan(col)
        if not bad.any():
            continue
        if bad.all():
            col[:] = 0.0
            ok = False
            continue
        col[bad] = np.interp(idx[bad], idx[~bad], col[~bad])
    return ok


def _subject_windows(path: Path, data: np.ndarray, win: int, step: int, stride: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut one subject's recording into windows; returns (stream (L, 27), window starts, labels).

    Windows lie inside one segment: a run of rows with one protocol activity and no timestamp gap over
    0.5 s. Each segment is downsampled on its own (every ``stride``-th row from its first), and only the
    segments long enough for a window are kept in the stream.
    """
    ts, act = data[:, 0], data[:, 1]
    bad = ~np.isfinite(ts) | ~np.isfinite(act) | (act != np.round(act))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path.name} line {_line_of_row(path, row)}: timestamp {data[row, 0]!r} and "
                        f"activityID {data[row, 1]!r}; expected a finite timestamp and a whole activity ID")
    x = np.ascontiguousarray(data[:, CHANNEL_COLUMNS])
    if not _interpolate_nans(x):
        warnings.warn(f"PAMAP2: {path.name} has a channel with no valid values at all; it is set to zero",
                      stacklevel=4)
    act = act.astype(np.int64)
    dt = np.diff(ts)
    brk = np.concatenate([[True], (act[1:] != act[:-1]) | ~((dt > 0) & (dt <= MAX_GAP_S))])
    seg_starts = np.flatnonzero(brk)
    seg_ends = np.append(seg_starts[1:], len(act))
    pieces, starts, labels = [], [], []
    offset = 0
    for s, e in zip(seg_starts.tolist(), seg_ends.tolist()):
        label = _LABEL_OF.get(int(act[s]))
        if label is None:
            continue
        piece = x[s:e:stride]
        if len(piece) < win:
            continue
        n = (len(piece) - win) // step + 1
        pieces.append(piece)
        starts.append(offset + np.arange(n, dtype=np.int64) * step)
        labels.append(np.full(n, label, dtype=np.int64))
        offset += len(piece)
    if not pieces:
        return (np.zeros((0, len(CHANNEL_COLUMNS))), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return np.concatenate(pieces), np.concatenate(starts), np.concatenate(labels)


def _build(files: dict[int, Path], splits: dict[str, tuple[int, ...]], win: int, step: int, stride: int
           ) -> dict[str, np.ndarray]:
    """Parse every subject, window, z-score with training statistics; the arrays the cache holds."""
    streams, offset = [], 0
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {k: [] for k in splits}
    split_of = {s: k for k, subs in splits.items() for s in subs}
    for subject in sorted(files):
        data = parse_subject_file(files[subject])
        stream, starts, labels = _subject_windows(files[subject], data, win, step, stride)
        del data
        parts[split_of[subject]].append((starts + offset, labels, np.full(len(starts), subject, np.int64)))
        streams.append(stream)
        offset += len(stream)
    stream = np.concatenate(streams) if streams else np.zeros((0, len(CHANNEL_COLUMNS)))

    arrays: dict[str, np.ndarray] = {}
    for split, subs in splits.items():
        got = parts[split]
        starts = np.concatenate([p[0] for p in got]) if got else np.zeros(0, np.int64)
        if subs and len(starts) == 0:
            raise DataError(f"PAMAP2: the {split} split is empty: subject(s) {list(subs)} have no "
                            f"{win}-sample window of one protocol activity ({', '.join(map(str, ACTIVITY_IDS))})")
        arrays[f"{split}_starts"] = starts
        arrays[f"{split}_y"] = np.concatenate([p[1] for p in got]) if got else np.zeros(0, np.int64)
        arrays[f"{split}_subject"] = np.concatenate([p[2] for p in got]) if got else np.zeros(0, np.int64)

    # Statistics over exactly the training windows and their time steps: windows overlap, so each sample
    # counts once per window that covers it.
    cover = np.zeros(len(stream) + 1, dtype=np.float64)
    np.add.at(cover, arrays["train_starts"], 1.0)
    np.add.at(cover, arrays["train_starts"] + win, -1.0)
    weight = np.cumsum(cover)[:-1]
    total = weight.sum()
    mean = (weight @ stream) / total
    var = (weight @ (stream - mean) ** 2) / total
    std = np.sqrt(var)
    std[std < 1e-8] = 1.0  # a constant channel stays constant rather than dividing by zero
    arrays["stream"] = ((stream - mean) / std).astype(np.float32)
    arrays["mean"], arrays["std"] = mean, std
    arrays["window_length"] = np.array(win)
    return arrays


# ----------------------------------------------------------------------------------------------- cache

def _read_cache(path: Path, key: str, win: int) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None (with a warning) when the file is unreadable or does not fit."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if str(arrays["key"]) != key:
            raise ValueError("it was written for other files or parameters")
        stream = arrays["stream"]
        if stream.dtype != np.float32 or stream.ndim != 2 or stream.shape[1] != len(CHANNEL_NAMES):
            raise ValueError(f"stream has shape {stream.shape} and dtype {stream.dtype}")
        if int(arrays["window_length"]) != win:
            raise ValueError("window length differs")
        for split in ("train", "val", "test"):
            st, y, subj = arrays[f"{split}_starts"], arrays[f"{split}_y"], arrays[f"{split}_subject"]
            if not (st.shape == y.shape == subj.shape and st.dtype == y.dtype == np.int64):
                raise ValueError(f"{split} arrays disagree")
            if st.size and (st.min() < 0 or st.max() + win > len(stream)):
                raise ValueError(f"{split} windows run past the stored samples")
            if y.size and (y.min() < 0 or y.max() >= len(CLASS_NAMES)):
                raise ValueError(f"{split} labels out of range")
        if not np.isfinite(stream).all():
            raise ValueError("stream holds non-finite values")
        return arrays
    except Exception as e:  # noqa: BLE001 - any failure means "rebuild", never "trust it"
        warnings.warn(f"PAMAP2: ignoring the cache {path} and rebuilding it: {type(e).__name__}: {e}",
                      stacklevel=3)
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary name and rename, so a crash never leaves a half-written cache behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a shared data folder wants it readable
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        warnings.warn(f"PAMAP2: could not write the cache {path} ({e}); the next load parses again",
                      stacklevel=3)
