"""Training crops: HR images in memory, LR made on the fly with MATLAB bicubic."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..imageio import list_images, read_rgb
from .imresize import imresize

#: LR pixels of context cropped around each patch before downscaling, so the patch's
#: pixels see real neighbours (as in a whole-image downscale) instead of mirrored borders
MARGIN = 3


def load_folder_images(folders: Sequence[str | os.PathLike[str]], min_side: int = 1) -> list[np.ndarray]:
    imgs: list[np.ndarray] = []
    for f in folders:
        paths = list_images(f)
        if not paths:
            raise DataError(f"no images in '{f}' (expected PNG/JPEG/BMP/WebP/TIFF files)")
        imgs += [im for im in (read_rgb(p) for p in paths) if min(im.shape[:2]) >= min_side]
    if not imgs:
        raise DataError(f"no image in {list(map(str, folders))} is at least {min_side} px on its short side")
    return imgs


class CropSampler:
    """Random (LR, HR) pairs: HR crop, random flip/rotation, MATLAB-bicubic downscale, LR rounded to 8 bits."""

    def __init__(self, images: list[np.ndarray], scale: int, patch: int, seed: int = 0) -> None:
        self.scale, self.patch = scale, patch
        self.hr_crop = (patch + 2 * MARGIN) * scale
        self.images = [im for im in images if min(im.shape[:2]) >= self.hr_crop]
        if not self.images:
            raise DataError(f"no training image is at least {self.hr_crop} px on its short side (patch {patch}, x{scale})")
        # sample images proportionally to their area, so every HR pixel is equally likely
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        self.p = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def state(self) -> Mapping[str, Any]:
        return self.rng.bit_generator.state

    def set_state(self, st: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = st

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, c = self.scale, self.hr_crop
        crops = []
        for i in self.rng.choice(len(self.images), size=batch, p=self.p):
            im = self.images[i]
            # align crops to the scale grid so LR pixel centres match whole-image downscaling
            y = int(self.rng.integers(0, (im.shape[0] - c) // s + 1)) * s
            x = int(self.rng.integers(0, (im.shape[1] - c) // s + 1)) * s
            cr = im[y:y + c, x:x + c]
            if self.rng.random() < 0.5:
                cr = cr[:, ::-1]
            cr = np.rot90(cr, int(self.rng.integers(0, 4)))
            crops.append(np.ascontiguousarray(cr))
        hr = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).double()
        lr = imresize(hr, size=(self.patch + 2 * MARGIN,) * 2).round().clamp(0, 255)
        m, ms = MARGIN, MARGIN * s
        lr = lr[..., m:m + self.patch, m:m + self.patch]
        hr = hr[..., ms:ms + self.patch * s, ms:ms + self.patch * s]
        return (lr / 255.0).float(), (hr / 255.0).float()


def bicubic_pair(im: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped to a multiple of ``scale``, its LR) of an 8-bit HWC RGB image: MATLAB-bicubic
    downscaling, rounded to 8 bits, as the benchmark sets' LR images are made."""
    h, w = (im.shape[0] // scale) * scale, (im.shape[1] // scale) * scale
    hr = im[:h, :w]
    lr = imresize(torch.from_numpy(hr).permute(2, 0, 1).double(), size=(h // scale, w // scale))
    return hr, lr.round().clamp(0, 255).byte().permute(1, 2, 0).contiguous().numpy()


def tile_grid(images: list[np.ndarray], tile: int, scale: int, max_tiles: int | None = None, seed: int = 0) -> np.ndarray:
    """Non-overlapping LR tiles (N, 3, tile, tile) float [0, 1] of the images downscaled by ``scale``."""
    tiles = []
    for im in images:
        lr = torch.from_numpy(bicubic_pair(im, scale)[1]).permute(2, 0, 1).float() / 255.0
        for y in range(0, lr.shape[1] - tile + 1, tile):
            for x in range(0, lr.shape[2] - tile + 1, tile):
                tiles.append(lr[:, y:y + tile, x:x + tile])
    if not tiles:
        raise DataError(f"no image is large enough for one {tile}x{tile} LR tile at x{scale}")
    out = torch.stack(tiles).numpy()
    if max_tiles and len(out) > max_tiles:
        out = out[np.random.default_rng(seed).choice(len(out), max_tiles, replace=False)]
    return out
