"""EDSR-baseline (16 blocks, 64 ch, ReLU, no BN, res_scale 1), full precision or Granular-DQ.

The 32 convs of the residual blocks are quantized; head, body-end conv, upsampler and
tail stay full precision, as in the paper. Names follow the SRResNet layout (head.0,
body.N.conv1/conv2, body.<n_blocks>, tail.0, tail.1). ``lower`` is the network with
every rounding point (the export's program, and the integer-numerics forward);
``sr_forward`` is full precision and the float numerics; see ``models/base.py``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ..config import ModelConfig
from ..quant import QConv2d
from .base import GDQNet, as_module, grid_of
from .family import register_family
from .srresnet import lower_upsampler, upsampler, upsampler_grid_names

if TYPE_CHECKING:
    from ..ir import ProgramBuilder


class ResBlock(nn.Module):
    """conv -> ReLU -> conv, out = x + body(x). Integer numerics (``lower``): conv1's output,
    conv2's output and the sum are int8 grids; the ReLU writes straight onto conv2's k-bit
    input grid."""

    def __init__(self, n_feats: int, bits: tuple[int, ...] | None, grids: nn.ModuleDict) -> None:
        super().__init__()
        self.conv1 = QConv2d(n_feats, n_feats, 3, padding=1, bias=True, bits=bits)
        self.act = nn.ReLU()
        self.conv2 = QConv2d(n_feats, n_feats, 3, padding=1, bias=True, bits=bits)
        self.grids = grids

    def forward(self, x: torch.Tensor, bit_index: torch.Tensor | None = None, mix: torch.Tensor | None = None) -> torch.Tensor:
        r = self.act(self.conv1(x, bit_index, mix))
        return x + self.conv2(r, bit_index, mix)

    def lower(self, b: ProgramBuilder, x: str, bi: int | None, name: str) -> str:
        c1 = b.block_conv(f"{name}_conv1", x, self.conv1, bi, grid=grid_of(self.grids, "conv1"))
        a = b.relu(f"{name}_relu", c1)
        c2 = b.block_conv(f"{name}_conv2", a, self.conv2, bi, grid=grid_of(self.grids, "conv2"))
        return b.add(f"{name}_out", x, c2, grid=grid_of(self.grids, "out"))


@register_family("edsr")  # described in family.BUILTIN
class EDSR(GDQNet):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        n = cfg.n_feats
        bits = cfg.quant.bits if cfg.quantized else None
        self.head = nn.Sequential(nn.Conv2d(3, n, 3, padding=1, bias=True))
        self.body = nn.ModuleList([ResBlock(n, bits, self.make_grids("conv1", "conv2", "out"))
                                   for _ in range(cfg.n_blocks)])
        self.body.append(nn.Conv2d(n, n, 3, padding=1, bias=True))
        ups = upsampler(cfg.scale, n, bias=True, act=False)
        self.tail = nn.Sequential(ups, nn.Conv2d(n, 3, 3, padding=1, bias=True))
        self.grids = self.make_grids("head", "body_end", "body_out", *upsampler_grid_names(ups))

    def sr_forward(self, x: torch.Tensor, z1: torch.Tensor, bit_index: torch.Tensor | None,
                   mix: torch.Tensor | None) -> torch.Tensor:
        nb = self.cfg.n_blocks
        r = z1
        for blk in self.body[:nb]:
            r = blk(r, bit_index, mix)
        return self.tail(self.body[nb](r) + z1) / self.cfg.rgb_range

    def lower(self, b: ProgramBuilder, bit_index: int | None) -> None:
        gs, rr, nb = self.grids, self.cfg.rgb_range, self.blocks_run(b)
        # rgb_range folds into the head weights (conv(x * r) = conv_{W r, b}(x))
        h = b.fp_conv("head", b.input, as_module(self.head[0], nn.Conv2d), w_mul=rr, in_q=b.image_q, grid=grid_of(gs, "head"))
        r = h
        for i, blk in enumerate(self.body[:nb]):
            r = as_module(blk, ResBlock).lower(b, r, bit_index, f"b{i}")
        e = b.fp_conv("body_end", r, as_module(self.body[self.cfg.n_blocks], nn.Conv2d), grid=grid_of(gs, "body_end"))
        r = b.add("body_out", e, h, grid=grid_of(gs, "body_out"))
        r = lower_upsampler(self, b, r, gs)
        b.output_conv("tail", r, as_module(self.tail[1], nn.Conv2d), w_mul=1.0 / rr, b_mul=1.0 / rr)
