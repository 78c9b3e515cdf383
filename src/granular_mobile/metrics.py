"""PSNR / SSIM on the Y channel, FAB and BitOPs. Numpy only.

Y is BT.601 on 0..255: Y = 16 + (65.738 R + 129.057 G + 25.064 B) / 256 (the convention of
EDSR-PyTorch and the Granular-DQ code). SSIM follows the usual MATLAB port: 11x11 Gaussian
(sigma 1.5), valid region, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float64)
    return 16.0 + (65.738 * x[..., 0] + 129.057 * x[..., 1] + 25.064 * x[..., 2]) / 256.0


def _prep(sr: np.ndarray, hr: np.ndarray, shave: int) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: {sr.shape} vs {hr.shape}")
    ys, yh = rgb_to_y(sr), rgb_to_y(hr)
    if shave > 0:
        ys, yh = ys[shave:-shave, shave:-shave], yh[shave:-shave, shave:-shave]
    return ys, yh


def psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    """PSNR (dB) on Y of two RGB uint8 (or 0..255 float) HWC images, ``shave`` border pixels removed."""
    ys, yh = _prep(sr, hr, shave)
    mse = float(np.mean((ys - yh) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    ys, yh = _prep(sr, hr, shave)
    return ssim(ys, yh)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    win = k @ k.T
    f = lambda x: cv2.filter2D(x, -1, win)[5:-5, 5:-5]  # noqa: E731  (valid region)
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = f(a), f(b)
    s_aa, s_bb, s_ab = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    return float(m.mean())


def fab(tile_bits: Sequence[int] | np.ndarray) -> float:
    """Feature average bit-width of one image: bits are layer-invariant per tile, so the
    per-tile FAB is the tile's bit-width and the image's FAB is their mean."""
    arr = np.asarray(tile_bits, dtype=np.float64)
    return float(arr.mean()) if arr.size else float("nan")


def bitops(layer_macs: Sequence[tuple[int, bool]], tile_bits: Sequence[int], weight_bits: int = 8) -> float:
    """BitOPs over tiles: quantized layers count MACs * weight_bits * tile bits, the others
    MACs * 32 * 32. ``layer_macs``: (MACs for one tile, quantized) per layer."""
    q = sum(m for m, isq in layer_macs if isq)
    f = sum(m for m, isq in layer_macs if not isq)
    return float(sum(q * weight_bits * b + f * 32 * 32 for b in tile_bits))


def best_static_mix(static: Sequence[tuple[float, float]], fab: float) -> float:
    """PSNR of the best static mix of levels at average bits ``fab``: the upper concave hull of
    the (FAB, PSNR) static points, interpolated (PSNR is the mean over images, so a mix's PSNR
    is close to the same mix of the levels' PSNRs; what this compares is that line)."""
    pts = sorted(static)
    if not pts[0][0] <= fab <= pts[-1][0]:
        raise ValueError(f"FAB {fab} is outside the static levels {[p[0] for p in pts]}")
    best = max((p[1] for p in pts if p[0] == fab), default=float("-inf"))
    for i, (xa, ya) in enumerate(pts):
        for xb, yb in pts[i + 1:]:
            if xa <= fab <= xb and xb > xa:
                best = max(best, ya + (yb - ya) * (fab - xa) / (xb - xa))
    return best
