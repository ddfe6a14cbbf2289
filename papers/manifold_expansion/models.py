"""The networks that get expanded: MLPs and small CNNs as nn.Sequential, small ResNets as ResNet.

No batch norm in the MLP/CNN, so every function-preserving expansion is exact in train and eval mode.
The ResNet keeps batch norm (standard for ResNets); its expansions stay exact, see expand.py.
"""

from __future__ import annotations

import torch
from torch import nn

from papers.manifold_expansion.config import ModelConfig


def mlp(in_shape: tuple[int, ...], widths: list[int], n_classes: int) -> nn.Sequential:
    """Flatten -> [Linear -> ReLU] per width -> Linear."""
    layers: list[nn.Module] = [nn.Flatten()]
    prev = int(torch.tensor(in_shape).prod())
    for w in widths:
        layers += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, n_classes))
    return nn.Sequential(*layers)


def cnn(in_shape: tuple[int, ...], widths: list[int], n_classes: int) -> nn.Sequential:
    """[Conv3x3 stride 2 -> ReLU] per width -> Flatten -> Linear. Strided convolutions instead of max
    pooling: max-pool backward is most of a small CNN's cost on a CPU."""
    channels, h, w = in_shape
    layers: list[nn.Module] = []
    prev = channels
    for c in widths:
        layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.ReLU()]
        prev, h, w = c, (h + 1) // 2, (w + 1) // 2
    layers += [nn.Flatten(), nn.Linear(prev * h * w, n_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the input (a 1x1 projection when the shape changes), then ReLU."""

    def __init__(self, c_in: int, width: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """A small CIFAR-style ResNet: stem, one BasicBlock per width (stride 2 from the second on), GAP, fc."""

    def __init__(self, in_channels: int, widths: list[int], n_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0])
        )
        blocks, prev = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(prev, w, w, stride=1 if i == 0 else 2))
            prev = w
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(prev, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))


def build(cfg: ModelConfig, in_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    if cfg.kind == "mlp":
        return mlp(in_shape, cfg.widths, n_classes)
    if cfg.kind == "cnn":
        return cnn(in_shape, cfg.widths, n_classes)
    return ResNet(in_shape[0], cfg.widths, n_classes)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
