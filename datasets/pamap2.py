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
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from .base import (
    DataBundle,
    DataError,
    DataWarning,
    allocate,
    check_size_spec,
    pick_training_subset,
    size_to_count,
    split_info,
)

N_COLUMNS = 54
RAW_HZ = 100.0
MAX_GAP_S = 0.5  # a larger jump in timestamps ends a segment: no window spans it
MAX_ABS_READING = 1e6  # |value| of an IMU channel; real readings stay below ~1e3 (m/s^2, rad/s, uT)
CACHE_VERSION = 2  # bump whenever the processing below changes, so old caches are rebuilt

ACTIVITY_IDS = (1, 2, 3, 4, 5, 6, 7, 12, 13, 16, 17, 24)
CLASS_NAMES = [
    "lying",
    "sitting",
    "standing",
    "walking",
    "running",
    "cycling",
    "Nordic walking",
    "ascending stairs",
    "descending stairs",
    "vacuum cleaning",
    "ironing",
    "rope jumping",
]

# Column layout: 0 timestamp, 1 activityID, 2 heart rate, then 17 columns per IMU starting at 3, 20, 37:
# +0 temperature, +1..3 acc +-16g, +4..6 acc +-6g, +7..9 gyro, +10..12 magnetometer, +13..16 orientation.
_IMUS = (("hand", 3), ("chest", 20), ("ankle", 37))
_SENSORS = (("acc16", 1), ("gyro", 7), ("mag", 10))
CHANNEL_COLUMNS = [base + off + i for _, base in _IMUS for _, off in _SENSORS for i in range(3)]
CHANNEL_NAMES = [f"{imu}_{sensor}_{axis}" for imu, _ in _IMUS for sensor, _ in _SENSORS for axis in "xyz"]

_SUBJECT_RE = re.compile(r"^subject(\d+)\.dat$")
_LABEL_OF = {a: i for i, a in enumerate(ACTIVITY_IDS)}


