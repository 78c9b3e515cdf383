"""A third model family, written as a user would add one: this file, plus its registration
(``register_family("toynet", ...)(ToyNet)``, which a family's own file does with the decorator;
the tests register it only while they run)."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F

from granular_mobile.config import ModelConfig
from granular_mobile.models import GDQNet
from granular_mobile.models.base import grid_of
from granular_mobile.quant import QConv2d


class ToyNet(GDQNet):
    """head conv -> [conv -> ReLU -> conv] + skip -> conv -> PixelShuffle -> conv."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        n, bits = cfg.n_feats, (cfg.quant.bits if cfg.quantized else None)
        self.head = nn.Sequential(nn.Conv2d(3, n, 3, padding=1))
        self.body = nn.ModuleList([QConv2d(n, n, 3, padding=1, bits=bits), QConv2d(n, n, 3, padding=1, bits=bits)])
        self.tail = nn.Sequential(nn.Conv2d(n, 4 * n, 3, padding=1), nn.Conv2d(n, 3, 3, padding=1))
        self.grids = self.make_grids("head", "conv1", "conv2", "sum", "up")

    def sr_forward(self, x, z1, bit_index, mix):
        # full precision and the float numerics; the integer numerics run lower() (models/base.py)
        r = F.relu(self.body[0](z1, bit_index, mix))
        r = z1 + self.body[1](r, bit_index, mix)
        return self.tail[1](F.pixel_shuffle(self.tail[0](r), 2))

    def lower(self, b, bit_index):
        gs = self.grids
        h = b.fp_conv("head", b.input, self.head[0], in_q=b.image_q, grid=grid_of(gs, "head"))
        c1 = b.block_conv("conv1", h, self.body[0], bit_index, grid=grid_of(gs, "conv1"))
        a = b.relu("relu", c1)
        c2 = b.block_conv("conv2", a, self.body[1], bit_index, grid=grid_of(gs, "conv2"))
        s = b.add("sum", h, c2, grid=grid_of(gs, "sum"))
        u = b.depth_to_space("up_d2s", b.fp_conv("up", s, self.tail[0], grid=grid_of(gs, "up")), 2)
        b.output_conv("tail", u, self.tail[1])


