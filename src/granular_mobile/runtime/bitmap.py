"""``gdq run --bitmap``: the input with each tile tinted by its level, and a legend. No torch."""
from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

import cv2
import numpy as np

from .tiler import TilePlan, axis_weights

#: RGB per full-depth bit level (colour-blind-safe: blue, teal, orange, vermillion) and fp32
COLOURS = {4: (0, 114, 178), 5: (0, 158, 115), 6: (230, 159, 0), 8: (213, 94, 0), 32: (128, 128, 128)}
#: RGB of an exit level by its depth: up to 4 blocks sky blue, up to 8 yellow, deeper reddish purple
EXIT_COLOURS = ((4, (86, 180, 233)), (8, (240, 228, 66)), (1 << 30, (204, 121, 167)))
_LEVEL = re.compile(r"a([0-9]+)(?:k([0-9]+))?")


def level_colour(level: str | int) -> tuple[int, int, int]:
    """The tint of a level: ``a6`` / 6 (bits), ``a6k4`` (an exit level, by depth), ``fp32`` / 32.
    The browser demo (``web_page/src/colours.js``) and the Android core (``LevelColours``) use
    the same rule."""
    if isinstance(level, numbers.Integral) or level == "fp32":
        return COLOURS.get(32 if level == "fp32" else int(level), (255, 255, 255))
    m = _LEVEL.fullmatch(str(level))
    if m is None:
        return (255, 255, 255)
    if m[2] is None:
        return COLOURS.get(int(m[1]), (255, 255, 255))
    return next(c for k, c in EXIT_COLOURS if int(m[2]) <= k)


def _name(level: str | int) -> str:
    return level if isinstance(level, str) else ("fp32" if level == 32 else f"{level}-bit")


def bitmap(image: np.ndarray, plan: TilePlan, tile_levels: Sequence[str | int], alpha: float = 0.45) -> np.ndarray:
    """RGB uint8: ``image`` (LR, HxW[xC]) tinted by the level (``a6k4``; or bits) that owns each pixel."""
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
            colour[y:y + plan.tile, x:x + plan.tile][m] = level_colour(tile_levels[k])
            k += 1
    out = ((1 - alpha) * rgb + alpha * colour).clip(0, 255).astype(np.uint8)
    for y in plan.ys[1:]:  # tile grid lines help reading it
        out[min(y, h - 1), :] = (out[min(y, h - 1), :] * 0.5).astype(np.uint8)
    for x in plan.xs[1:]:
        out[:, min(x, w - 1)] = (out[:, min(x, w - 1)] * 0.5).astype(np.uint8)
    return _legend(out, list(dict.fromkeys(sorted(tile_levels, key=str))))


def _legend(img: np.ndarray, levels: list[str | int]) -> np.ndarray:
    bar_h = 22
    bar = np.full((bar_h, img.shape[1], 3), 255, np.uint8)
    x = 4
    for lv in levels:
        cv2.rectangle(bar, (x, 4), (x + 14, 18), level_colour(lv), -1)
        label = _name(lv)
        cv2.putText(bar, label, (x + 18, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        x += 70
    return np.concatenate([img, bar], axis=0)
