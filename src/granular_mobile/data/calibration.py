"""The bundled calibration tiles: natural-image LR tiles from the training data, shipped in
the package, so that calibration and the integer grids' initialisation need no data folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

CALIB_TILES = Path(__file__).resolve().parent.parent / "assets" / "calib_tiles.npz"


def calibration_tiles(tile: int, n: int = 24) -> torch.Tensor:
    """``n`` bundled natural-image LR tiles (training data, 96 px), cropped or tiled to ``tile``;
    (n, 3, tile, tile) float32 on [0, 1]."""
    arr = np.load(CALIB_TILES)["tiles"][:n]  # (N, 96, 96, 3) uint8
    if tile < arr.shape[1]:
        arr = arr[:, :tile, :tile]
    elif tile > arr.shape[1]:
        reps = -(-tile // arr.shape[1])
        arr = np.concatenate([np.tile(arr[i:i + 1], (1, reps, reps, 1))[:, :tile, :tile] for i in range(len(arr))])
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
