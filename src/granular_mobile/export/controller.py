"""The controller graph as plain arrays: head conv -> GBC logits, tile entropy, final bits.

GroupNorm followed by a global mean needs only per-channel moments: for channel c in group
g, mean_hw(GN(z))_c = gamma_c * (m_c - mu_g) / sqrt(var_g + eps) + beta_c, with m_c the
channel mean, mu_g the group mean and var_g = mean_g(E[z^2]_c) - mu_g^2 (the biased variance
PyTorch uses). Emitters build that, not a full-resolution GroupNorm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch.nn as nn

from ..controller.e2b import GREY
from ..controller.gbc import GBC
from ..models import GDQNet


@dataclass
class ControllerSpec:
    head_w: np.ndarray  # (C, 3, k, k) float32, rgb_range folded in
    head_b: np.ndarray | None
    pad: int
    groups: int  # 0: no GroupNorm (reference gate)
    gn_gamma: list[np.ndarray]  # per granularity (C,)
    gn_beta: list[np.ndarray]
    gn_eps: float
    gate_w: np.ndarray  # (3, 3C)
    gate_b: np.ndarray  # (3,)
    bins: int
    sigma: float
    thresholds: tuple[float, float]
    gbc_bits: tuple[int, int, int]
    e2b_bits: tuple[int, int, int]
    #: the level gate (ModelConfig.level_gate): (L, 3C + 1) on [GBC features, entropy], and (L,)
    level_w: np.ndarray | None = None
    level_b: np.ndarray | None = None

    @property
    def channels(self) -> int:
        return int(self.head_w.shape[0])


def controller_spec(model: GDQNet) -> ControllerSpec:
    cfg = model.cfg
    conv = model.head[0]
    gbc = model.encoder.gbc
    assert isinstance(conv, nn.Conv2d) and isinstance(gbc, GBC), "a Granular-DQ model's head conv and gate"
    # (ModuleList / Sequential items are typed as Module)
    norms = cast(list[nn.GroupNorm], list(gbc.norms)) if gbc.groupnorm else []
    gate = cast(nn.Linear, gbc.gate[0])
    t1, t2 = cfg.e2b.thresholds
    f = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
    return ControllerSpec(
        head_w=f(conv.weight) * np.float32(cfg.rgb_range), head_b=f(conv.bias) if conv.bias is not None else None,
        pad=int(conv.padding[0]), groups=norms[0].num_groups if gbc.groupnorm else 0,
        gn_gamma=[f(n.weight) for n in norms] if gbc.groupnorm else [],
        gn_beta=[f(n.bias) for n in norms] if gbc.groupnorm else [],
        gn_eps=float(norms[0].eps) if gbc.groupnorm else 0.0,
        gate_w=f(gate.weight), gate_b=f(gate.bias), bins=cfg.e2b.bins, sigma=cfg.e2b.sigma,
        thresholds=(t1, t2), gbc_bits=cfg.quant.gbc_bits, e2b_bits=cfg.quant.e2b_bits,
        level_w=f(model.level_gate.weight) if cfg.level_gate is not None else None,
        level_b=f(model.level_gate.bias) if cfg.level_gate is not None else None)


__all__ = ["GREY", "ControllerSpec", "controller_spec"]
