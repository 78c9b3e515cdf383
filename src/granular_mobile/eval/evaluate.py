"""Benchmark evaluation of PyTorch models (``gdq eval``), tiled by the runtime's Upscaler."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..config import TileConfig
from ..data.imresize import imresize_uint8
from ..metrics import bitops, fab, psnr_y, ssim_y
from ..models import GDQNet, count_macs
from ..runtime import Upscaler
from ..runtime.backends.torch import TorchBackend


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


class LevelBackend:
    """A ``TorchBackend`` whose SR runs one level of the model (an exit level too: the runtime
    names graphs by bits alone until levels reach the manifest); the model's forward, as trained."""

    def __init__(self, model: GDQNet, level: int, tile: int) -> None:
        self._be = TorchBackend.from_models(model, tile=tile)
        self._model, self._level = model, level
        self.bits = (model.cfg.levels[level][0],)

    def __getattr__(self, name: str):
        return getattr(self._be, name)

    def sr(self, tiles: np.ndarray, bits: int | None) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self._model(self._be._t(tiles), self._level).cpu().numpy()


def evaluate_dataset(
    model: GDQNet | None, pairs: list[tuple[str, np.ndarray, np.ndarray]], dataset: str, scale: int,
    tiles: TileConfig = TileConfig(), label: str = "", bit_index: int | None = None,
    progress: Callable[[int], None] | None = None, numerics: str = "float",
) -> EvalResult:
    """PSNR/SSIM (Y, shave = scale) of a model over (name, LR, HR) pairs; model None = bicubic.

    ``numerics="int8"``: the exported graphs' integer numerics (see ``TorchBackend.from_models``).
    ``bit_index``: a level index (``ModelConfig.levels``: a bit index, or an exit level); None: the controller."""
    ps, ss, fabs, bops = [], [], [], []
    counts: Counter[int] = Counter()
    macs = None
    if model is not None:
        depth = model.cfg.levels[bit_index][1] if bit_index is not None and model.cfg.quantized else None
        rows = count_macs(model, tiles.tile, tiles.tile, blocks=depth)  # an exit level: its blocks only
        macs = [(m, q) for _, m, q in rows]
        # the runtime's own tiling, with the paper's protocol: static tiles every `step`
        # pixels, each keeping its central part
        q = model.cfg.quantized
        if bit_index is not None and bit_index >= len(model.bits):  # an exit level (ModelConfig.exits)
            be = LevelBackend(model, bit_index, tiles.tile)
            up = Upscaler(be, bits=be.bits[0], precision="int8", overlap=tiles.overlap, merge=tiles.merge)  # type: ignore[arg-type]
        else:
            up = Upscaler(TorchBackend.from_models(model, tile=tiles.tile, numerics=numerics if q else "float"),
                          bits="auto" if bit_index is None else model.bits[bit_index], precision="int8" if q else "fp32",
                          overlap=tiles.overlap, merge=tiles.merge)
    for _, lr, hr in pairs:
        if model is None:
            sr = imresize_uint8(lr, scale)
        else:
            sr, rep = up(lr)
            tb = rep.tile_bits
            if model.cfg.quantized:
                fabs.append(fab(tb))
                counts.update(tb)
                bops.append(bitops(macs, tb) / 1e9)
            else:
                bops.append(sum(m for m, _ in macs) * 32 * 32 * rep.tiles / 1e9)
        ps.append(psnr_y(sr, hr, scale))
        ss.append(ssim_y(sr, hr, scale))
        if progress:
            progress(1)
    return EvalResult(dataset, label or (model.cfg.name if model else "bicubic"), float(np.mean(ps)), float(np.mean(ss)),
                      float(np.mean(fabs)) if fabs else None, float(np.mean(bops)) if bops else None,
                      dict(counts), len(pairs))
