"""The model zoo: small classifiers whose penultimate layer is the latent space the user reshapes.

Every ``forward`` returns ``(logits, features)`` in one pass, branches on no data and calls no ``.item()``
(so compile and CUDA graphs work); every model has a dropout or batch-norm layer for the layer commands;
weights come from torch's global RNG only. Why each rule: docs/architecture.md ("The models").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MODELS",
    "build_model",
    "default_model",
    "DigitsCNN",
    "AirbenchNet",
    "CifarCpuFast",
    "ResNet18",
    "PamapCNN1d",
]

MODELS: dict[str, str] = {
    "digits_cnn": "Small 2D CNN (32/64/128 channels, BN, dropout) for tiny images such as 8x8 digits; 64-d features.",
    "airbench": "Keller Jordan's airbench94-style fast CIFAR-10 net (2x2 stem, 64/256/256 groups); 256-d features.",
    "cifar_cpu_fast": "CIFAR-10 without a GPU: stride-2 stem, 64/128/256 convs on 16/8/4 maps, ~6.5x airbench's "
    "training images/s on a CPU; 256-d features.",
    "resnet18": "CIFAR-style ResNet-18 (3x3 stem, no max-pool, 64/128/256/512 BasicBlocks); 512-d features.",
    "pamap_cnn1d": "1D CNN for multichannel signal windows such as PAMAP2 (27 x 171); 128-d features.",
}


def global_max_pool(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C): the maximum of each map, by a max pool with indices.

    Not ``amax``: amax's backward finds the maximum by comparing its input with its output. Under bf16
    autocast Inductor keeps a fused input in fp32 while the output was rounded to bf16, so nothing matches
    and the gradient is 0/0: NaN in every layer from the first step (bench/nan_repro.py). A max pool's
    backward follows the index it saved.
    """
    return F.adaptive_max_pool2d(x, 1).flatten(1)


# --------------------------------------------------------------------------------------------------
# digits_cnn


