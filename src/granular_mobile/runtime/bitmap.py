"""``gdq run --bitmap``: the input with each tile tinted by its bit level, and a legend. No torch."""
from __future__ import annotations

import cv2
import numpy as np

from .tiler import TilePlan, axis_weights

#: RGB per bit level (colour-blind-safe-ish: blue, teal, orange, red)
COLOURS = {4: (0, 114, 178), 5: (0, 158, 115), 6: (230, 159, 0), 8: (213, 94, 0), 32: (128, 128, 128)}


def bitmap(image: np.ndarray, plan: TilePlan, tile_bits: list[int], alpha: float = 0.45) -> np.ndarray:
    """RGB uint8: ``image`` (LR, HxW[xC]) tinted by the bit level that owns each pixel."""
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, 2)
    rgb = rgb[..., :3].astype(np.float32)
    h, w = rgb.shape[:2]
    # the tile that owns a pixel is the one the "center" merge gives it to
    wy = axis_weights(plan.ys, plan.tile, h, 1, "center")
    wx = axis_weights(plan.xs, plan.tile, w, 1, "center")
    colour = np.zeros_like(rgb)
    k = 0
    for y, ay in zip(plan.ys, wy, strict=True):
        for x, ax in zip(plan.xs, wx, strict=True):
            m = np.outer(ay, ax)[: h - y, : w - x] > 0
            colour[y:y + plan.tile, x:x + plan.tile][m] = COLOURS.get(tile_bits[k], (255, 255, 255))
            k += 1
    out = ((1 - alpha) * rgb + alpha * colour).clip(0, 255).astype(np.uint8)
    for y in plan.ys[1:]:  # tile grid lines help reading it
        out[min(y, h - 1), :] = (out[min(y, h - 1), :] * 0.5).astype(np.uint8)
    for x in plan.xs[1:]:
        out[:, min(x, w - 1)] = (out[:, min(x, w - 1)] * 0.5).astype(np.uint8)
    return _legend(out, sorted(set(tile_bits)))


def _legend(img: np.ndarray, bits: list[int]) -> np.ndarray:
    bar_h = 22
    bar = np.full((bar_h, img.shape[1], 3), 255, np.uint8)
    x = 4
    for b in bits:
        cv2.rectangle(bar, (x, 4), (x + 14, 18), COLOURS.get(b, (0, 0, 0)), -1)
        label = "fp32" if b == 32 else f"{b}-bit"
        cv2.putText(bar, label, (x + 18, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        x += 70
    return np.concatenate([img, bar], axis=0)
