"""GBC: the granularity-bit controller (paper Eq. 3-7, with this project's fixes).

Z1 = head-conv output, Z2 = avgpool2(Z1), Z3 = avgpool2(Z2). Each granularity gets its own
GroupNorm (the reference code commented it out, which made the three features identical:
the global mean of an average-pooled map is the global mean). After GroupNorm the pooled
per-channel value is (mu_c - mu_group) / sigma_group,d scaled by that scale's affine, so
the three vectors differ by how much high-frequency energy each scale keeps.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _groups(channels: int) -> int:
    for g in (16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 2:
            return g
    return 1


class GBC(nn.Module):
    """Gate over three granularities of the head features -> 3 logits (4, 6, 8 bits by default)."""

    def __init__(self, channels: int, groupnorm: bool = True, n_choices: int = 3) -> None:
        super().__init__()
        self.groupnorm = groupnorm
        if groupnorm:
            self.norms = nn.ModuleList(nn.GroupNorm(_groups(channels), channels) for _ in range(3))
        # the reference names it gate.0 (an nn.Sequential); keep that name for import
        linear = nn.Linear(3 * channels, n_choices)
        self.gate = nn.Sequential(linear)
        with torch.no_grad():
            # start neutral: equal logits, so the bit-budget term and L1 decide
            linear.weight.mul_(0.1)
            linear.bias.zero_()

    def features(self, z1: torch.Tensor) -> torch.Tensor:
        zs = [z1]
        for _ in range(2):
            z = zs[-1]
            # ceil_mode keeps odd-sized maps valid; tiles are even in practice
            zs.append(F.avg_pool2d(z, 2, ceil_mode=True) if min(z.shape[-2:]) >= 2 else z)
        if self.groupnorm:
            zs = [n(z) for n, z in zip(self.norms, zs, strict=True)]
        return torch.cat([z.mean(dim=(2, 3)) for z in zs], dim=1)

    def forward(self, z1: torch.Tensor) -> torch.Tensor:
        """Logits (N, 3)."""
        return self.gate(self.features(z1))
