"""Tiled PyTorch inference and benchmark evaluation (``gdq eval``)."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import TileConfig
from ..data.imresize import imresize_uint8
from ..errors import DataError
from ..imageio import list_images, read_rgb
from ..metrics import bitops, fab, psnr_y, ssim_y
from ..models import GDQNet, count_macs
from ..runtime.tiler import Stitcher, TilePlan, extract_tiles


@torch.no_grad()
def upscale_tiled(
    model: GDQNet, img: np.ndarray, tiles: TileConfig = TileConfig(), batch: int = 8,
    bit_index: int | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Upscale an RGB uint8 HWC image tile by tile. Returns (SR uint8, bit-width of each tile).

    Tiles are [0, 1] floats; the output is clamped and rounded once, here.
    """
    model.eval()
    dev = next(model.parameters()).device
    s = model.cfg.scale
    plan = TilePlan(img.shape[0], img.shape[1], tiles.tile, tiles.step, s, tiles.merge)
    st = Stitcher(plan)
    tile_bits: list[int] = []
    n = len(plan)
    for i0 in range(0, n, batch):
        idx = list(range(i0, min(n, i0 + batch)))
        t = torch.from_numpy(extract_tiles(img, plan, idx)).to(dev).permute(0, 3, 1, 2).float() / 255.0
        sr, ctrl = model.forward_with_bits(t, bit_index)
        if model.cfg.quantized:
            bi = ctrl.bit_index.tolist() if ctrl is not None else [bit_index] * len(idx)
            tile_bits += [model.bits[b] for b in bi]
        out = sr.permute(0, 2, 3, 1).cpu().numpy()
        for k, i in enumerate(idx):
            st.add(i, out[k])
    res = st.result()
    return np.clip(np.round(res * 255.0), 0, 255).astype(np.uint8), tile_bits


def benchmark_pairs(root: str | os.PathLike[str], name: str, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LR, HR cropped to LR*scale) for a benchmark folder with HR/ and LR_bicubic/X<s>/."""
    d = Path(root) / name
    hr_dir, lr_dir = d / "HR", d / "LR_bicubic" / f"X{scale}"
    if not hr_dir.is_dir() or not lr_dir.is_dir():
        raise DataError(f"'{d}' needs HR/ and LR_bicubic/X{scale}/ (see ../shared/datasets/README.md)")
    out = []
    for hp in list_images(hr_dir):
        lp = lr_dir / hp.name
        if not lp.is_file():
            raise DataError(f"no LR image for '{hp.name}' in '{lr_dir}'")
        lr, hr = read_rgb(lp), read_rgb(hp)
        out.append((hp.stem, lr, hr[: lr.shape[0] * scale, : lr.shape[1] * scale]))
    return out


@dataclass
class EvalResult:
    dataset: str
    model: str
    psnr: float
    ssim: float
    fab: float | None = None
    bitops_g: float | None = None  # mean per image, in 10^9
    tiles_per_bit: dict[int, int] = field(default_factory=dict)
    images: int = 0

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "model": self.model, "psnr": round(self.psnr, 4), "ssim": round(self.ssim, 5),
                "fab": None if self.fab is None else round(self.fab, 4),
                "bitops_g": None if self.bitops_g is None else round(self.bitops_g, 2),
                "tiles_per_bit": {str(k): v for k, v in sorted(self.tiles_per_bit.items())}, "images": self.images}


def evaluate_dataset(
    model: GDQNet | None, pairs: list[tuple[str, np.ndarray, np.ndarray]], dataset: str, scale: int,
    tiles: TileConfig = TileConfig(), label: str = "", bit_index: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> EvalResult:
    """PSNR/SSIM (Y, shave = scale) of a model over (name, LR, HR) pairs; model None = bicubic."""
    ps, ss, fabs, bops = [], [], [], []
    counts: Counter[int] = Counter()
    macs = None
    if model is not None:
        rows = count_macs(model, tiles.tile, tiles.tile)
        macs = [(m, q) for _, m, q in rows]
    for _, lr, hr in pairs:
        if model is None:
            sr = imresize_uint8(lr, scale)
        else:
            sr, tb = upscale_tiled(model, lr, tiles, bit_index=bit_index)
            if model.cfg.quantized:
                fabs.append(fab(tb))
                counts.update(tb)
                bops.append(bitops(macs, tb) / 1e9)
            else:
                n_tiles = len(TilePlan(lr.shape[0], lr.shape[1], tiles.tile, tiles.step, scale))
                bops.append(sum(m for m, _ in macs) * 32 * 32 * n_tiles / 1e9)
        ps.append(psnr_y(sr, hr, scale))
        ss.append(ssim_y(sr, hr, scale))
        if progress:
            progress(1)
    return EvalResult(dataset, label or (model.cfg.name if model else "bicubic"), float(np.mean(ps)), float(np.mean(ss)),
                      float(np.mean(fabs)) if fabs else None, float(np.mean(bops)) if bops else None,
                      dict(counts), len(pairs))
