"""MATLAB-compatible ``imresize`` (bicubic, antialiased when downscaling), in torch.

Same algorithm as MATLAB: cubic kernel a = -0.5, kernel widened by 1/scale when shrinking,
output pixel x maps to u = x / scale + 0.5 * (1 - 1 / scale), symmetric (mirror) boundary.
The resize is separable: for a fixed (in, out) size it is two matrix products, so the
matrices are cached. Benchmark LR images were made with MATLAB; making training LR the
same way avoids a train/test domain shift.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


@functools.lru_cache(maxsize=64)
def resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """(out_len, in_len) float64 matrix M with out = M @ in along one axis."""
    width = 4.0
    if scale < 1 and antialias:
        kernel = lambda t: scale * _cubic(scale * t)  # noqa: E731
        width = width / scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    p = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]  # 1-based
    w = kernel(u[:, None] - idx)
    w = w / w.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx0 = mirror[np.mod(idx - 1, 2 * in_len).astype(np.int64)]
    m = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(m, (np.repeat(np.arange(out_len), p), idx0.ravel()), w.ravel())
    return m


def imresize(x: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize (..., H, W) float tensor by ``scale`` or to ``size`` (h, w), MATLAB bicubic.

    Values keep their range (no clamping or rounding; round yourself for uint8 output).
    """
    h, w = x.shape[-2:]
    if size is None:
        if scale is None:
            raise ValueError("give scale or size")
        size = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
        sh = sw = float(scale)
    else:
        sh, sw = size[0] / h, size[1] / w
    mh = torch.from_numpy(resize_matrix(h, size[0], sh)).to(x.dtype).to(x.device)
    mw = torch.from_numpy(resize_matrix(w, size[1], sw)).to(x.dtype).to(x.device)
    return mh @ x @ mw.T


def imresize_uint8(img: np.ndarray, scale: float) -> np.ndarray:
    """HWC uint8 -> HWC uint8, MATLAB bicubic (computed in float64, rounded once)."""
    t = torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)
    out = imresize(t, scale=scale)
    return out.round().clamp(0, 255).permute(1, 2, 0).numpy().astype(np.uint8)
