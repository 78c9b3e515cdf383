"""SRResNet as in the Granular-DQ reference code (METHOD.md), full precision or Granular-DQ.

Parameter names follow the reference checkpoint (head.0, body.N.conv1, body.16, body.17,
tail.0.*, tail.1) so its state dicts map one-to-one.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..config import ModelConfig
from ..quant import QConv2d
from .base import GDQNet


class ResBlock(nn.Module):
    """conv3x3 -> PReLU -> BN -> conv3x3 -> BN, out = x * s + body(x) (s learnable)."""

    def __init__(self, n_feats: int, bits: tuple[int, ...] | None) -> None:
        super().__init__()
        self.conv1 = QConv2d(n_feats, n_feats, 3, padding=1, bias=False, bits=bits)
        self.act = nn.PReLU(1, 0.25)
        self.bn1 = nn.BatchNorm2d(n_feats)
        self.conv2 = QConv2d(n_feats, n_feats, 3, padding=1, bias=False, bits=bits)
        self.bn2 = nn.BatchNorm2d(n_feats)
        self.learnable_shortcut = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor, bit_index: torch.Tensor | None = None, mix: torch.Tensor | None = None) -> torch.Tensor:
        r = self.bn1(self.act(self.conv1(x, bit_index, mix)))
        r = self.bn2(self.conv2(r, bit_index, mix))
        return x * self.learnable_shortcut + r


def upsampler(scale: int, n_feats: int, bias: bool, act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range({2: 1, 4: 2}[scale]):
        layers += [nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1, bias=bias), nn.PixelShuffle(2)]
        if act:
            layers.append(nn.PReLU(1, 0.25))
    return nn.Sequential(*layers)


class SRResNet(GDQNet):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        n = cfg.n_feats
        bits = cfg.quant.bits if cfg.quantized else None
        self.head = nn.Sequential(nn.Conv2d(3, n, 9, padding=4, bias=False), nn.PReLU(1, 0.25))
        self.body = nn.ModuleList([ResBlock(n, bits) for _ in range(cfg.n_blocks)])
        self.body.append(nn.Conv2d(n, n, 3, padding=1, bias=False))
        self.body.append(nn.BatchNorm2d(n))
        self.tail = nn.Sequential(upsampler(cfg.scale, n, bias=False, act=True), nn.Conv2d(n, 3, 9, padding=4, bias=False))

    def body_forward(self, h: torch.Tensor, bit_index: torch.Tensor | None, mix: torch.Tensor | None) -> torch.Tensor:
        r = h
        nb = self.cfg.n_blocks
        for blk in self.body[:nb]:
            r = blk(r, bit_index, mix)
        r = self.body[nb + 1](self.body[nb](r))
        return r + h