class DigitsCNN(nn.Module):
    """A CNN small enough that an epoch of sklearn digits (~1200 8x8 images) trains in tens of ms on a CPU.

    Pooling right after the first conv keeps the 64- and 128-channel convs on 4x4 and 2x2 maps: with the
    pool after the second conv instead, an epoch costs about four times as much for no accuracy gain.
    Weights and activations are channels_last: oneDNN's convolutions on these small maps run a training
    step about 1.5x faster that way on a CPU (bench/startup.py, docs/speed.md); on CUDA the session uses
    channels_last for every image model anyway.
    """

    def __init__(self, in_channels: int, num_classes: int, feature_dim: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
        )
        self.embed = nn.Sequential(nn.Linear(128, feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # accepted, not in the stubs

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x.contiguous(memory_format=torch.channels_last)).mean(dim=(2, 3))  # global average pool
        features = self.embed(h)
        return self.head(self.dropout(features)), features


# --------------------------------------------------------------------------------------------------
# airbench


class AirbenchBatchNorm(nn.BatchNorm2d):
    """airbench's BatchNorm: momentum 0.6 in its convention (torch 0.4), eps 1e-12, scale fixed at 1.

    airbench trains only the shift; the scale stays 1 (``requires_grad=False``) because with weight decay
    on the convs a learnable scale only fights it. An optimiser simply skips the frozen scale.
    """

    def __init__(
        self, num_features: int, momentum: float = 0.6, eps: float = 1e-12, weight: bool = False, bias: bool = True
    ) -> None:
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad_(weight)
        self.bias.requires_grad_(bias)


class AirbenchConv(nn.Conv2d):
    """3x3 'same' conv without bias, initialised as a partial identity (dirac) like airbench's."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        w = self.weight.data
        torch.nn.init.dirac_(w[: w.size(1)])


class ConvGroup(nn.Module):
    """conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU: one airbench block (halves H and W)."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv1 = AirbenchConv(channels_in, channels_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = AirbenchBatchNorm(channels_out)
        self.conv2 = AirbenchConv(channels_out, channels_out)
        self.norm2 = AirbenchBatchNorm(channels_out)
        self.activ = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """airbench94's network, so CIFAR-10 reaches ~94% in seconds on a GPU.

    Differences from airbench94: the 2x2 stem is a plain learnable conv (airbench fills it with a frozen
    patch-whitening filter computed from data), and the final pool is a global max over the whole map
    (airbench's ``MaxPool2d(3)`` on the 3x3 map; :func:`global_max_pool`), so any input of at least 9x9
    works. airbench multiplies
    the logits by a fixed 1/9; here that factor is applied to the features instead, so the head stays a
    plain ``nn.Linear`` with ``logits == head(features)``. The logits and every gradient are identical.
    """

    scaling_factor = 1 / 9

    def __init__(
        self, in_channels: int, num_classes: int, widths: tuple[int, int, int] = (64, 256, 256), whiten_width: int = 24
    ) -> None:
        super().__init__()
        self.feature_dim = widths[-1]
        self.num_classes = num_classes
        self.whiten = nn.Conv2d(in_channels, whiten_width, kernel_size=2, padding=0, bias=True)
        self.activ = nn.GELU()
        self.layers = nn.Sequential(
            ConvGroup(whiten_width, widths[0]),
            ConvGroup(widths[0], widths[1]),
            ConvGroup(widths[1], widths[2]),
        )
        self.head = nn.Linear(widths[-1], num_classes, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.layers(self.activ(self.whiten(x)))
        features = global_max_pool(x) * self.scaling_factor
        return self.head(features), features


# --------------------------------------------------------------------------------------------------
# cifar_cpu_fast


class CifarCpuFast(nn.Module):
    """A CIFAR-10 net for CPUs: the published 40-epoch protocol on 45,000 images within 30 minutes on 2 cores.

    A stride-2 3x3 stem puts every later conv on a 16x16 map or smaller, so a training step costs about 14 M
    multiply-adds per image against airbench's 120 M; channels_last, as oneDNN runs fastest. The rest is
    airbench's recipe in small: conv-BN-ReLU, max pools, a global max pool (with indices), a linear head.
    bench/cifar_cpu.py measures it against airbench on the same data and its accuracy on real CIFAR-10.
    """

    def __init__(
        self, in_channels: int, num_classes: int, widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    ) -> None:
        super().__init__()
        c0, c1, c2, c3 = widths
        self.feature_dim = c3
        self.num_classes = num_classes

        def conv(ci: int, co: int, stride: int = 1) -> list[nn.Module]:
            return [
                nn.Conv2d(ci, co, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(co),
                nn.ReLU(inplace=True),
            ]

        self.body = nn.Sequential(
            *conv(in_channels, c0, stride=2),
            *conv(c0, c1),
            nn.MaxPool2d(2),
            *conv(c1, c2),
            nn.MaxPool2d(2),
            *conv(c2, c3),
        )
        self.head = nn.Linear(c3, num_classes)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # accepted, not in the stubs

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x.contiguous(memory_format=torch.channels_last))
        features = global_max_pool(h)
        return self.head(features), features


# --------------------------------------------------------------------------------------------------
# resnet18


class BasicBlock(nn.Module):
    """The ResNet-18/34 residual block: two 3x3 convs with BN, a 1x1 projection when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """The CIFAR variant of ResNet-18 (3x3 stem, no max-pool): the usual baseline for 32x32 images."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.feature_dim = 512
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        stages = []
        in_planes = 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.head = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        features = x.mean(dim=(2, 3))  # global average pool
        return self.head(features), features


# --------------------------------------------------------------------------------------------------
# pamap_cnn1d


class PamapCNN1d(nn.Module):
    """Three Conv1d+BN+ReLU blocks over time, then a global average: the common HAR baseline for PAMAP2."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: tuple[int, int, int] = (64, 128, 128),
        kernel_size: int = 5,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.feature_dim = widths[-1]
        self.num_classes = num_classes
        pad = kernel_size // 2
        c1, c2, c3 = widths
        self.body = nn.Sequential(
            nn.Conv1d(in_channels, c1, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(c1),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
            nn.Conv1d(c1, c2, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(c2),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2),
            nn.Conv1d(c2, c3, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(c3),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c3, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x).mean(dim=2)  # global average pool over time
        return self.head(self.dropout(features)), features


# --------------------------------------------------------------------------------------------------
# registry


def _image_shape(name: str, input_shape: tuple[int, ...], min_hw: int) -> int:
    """Check for (C, H, W) with H, W >= min_hw and return C; the message says what was expected."""
    if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
        raise ValueError(f"model {name!r} expects image inputs of shape (C, H, W), got {tuple(input_shape)}")
    c, h, w = (int(s) for s in input_shape)
    if h < min_hw or w < min_hw:
        raise ValueError(
            f"model {name!r} expects images of at least {min_hw}x{min_hw} (C, H, W), got {tuple(input_shape)}"
        )
    return c


def _signal_shape(name: str, input_shape: tuple[int, ...], min_t: int) -> int:
    """Check for (C, T) with T >= min_t and return C."""
    if len(input_shape) != 2 or any(int(s) < 1 for s in input_shape):
        raise ValueError(f"model {name!r} expects signal windows of shape (channels, time), got {tuple(input_shape)}")
    c, t = (int(s) for s in input_shape)
    if t < min_t:
        raise ValueError(f"model {name!r} expects windows of at least {min_t} time steps, got {tuple(input_shape)}")
    return c


def _build_digits_cnn(shape: tuple[int, ...], k: int) -> nn.Module:
    return DigitsCNN(_image_shape("digits_cnn", shape, 4), k)


def _build_airbench(shape: tuple[int, ...], k: int) -> nn.Module:
    # 2x2 stem (no padding) then three 2x max-pools: (H - 1) // 8 >= 1 needs H >= 9.
    return AirbenchNet(_image_shape("airbench", shape, 9), k)


def _build_cifar_cpu_fast(shape: tuple[int, ...], k: int) -> nn.Module:
    # stride-2 stem then two 2x max-pools: H >= 8 leaves a map of at least 1x1
    return CifarCpuFast(_image_shape("cifar_cpu_fast", shape, 8), k)


def _build_resnet18(shape: tuple[int, ...], k: int) -> nn.Module:
    return ResNet18(_image_shape("resnet18", shape, 8), k)


def _build_pamap_cnn1d(shape: tuple[int, ...], k: int) -> nn.Module:
    return PamapCNN1d(_signal_shape("pamap_cnn1d", shape, 4), k)


_BUILDERS: dict[str, Callable[[tuple[int, ...], int], nn.Module]] = {
    "digits_cnn": _build_digits_cnn,
    "airbench": _build_airbench,
    "cifar_cpu_fast": _build_cifar_cpu_fast,
    "resnet18": _build_resnet18,
    "pamap_cnn1d": _build_pamap_cnn1d,
}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build a model by name for inputs of ``input_shape`` (no batch dim) and ``num_classes`` outputs.

    Raises ValueError for an unknown name (listing the valid ones) or an input shape the model cannot
    take, so a bad config fails at start-up with a readable message rather than inside the first step.
    The model gets ``feature_dim``, ``num_classes``, ``head`` and ``input_shape`` attributes.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(_BUILDERS))}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    shape = tuple(int(s) for s in input_shape)
    model = _BUILDERS[name](shape, num_classes)
    model.input_shape = shape  # type: ignore[assignment]  # Module.__setattr__ is typed for tensors and modules
    return model


def default_model(dataset: str, input_shape: tuple[int, ...] | None = None) -> str:
    """The model a data set gets when the config names none.

    ``synthetic`` data can take any shape, so its default depends on ``input_shape``: airbench for
    3x32x32 images, pamap_cnn1d for (C, T) signals, digits_cnn otherwise (and when the shape is unknown).
    """
    fixed = {"digits": "digits_cnn", "cifar10": "airbench", "pamap2": "pamap_cnn1d"}
    if dataset in fixed:
        return fixed[dataset]
    if dataset == "synthetic":
        shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
        if shape == (3, 32, 32):
            return "airbench"
        if shape is not None and len(shape) == 2:
            return "pamap_cnn1d"
        return "digits_cnn"
    raise ValueError(f"no default model for data set {dataset!r}; known: digits, cifar10, pamap2, synthetic")
