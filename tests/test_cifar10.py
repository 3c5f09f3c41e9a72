"""CIFAR-10 loading from small files written in exactly the official on-disk format, and its download.

The official batches are Python 2 cPickle files (protocol 2): byte-string keys, the pixel array pickled as
``numpy.core.multiarray._reconstruct`` with its raw bytes as a py2 ``str``. ``_py2_pickle`` writes that
format opcode by opcode, so the loader is tested against what users actually have on disk.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from hill_app.datasets.base import DataError
from hill_app.datasets.cifar10 import CIFAR10_MD5, load_cifar10
from hill_app.datasets.download import download_file

CLASSES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
PER_BATCH = 30  # 3 images of each class per training batch -> 150 training images, 15 per class
N_TEST = 20


# --------------------------------------------------------------------------- writing the official format


def _py2_pickle(obj: object) -> bytes:
    """Pickle ``obj`` the way Python 2's cPickle (protocol 2) wrote the official CIFAR-10 files."""
    out = bytearray(b"\x80\x02")

    def s(o: object) -> None:
        if isinstance(o, bytes):  # a py2 str
            out.extend(b"U" + bytes([len(o)]) + o if len(o) < 256 else b"T" + struct.pack("<I", len(o)) + o)
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            if 0 <= o < 256:
                out.extend(b"K" + bytes([o]))
            elif 0 <= o < 65536:
                out.extend(b"M" + struct.pack("<H", o))
            else:
                out.extend(b"J" + struct.pack("<i", o))
        elif o is None:
            out.extend(b"N")
        elif isinstance(o, tuple):
            if 1 <= len(o) <= 3:
                for item in o:
                    s(item)
                out.extend({1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(o)])
            else:
                out.extend(b"(")
                for item in o:
                    s(item)
                out.extend(b"t")
        elif isinstance(o, list):
            out.extend(b"]")
            if o:
                out.extend(b"(")
                for item in o:
                    s(item)
                out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}")
            if o:
                out.extend(b"(")
                for k, v in o.items():
                    s(k)
                    s(v)
                out.extend(b"u")
        elif isinstance(o, np.ndarray):
            assert o.dtype == np.uint8
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\n")
            out.extend(b"cnumpy\nndarray\n")
            s((0,))
            s(b"b")
            out.extend(b"\x87R")  # _reconstruct(ndarray, (0,), 'b')
            out.extend(b"(")  # state: (1, shape, dtype, is_fortran, raw bytes)
            s(1)
            s(tuple(o.shape))
            out.extend(b"cnumpy\ndtype\n")
            s((b"u1", 0, 1))
            out.extend(b"R")
            s((3, b"|", None, None, None, -1, -1, 0))
            out.extend(b"b")
            s(False)
            s(np.ascontiguousarray(o).tobytes())
            out.extend(b"tb")
        else:
            raise TypeError(type(o))

    s(obj)
    out.extend(b".")
    return bytes(out)


