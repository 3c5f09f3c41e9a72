"""PAMAP2 loader: small subject files in the exact on-disk format, checked against what the recipe promises.

Three channels carry known values so the output can be checked without re-implementing the loader:
hand acc16 x = 10 * activityID (so a window that straddles a label change is not constant), hand acc16 y =
the index of the contiguous segment (changes across a timestamp gap over 0.5 s), hand acc16 z =
subject - 100. The other channels are noise with a subject-dependent offset.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hill_app.datasets import pamap2
from hill_app.datasets.base import DataError
from hill_app.datasets.pamap2 import ACTIVITY_IDS, CHANNEL_COLUMNS, CLASS_NAMES, load_pamap2

T_DEFAULT, STEP_DEFAULT = 171, 33  # 5.12 s and 1 s at 100/3 Hz

# (activityID, rows) blocks at 100 Hz; ("gap", seconds) jumps the timestamp. Activity 0 is transient,
# 9 is an optional (non-protocol) activity: both must be dropped.
SUBJECTS: dict[int, list] = {
    101: [(0, 30), (1, 600), (0, 20), (2, 560), (0, 25), (3, 560), ("gap", 1.0), (3, 560), (0, 10)],
    102: [(0, 30), (4, 600), (0, 20), (5, 520), (6, 700), (0, 10)],  # 5 -> 6 with no transient between
    103: [(7, 600), (0, 20), (12, 580), (13, 650)],  # starts inside a protocol activity at row 0
    104: [(0, 30), (16, 600), (9, 600), (17, 540), (0, 20), (24, 300), ("gap", 0.2), (24, 320)],
    105: [(0, 20), (1, 600), (3, 600)],
    106: [(0, 20), (2, 600), (4, 700)],
}


def make_rows(subject: int, blocks: list, seed: int = 0) -> np.ndarray:
    """The (rows, 54) table a subject file holds (NaN where the file says NaN)."""
    rng = np.random.default_rng(subject * 7 + seed)
    ts, act, seg = [], [], []
    t, s = 5.0, 0
    for b in blocks:
        if b[0] == "gap":
            t += b[1] - 0.01
            if b[1] > 0.5:
                s += 1
            continue
        a, n = b
        ts.extend(t + 0.01 * np.arange(n))
        t += 0.01 * n
        act.extend([a] * n)
        seg.extend([s] * n)
    n = len(act)
    rows = np.round(rng.normal(loc=(subject - 100) * 0.5, scale=1.0 + 0.1 * (subject - 100), size=(n, 54)), 3)
    rows[:, 0] = np.round(ts, 2)
    rows[:, 1] = act
    rows[:, 2] = np.where(np.arange(n) % 10 == 0, 100 + np.arange(n) % 7, np.nan)  # heart rate ~9 Hz
    for base in (3, 20, 37):
        rows[:, base] = 30.0 + (subject - 100) * 0.1  # temperature
        rows[:, base + 13 : base + 17] = [1, 0, 0, 0]  # orientation (invalid in this data set)
    rows[:, CHANNEL_COLUMNS[0]] = 10.0 * np.asarray(act)
    rows[:, CHANNEL_COLUMNS[1]] = seg
    rows[:, CHANNEL_COLUMNS[2]] = subject - 100
    return rows


def format_rows(rows: np.ndarray) -> list[str]:
    """Lines as in the official files: ``8.38 0 104 30 2.37223 ...`` with ``NaN`` literals."""
    lines = []
    for r in rows:
        parts = [f"{r[0]:.2f}", f"{int(r[1])}"] + ["NaN" if math.isnan(v) else f"{v:g}" for v in r[2:]]
        lines.append(" ".join(parts) + "\n")
    return lines


def write_subject(protocol: Path, subject: int, rows: np.ndarray) -> Path:
    path = protocol / f"subject{subject}.dat"
    path.write_text("".join(format_rows(rows)))
    return path


@functools.cache
def standard_subject(subject: int) -> tuple[np.ndarray, str]:
    """Rows and file text of one subject of SUBJECTS, formatted once per test session (for speed)."""
    rows = make_rows(subject, SUBJECTS[subject])
    rows.flags.writeable = False
    return rows, "".join(format_rows(rows))


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[int, np.ndarray]]:
    protocol = tmp_path / "PAMAP2_Dataset" / "Protocol"
    protocol.mkdir(parents=True)
    tables = {}
    for s in SUBJECTS:
        tables[s], text = standard_subject(s)
        (protocol / f"subject{s}.dat").write_text(text)
    return tmp_path / "PAMAP2_Dataset", tables


def expected_windows(blocks: list, t: int = T_DEFAULT, step: int = STEP_DEFAULT) -> list[int]:
    """Activity IDs of the windows one subject yields, in order (segments split by gaps over 0.5 s)."""
    segs: list[list] = []  # [activity, rows]
    prev_gap = True
    for b in blocks:
        if b[0] == "gap":
            prev_gap = b[1] > 0.5
            continue
        if segs and not prev_gap and segs[-1][0] == b[0]:
            segs[-1][1] += b[1]
        else:
            segs.append([b[0], b[1]])
        prev_gap = False
    out = []
    for a, n in segs:
        ds = math.ceil(n / 3)
        if a in ACTIVITY_IDS and ds >= t:
            out += [a] * ((ds - t) // step + 1)
    return out


def denorm(bundle, x: torch.Tensor, ch: int) -> torch.Tensor:
    """Back to the raw units of one channel, via the training statistics the loader reports."""
    return x[:, ch, :].double() * bundle.meta["raw_std"][ch] + bundle.meta["raw_mean"][ch]


def test_windows_labels_and_split(dataset, tmp_path):
    root, _ = dataset
    b = load_pamap2(root, cache_dir=tmp_path / "cache")
    assert b.kind == "signal" and b.augment == "none" and b.class_names == CLASS_NAMES
    assert b.input_shape == (27, T_DEFAULT)
    assert b.train_x.dtype == torch.float32 and b.train_y.dtype == torch.int64
    assert torch.equal(b.mean, torch.zeros(27)) and torch.equal(b.std, torch.ones(27))
    assert b.meta["subjects"] == {"train": [101, 102, 103, 104], "val": [105], "test": [106]}
    assert b.meta["window_length"] == T_DEFAULT and b.meta["hz"] == pytest.approx(100 / 3)
    assert len(b.meta["channel_names"]) == 27 and b.meta["channel_names"][0] == "hand_acc16_x"

    for split, subjects in b.meta["subjects"].items():
        y = getattr(b, f"{split}_y")
        per_window = b.meta[f"{split}_subjects_per_window"]
        want_ids = [a for s in subjects for a in expected_windows(SUBJECTS[s])]
        want_subj = [s for s in subjects for _ in expected_windows(SUBJECTS[s])]
        assert [ACTIVITY_IDS[i] for i in y.tolist()] == want_ids  # count, order and label mapping
        assert per_window.tolist() == want_subj
        x = getattr(b, f"{split}_x")
        # The subject channel agrees with the per-window subject ids: no subject leaks across splits.
        subj = denorm(b, x, 2)
        assert torch.allclose(subj, (per_window.double() - 100)[:, None].expand_as(subj), atol=1e-3)
    # 101's activity-3 block is split by a 1 s gap (2 windows, not 7); 104's 0.2 s gap does not split.
    assert expected_windows(SUBJECTS[101]).count(3) == 2
    assert expected_windows(SUBJECTS[104]).count(24) == 2
    assert set(b.train_y.tolist()) == {ACTIVITY_IDS.index(a) for a in (1, 2, 3, 4, 5, 6, 7, 12, 13, 16, 17, 24)}


def test_windows_never_straddle_a_label_change_or_gap(dataset, tmp_path):
    root, _ = dataset
    b = load_pamap2(root, cache_dir=tmp_path / "cache")
    for split in ("train", "val", "test"):
        x, y = getattr(b, f"{split}_x"), getattr(b, f"{split}_y")
        act = denorm(b, x, 0)  # 10 * activityID of every sample
        want = 10.0 * torch.tensor(ACTIVITY_IDS, dtype=torch.float64)[y]
        assert torch.allclose(act, want[:, None].expand_as(act), atol=1e-3)  # also: no activity 0 / 9
        seg = denorm(b, x, 1)
        assert torch.allclose(seg, seg[:, :1].expand_as(seg), atol=1e-3)
    # Both halves of 101's split activity-3 block are present, each its own window.
    seg = denorm(b, b.train_x, 1)[:, 0]
    s101_act3 = (b.meta["train_subjects_per_window"] == 101) & (b.train_y == ACTIVITY_IDS.index(3))
    assert sorted(seg[s101_act3].round().tolist()) == [0.0, 1.0]


def test_zscore_uses_training_statistics_only(dataset, tmp_path):
    root, _ = dataset
    b = load_pamap2(root, cache_dir=tmp_path / "cache")
    flat = b.train_x.double().permute(1, 0, 2).reshape(27, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(27, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(flat.std(1, unbiased=False), torch.ones(27, dtype=torch.float64), atol=1e-4)
    # Channel 0 is constant within a window (10 * activity), so its train statistics follow from the labels.
    raw = 10.0 * torch.tensor(ACTIVITY_IDS, dtype=torch.float64)[b.train_y]
    m, s = raw.mean(), raw.std(unbiased=False)
    for split in ("val", "test"):
        x, y = getattr(b, f"{split}_x"), getattr(b, f"{split}_y")
        want = (10.0 * torch.tensor(ACTIVITY_IDS, dtype=torch.float64)[y] - m) / s
        assert torch.allclose(x[:, 0, :].double(), want[:, None].expand(-1, x.shape[2]), atol=1e-4)
    # The test subject's noise channels have their own offset: normalised with train statistics they are
    # visibly not centred (subject 106's offset is 3.0 against 0.5..2.0 in training).
    test_mean = b.test_x.double().mean(dim=(0, 2))
    assert (test_mean[3:] > 0.5).all()


def test_nan_interpolation(tmp_path):
    protocol = tmp_path / "Protocol"
    protocol.mkdir()
    tables = {s: standard_subject(s)[0] for s in (101, 103, 105, 106)}
    rows = tables[103].copy()
    ch_mid, ch_edge = 10, 20  # chest magnetometer x, ankle gyro y
    # Two NaNs in the middle of activity 7 (block starts at row 0): rows 30 and 31; row 30 is the 10th
    # downsampled sample of the first window. Linear interpolation between rows 29 and 32.
    rows[30:32, CHANNEL_COLUMNS[ch_mid]] = np.nan
    # NaN at the very first rows: the nearest valid value (row 3) fills rows 0..2.
    rows[0:3, CHANNEL_COLUMNS[ch_edge]] = np.nan
    for s, table in tables.items():
        write_subject(protocol, s, rows if s == 103 else table)
    b = load_pamap2(protocol, cache_dir=tmp_path / "cache")  # root given as the Protocol folder itself
    first = int(torch.nonzero(b.meta["train_subjects_per_window"] == 103)[0])
    assert ACTIVITY_IDS[int(b.train_y[first])] == 7
    clean = tables[103][:, CHANNEL_COLUMNS[ch_mid]]
    want_mid = clean[29] + (clean[32] - clean[29]) / 3
    assert abs(want_mid - clean[30]) > 1e-3  # the test would be vacuous if interpolation hit the truth
    got = denorm(b, b.train_x[first : first + 1], ch_mid)[0]
    assert got[10].item() == pytest.approx(want_mid, abs=1e-3)
    assert got[11].item() == pytest.approx(clean[33], abs=1e-3)  # the neighbours are untouched
    edge = denorm(b, b.train_x[first : first + 1], ch_edge)[0]
    assert edge[0].item() == pytest.approx(tables[103][3, CHANNEL_COLUMNS[ch_edge]], abs=1e-3)
    assert torch.isfinite(b.train_x).all() and torch.isfinite(b.test_x).all()


def test_cache_hit_returns_identical_tensors_without_parsing(dataset, tmp_path, monkeypatch):
    root, _ = dataset
    first = load_pamap2(root)  # default cache folder: root/.hill_cache
    assert not first.meta["from_cache"]
    cache_files = list((root / ".hill_cache").glob("pamap2-*.npz"))
    assert [str(p) for p in cache_files] == [first.meta["cache_file"]]
    assert not list((root / ".hill_cache").glob("*.tmp"))  # the temporary name was renamed away

    def boom(path):
        raise AssertionError(f"parsed {path} although the cache is valid")

    monkeypatch.setattr(pamap2, "parse_subject_file", boom)
    second = load_pamap2(root)
    assert second.meta["from_cache"]
    for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, k), getattr(second, k)), k
    for split in ("train", "val", "test"):
        key = f"{split}_subjects_per_window"
        assert torch.equal(first.meta[key], second.meta[key])
    assert first.meta["raw_mean"] == second.meta["raw_mean"]


def counting_parser(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = pamap2.parse_subject_file

    def wrapped(path):
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(pamap2, "parse_subject_file", wrapped)
    return calls


def test_cache_invalidated_by_changed_file_and_parameters(dataset, tmp_path, monkeypatch):
    root, tables = dataset
    cache = tmp_path / "cache"
    calls = counting_parser(monkeypatch)
    before = load_pamap2(root, cache_dir=cache)
    assert len(calls) == 6
    load_pamap2(root, cache_dir=cache)
    assert len(calls) == 6  # cache hit

    # Change subject 106 (test): activity 2 becomes 3. Same length, so only content and mtime differ.
    path = root / "Protocol" / "subject106.dat"
    st = path.stat()
    rows = tables[106].copy()
    rows[rows[:, 1] == 2, 1] = 3
    rows[:, CHANNEL_COLUMNS[0]] = 10.0 * rows[:, 1]
    write_subject(root / "Protocol", 106, rows)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    after = load_pamap2(root, cache_dir=cache)
    assert len(calls) == 12 and not after.meta["from_cache"]
    assert ACTIVITY_IDS.index(2) in before.test_y.tolist()
    assert ACTIVITY_IDS.index(2) not in after.test_y.tolist()
    assert torch.equal(before.train_x, after.train_x)  # train statistics do not depend on the test subject

    # A different parameter is a different cache entry.
    other = load_pamap2(root, cache_dir=cache, step_s=2.0)
    assert len(calls) == 18 and not other.meta["from_cache"]
    assert other.train_x.shape[0] < after.train_x.shape[0]
    assert len(list(cache.glob("pamap2-*.npz"))) == 3


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_key"])
def test_corrupt_cache_is_rebuilt_with_a_warning(dataset, tmp_path, monkeypatch, damage):
    root, _ = dataset
    cache = tmp_path / "cache"
    good = load_pamap2(root, cache_dir=cache)
    path = Path(good.meta["cache_file"])
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 100)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # a well-formed cache for other parameters, copied under this name
        other = load_pamap2(root, cache_dir=tmp_path / "other", step_s=2.0)
        path.write_bytes(Path(other.meta["cache_file"]).read_bytes())
    calls = counting_parser(monkeypatch)
    with pytest.warns(UserWarning, match="ignoring the cache"):
        rebuilt = load_pamap2(root, cache_dir=cache)
    assert len(calls) == 6 and not rebuilt.meta["from_cache"]
    for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(good, k), getattr(rebuilt, k)), k
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_pamap2(root, cache_dir=cache)  # the rebuilt cache is good again
    assert again.meta["from_cache"] and len(calls) == 6


def test_wrong_column_count_names_file_and_line(dataset):
    root, tables = dataset
    lines = format_rows(tables[103])
    lines[56] = " ".join(lines[56].split()[:53]) + "\n"  # line 57
    (root / "Protocol" / "subject103.dat").write_text("".join(lines))
    with pytest.raises(DataError, match=r"subject103\.dat line 57: 53 columns, expected 54"):
        load_pamap2(root, cache_dir=root / "c")


def test_every_row_short_is_reported_at_line_1(dataset):
    root, tables = dataset
    lines = [" ".join(line.split()[:53]) + "\n" for line in format_rows(tables[101])]
    (root / "Protocol" / "subject101.dat").write_text("".join(lines))
    with pytest.raises(DataError, match=r"subject101\.dat line 1: 53 columns, expected 54"):
        load_pamap2(root, cache_dir=root / "c")


def test_non_numeric_value_names_file_and_line(dataset):
    root, tables = dataset
    lines = format_rows(tables[102])
    tokens = lines[11].split()
    tokens[4] = "abc"
    lines[11] = " ".join(tokens) + "\n"  # line 12, column 5
    (root / "Protocol" / "subject102.dat").write_text("".join(lines))
    with pytest.raises(DataError, match=r"subject102\.dat line 12, column 5: 'abc' is not a number"):
        load_pamap2(root, cache_dir=root / "c")


def test_missing_folder_says_where_it_looked(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_pamap2(tmp_path / "nowhere")
    (tmp_path / "empty" / "Protocol").mkdir(parents=True)
    with pytest.raises(DataError, match=r"looked in .*empty.Protocol"):
        load_pamap2(tmp_path / "empty")


def test_missing_test_subject_is_named(dataset):
    root, _ = dataset
    (root / "Protocol" / "subject106.dat").unlink()
    with pytest.raises(DataError, match=r"test split is empty: subject\(s\) \[106\] missing"):
        load_pamap2(root, cache_dir=root / "c")
    with pytest.raises(DataError, match=r"validation split is empty: subject\(s\) \[107\] missing"):
        load_pamap2(root, cache_dir=root / "c", val_subjects=(107,), test_subjects=(105,))


def test_subject_without_protocol_windows_empties_its_split(tmp_path):
    protocol = tmp_path / "Protocol"
    protocol.mkdir()
    for s in (101, 105):
        (protocol / f"subject{s}.dat").write_text(standard_subject(s)[1])
    write_subject(protocol, 106, make_rows(106, [(0, 900), (9, 900)]))  # only transient / optional rows
    with pytest.raises(DataError, match=r"test split is empty: subject\(s\) \[106\] have no 171-sample window"):
        load_pamap2(tmp_path, cache_dir=tmp_path / "c")


# ------------------------------------------------------------------ bad values and subjects left out (issue 13.8)


@pytest.mark.parametrize("token", ["inf", "1e400", "-inf", "Infinity"])
@pytest.mark.parametrize("column", [CHANNEL_COLUMNS[5] + 1, 3])  # an IMU channel; the unused heart rate
def test_infinite_value_names_file_line_column_and_token(dataset, token, column):
    # Today the file loads, the z-score turns every window into NaN and the run dies after epoch 1.
    root, tables = dataset
    lines = format_rows(tables[103])
    tokens = lines[56].split()
    tokens[column - 1] = token
    lines[56] = " ".join(tokens) + "\n"  # line 57
    (root / "Protocol" / "subject103.dat").write_text("".join(lines))
    with pytest.raises(DataError) as e:
        load_pamap2(root, cache_dir=root / "c")
    assert str(e.value) == (
        f"subject103.dat line 57, column {column}: {token!r} is not a finite number (expected a decimal number or NaN)"
    )
    assert not list((root / "c").glob("*.npz"))  # nothing cached


def test_value_beyond_any_sensor_reading_is_refused(dataset):
    root, tables = dataset
    rows = tables[102].copy()
    rows[40, CHANNEL_COLUMNS[10]] = 1e300  # finite, but its square overflows the z-score
    write_subject(root / "Protocol", 102, rows)
    with pytest.raises(
        DataError,
        match=r"^subject102\.dat line 41, column 23 \(chest_acc16_y\): 1e\+300 is not a "
        r"sensor reading \(expected \|value\| <= 1e\+06, or NaN\)$",
    ):
        load_pamap2(root, cache_dir=root / "c")


def _left_out_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "contributes no windows" in str(w.message)]


def test_training_subject_with_only_activity_0_is_reported_at_load_and_from_cache(dataset, tmp_path):
    root, _ = dataset
    path = root / "Protocol" / "subject104.dat"
    write_subject(root / "Protocol", 104, make_rows(104, [(0, 900)]))
    for attempt in ("parsed", "cached"):
        with pytest.warns(UserWarning) as record:
            b = load_pamap2(root, cache_dir=tmp_path / "c")
        assert b.meta["from_cache"] == (attempt == "cached")
        msgs = _left_out_warnings(record)
        want = (
            f"PAMAP2: {path} contributes no windows and is left out: all 900 rows have activityID 0; "
            f"expected rows of a protocol activity (1, 2, 3, 4, 5, 6, 7, 12, 13, 16, 17, 24); 0 is "
            f"the transient activity and is dropped"
        )
        assert msgs == [want], attempt
        assert any(w.category.__name__ == "DataWarning" for w in record)
        assert list(b.split_info["left_out"]) == ["subject104.dat"]
        assert 104 not in b.meta["train_subjects_per_window"].tolist()
        assert len(b.train_y) == sum(len(expected_windows(SUBJECTS[s])) for s in (101, 102, 103))


def test_subject_with_reversed_timestamps_is_reported(dataset, tmp_path):
    root, tables = dataset
    rows = tables[102].copy()
    rows[:, 0] = rows[::-1, 0].copy()  # newest first
    write_subject(root / "Protocol", 102, rows)
    with pytest.warns(UserWarning) as record:
        b = load_pamap2(root, cache_dir=tmp_path / "c")
    (msg,) = _left_out_warnings(record)
    n = len(rows)
    assert msg.startswith(
        f"PAMAP2: {root / 'Protocol' / 'subject102.dat'} contributes no windows and is left out: "
        f"its longest run of one protocol activity without a timestamp gap over 0.5 s is 1 rows; "
        f"expected at least 511 rows"
    )
    assert msg.endswith(
        f"timestamps do not increase at {n - 1} of {n - 1} steps (first at line 2: "
        f"{rows[1, 0]:g} after {rows[0, 0]:g}), expected increasing by 0.01 s"
    )
    assert "subject102.dat" in b.split_info["left_out"]


def test_empty_split_error_says_why_the_subject_gave_nothing(tmp_path):
    protocol = tmp_path / "Protocol"
    protocol.mkdir()
    for s in (101, 105):
        (protocol / f"subject{s}.dat").write_text(standard_subject(s)[1])
    write_subject(protocol, 106, make_rows(106, [(0, 900), (9, 900)]))
    with pytest.raises(
        DataError,
        match=r"\(subject106\.dat: all 1800 rows have activityID 0, 9; expected rows of "
        r"a protocol activity",
    ):
        load_pamap2(tmp_path, cache_dir=tmp_path / "c")


# ------------------------------------------------------------------ val_size / train_size (C1)

# Longer segments (2400 rows = 24 s -> 20 windows each), and hand gyro x carrying the timestamp, so the
# validation windows can be checked against the training windows in time.
LONG = {
    101: [(0, 50), (1, 2400), (0, 30), (2, 2400)],
    102: [(1, 2400), (3, 2400)],
    103: [(2, 2400), (3, 2400)],
    105: [(1, 1200), (2, 1200)],
    106: [(3, 1200), (1, 1200)],
}
TIME_CH = 3


@pytest.fixture(scope="module")
def long_dataset(tmp_path_factory) -> Path:
    protocol = tmp_path_factory.mktemp("long") / "Protocol"
    protocol.mkdir()
    for s, blocks in LONG.items():
        rows = make_rows(s, blocks)
        rows[:, CHANNEL_COLUMNS[TIME_CH]] = rows[:, 0]
        write_subject(protocol, s, rows)
    return protocol


def test_default_is_the_subject_split_and_says_so(long_dataset, tmp_path):
    b = load_pamap2(long_dataset, cache_dir=tmp_path / "c")
    assert b.meta["subjects"] == {"train": [101, 102, 103], "val": [105], "test": [106]}
    assert (b.split_info["n_train"], b.split_info["n_val"], b.split_info["n_test"]) == (120, 14, 14)
    assert b.split_info["val_rule"].startswith("default: subject split, validation subject(s) [105]")


def test_val_size_takes_segment_tails_without_overlap(long_dataset, tmp_path):
    default = load_pamap2(long_dataset, cache_dir=tmp_path / "c")
    b = load_pamap2(long_dataset, cache_dir=tmp_path / "c", val_size=0.2)
    assert b.meta["from_cache"]  # the cache holds the windows; the split is made on top of it
    n_pool = 134  # 101, 102, 103 (40 windows each) and 105 (14)
    assert len(b.val_y) == 27
    pool_counts = torch.tensor([47, 47, 40], dtype=torch.float64)  # activities 1, 2, 3
    val_counts = torch.bincount(b.val_y, minlength=3)[:3].double()
    assert (val_counts - pool_counts * 27 / n_pool).abs().max() <= 1.0
    dropped = b.split_info["dropped_overlapping_windows"]
    assert dropped > 0 and len(b.train_y) == n_pool - 27 - dropped
    assert b.meta["subjects"]["val"] == [101, 102, 103, 105]
    assert torch.equal(b.test_y, default.test_y)

    def spans(split):
        x = getattr(b, f"{split}_x")
        t = denorm(b, x, TIME_CH)
        return list(
            zip(
                b.meta[f"{split}_subjects_per_window"].tolist(),
                getattr(b, f"{split}_y").tolist(),
                t[:, 0].tolist(),
                t[:, -1].tolist(),
            )
        )

    train, val = spans("train"), spans("val")
    for s, y, t0, t1 in val:
        same = [(a, z) for s2, y2, a, z in train if s2 == s]
        assert all(z < t0 or a > t1 for a, z in same)  # no sample of a validation window is trained on
        # It is a tail: every training window of its segment (same subject and activity here) comes first.
        assert all(z < t0 for s2, y2, a, z in train if s2 == s and y2 == y)
    # The z-score follows the new training windows, and the raw statistics still undo it.
    flat = b.train_x.double().permute(1, 0, 2).reshape(27, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(27, dtype=torch.float64), atol=1e-5)
    varying = [c for c in range(27) if c != 1]  # channel 1 (the segment index) is constant here
    assert torch.allclose(flat[varying].std(1, unbiased=False), torch.ones(26, dtype=torch.float64), atol=1e-4)
    for split in ("train", "val", "test"):
        act = denorm(b, getattr(b, f"{split}_x"), 0)
        want = 10.0 * torch.tensor(ACTIVITY_IDS, dtype=torch.float64)[getattr(b, f"{split}_y")]
        assert torch.allclose(act, want[:, None].expand_as(act), atol=1e-3)
    assert (
        "0.2 of 134" in b.split_info["val_rule"]
        and "last windows of every activity segment" in b.split_info["val_rule"]
    )


def test_train_size_is_a_stratified_subset_and_renormalised(long_dataset, tmp_path):
    full = load_pamap2(long_dataset, cache_dir=tmp_path / "c")
    b = load_pamap2(long_dataset, cache_dir=tmp_path / "c", train_size=30)
    assert len(b.train_y) == 30 and torch.bincount(b.train_y, minlength=3)[:3].tolist() == [10, 10, 10]
    assert len(b.val_y) == len(full.val_y)
    flat = b.train_x.double().permute(1, 0, 2).reshape(27, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(27, dtype=torch.float64), atol=1e-5)
    t_full = set(denorm(full, full.train_x, TIME_CH)[:, 0].round(decimals=2).tolist())
    assert set(denorm(b, b.train_x, TIME_CH)[:, 0].round(decimals=2).tolist()) <= t_full


def test_val_size_too_large_for_pamap2_is_refused(long_dataset, tmp_path):
    with pytest.raises(
        DataError,
        match=r"val_size=132 asks for 132 of the 134 windows of the non-test subjects; "
        r"expected 1 to 131",
    ):
        load_pamap2(long_dataset, cache_dir=tmp_path / "c", val_size=132)
    with pytest.raises(DataError, match=r"val_size=0.9 leaves no training window of class\(es\)"):
        load_pamap2(long_dataset, cache_dir=tmp_path / "c", val_size=0.9)
