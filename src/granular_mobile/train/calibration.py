"""The controller's operating point, set on data after training: the E2B entropy thresholds
(``calibrate_e2b``) and the GBC gate's bias shift for a bit budget (``calibrate_gate``).
``gdq quantize`` calibrates E2B before fine-tuning; ``gdq calibrate`` does both afterwards."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

from ..config import E2BConfig
from ..controller import GBC, tile_entropy
from ..data.dataset import tile_grid
from ..models import GDQNet
from ..models.base import as_module


@torch.no_grad()
def calibrate_e2b(images: list[np.ndarray], cfg: E2BConfig, scale: int, tile: int | None = None,
                  tiles: np.ndarray | None = None) -> tuple[E2BConfig, int]:
    """E2B thresholds = quantiles of tile entropy over LR tiles of ``tile`` px (the deployment size).

    ``tiles``: those LR tiles (``tile_grid(images, tile, scale)``) when the caller already cut
    them (``gdq calibrate`` also hands them to ``calibrate_gate``)."""
    tile = tile or cfg.tile
    lr_tiles = torch.from_numpy(tile_grid(images, tile, scale) if tiles is None else tiles)
    h = torch.cat([tile_entropy(lr_tiles[i:i + 64], cfg.bins, cfg.sigma) for i in range(0, len(lr_tiles), 64)]).numpy()
    t1, t2 = (float(np.quantile(h, q)) for q in cfg.quantiles)
    return dataclasses.replace(cfg, thresholds=(t1, t2), tile=tile, calibrated=True), len(h)


@torch.no_grad()
def calibrate_gate(model: GDQNet, tiles: np.ndarray, target_fab: float) -> tuple[float, float, float, int]:
    """Shift the GBC gate's bias by t * (0, 1, 2) so that the deterministic controller (argmax)
    averages ``target_fab`` bits over ``tiles`` (N, 3, T, T) LR [0, 1], e.g. ``tile_grid`` of
    training images at the deployment tile; returns (t, FAB before, FAB after, tiles). Changes
    ``model`` in place.

    Why: training budgets the expected bits under Gumbel sampling, which the argmax of the
    deployed controller does not follow (measured: 4.97 bits in training, 4.00 at inference),
    so the operating point is set here, on data, like the E2B thresholds. The offset is
    increasing in the bit level, so the argmax only moves up as t grows and the tile ranking
    of the trained gate is kept.
    """
    model.eval()
    lr_tiles = torch.from_numpy(tiles)
    logits, ents = [], []
    for i in range(0, len(lr_tiles), 32):
        c = model.controller(lr_tiles[i:i + 32])
        logits.append(c.logits)
        ents.append(c.entropy)
    lg, h = torch.cat(logits), torch.cat(ents)
    bits = torch.tensor(model.bits, dtype=torch.float64)
    step = torch.tensor([0.0, 1.0, 2.0])

    def fab_at(t: float) -> float:
        return float(bits[model.e2b.final_bit_index((lg + t * step).argmax(1), h)].mean())

    grid = np.round(np.arange(-40.0, 40.0001, 0.01), 2)
    fabs = np.array([fab_at(float(t)) for t in grid])
    err = np.abs(fabs - target_fab)
    closest = np.flatnonzero(err <= err.min() + 1e-9)
    i = int(closest[np.argmin(np.abs(grid[closest]))])  # the smallest shift among the closest
    t = float(grid[i])
    gate = as_module(as_module(model.encoder.gbc, GBC).gate[0], nn.Linear)
    gate.bias.add_(t * step.to(gate.bias))
    return t, float(fabs[np.argmin(np.abs(grid))]), float(fabs[i]), len(lr_tiles)


__all__ = ["calibrate_e2b", "calibrate_gate"]
