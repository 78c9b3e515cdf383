"""Tiling plan, tile extraction and seamless stitching. Numpy only (runs without torch).

Every tile has the same static shape (exported graphs have static shapes). Tiles start
every ``step`` pixels; the last one along an axis is moved back to end at the image border
(so no tile absorbs a remainder). An image smaller than a tile is padded (reflect) to the
tile size and the output cropped back.

Merging: "center" gives each output pixel to exactly one tile, split at the middle of each
overlap (the paper's protocol: each tile keeps its central part); "blend" ramps weights
linearly across overlaps, which hides bit-level changes between neighbouring tiles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..defaults import MERGES

__all__ = ["MERGES", "BandStitcher", "Stitcher", "TilePlan", "axis_positions", "axis_weights", "extract_tiles",
           "pad_to_tile"]


def axis_positions(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    n = -(-(length - tile) // step) + 1
    return [min(i * step, length - tile) for i in range(n)]


def axis_weights(positions: list[int], tile: int, length: int, scale: int, mode: str) -> list[np.ndarray]:
    """Per-tile 1-D weights (tile * scale,) along one axis, in output pixels."""
    t, n = tile * scale, len(positions)
    span = min(length, tile)  # LR pixels a tile covers inside the image
    out = []
    for i, p in enumerate(positions):
        w = np.zeros(t, dtype=np.float32)
        if mode == "center":
            lo = 0 if i == 0 else (positions[i - 1] + tile + p) // 2
            hi = p + span if i == n - 1 else (p + tile + positions[i + 1]) // 2
            w[(lo - p) * scale:(hi - p) * scale] = 1.0
        else:
            w[: span * scale] = 1.0
            if i > 0:  # ramp up over the overlap with the previous tile
                ov = (positions[i - 1] + tile - p) * scale
                w[:ov] = (np.arange(ov, dtype=np.float32) + 0.5) / ov
            if i < n - 1:  # ramp down over the overlap with the next tile
                ov = (p + tile - positions[i + 1]) * scale
                w[t - ov:] = np.minimum(w[t - ov:], 1.0 - (np.arange(ov, dtype=np.float32) + 0.5) / ov)
        out.append(w)
    return out


@dataclass(frozen=True)
class TilePlan:
    height: int
    width: int
    tile: int
    step: int
    scale: int
    merge: str = "center"

    @property
    def ys(self) -> list[int]:
        return axis_positions(self.height, self.tile, self.step)

    @property
    def xs(self) -> list[int]:
        return axis_positions(self.width, self.tile, self.step)

    @property
    def positions(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.ys for x in self.xs]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def weights(self) -> list[np.ndarray]:
        """(tile*s, tile*s) weight of each tile, in ``positions`` order."""
        wy = axis_weights(self.ys, self.tile, self.height, self.scale, self.merge)
        wx = axis_weights(self.xs, self.tile, self.width, self.scale, self.merge)
        return [np.outer(a, b) for a in wy for b in wx]

    def to_dict(self) -> dict:
        return {"height": self.height, "width": self.width, "tile": self.tile, "step": self.step,
                "scale": self.scale, "merge": self.merge, "ys": self.ys, "xs": self.xs}


def pad_to_tile(img: np.ndarray, tile: int) -> np.ndarray:
    """Reflect-pad HWC bottom/right so both sides are >= tile."""
    h, w = img.shape[:2]
    ph, pw = max(0, tile - h), max(0, tile - w)
    if ph == 0 and pw == 0:
        return img
    pad = ((0, ph), (0, pw), (0, 0))
    # reflect needs 2 pixels
    return np.pad(img, pad, mode="reflect") if min(h, w) > 1 else np.pad(img, pad, mode="edge")


def extract_tiles(img: np.ndarray, plan: TilePlan, indices: list[int] | None = None) -> np.ndarray:
    """(N, tile, tile, C) tiles of an HWC image (any dtype), in ``plan.positions`` order."""
    src = pad_to_tile(img, plan.tile)
    pos = plan.positions
    idx = range(len(pos)) if indices is None else indices
    t = plan.tile
    return np.stack([src[pos[i][0]:pos[i][0] + t, pos[i][1]:pos[i][1] + t] for i in idx])


class Stitcher:
    """Accumulates weighted SR tiles into the output image (float32 HWC)."""

    def __init__(self, plan: TilePlan, channels: int = 3) -> None:
        self.plan = plan
        s = plan.scale
        self.ph, self.pw = max(plan.height, plan.tile) * s, max(plan.width, plan.tile) * s
        self.acc = np.zeros((self.ph, self.pw, channels), dtype=np.float32)
        self.wsum = np.zeros((self.ph, self.pw, 1), dtype=np.float32)
        self._w = plan.weights()
        self._pos = plan.positions

    def add(self, index: int, sr_tile: np.ndarray) -> None:
        y, x = self._pos[index]
        s, ts = self.plan.scale, self.plan.tile * self.plan.scale
        w = self._w[index][..., None]
        self.acc[y * s:y * s + ts, x * s:x * s + ts] += sr_tile * w
        self.wsum[y * s:y * s + ts, x * s:x * s + ts] += w

    def result(self) -> np.ndarray:
        s = self.plan.scale
        h, w = self.plan.height * s, self.plan.width * s
        ws = self.wsum[:h, :w]
        if np.any(ws <= 0):
            raise RuntimeError("stitching left pixels without a tile (internal error in the tile plan)")
        return self.acc[:h, :w] / ws


class BandStitcher:
    """Row-by-row stitching with a band accumulator one tile high: memory is O(tile * width),
    not O(image). Tiles must be added tile row by tile row (``plan.ys`` order); ``flush(i)``
    after row i returns the output rows no later tile touches. Same additions in the same
    order as ``Stitcher``, so the result is identical."""

    def __init__(self, plan: TilePlan, channels: int = 3) -> None:
        self.plan = plan
        s, t = plan.scale, plan.tile
        self.pw = max(plan.width, t) * s
        self.out_h, self.out_w = plan.height * s, plan.width * s
        self.acc = np.zeros((t * s, self.pw, channels), dtype=np.float32)
        self.wsum = np.zeros((t * s, self.pw, 1), dtype=np.float32)
        self.origin = 0  # output row of acc[0]
        self.wy = axis_weights(plan.ys, t, plan.height, s, plan.merge)
        self.wx = axis_weights(plan.xs, t, plan.width, s, plan.merge)

    def add(self, row: int, col: int, sr_tile: np.ndarray) -> None:
        s, ts = self.plan.scale, self.plan.tile * self.plan.scale
        y0 = self.plan.ys[row] * s - self.origin
        x0 = self.plan.xs[col] * s
        w = np.outer(self.wy[row], self.wx[col])[..., None]
        self.acc[y0:y0 + ts, x0:x0 + ts] += sr_tile * w
        self.wsum[y0:y0 + ts, x0:x0 + ts] += w

    def flush(self, row: int) -> np.ndarray:
        """uint8 output rows finished after tile row ``row`` (all of them after the last row)."""
        s = self.plan.scale
        last = row == len(self.plan.ys) - 1
        end = self.out_h if last else self.plan.ys[row + 1] * s
        n = end - self.origin
        ws = self.wsum[:n, : self.out_w]
        if np.any(ws <= 0):
            raise RuntimeError("stitching left pixels without a tile (internal error in the tile plan)")
        out = np.clip(np.round(self.acc[:n, : self.out_w] / ws * 255.0), 0, 255).astype(np.uint8)
        # shift the unfinished rows to the top of the band
        self.acc[: len(self.acc) - n] = self.acc[n:].copy()
        self.acc[len(self.acc) - n:] = 0
        self.wsum[: len(self.wsum) - n] = self.wsum[n:].copy()
        self.wsum[len(self.wsum) - n:] = 0
        self.origin = end
        return out