def load_pamap2(
    root: str | Path,
    cache_dir: str | Path | None = None,
    val_subjects: Iterable[int] = (105,),
    test_subjects: Iterable[int] = (106,),
    window_s: float = 5.12,
    step_s: float = 1.0,
    target_hz: float = 100 / 3,
    val_size: int | float | None = None,
    train_size: int | float | None = None,
) -> DataBundle:
    """Load PAMAP2 ``Protocol/subject1xx.dat`` as float32 windows ``(N, 27, T)``, already z-scored.

    ``root`` is the data set folder holding ``Protocol/`` (or the ``Protocol`` folder itself). Subjects in
    ``val_subjects`` / ``test_subjects`` form those splits, every other subject file present is training
    data. The windows are normalised with training statistics, so ``mean``/``std`` are zeros/ones; the raw
    statistics are kept in ``meta['raw_mean']``/``meta['raw_std']`` for normalising new recordings.
    Results are cached in ``cache_dir`` (default ``root/.hill_cache``) keyed by the files and parameters.

    ``val_size`` (a count or fraction of the windows of every non-test subject) replaces the subject split
    of validation by the last windows of every activity segment, dropping the training windows that
    overlap them; ``train_size`` keeps a stratified, seeded subset of the training windows. Either one
    re-derives the z-score from the training windows that remain. A subject file that yields no window
    is reported (a :class:`DataWarning` naming the file and why, and ``split_info['left_out']``).
    """
    val_subjects = tuple(sorted(int(s) for s in val_subjects))
    test_subjects = tuple(sorted(int(s) for s in test_subjects))
    if set(val_subjects) & set(test_subjects):
        raise ValueError(
            f"PAMAP2: subjects {sorted(set(val_subjects) & set(test_subjects))} "
            "are in both the validation and the test split"
        )
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
    check_size_spec("val_size", val_size, f"PAMAP2 folder {root}")
    check_size_spec("train_size", train_size, f"PAMAP2 folder {root}")
    protocol = _find_protocol_dir(root)
    files = _subject_files(protocol)
    present = set(files)
    for split, wanted in (("validation", val_subjects), ("test", test_subjects)):
        missing = [s for s in wanted if s not in present]
        if missing:
            raise DataError(
                f"PAMAP2: the {split} split is empty: subject(s) {missing} missing "
                f"(no {', '.join(f'subject{s}.dat' for s in missing)} in {protocol})"
            )
    train_subjects = tuple(s for s in sorted(present) if s not in val_subjects and s not in test_subjects)
    if not train_subjects:
        raise DataError(
            f"PAMAP2: the training split is empty: every subject file in {protocol} "
            f"({sorted(present)}) is a validation or test subject"
        )

    params = {
        "version": CACHE_VERSION,
        "val": val_subjects,
        "test": test_subjects,
        "window_s": window_s,
        "step_s": step_s,
        "target_hz": target_hz,
    }
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

    left_out = {int(k): v for k, v in json.loads(str(arrays["notes"])).items()}
    for subject, reason in sorted(left_out.items()):
        warnings.warn(
            f"PAMAP2: {files[subject]} contributes no windows and is left out: {reason}", DataWarning, stacklevel=2
        )
    where = f"PAMAP2 folder {protocol}"
    sel = {k: (arrays[f"{k}_starts"], arrays[f"{k}_y"], arrays[f"{k}_subject"]) for k in splits}
    stream_np, raw_mean, raw_std = arrays["stream"], arrays["mean"], arrays["std"]
    val_rule = f"default: subject split, validation subject(s) {list(val_subjects)}, test {list(test_subjects)}"
    extra: dict = {}
    if val_size is not None:
        pool = [np.concatenate([sel["train"][i], sel["val"][i]]) for i in range(3)]
        order = np.argsort(pool[0], kind="stable")
        pool = [a[order] for a in pool]
        tr, va, n_purged, rule = _carve_validation(pool[0], pool[1], pool[2], val_size, win, step, where)
        sel["train"] = tuple(a[tr] for a in pool)
        sel["val"] = tuple(a[va] for a in pool)
        pooled = sorted(set(train_subjects) | set(val_subjects))
        splits = {"train": tuple(pooled), "val": tuple(pooled), "test": test_subjects}
        val_rule = (
            f"{rule} of the windows of subjects {pooled} (all but the test subjects): the "
            f"last windows of every activity segment, {n_purged} training windows overlapping them "
            f"dropped"
        )
        extra["dropped_overlapping_windows"] = n_purged
    train_rule = f"all {len(sel['train'][0])} remaining windows"
    if train_size is not None:
        keep, train_rule = pick_training_subset(torch.from_numpy(sel["train"][1]), train_size, where, unit="windows")
        sel["train"] = tuple(a[keep.numpy()] for a in sel["train"])
    if val_size is not None or train_size is not None:  # the z-score follows the training windows
        stream_np, m, sd = _renormalize(stream_np, sel["train"][0], win)
        raw_mean, raw_std = raw_mean + raw_std * m, raw_std * sd

    stream = torch.from_numpy(stream_np)
    windows = stream.unfold(0, win, 1)  # (L - win + 1, 27, win), a view: indexing below copies
    out: dict[str, torch.Tensor] = {}
    meta: dict = {
        "source": str(protocol),
        "channel_names": list(CHANNEL_NAMES),
        "window_length": win,
        "window_step": step,
        "hz": hz,
        "subjects": {k: list(v) for k, v in splits.items()},
        "raw_mean": raw_mean.tolist(),
        "raw_std": raw_std.tolist(),
        "cache_file": str(cache_file),
        "from_cache": from_cache,
        "left_out": {files[k].name: v for k, v in sorted(left_out.items())},
    }
    for split in splits:
        starts_np, y_np, subj_np = sel[split]
        starts = torch.from_numpy(starts_np)
        out[f"{split}_x"] = windows[starts] if starts.numel() else torch.zeros((0, len(CHANNEL_NAMES), win))
        out[f"{split}_y"] = torch.from_numpy(y_np)
        meta[f"{split}_subjects_per_window"] = torch.from_numpy(subj_np)
    bundle = DataBundle(
        name="pamap2",
        kind="signal",
        class_names=list(CLASS_NAMES),
        mean=torch.zeros(len(CHANNEL_NAMES)),
        std=torch.ones(len(CHANNEL_NAMES)),
        augment="none",
        meta=meta,
        train_x=out["train_x"],
        train_y=out["train_y"],
        val_x=out["val_x"],
        val_y=out["val_y"],
        test_x=out["test_x"],
        test_y=out["test_y"],
    )
    bundle.validate()
    bundle.split_info = split_info(bundle, val_rule, train_rule, left_out=dict(meta["left_out"]), **extra)
    return bundle


