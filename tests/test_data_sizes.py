"""C1 data sizes: val_size / train_size as a count or a fraction in every loader, with split_info saying what
was used. CIFAR-10 folders are written in the official on-disk format (helpers from test_cifar10)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_cifar10 import _make_data, _write_folder

from hill_app.datasets import DataError, load_dataset
from hill_app.datasets.base import allocate, carve_validation, pick_training_subset, stratified_split
from hill_app.datasets.cifar10 import default_val_size, load_cifar10

BAD_SIZES = [0, -3, 0.0, 1.0, 1.5, 5000.0, float("nan"), float("inf"), True, "5", [1]]


# --------------------------------------------------------------------------- the size rules


@pytest.mark.parametrize("name", ["val_size", "train_size"])
@pytest.mark.parametrize("value", BAD_SIZES, ids=repr)
def test_bad_size_is_refused_naming_value_and_rule(name, value):
    with pytest.raises(DataError) as e:
        load_dataset("digits", **{name: value})
    msg = str(e.value)
    assert f"{name}=" in msg and "expected a count (an integer >= 1) or a fraction strictly between 0 and 1" in msg
    assert "\n" not in msg


def test_allocate_is_proportional_exact_and_bounded():
    a = allocate([5000] * 10, 5000, [0] * 10, [4999] * 10)
    assert a.tolist() == [500] * 10
    a = allocate([54, 57, 3, 1], 11, [0] * 4, [53, 56, 2, 0])
    assert a.sum() == 11 and a[3] == 0 and (a <= [53, 56, 2, 0]).all()
    a = allocate([100, 1, 1], 3, [1, 1, 1], [100, 1, 1])
    assert a.tolist() == [1, 1, 1]
    with pytest.raises(ValueError):
        allocate([3, 3], 7, [0, 0], [3, 3])


def test_carve_validation_matches_the_old_per_class_fraction_on_full_cifar_shaped_labels():
    # 50,000 labels, 5,000 a class, shuffled: the count 5000 picks exactly the images the old fixed
    # 0.1 fraction picked, so existing CIFAR-10 runs keep their validation split.
    g = torch.Generator().manual_seed(0)
    y = (torch.arange(50_000) % 10)[torch.randperm(50_000, generator=g)]
    rest_old, held_old = stratified_split(y, 0.1, 1234)
    rest, held, rule = carve_validation(y, 5000, 1234, "x")
    assert torch.equal(rest, rest_old) and torch.equal(held, held_old)
    assert rule.startswith("5000 ")


def test_default_val_size_is_5000_for_the_full_set_and_a_tenth_below():
    assert default_val_size(50_000) == 5000
    assert default_val_size(49_999) == 0.1 and default_val_size(150) == 0.1


def test_training_subset_is_stratified_seeded_and_nested():
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    keep, rule = pick_training_subset(y, 20, "x")
    assert torch.bincount(y[keep]).tolist() == [12, 6, 2] and "stratified" in rule
    again, _ = pick_training_subset(y, 20, "x")
    assert torch.equal(keep, again)
    other, _ = pick_training_subset(y, 20, "x", seed=7)
    assert not torch.equal(keep, other)
    bigger, _ = pick_training_subset(y, 40, "x")
    assert set(keep.tolist()) <= set(bigger.tolist())  # a larger train_size adds images, keeps the others
    frac, rule = pick_training_subset(y, 0.5, "x")
    assert len(frac) == 50 and "0.5 of 100" in rule


# --------------------------------------------------------------------------- digits


def test_digits_default_split_is_unchanged_and_described():
    b = load_dataset("digits")
    assert (len(b.train_y), len(b.val_y), len(b.test_y)) == (1169, 269, 359)
    info = b.split_info
    assert (info["n_train"], info["n_val"], info["n_test"]) == (1169, 269, 359)
    assert info["val_size"] == 269 and info["train_size"] == 1169
    assert info["val_rule"].startswith("default") and info["train_rule"].startswith("all 1169")


@pytest.mark.parametrize("val_size,n_val", [(100, 100), (0.25, 360)])
def test_digits_val_size_count_and_fraction(val_size, n_val):
    base = load_dataset("digits")
    b = load_dataset("digits", val_size=val_size)
    assert len(b.val_y) == n_val and len(b.train_y) == 1438 - n_val
    assert torch.equal(b.test_x, base.test_x)  # the test split never moves
    # Stratified: every class's share of the validation split follows its share of the pool.
    pool = torch.cat([b.train_y, b.val_y])
    want = torch.bincount(pool, minlength=10).double() * n_val / len(pool)
    assert (torch.bincount(b.val_y, minlength=10).double() - want).abs().max() <= 1.0
    rows = {tuple(r) for r in torch.cat([b.train_x, b.val_x]).reshape(1438, -1).tolist()}
    assert rows == {tuple(r) for r in torch.cat([base.train_x, base.val_x]).reshape(1438, -1).tolist()}
    assert str(val_size) in b.split_info["val_rule"] and b.split_info["n_val"] == n_val


def test_digits_train_size_subset_and_statistics():
    full = load_dataset("digits", val_size=0.2)
    b = load_dataset("digits", val_size=0.2, train_size=100)
    assert len(b.train_y) == 100 and torch.equal(b.val_x, full.val_x)
    assert (torch.bincount(b.train_y, minlength=10) >= 9).all()
    full_rows = {tuple(r) for r in full.train_x.reshape(len(full.train_x), -1).tolist()}
    assert all(tuple(r) in full_rows for r in b.train_x.reshape(100, -1).tolist())
    xf = b.train_x.float() / 255.0  # normalised with the statistics of what it trains on
    assert torch.allclose(b.mean, xf.mean(dim=(0, 2, 3))) and torch.allclose(b.std, xf.std(dim=(0, 2, 3)))
    assert b.split_info["train_size"] == 100 and "train_size=100" in b.split_info["train_rule"]
    again = load_dataset("digits", val_size=0.2, train_size=100, seed=5)  # the run seed does not move it
    assert torch.equal(again.train_x, b.train_x)


def test_digits_sizes_that_leave_a_class_without_training_data_are_refused():
    with pytest.raises(
        DataError,
        match=r"val_size=1430 asks for 1430 of the 1438 training images; expected "
        r"at most 1428",
    ):
        load_dataset("digits", val_size=1430)
    with pytest.raises(DataError, match=r"train_size=9 is 9 of \d+ images; expected at least 10, one per class"):
        load_dataset("digits", train_size=9)
    with pytest.raises(DataError, match=r"train_size=5000 but the training split holds 1169 images"):
        load_dataset("digits", train_size=5000)
    with pytest.raises(DataError, match=r"val_size=0.0001 is 0 of 1438 images"):
        load_dataset("digits", val_size=0.0001)


def test_synthetic_val_size_carves_from_training():
    b = load_dataset("synthetic", synthetic_size=400, val_size=0.25, train_size=100)
    assert (len(b.train_y), len(b.val_y), len(b.test_y)) == (100, 100, 500)
    assert load_dataset("synthetic", synthetic_size=400).split_info["val_rule"].startswith("default")


# --------------------------------------------------------------------------- CIFAR-10 folders of any size


@pytest.fixture
def small_folder(tmp_path: Path) -> Path:
    """150 training images (30 a batch, 15 a class) and 20 test images, in the official format."""
    return _write_folder(tmp_path / "cifar-10-batches-py", _make_data())


def test_cifar_folder_smaller_than_5000_loads_with_a_fraction_by_default(small_folder):
    # Today: "val_size must lie in [0, 150) ..., got 5000" (a bare ValueError); now a tenth is held out.
    b = load_dataset("cifar10", small_folder.parent)
    assert (len(b.train_y), len(b.val_y), len(b.test_y)) == (135, 15, 20)
    assert torch.bincount(b.val_y, minlength=10).tolist() == [2, 2, 2, 2, 2, 1, 1, 1, 1, 1]
    info = b.split_info
    assert (info["n_train"], info["n_val"], info["n_test"]) == (135, 15, 20)
    assert "default" in info["val_rule"] and "0.1" in info["val_rule"] and "under 50000" in info["val_rule"]


def test_cifar_val_size_larger_than_the_folder_names_folder_value_and_limit(small_folder):
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", small_folder.parent, val_size=5000)
    msg = str(e.value)
    assert str(small_folder) in msg and "val_size=5000" in msg and "expected at most 140" in msg
    assert "\n" not in msg


def test_cifar_val_and_train_size(small_folder):
    b = load_cifar10(small_folder, val_size=0.2, train_size=50)
    assert (len(b.val_y), len(b.train_y)) == (30, 50)
    assert torch.bincount(b.val_y, minlength=10).tolist() == [3] * 10
    assert torch.bincount(b.train_y, minlength=10).tolist() == [5] * 10
    ids_train, ids_val = set(b.train_x[:, 0, 0, 0].tolist()), set(b.val_x[:, 0, 0, 0].tolist())
    assert not ids_train & ids_val
    xf = b.train_x.double() / 255.0
    assert (b.mean.double() - xf.mean(dim=(0, 2, 3))).abs().max() < 1e-6
    assert b.split_info["train_rule"].startswith("50 (train_size=50")
    with pytest.raises(DataError, match=r"train_size=200 but the training split holds 120 images"):
        load_cifar10(small_folder, val_size=0.2, train_size=200)
