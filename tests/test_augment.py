"""flip_crop: shape/dtype kept, flips are mirrors, crops are translations with reflect/zero padding, seeded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hill_app.datasets.augment import flip_crop


def _gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _candidates(x: torch.Tensor, pad: int, mode: str) -> tuple[list[tuple[bool, int, int]], torch.Tensor]:
    """Every allowed output for each (N, C, H, W) input, from an independent pad-then-crop reference:
    the keys (flip, dy, dx) and a (K, N, C, H, W) stack of the matching images."""
    n, c, h, w = x.shape
    padded = F.pad(x.cpu().double(), (pad,) * 4, mode="reflect" if mode == "reflect" else "constant")
    keys, imgs = [], []
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            crop = padded[:, :, pad + dy : pad + dy + h, pad + dx : pad + dx + w]
            keys += [(False, dy, dx), (True, dy, dx)]
            imgs += [crop, crop.flip(-1)]
    return keys, torch.stack(imgs)


def _which(x: torch.Tensor, y: torch.Tensor, pad: int, mode: str) -> list[tuple[bool, int, int]]:
    """For each sample, the single (flip, dy, dx) that explains output y from input x; fails otherwise."""
    keys, imgs = _candidates(x, pad, mode)
    match = (imgs == y.cpu().double().unsqueeze(0)).flatten(2).all(2)  # (K, N)
    counts = match.sum(0)
    assert bool((counts == 1).all()), (
        f"samples {torch.nonzero(counts != 1).flatten().tolist()} match "
        f"{counts[counts != 1].tolist()} flip/translations of their input"
    )
    return [keys[k] for k in match.int().argmax(0).tolist()]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_shape_dtype_and_new_tensor(dtype: torch.dtype) -> None:
    x = torch.randint(0, 256, (16, 3, 32, 32), generator=_gen(0)).to(dtype)
    before = x.clone()
    y = flip_crop(x, generator=_gen(1))
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.equal(x, before)  # input untouched
    assert not torch.equal(y, x)  # something happened


def test_pad_zero_only_flips() -> None:
    x = torch.randint(0, 256, (64, 3, 8, 8), generator=_gen(0), dtype=torch.uint8)
    y = flip_crop(x, pad=0, generator=_gen(2))
    same = (y == x).flatten(1).all(1)
    mirrored = (y == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 10 < int(mirrored.sum()) < 54  # both outcomes, about half each


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_outputs_are_flipped_translations(mode: str) -> None:
    x = torch.randint(0, 256, (400, 2, 6, 7), generator=_gen(3), dtype=torch.uint8)
    y = flip_crop(x, pad=2, generator=_gen(4), mode=mode)
    found = _which(x, y, 2, mode)
    # Every offset in [-2, 2]^2 and both flip states occur: the randomness really covers the range.
    assert {(dy, dx) for _, dy, dx in found} == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    assert {f for f, _, _ in found} == {True, False}


def test_same_seed_same_output_and_dtype_independent() -> None:
    x = torch.randint(0, 256, (32, 3, 16, 16), generator=_gen(5), dtype=torch.uint8)
    a = flip_crop(x, generator=_gen(7))
    b = flip_crop(x, generator=_gen(7))
    c = flip_crop(x, generator=_gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # The random draws do not depend on the dtype: float input gives the same crops.
    assert torch.equal(flip_crop(x.float(), generator=_gen(7)), a.float())
    torch.manual_seed(11)
    d = flip_crop(x)
    torch.manual_seed(11)
    assert torch.equal(flip_crop(x), d)  # global RNG when no generator


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        flip_crop(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError):
        flip_crop(torch.zeros(1, 1, 2, 2), pad=2)  # reflect needs pad < size
    assert flip_crop(torch.zeros(0, 3, 8, 8)).shape == (0, 3, 8, 8)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_reference_and_is_seeded() -> None:
    x = torch.randint(0, 256, (200, 3, 32, 32), generator=_gen(9), dtype=torch.uint8).cuda()
    y = flip_crop(x, generator=_gen(10, "cuda"))
    assert y.is_cuda and y.dtype == torch.uint8 and y.shape == x.shape
    assert torch.equal(y, flip_crop(x, generator=_gen(10, "cuda")))
    _which(x, y, 2, "reflect")
    # A CPU generator with CUDA data works too and matches the same draws made on the CPU.
    assert torch.equal(flip_crop(x, generator=_gen(12)).cpu(), flip_crop(x.cpu(), generator=_gen(12)))