def _carve_validation(
    starts: np.ndarray, y: np.ndarray, subj: np.ndarray, val_size: int | float, win: int, step: int, where: str
) -> tuple[np.ndarray, np.ndarray, int, str]:
    """(train, val) positions into the pooled windows, and how many training windows were dropped.

    Windows overlap (a 5.12 s window every 1 s), so a random window split would put most of every
    validation window into training too. Instead each class's share is spread over its activity
    segments in proportion to their length, each segment gives its last windows, and the training
    windows of that segment that overlap them are dropped.
    """
    n = len(starts)
    classes, counts = np.unique(y, return_counts=True)
    k, rule = size_to_count("val_size", val_size, n)
    if k < 1 or k > n - len(classes):
        raise DataError(
            f"{where}: val_size={val_size!r} asks for {k} of the {n} windows of the non-test "
            f"subjects; expected 1 to {n - len(classes)}, so that each of the {len(classes)} "
            f"classes keeps a training window"
        )
    per_class = allocate(counts, k, np.zeros_like(counts), counts - 1)
    brk = np.ones(n, dtype=bool)
    if n > 1:
        brk[1:] = (np.diff(starts) != step) | (np.diff(y) != 0) | (np.diff(subj) != 0)
    seg_a = np.flatnonzero(brk)
    seg_b = np.append(seg_a[1:], n)
    seg_class = y[seg_a]
    is_val = np.zeros(n, dtype=bool)
    dropped = np.zeros(n, dtype=bool)
    overlap = -(-win // step) - 1  # windows before a validation window that share samples with it
    for c, kc in zip(classes.tolist(), per_class.tolist()):
        segs = np.flatnonzero(seg_class == c)
        sizes = seg_b[segs] - seg_a[segs]
        take = allocate(sizes, kc, np.zeros_like(sizes), sizes)
        for sg, m in zip(segs.tolist(), take.tolist()):
            if m:
                first_val = seg_b[sg] - m
                is_val[first_val : seg_b[sg]] = True
                dropped[max(seg_a[sg], first_val - overlap) : first_val] = True
    train = ~is_val & ~dropped
    empty = [CLASS_NAMES[int(c)] for c in classes if not (train & (y == c)).any()]
    if empty:
        raise DataError(
            f"{where}: val_size={val_size!r} leaves no training window of class(es) "
            f"{', '.join(empty)} once the windows overlapping validation are dropped; expected a "
            f"smaller val_size"
        )
    return np.flatnonzero(train), np.flatnonzero(is_val), int(dropped.sum()), rule


def _renormalize(
    stream: np.ndarray, train_starts: np.ndarray, win: int, chunk: int = 1 << 18
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-score ``stream`` again with the statistics of exactly these training windows (each sample counted
    once per window covering it); returns the new stream and the mean and std it removed."""
    cover = np.zeros(len(stream) + 1, dtype=np.float64)
    np.add.at(cover, train_starts, 1.0)
    np.add.at(cover, train_starts + win, -1.0)
    weight = np.cumsum(cover)[:-1]
    total = weight.sum()
    acc = np.zeros(stream.shape[1])
    for i in range(0, len(stream), chunk):
        acc += weight[i : i + chunk] @ stream[i : i + chunk].astype(np.float64)
    mean = acc / total
    acc[:] = 0.0
    for i in range(0, len(stream), chunk):
        acc += weight[i : i + chunk] @ (stream[i : i + chunk].astype(np.float64) - mean) ** 2
    std = np.sqrt(acc / total)
    std[std < 1e-8] = 1.0
    out = np.empty_like(stream, dtype=np.float32)
    for i in range(0, len(stream), chunk):
        out[i : i + chunk] = (stream[i : i + chunk] - mean) / std
    return out, mean, std


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
    inf = np.isinf(data)
    if inf.any():  # "inf", "-Infinity" or a number too large for a double such as 1e400
        row, col = (int(v[0]) for v in np.nonzero(inf))
        lineno = _line_of_row(path, row)
        raise DataError(
            f"{path.name} line {lineno}, column {col + 1}: {_token_at(path, lineno, col)!r} is not a "
            f"finite number (expected a decimal number or NaN)"
        )
    return data


def _token_at(path: Path, lineno: int, col: int) -> str:
    """The text of column ``col`` (0-based) on line ``lineno`` (1-based), for messages."""
    with open(path, encoding="ascii", errors="replace") as f:
        for i, line in enumerate(f, 1):
            if i == lineno:
                tokens = line.split()
                return tokens[col][:40] if col < len(tokens) else ""
    return ""


def _scan_for_bad_line(path: Path, first_row: int = 0) -> None:
    """Raise DataError for the first line that is not 54 numbers (the slow path, errors only).

    Lines before data row ``first_row`` are only counted, not checked (a full check takes ~5 s a file)."""
    row = -1
    with open(path, encoding="ascii", errors="replace") as f:
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
                    raise DataError(
                        f"{path.name} line {lineno}, column {col}: {tok[:40]!r} is not a number "
                        "(expected a decimal number or NaN)"
                    ) from None


def _line_of_row(path: Path, row: int) -> int:
    """1-based line number of data row ``row`` (blank lines are skipped by the parser)."""
    with open(path, encoding="ascii", errors="replace") as f:
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


def _subject_windows(
    path: Path, data: np.ndarray, win: int, step: int, stride: int
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
        raise DataError(
            f"{path.name} line {_line_of_row(path, row)}: timestamp {data[row, 0]!r} and "
            f"activityID {data[row, 1]!r}; expected a finite timestamp and a whole activity ID"
        )
    x = np.ascontiguousarray(data[:, CHANNEL_COLUMNS])
    huge = np.abs(x) > MAX_ABS_READING  # NaN compares False: NaNs are interpolated below
    if huge.any():
        row, c = (int(v[0]) for v in np.nonzero(huge))
        raise DataError(
            f"{path.name} line {_line_of_row(path, row)}, column {CHANNEL_COLUMNS[c] + 1} "
            f"({CHANNEL_NAMES[c]}): {x[row, c]:g} is not a sensor reading (expected |value| <= "
            f"{MAX_ABS_READING:g}, or NaN)"
        )
    if not _interpolate_nans(x):
        warnings.warn(f"PAMAP2: {path.name} has a channel with no valid values at all; it is set to zero", stacklevel=4)
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


def why_no_windows(path: Path, data: np.ndarray, win: int, stride: int) -> str:
    """Why a recording yields no window, in terms of what the file holds and what a window needs."""
    ts, act = data[:, 0], data[:, 1].astype(np.int64)
    need = (win - 1) * stride + 1
    ids = ", ".join(map(str, ACTIVITY_IDS))
    proto = np.isin(act, ACTIVITY_IDS)
    if not proto.any():
        found = ", ".join(map(str, sorted(set(act.tolist()))[:8]))
        return (
            f"all {len(act)} rows have activityID {found}; expected rows of a protocol activity ({ids}); "
            f"0 is the transient activity and is dropped"
        )
    dt = np.diff(ts)
    brk = np.concatenate([[True], (act[1:] != act[:-1]) | ~((dt > 0) & (dt <= MAX_GAP_S))])
    seg_starts = np.flatnonzero(brk)
    lengths = np.diff(np.append(seg_starts, len(act)))
    longest = int(lengths[proto[seg_starts]].max())
    msg = (
        f"its longest run of one protocol activity without a timestamp gap over {MAX_GAP_S:g} s is {longest} "
        f"rows; expected at least {need} rows ({need / RAW_HZ:.2f} s at {RAW_HZ:g} Hz)"
    )
    back = np.flatnonzero(dt <= 0)
    if back.size:
        i = int(back[0])
        msg += (
            f"; timestamps do not increase at {back.size} of {len(dt)} steps (first at line "
            f"{_line_of_row(path, i + 1)}: {ts[i + 1]:g} after {ts[i]:g}), expected increasing by 0.01 s"
        )
    return msg


def _build(
    files: dict[int, Path], splits: dict[str, tuple[int, ...]], win: int, step: int, stride: int
) -> dict[str, np.ndarray]:
    """Parse every subject, window, z-score with training statistics; the arrays the cache holds."""
    streams, offset = [], 0
    parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {k: [] for k in splits}
    split_of = {s: k for k, subs in splits.items() for s in subs}
    notes: dict[str, str] = {}
    for subject in sorted(files):
        data = parse_subject_file(files[subject])
        stream, starts, labels = _subject_windows(files[subject], data, win, step, stride)
        if len(starts) == 0:
            notes[str(subject)] = why_no_windows(files[subject], data, win, stride)
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
            why = "; ".join(f"{files[s].name}: {notes[str(s)]}" for s in subs if str(s) in notes)
            raise DataError(
                f"PAMAP2: the {split} split is empty: subject(s) {list(subs)} have no "
                f"{win}-sample window of one protocol activity ({', '.join(map(str, ACTIVITY_IDS))})"
                f" ({why})"
            )
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
    arrays["notes"] = np.array(json.dumps(notes, sort_keys=True))
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
        notes = json.loads(str(arrays["notes"]))
        if not isinstance(notes, dict) or not all(isinstance(v, str) and k.isdigit() for k, v in notes.items()):
            raise ValueError("notes are not a {subject: reason} table")
        return arrays
    except Exception as e:  # noqa: BLE001 - any failure means "rebuild", never "trust it"
        warnings.warn(f"PAMAP2: ignoring the cache {path} and rebuilding it: {type(e).__name__}: {e}", stacklevel=3)
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary name and rename, so a crash never leaves a half-written cache behind."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a shared data folder wants it readable
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds against allow_pickle
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        warnings.warn(f"PAMAP2: could not write the cache {path} ({e}); the next load parses again", stacklevel=3)
