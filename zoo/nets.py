"""Small CNNs for the bundled datasets (torch), built only from ops the compiler imports.

Every network maps ``N x 1 x H x W`` float images to ``N x 10`` logits and, once exported to
ONNX in eval mode, uses only Conv, Gemm, Relu, MaxPool, GlobalAveragePool, Add, Concat,
Flatten (and BatchNormalization, which the exporter folds into the preceding Conv).

- ``lenet``       LeNet-style for 28x28: conv5-relu-maxpool x2, two fully connected layers.
- ``digits_cnn``  for scikit-learn's 8x8 digits: two 3x3 convs, a max-pool, two FC layers.
- ``alexnet``     AlexNet's structure at 28x28: 5 convs (large kernels first, overlapping
                  3x3/2 max-pools after conv1, conv2, conv5), then three FC layers with
                  dropout.
- ``vgg``         VGG-16's structure: 13 3x3 convs in blocks of 2, 2, 3, 3, 3 (max-pool after
                  the first four blocks), then three FC layers with dropout.
- ``resnet18``    ResNet-18's structure: 3x3 stem + BN + max-pool, four stages of two basic
                  blocks (conv-BN-relu-conv-BN + identity or 1x1/2 projection, Add, relu),
                  global average pool, one FC layer.
- ``squeezenet``  SqueezeNet 1.1's structure: 3x3 stem, eight fire modules (1x1 squeeze,
                  parallel 1x1 / 3x3 expand joined by Concat) with max-pools, a 1x1 conv
                  classifier + relu and a global average pool (no FC layer).

Widths are scaled down (8-64 channels) so every exported model stays well under 1 MB.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

NUM_CLASSES = 10


class LeNet(nn.Module):
    """conv5(1->16, pad 2)-relu-pool2, conv5(16->32)-relu-pool2, fc 800->128, fc 128->10."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),   # 16 x 14 x 14
            nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2),             # 32 x 5 x 5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.25),
            nn.Linear(32 * 5 * 5, 128), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DigitsCNN(nn.Module):
    """For 8x8 inputs: conv3(1->16)-relu, conv3(16->32)-relu-pool2, fc 512->64, fc 64->10."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 4 x 4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.25),
            nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class AlexNetSmall(nn.Module):
    """AlexNet's layer pattern for 1 x 28 x 28 inputs."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, stride=2),                                  # 16 x 13 x 13
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, stride=2),                                  # 32 x 6 x 6
            nn.Conv2d(32, 48, 3, padding=1), nn.ReLU(),
            nn.Conv2d(48, 48, 3, padding=1), nn.ReLU(),
            nn.Conv2d(48, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, stride=2),                                  # 32 x 2 x 2
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3), nn.Linear(32 * 2 * 2, 128), nn.ReLU(),
            nn.Dropout(0.3), nn.Linear(128, 128), nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# VGG-16 ("configuration D"): numbers are conv widths, "M" a 2x2 max-pool.  The fifth pool is
# dropped because 28 -> 14 -> 7 -> 3 -> 1 leaves nothing to pool.
VGG_CFG: tuple[int | str, ...] = (8, 8, "M", 16, 16, "M", 32, 32, 32, "M",
                                  48, 48, 48, "M", 48, 48, 48)


class VGGSmall(nn.Module):
    """VGG-16's layer pattern (13 3x3 convs, 3 FC layers) for 1 x 28 x 28 inputs."""

    def __init__(self, num_classes: int = NUM_CLASSES,
                 cfg: tuple[int | str, ...] = VGG_CFG) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                assert isinstance(v, int)
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU()]
                c_in = v
        self.features = nn.Sequential(*layers)                         # 48 x 1 x 1
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in, 64), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(64, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """ResNet basic block: conv3-BN-relu-conv3-BN, plus identity or 1x1 projection, relu."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet18Small(nn.Module):
    """ResNet-18's layer pattern (stem, 4 stages x 2 basic blocks, GAP, FC), widths 8-64."""

    def __init__(self, num_classes: int = NUM_CLASSES,
                 widths: tuple[int, int, int, int] = (8, 16, 32, 64)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
            nn.ReLU(), nn.MaxPool2d(2),                                 # 8 x 14 x 14
        )
        blocks: list[nn.Module] = []
        c_in = widths[0]
        for i, w in enumerate(widths):                                  # 14, 7, 4, 2
            stride = 1 if i == 0 else 2
            blocks += [BasicBlock(c_in, w, stride), BasicBlock(w, w, 1)]
            c_in = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


class Fire(nn.Module):
    """SqueezeNet fire module: squeeze 1x1 + relu, then Concat(expand 1x1, expand 3x3) + relu."""

    def __init__(self, c_in: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, 1)
        self.expand1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3 = nn.Conv2d(squeeze, expand, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.relu(self.squeeze(x))
        return torch.cat([self.relu(self.expand1(s)), self.relu(self.expand3(s))], dim=1)


class SqueezeNetSmall(nn.Module):
    """SqueezeNet 1.1's layer pattern for 1 x 28 x 28 inputs; no FC layer."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, stride=2),                                  # 16 x 13 x 13
            Fire(16, 4, 16), Fire(32, 4, 16),
            nn.MaxPool2d(3, stride=2),                                  # 32 x 6 x 6
            Fire(32, 8, 32), Fire(64, 8, 32),
            nn.MaxPool2d(3, stride=2),                                  # 64 x 2 x 2
            Fire(64, 12, 48), Fire(96, 12, 48), Fire(96, 16, 64), Fire(128, 16, 64),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.3), nn.Conv2d(128, num_classes, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        # start every class score in the active region of the final relu, or a class whose
        # score is <= 0 for all images never receives a gradient
        nn.init.constant_(self.classifier[1].bias, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


MODELS: dict[str, Callable[[], nn.Module]] = {
    "lenet": LeNet,
    "digits_cnn": DigitsCNN,
    "alexnet": AlexNetSmall,
    "vgg": VGGSmall,
    "resnet18": ResNet18Small,
    "squeezenet": SqueezeNetSmall,
}
"""Constructors by name (``--model`` in ``zoo/train.py``)."""


def build(name: str) -> nn.Module:
    """A freshly initialized network (seed torch first for a reproducible init)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]()
