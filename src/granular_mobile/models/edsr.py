"""EDSR-baseline (16 blocks, 64 channels, ReLU, no BN, res_scale 1), full precision or Granular-DQ.

The 32 convs of the residual blocks are quantized; head, body-end conv, upsampler and
tail stay full precision, as in the paper. Names follow the SRResNet layout (head.0,
body.N.conv1/conv2, body.<n_blocks>, tail.0, tail.1).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..config import ModelConfig
from ..quant import QConv2d
from .base import GDQNet
from .srresnet import upsampler


class ResBlock(nn.Module):
    def __init__(self, n_feats: int, bits: tuple[int, ...] | None) -> None:
        super().__init__()
        self.conv1 = QConv2d(n_feats, n_feats, 3, padding=1, bias=True, bits=bits)
        self.act = nn.ReLU()
        self.conv2 = QConv2d(n_feats, n_feats, 3, padding=1, bias=True, bits=bits)

    def forward(self, x: torch.Tensor, bit_index: torch.Tensor | None = None, mix: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x, bit_index, mix)), bit_index, mix)


class EDSR(GDQNet):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        n = cfg.n_feats
        bits = cfg.quant.bits if cfg.quantized else None
        self.head = nn.Sequential(nn.Conv2d(3, n, 3, padding=1, bias=True))
        self.body = nn.ModuleList([ResBlock(n, bits) for _ in range(cfg.n_blocks)])
        self.body.append(nn.Conv2d(n, n, 3, padding=1, bias=True))
        self.tail = nn.Sequential(upsampler(cfg.scale, n, bias=True, act=False), nn.Conv2d(n, 3, 3, padding=1, bias=True))

    def body_forward(self, h: torch.Tensor, bit_index: torch.Tensor | None, mix: torch.Tensor | None) -> torch.Tensor:
        r = h
        nb = self.cfg.n_blocks
        for blk in self.body[:nb]:
            r = blk(r, bit_index, mix)
        return self.body[nb](r) + h