def _image_rows(first_index: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3072) uint8 rows of random images whose R[0, 0] pixel holds a unique id, to find them again."""
    rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    rows[:, 0] = np.arange(first_index, first_index + n)
    return rows


def _make_data() -> dict[str, dict]:
    rng = np.random.default_rng(0)
    files: dict[str, dict] = {}
    for b in range(5):
        labels = [i % 10 for i in range(PER_BATCH)]
        rng.shuffle(labels)
        files[f"data_batch_{b + 1}"] = {
            b"batch_label": f"training batch {b + 1} of 5".encode(),
            b"labels": [int(v) for v in labels],
            b"data": _image_rows(b * PER_BATCH, PER_BATCH, rng),
            b"filenames": [f"img_{b}_{i}.png".encode() for i in range(PER_BATCH)],
        }
    files["test_batch"] = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(v) for v in rng.integers(0, 10, N_TEST)],
        b"data": _image_rows(200, N_TEST, rng),
        b"filenames": [f"test_{i}.png".encode() for i in range(N_TEST)],
    }
    files["batches.meta"] = {b"num_cases_per_batch": PER_BATCH, b"label_names": CLASSES, b"num_vis": 3072}
    return files


def _write_folder(folder: Path, files: dict[str, dict], dumps=_py2_pickle) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, d in files.items():
        (folder / name).write_bytes(dumps(d))
    return folder


def _make_archive(path: Path, files: dict[str, dict]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        dir_info = tarfile.TarInfo("cifar-10-batches-py")
        dir_info.type = tarfile.DIRTYPE
        dir_info.mode = 0o755
        tar.addfile(dir_info)
        for name, d in files.items():
            data = _py2_pickle(d)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    path.write_bytes(raw)
    return raw


@pytest.fixture(scope="module")
def files() -> dict[str, dict]:
    return _make_data()


@pytest.fixture
def folder(tmp_path: Path, files: dict[str, dict]) -> Path:
    return _write_folder(tmp_path / "cifar-10-batches-py", files)


def _all_train_rows(files: dict[str, dict]) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([files[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    labels = np.concatenate([files[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])
    return data, labels


# --------------------------------------------------------------------------- loading


def test_py2_writer_matches_official_header(files: dict[str, dict]) -> None:
    raw = _py2_pickle(files["data_batch_1"])
    assert raw.startswith(b"\x80\x02}")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    # And it is a valid pickle that plain numpy reads back identically.
    d = pickle.loads(raw, encoding="bytes")
    np.testing.assert_array_equal(d[b"data"], files["data_batch_1"][b"data"])


def test_pixel_layout_and_labels(tmp_path: Path, folder: Path, files: dict[str, dict]) -> None:
    b = load_cifar10(tmp_path, val_size=50)
    row = files["test_batch"][b"data"][0]
    img = b.test_x[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.uint8
    # R plane first, then G, then B; each plane 32x32 row-major.
    assert int(img[0, 0, 1]) == row[1]
    assert int(img[0, 2, 3]) == row[2 * 32 + 3]
    assert int(img[1, 2, 3]) == row[1024 + 2 * 32 + 3]
    assert int(img[2, 31, 0]) == row[2048 + 31 * 32]
    assert int(img[2, 31, 31]) == row[3071]
    expected = np.stack([row[:1024].reshape(32, 32), row[1024:2048].reshape(32, 32), row[2048:].reshape(32, 32)])
    np.testing.assert_array_equal(img.numpy(), expected)
    np.testing.assert_array_equal(b.test_x.reshape(N_TEST, -1).numpy(), files["test_batch"][b"data"])
    assert b.test_y.tolist() == files["test_batch"][b"labels"]
    assert b.test_y.dtype == torch.int64


def test_split_sizes_and_pairing(tmp_path: Path, folder: Path, files: dict[str, dict]) -> None:
    b = load_cifar10(tmp_path, val_size=50)
    assert b.name == "cifar10" and b.kind == "image" and b.augment == "flip_crop"
    assert b.class_names == [c.decode() for c in CLASSES]
    assert (len(b.train_x), len(b.val_x), len(b.test_x)) == (100, 50, N_TEST)
    assert b.train_y.dtype == b.val_y.dtype == torch.int64
    # Stratified: 5 of the 15 images of every class held out.
    assert torch.bincount(b.val_y, minlength=10).tolist() == [5] * 10
    assert torch.bincount(b.train_y, minlength=10).tolist() == [10] * 10
    # Every image is its original, with its original label; train and val are disjoint and cover all 150.
    data, labels = _all_train_rows(files)
    seen = []
    for x, y in ((b.train_x, b.train_y), (b.val_x, b.val_y)):
        ids = x[:, 0, 0, 0].long()
        np.testing.assert_array_equal(x.reshape(len(x), -1).numpy(), data[ids.numpy()])
        assert y.tolist() == labels[ids.numpy()].tolist()
        seen += ids.tolist()
    assert sorted(seen) == list(range(150))


def test_split_is_fixed_and_stats_from_train(tmp_path: Path, folder: Path) -> None:
    a = load_cifar10(tmp_path, val_size=50)
    b = load_cifar10(folder, val_size=50)  # root being the batches folder itself
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_y, b.train_y)
    xf = a.train_x.double() / 255.0
    assert (a.mean.double() - xf.mean(dim=(0, 2, 3))).abs().max() < 1e-6
    assert (a.std.double() - xf.std(dim=(0, 2, 3))).abs().max() < 1e-6
    assert a.mean.shape == (3,) and a.std.shape == (3,)
    with pytest.raises(DataError, match=r"val_size=0; expected a count \(an integer >= 1\)"):
        load_cifar10(folder, val_size=0)  # C1: a validation split has at least one image


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_files_resaved_by_python3_load(tmp_path: Path, files: dict[str, dict], protocol: int) -> None:
    folder = _write_folder(tmp_path / "cifar-10-batches-py", files, dumps=lambda d: pickle.dumps(d, protocol=protocol))
    b = load_cifar10(folder, val_size=50)
    np.testing.assert_array_equal(b.test_x.reshape(N_TEST, -1).numpy(), files["test_batch"][b"data"])


def test_load_from_archive(tmp_path: Path, files: dict[str, dict]) -> None:
    raw = _make_archive(tmp_path / "cifar-10-python.tar.gz", files)
    b = load_cifar10(tmp_path, val_size=50, expected_md5=hashlib.md5(raw).hexdigest())
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no extraction leftovers
    np.testing.assert_array_equal(b.test_x.reshape(N_TEST, -1).numpy(), files["test_batch"][b"data"])
    assert len(b.train_x) == 100


def test_archive_md5_mismatch_names_file_and_both_md5s(tmp_path: Path, files: dict[str, dict]) -> None:
    raw = _make_archive(tmp_path / "cifar-10-python.tar.gz", files)
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path)  # default: the official md5
    msg = str(e.value)
    assert "cifar-10-python.tar.gz" in msg and CIFAR10_MD5 in msg and hashlib.md5(raw).hexdigest() in msg
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_truncated_archive(tmp_path: Path, files: dict[str, dict]) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    raw = _make_archive(archive, files)
    archive.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_cifar10(tmp_path, expected_md5=None)
    assert not (tmp_path / "cifar-10-batches-py").exists()


# --------------------------------------------------------------------------- errors


def test_nothing_on_disk_says_where_and_download(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path)
    msg = str(e.value)
    assert "cifar-10-batches-py" in msg and "cifar-10-python.tar.gz" in msg and "--download" in msg
    assert str(tmp_path) in msg


def test_missing_batch_file(tmp_path: Path, folder: Path) -> None:
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path)
    assert "data_batch_3" in str(e.value) and str(folder) in str(e.value)


def test_truncated_pickle(tmp_path: Path, folder: Path) -> None:
    p = folder / "data_batch_2"
    p.write_bytes(p.read_bytes()[:1500])
    with pytest.raises(DataError, match="data_batch_2.*truncated or corrupt"):
        load_cifar10(tmp_path)


def test_wrong_column_count(tmp_path: Path, files: dict[str, dict]) -> None:
    bad = dict(files)
    bad["data_batch_3"] = {**files["data_batch_3"], b"data": files["data_batch_3"][b"data"][:, :3071].copy()}
    _write_folder(tmp_path / "cifar-10-batches-py", bad)
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path)
    msg = str(e.value)
    assert "data_batch_3" in msg and "(30, 3071)" in msg and "(N, 3072) uint8" in msg


def test_label_count_mismatch(tmp_path: Path, files: dict[str, dict]) -> None:
    bad = dict(files)
    bad["test_batch"] = {**files["test_batch"], b"labels": files["test_batch"][b"labels"][:-1]}
    _write_folder(tmp_path / "cifar-10-batches-py", bad)
    with pytest.raises(DataError, match=f"test_batch: {N_TEST - 1} labels for {N_TEST} images"):
        load_cifar10(tmp_path)


def test_label_out_of_range(tmp_path: Path, files: dict[str, dict]) -> None:
    bad = dict(files)
    bad["data_batch_4"] = {**files["data_batch_4"], b"labels": [10] + files["data_batch_4"][b"labels"][1:]}
    _write_folder(tmp_path / "cifar-10-batches-py", bad)
    with pytest.raises(DataError, match=r"data_batch_4: labels must lie in 0\.\.9"):
        load_cifar10(tmp_path)


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_malicious_pickle_is_refused_not_run(tmp_path: Path, folder: Path) -> None:
    marker = tmp_path / "pwned"
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil(str(marker))}, protocol=2))
    with pytest.raises(DataError, match="data_batch_1: refusing to unpickle"):
        load_cifar10(tmp_path)
    assert not marker.exists()


# --------------------------------------------------------------------------- download over loopback HTTP


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/short":  # promises more bytes than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 100)
            return
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    routes: dict[str, bytes] = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def archive_bytes(tmp_path_factory: pytest.TempPathFactory, files: dict[str, dict]) -> bytes:
    return _make_archive(tmp_path_factory.mktemp("arch") / "a.tar.gz", files)


def test_download_then_load(tmp_path: Path, server, archive_bytes: bytes, files: dict[str, dict]) -> None:
    base, routes = server
    routes["/cifar.tar.gz"] = archive_bytes
    root = tmp_path / "data"  # does not exist yet
    seen: list[tuple[int, int]] = []
    b = load_cifar10(
        root,
        download=True,
        val_size=50,
        url=base + "/cifar.tar.gz",
        expected_md5=hashlib.md5(archive_bytes).hexdigest(),
        progress=lambda d, t: seen.append((d, t)),
    )
    np.testing.assert_array_equal(b.test_x.reshape(N_TEST, -1).numpy(), files["test_batch"][b"data"])
    assert (root / "cifar-10-python.tar.gz").read_bytes() == archive_bytes
    assert seen[-1] == (len(archive_bytes), len(archive_bytes))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    # The second load finds the extracted folder; no network needed.
    routes.clear()
    assert torch.equal(load_cifar10(root, download=True, val_size=50, url=base + "/cifar.tar.gz").val_x, b.val_x)


def test_corrupted_download_leaves_nothing(tmp_path: Path, server, archive_bytes: bytes) -> None:
    base, routes = server
    corrupted = bytearray(archive_bytes)
    corrupted[len(corrupted) // 2] ^= 0xFF
    routes["/cifar.tar.gz"] = bytes(corrupted)
    good_md5 = hashlib.md5(archive_bytes).hexdigest()
    url = base + "/cifar.tar.gz"
    with pytest.raises(DataError) as e:
        load_cifar10(tmp_path, download=True, url=url, expected_md5=good_md5)
    msg = str(e.value)
    assert url in msg and "MD5" in msg and good_md5 in msg and hashlib.md5(corrupted).hexdigest() in msg
    assert list(tmp_path.iterdir()) == []


def test_404_names_url(tmp_path: Path, server) -> None:
    base, _ = server
    url = base + "/missing.tar.gz"
    with pytest.raises(DataError, match="404") as e:
        load_cifar10(tmp_path, download=True, url=url)
    assert url in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_short_transfer_and_refused_connection(tmp_path: Path, server) -> None:
    base, _ = server
    with pytest.raises(DataError, match="/short"):
        download_file(base + "/short", tmp_path / "f.bin", None, timeout=5)
    assert list(tmp_path.iterdir()) == []
    dead = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    port = dead.server_address[1]
    dead.server_close()  # nothing listens there now
    with pytest.raises(DataError, match=f"127.0.0.1:{port}/x"):
        download_file(f"http://127.0.0.1:{port}/x", tmp_path / "f.bin", None, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_download_file_replaces_only_on_success(tmp_path: Path, server) -> None:
    base, routes = server
    routes["/f"] = b"hello world" * 1000
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with pytest.raises(DataError):
        download_file(base + "/f", dest, "0" * 32)
    assert dest.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    assert download_file(base + "/f", dest, hashlib.md5(routes["/f"]).hexdigest()) == dest
    assert dest.read_bytes() == routes["/f"]


# --------------------------------------------------------------------------- the CLI's --download


def test_cli_download_option_reaches_the_loader(tmp_path: Path, files: dict[str, dict], monkeypatch, capsys) -> None:
    """`hill-app train --dataset cifar10 --download` asks the loader to fetch the archive (stood in for here by
    a local copy, no network); without --download the same empty folder is refused, naming the option."""
    from hill_app.cli import main
    from hill_app.datasets import cifar10 as cifar10_module

    calls: list[tuple[str, Path]] = []

    def fake_download(url, dest, expected_md5=None, progress=None, **kw):
        calls.append((url, Path(dest)))
        _make_archive(Path(dest), files)
        return Path(dest)

    monkeypatch.setattr(cifar10_module, "download_file", fake_download)
    root = tmp_path / "data"
    root.mkdir()
    args = [
        "train",
        "--dataset",
        "cifar10",
        "--data-root",
        str(root),
        "--model",
        "digits_cnn",
        "--epochs",
        "1",
        "--pause-at",
        "none",
        "--seed",
        "0",
        "--device",
        "cpu",
    ]

    assert main(args + ["--out", str(tmp_path / "without")]) == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "--download" in err and str(root) in err, err
    assert calls == [] and list(root.iterdir()) == []
    assert not (tmp_path / "without" / "config.json").exists()

    out = tmp_path / "with"
    assert main(args + ["--download", "--out", str(out)]) == 0, capsys.readouterr().err
    assert calls == [(cifar10_module.CIFAR10_URL, root / "cifar-10-python.tar.gz")]
    assert json.loads((out / "config.json").read_text())["download"] is True
    assert (root / "cifar-10-batches-py" / "batches.meta").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "cifar10" and summary["epochs"] == 1
