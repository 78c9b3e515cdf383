"""Shared plumbing of the Granular-DQ networks.

I/O contract (every model, every backend): input NCHW float32 RGB on [0, 1]; output NCHW
float32 RGB, nominally on [0, 1] but not clamped (the runtime clamps and rounds, once).
Internally the network sees ``input * rgb_range`` and its output is divided by it, which is
how checkpoints trained on 0..255 (the reference code) run unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from ..controller import E2B, GBC


@dataclass
class ControllerOut:
    logits: torch.Tensor  # (N, 3) GBC logits
    entropy: torch.Tensor  # (N,) tile entropy (nats)
    bit_index: torch.Tensor  # (N,) index into cfg.quant.bits
    mix: torch.Tensor | None = None  # (N, len(bits)) straight-through one-hot (training)
    expected_bits: torch.Tensor | None = None  # (N,) E[bits] under the gate probabilities


class GDQNet(nn.Module):
    """Base class: subclasses build ``head`` (conv [+act]), ``body`` (blocks, end conv[, BN]) and ``tail``."""

    cfg: ModelConfig
    head: nn.Sequential
    body: nn.ModuleList
    tail: nn.Sequential

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tau = 1.0
        if cfg.quantized:
            self.encoder = nn.Module()
            self.encoder.gbc = GBC(cfg.n_feats, groupnorm=cfg.gbc_groupnorm)
            self.e2b = E2B(cfg.quant, cfg.e2b)

    # -- subclass hooks -------------------------------------------------------------
    def head_conv(self, xs: torch.Tensor) -> torch.Tensor:
        return self.head[0](xs)

    def head_act(self, z1: torch.Tensor) -> torch.Tensor:
        return self.head[1](z1) if len(self.head) > 1 else z1

    def body_forward(self, h: torch.Tensor, bit_index: torch.Tensor | None, mix: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    # -- controller -----------------------------------------------------------------
    @property
    def bits(self) -> tuple[int, ...]:
        return self.cfg.quant.bits

    def n_quant_convs(self) -> int:
        return sum(1 for m in self.modules() if getattr(m, "quantized", False))

    def controller(self, x: torch.Tensor, z1: torch.Tensor | None = None) -> ControllerOut:
        """Bit level of each tile of x ([0, 1] RGB). Deterministic in eval mode (argmax)."""
        if not self.cfg.quantized:
            raise RuntimeError("a full-precision model has no controller")
        if z1 is None:
            z1 = self.head_conv(x * self.cfg.rgb_range)
        logits = self.encoder.gbc(z1)
        h = self.e2b.entropy(x)
        if self.training:
            y = F.gumbel_softmax(logits, tau=self.tau, hard=True)
            mix = self.e2b.final_mix(y, h)
            probs = self.e2b.final_mix(logits.softmax(1), h)
            bits_t = torch.tensor(self.bits, dtype=probs.dtype, device=probs.device)
            return ControllerOut(logits, h, mix.argmax(1), mix, (probs * bits_t).sum(1))
        return ControllerOut(logits, h, self.e2b.final_bit_index(logits.argmax(1), h))

    # -- forward --------------------------------------------------------------------
    def forward(self, x: torch.Tensor, bit_index: torch.Tensor | int | None = None, return_ctrl: bool = False):
        """SR of x. Quantized models pick bits per tile unless ``bit_index`` forces them.

        ``return_ctrl`` returns (sr, ControllerOut | None) (a keyword, so DDP passes it on)."""
        sr, ctrl = self.forward_with_bits(x, bit_index)
        return (sr, ctrl) if return_ctrl else sr

    def forward_with_bits(
        self, x: torch.Tensor, bit_index: torch.Tensor | int | None = None
    ) -> tuple[torch.Tensor, ControllerOut | None]:
        xs = x * self.cfg.rgb_range
        z1 = self.head_conv(xs)
        ctrl: ControllerOut | None = None
        mix = None
        if self.cfg.quantized:
            if bit_index is None:
                ctrl = self.controller(x, z1)
                bit_index, mix = ctrl.bit_index, ctrl.mix
            elif isinstance(bit_index, int):
                bit_index = torch.full((x.shape[0],), bit_index, dtype=torch.long, device=x.device)
        else:
            bit_index = None
        h = self.head_act(z1)
        out = self.body_forward(h, bit_index, mix)
        return self.tail(out) / self.cfg.rgb_range, ctrl


def count_macs(model: GDQNet, lr_h: int, lr_w: int) -> list[tuple[str, int, bool]]:
    """(name, MACs, quantized) of every conv for one LR input of lr_h x lr_w (GBC/E2B excluded)."""
    rows: list[tuple[str, int, bool]] = []
    hooks = []

    def hook(name: str):
        def fn(mod: nn.Conv2d, inp, out) -> None:
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            rows.append((name, int(out.shape[1] * out.shape[2] * out.shape[3] * k), bool(getattr(mod, "quantized", False))))
        return fn

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            bi = 0 if model.cfg.quantized else None
            model(torch.zeros(1, 3, lr_h, lr_w, device=next(model.parameters()).device), bi)
            model.train(was)
    finally:
        for h in hooks:
            h.remove()
    return rows
