"""E2B: entropy-to-bit (paper Eq. 8-9).

Entropy of a tile: grey = 0.2989 R + 0.5870 G + 0.1140 B on [0, 1]; a Gaussian kernel
density over ``bins`` centres linspace(0, 1, bins) with ``sigma``, averaged over pixels and
normalised to sum 1; H = -sum p ln p. The Gaussian's normalising constant cancels in the
normalisation, so it is left out (which also keeps the exported graph small).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..config import E2BConfig, QuantConfig

GREY = (0.2989, 0.5870, 0.1140)


def tile_entropy(x: torch.Tensor, bins: int = 32, sigma: float = 0.0255) -> torch.Tensor:
    """Entropy (nats) of each tile of x: (N, 3, H, W) RGB on [0, 1] -> (N,)."""
    w = torch.tensor(GREY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    grey = (x * w).sum(1).flatten(1)  # (N, P)
    centres = torch.linspace(0, 1, bins, dtype=x.dtype, device=x.device)
    d = grey.unsqueeze(-1) - centres  # (N, P, bins)
    dens = torch.exp(-0.5 * (d / sigma) ** 2).mean(1)  # (N, bins)
    p = dens / dens.sum(1, keepdim=True).clamp_min(1e-12)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(1)


class E2B(nn.Module):
    """Maps (gate choice, entropy) -> index into the model's bit set."""

    gbc_to_bit: torch.Tensor
    e2b_to_bit: torch.Tensor

    def __init__(self, quant: QuantConfig, cfg: E2BConfig) -> None:
        super().__init__()
        self.quant = quant
        self.cfg = cfg
        # look-up tables (indices into quant.bits), kept as buffers so .to(device) moves them
        self.register_buffer("gbc_to_bit", torch.tensor([quant.index(b) for b in quant.gbc_bits]), persistent=False)
        self.register_buffer("e2b_to_bit", torch.tensor([quant.index(b) for b in quant.e2b_bits]), persistent=False)

    def entropy(self, x: torch.Tensor) -> torch.Tensor:
        return tile_entropy(x, self.cfg.bins, self.cfg.sigma)

    def level(self, h: torch.Tensor) -> torch.Tensor:
        """Entropy -> E2B level 0 (H <= t1), 1 (t1 < H <= t2), 2 (H > t2)."""
        t1, t2 = self.cfg.thresholds
        return (h > t1).long() + (h > t2).long()

    def final_bit_index(self, choice: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """choice: (N,) GBC index 0..2; returns (N,) index into quant.bits."""
        via_e2b = self.e2b_to_bit[self.level(h)]
        return torch.where(choice == 2, via_e2b, self.gbc_to_bit[choice])

    def final_mix(self, gate: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Gate one-hot/probabilities (N, 3) -> (N, len(bits)) over the final bit set.

        Differentiable in ``gate``: choices 0 and 1 map to their bits, choice 2 is routed
        by the (non-differentiable) entropy level.
        """
        n_bits = len(self.quant.bits)
        m = gate.new_zeros(gate.shape[0], n_bits)
        m = m.index_add(1, self.gbc_to_bit[:2], gate[:, :2])
        e2b_onehot = torch.nn.functional.one_hot(self.e2b_to_bit[self.level(h)], n_bits).to(gate.dtype)
        return m + gate[:, 2:3] * e2b_onehot
