"""The CIFAR-10 loader on real images: the subset in ../shared/data/cifar10-real (5,551 training and 1,017 test
images recovered from the official batches, each batch the leading part of its official namesake).

The folder is read-only and lives outside the repository; a clone without it skips these tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from hill_app.datasets import load_dataset
from hill_app.datasets.cifar10 import TEST_FILE, TRAIN_FILES, _read_batch, load_cifar10

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-real" / "cifar-10-batches-py"
pytestmark = pytest.mark.skipif(
    not (REAL / "batches.meta").is_file(),
    reason=f"the real CIFAR-10 subset is not at {REAL} (it sits beside the "
    f"repository in ../shared/data/cifar10-real, never inside it)",
)

BATCH_SIZES = {
    "data_batch_1": 1102,
    "data_batch_2": 1017,
    "data_batch_3": 1017,
    "data_batch_4": 1398,
    "data_batch_5": 1017,
    "test_batch": 1017,
}
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# Published per-channel means of the 50,000 official training images (R, G, B, pixels scaled to [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)


@pytest.fixture(scope="module")
def bundle():
    return load_dataset("cifar10", REAL.parent)


def _row_hashes(rows: np.ndarray) -> list[str]:
    return [hashlib.sha1(r.tobytes()).hexdigest() for r in rows]


def test_batches_hold_fewer_than_10000_images_and_all_load(bundle):
    for name, n in BATCH_SIZES.items():
        data, labels = _read_batch(REAL / name)
        assert data.shape == (n, 3072) and labels.shape == (n,)
        assert set(labels.tolist()) == set(range(10))  # every class in every batch
    assert len(bundle.train_y) + len(bundle.val_y) == 5551 and len(bundle.test_y) == 1017
    # Every training image is there exactly once, split between train and validation.
    raw = np.concatenate([_read_batch(REAL / f)[0] for f in TRAIN_FILES])
    got = torch.cat([bundle.train_x, bundle.val_x]).reshape(-1, 3072).numpy()
    assert sorted(_row_hashes(got)) == sorted(_row_hashes(raw))


def test_default_validation_split_is_a_tenth_for_this_small_folder(bundle):
    # The full set's 5,000 would leave 551 images to train on; a folder under 50,000 images keeps a tenth.
    assert (len(bundle.train_y), len(bundle.val_y), len(bundle.test_y)) == (4996, 555, 1017)
    info = bundle.split_info
    assert (info["n_train"], info["n_val"], info["n_test"]) == (4996, 555, 1017)
    assert info["val_rule"].startswith("default for a folder under 50000 training images: 555 (val_size=0.1 of 5551)")
    counts = torch.bincount(bundle.val_y, minlength=10)
    pool = torch.bincount(torch.cat([bundle.train_y, bundle.val_y]), minlength=10)
    assert ((counts.double() - pool.double() * 0.1).abs() <= 1).all()


def test_labels_class_names_and_known_first_labels(bundle):
    assert bundle.class_names == CLASS_NAMES  # from batches.meta
    _, first = _read_batch(REAL / "data_batch_1")
    assert first[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert bundle.test_y[:8].tolist() == [3, 8, 8, 0, 6, 6, 1, 6]  # the test split keeps the file's order
    test_rows, test_labels = _read_batch(REAL / TEST_FILE)
    assert torch.equal(bundle.test_y, torch.from_numpy(test_labels))
    np.testing.assert_array_equal(bundle.test_x.reshape(-1, 3072).numpy(), test_rows)
    assert bundle.train_y.dtype == torch.int64 and bundle.train_x.dtype == torch.uint8


def _neighbour_correlation(x: torch.Tensor) -> list[float]:
    """Correlation of horizontally adjacent pixels in each plane of (N, 3, 32, 32) images."""
    x = x.double()
    return [
        float(torch.corrcoef(torch.stack([x[:, c, :, :-1].reshape(-1), x[:, c, :, 1:].reshape(-1)]))[0, 1])
        for c in range(3)
    ]


def test_planes_are_red_green_blue_images(bundle):
    # Each stored row is three 32x32 planes, R then G then B. Read that way, neighbouring pixels of a real
    # photo are strongly correlated; read as interleaved RGB triples (the usual mistake) they are not.
    assert min(_neighbour_correlation(bundle.test_x)) > 0.88
    wrong = bundle.test_x.reshape(-1, 32, 32, 3).permute(0, 3, 1, 2)
    assert max(_neighbour_correlation(wrong)) < 0.8
    # The planes are in R, G, B order: the training means match the published CIFAR-10 means, and sky and
    # sea classes are bluer than red while frogs and deer are redder than blue.
    assert torch.allclose(bundle.mean, torch.tensor(CIFAR10_MEAN), atol=0.005)

    def mean_rgb(cls: str) -> torch.Tensor:
        return (bundle.train_x[bundle.train_y == CLASS_NAMES.index(cls)].double() / 255).mean(dim=(0, 2, 3))

    for cls in ("airplane", "ship"):
        r, _, b = mean_rgb(cls)
        assert b > r + 0.03, cls
    for cls in ("frog", "deer"):
        r, _, b = mean_rgb(cls)
        assert r > b + 0.05, cls


def test_val_and_train_size_on_real_images():
    b = load_cifar10(REAL, val_size=1000, train_size=0.1)
    assert (len(b.val_y), len(b.train_y)) == (1000, 455)
    assert (torch.bincount(b.train_y, minlength=10) >= 40).all()
    assert b.split_info["val_rule"].startswith("1000 (val_size=1000, a count)")
    assert b.split_info["train_rule"].startswith("455 (train_size=0.1 of 4551)")


def test_short_training_run_on_real_images(tmp_path):
    """Two epochs of the digits-sized CNN on 400 real training images through a TrainingSession (CPU, a few
    seconds): it learns something real, measured on the 1,017 real test images."""
    import dataclasses
    import json
    import math

    from hill_app.engine.config import RunConfig
    from hill_app.engine.session import TrainingSession

    data = load_cifar10(REAL, val_size=200, train_size=400)
    sizes = {"val_size": 200, "train_size": 400}  # recorded in the config where RunConfig has the fields (C1)
    have = {f.name for f in dataclasses.fields(RunConfig)}
    cfg = RunConfig(
        dataset="cifar10",
        data_root=str(REAL.parent),
        model="digits_cnn",
        epochs=2,
        pause_at=[],
        device="cpu",
        batch_size=50,
        lr=0.05,
        seed=0,
        **{k: v for k, v in sizes.items() if k in have},
    )
    session = TrainingSession(cfg, tmp_path / "run", bundle=data)
    assert session.data is data and len(session.data.train_y) == 400
    summary = session.run()
    assert summary["epochs"] == 2 and summary["steps"] == 2 * math.ceil(400 / 50)
    epochs = [json.loads(line) for line in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["type"] == "epoch"]
    assert len(epochs) == 2 and all(math.isfinite(r["train_loss"]) for r in epochs)
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]
    # Chance is 10%; on 1,017 test images 15% lies five standard errors above it.
    assert summary["test_accuracy"] > 0.15
