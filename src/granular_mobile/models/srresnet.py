"""SRResNet as in the Granular-DQ reference code (docs/METHOD.md), full precision or Granular-DQ.

Parameter names follow the reference checkpoint (head.0, body.N.conv1, body.16, body.17,
tail.0.*, tail.1) so its state dicts map one-to-one. ``lower`` is the network with
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

if TYPE_CHECKING:
    from ..ir import ProgramBuilder


class ResBlock(nn.Module):
    """conv3x3 -> PReLU -> BN -> conv3x3 -> BN, out = x * s + body(x) (s learnable).

    Integer numerics (``lower``): conv1's output, the PReLU output, conv2's output (BN folded)
    and the sum are int8 grids; the BN after the PReLU writes straight onto conv2's k-bit input
    grid."""

    def __init__(self, n_feats: int, bits: tuple[int, ...] | None, grids: nn.ModuleDict) -> None:
        super().__init__()
        self.conv1 = QConv2d(n_feats, n_feats, 3, padding=1, bias=False, bits=bits)
        self.act = nn.PReLU(1, 0.25)
        self.bn1 = nn.BatchNorm2d(n_feats)
        self.conv2 = QConv2d(n_feats, n_feats, 3, padding=1, bias=False, bits=bits)
        self.bn2 = nn.BatchNorm2d(n_feats)
        self.learnable_shortcut = nn.Parameter(torch.ones(1))
        self.grids = grids

    def forward(self, x: torch.Tensor, bit_index: torch.Tensor | None = None, mix: torch.Tensor | None = None) -> torch.Tensor:
        r = self.bn1(self.act(self.conv1(x, bit_index, mix)))
        r = self.bn2(self.conv2(r, bit_index, mix))
        return x * self.learnable_shortcut + r

    def lower(self, b: ProgramBuilder, x: str, bi: int | None, name: str) -> str:
        c1 = b.block_conv(f"{name}_conv1", x, self.conv1, bi, grid=grid_of(self.grids, "conv1"))
        a = b.prelu(f"{name}_act", c1, self.act, grid=grid_of(self.grids, "act"))
        n1 = b.batchnorm(f"{name}_bn1", a, self.bn1)
        c2 = b.block_conv(f"{name}_conv2", n1, self.conv2, bi, bn=self.bn2, grid=grid_of(self.grids, "conv2"))
        return b.add(f"{name}_out", x, c2, a_mul=self.learnable_shortcut, grid=grid_of(self.grids, "out"))


def upsampler(scale: int, n_feats: int, bias: bool, act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range({2: 1, 4: 2}[scale]):
        layers += [nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1, bias=bias), nn.PixelShuffle(2)]
        if act:
            layers.append(nn.PReLU(1, 0.25))
    return nn.Sequential(*layers)


def upsampler_stages(ups: nn.Sequential) -> list[tuple[str, nn.Conv2d, str | None, nn.PReLU | None]]:
    """(conv name, conv, activation name, activation or None) of each x2 stage
    (conv -> PixelShuffle(2) [-> PReLU]); names are the Sequential positions (up0, up2_act, up3, ...)."""
    mods, j = list(ups), 0
    out: list[tuple[str, nn.Conv2d, str | None, nn.PReLU | None]] = []
    while j < len(mods):
        nxt = mods[j + 2] if j + 2 < len(mods) else None
        act = nxt if isinstance(nxt, nn.PReLU) else None
        out.append((f"up{j}", as_module(mods[j], nn.Conv2d), f"up{j + 2}_act" if act is not None else None, act))
        j += 3 if act is not None else 2
    return out


def upsampler_grid_names(ups: nn.Sequential) -> list[str]:
    return [n for c, _, a, _ in upsampler_stages(ups) for n in (c, a) if n is not None]




def lower_upsampler(model: GDQNet, b: ProgramBuilder, r: str, grids: nn.ModuleDict) -> str:
    for cname, conv, aname, act in upsampler_stages(as_module(model.tail[0], nn.Sequential)):
        r = b.depth_to_space(f"{cname}_d2s", b.fp_conv(cname, r, conv, grid=grid_of(grids, cname)), 2)
        if act is not None and aname is not None:
            r = b.prelu(aname, r, act, grid=grid_of(grids, aname))
    return r


@register_family("srresnet")  # described in family.BUILTIN
class SRResNet(GDQNet):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        n = cfg.n_feats
        bits = cfg.quant.bits if cfg.quantized else None
        self.head = nn.Sequential(nn.Conv2d(3, n, 9, padding=4, bias=False), nn.PReLU(1, 0.25))
        self.body = nn.ModuleList([ResBlock(n, bits, self.make_grids("conv1", "act", "conv2", "out"))
                                   for _ in range(cfg.n_blocks)])
        self.body.append(nn.Conv2d(n, n, 3, padding=1, bias=False))
        self.body.append(nn.BatchNorm2d(n))
        ups = upsampler(cfg.scale, n, bias=False, act=True)
        self.tail = nn.Sequential(ups, nn.Conv2d(n, 3, 9, padding=4, bias=False))
        self.grids = self.make_grids("head", "head_act", "body_end", "body_out", *upsampler_grid_names(ups))

    def sr_forward(self, x: torch.Tensor, z1: torch.Tensor, bit_index: torch.Tensor | None,
                   mix: torch.Tensor | None) -> torch.Tensor:
        nb = self.cfg.n_blocks
        h = self.head[1](z1)
        r = h
        for blk in self.body[:nb]:
            r = blk(r, bit_index, mix)
        r = self.body[nb + 1](self.body[nb](r)) + h
        return self.tail(r) / self.cfg.rgb_range

    def lower(self, b: ProgramBuilder, bit_index: int | None) -> None:
        gs, rr, nb = self.grids, self.cfg.rgb_range, self.blocks_run(b)
        # rgb_range folds into the head weights (conv(x * r) = conv_{W r}(x) for a bias-free conv)
        z1 = b.fp_conv("head", b.input, as_module(self.head[0], nn.Conv2d), w_mul=rr, in_q=b.image_q, grid=grid_of(gs, "head"))
        h = b.prelu("head_act", z1, as_module(self.head[1], nn.PReLU), grid=grid_of(gs, "head_act"))
        r = h
        for i, blk in enumerate(self.body[:nb]):
            r = as_module(blk, ResBlock).lower(b, r, bit_index, f"b{i}")
        end = self.cfg.n_blocks  # the body end follows the last block, whichever block an exit leaves after
        e = b.fp_conv("body_end", r, as_module(self.body[end], nn.Conv2d), bn=as_module(self.body[end + 1], nn.BatchNorm2d),
                      grid=grid_of(gs, "body_end"))
        r = b.add("body_out", e, h, grid=grid_of(gs, "body_out"))
        r = lower_upsampler(self, b, r, gs)
        b.output_conv("tail", r, as_module(self.tail[1], nn.Conv2d), w_mul=1.0 / rr, b_mul=1.0 / rr)
