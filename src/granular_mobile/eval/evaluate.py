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
    tiles_per_level: dict[str, int] = field(default_factory=dict)
    #: the level gate's budget and the tiles' mean cost relative to the full graph, if it ran
    budget: float | None = None
    cost: float | None = None

    def to_dict(self) -> dict:
        d = {"dataset": self.dataset, "model": self.model, "psnr": round(self.psnr, 4), "ssim": round(self.ssim, 5),
             "fab": None if self.fab is None else round(self.fab, 4),
             "bitops_g": None if self.bitops_g is None else round(self.bitops_g, 2),
             "tiles_per_bit": {str(k): v for k, v in sorted(self.tiles_per_bit.items())}, "images": self.images,
             "tiles_per_level": dict(sorted(self.tiles_per_level.items()))}
        if self.budget is not None:
            d.update(budget=self.budget, cost=None if self.cost is None else round(self.cost, 4))
        return d


def evaluate_dataset(
    model: GDQNet | None, pairs: list[tuple[str, np.ndarray, np.ndarray]], dataset: str, scale: int,
    tiles: TileConfig = TileConfig(), label: str = "", bit_index: int | None = None,
    progress: Callable[[int], None] | None = None, numerics: str = "float", budget: float | None = None,
    backend: TorchBackend | None = None,
) -> EvalResult:
    """PSNR/SSIM (Y, shave = scale) of a model over (name, LR, HR) pairs; model None = bicubic.

    ``numerics="int8"``: the exported graphs' integer numerics (see ``TorchBackend.from_models``).
    ``bit_index``: a level index (``ModelConfig.levels``: a bit index, or an exit level); None: the
    controller, at ``budget`` with a level gate. ``backend``: a ``TorchBackend`` of ``model`` to
    reuse (its integer programs are calibrated once)."""
    ps, ss, fabs, bops, costs = [], [], [], [], []
    counts: Counter[int] = Counter()
    per_level: Counter[str] = Counter()
    macs: dict[str, list[tuple[int, bool]]] = {}
    if model is not None:
        q = model.cfg.quantized
        # each level's MACs per tile (an exit level: its blocks only)
        for name, (_, k) in zip(model.cfg.level_names, model.cfg.levels, strict=True) if q else [("fp32", (0, None))]:
            macs[name] = [(m, qq) for _, m, qq in count_macs(model, tiles.tile, tiles.tile, blocks=k)]
        # the runtime's own tiling, with the paper's protocol: static tiles every `step`
        # pixels, each keeping its central part
        be = backend or TorchBackend.from_models(model, tile=tiles.tile, numerics=numerics if q else "float")
        up = Upscaler(be, bits="auto" if bit_index is None else model.cfg.level_names[bit_index],
                      precision="int8" if q else "fp32", overlap=tiles.overlap, merge=tiles.merge, budget=budget)
    for _, lr, hr in pairs:
        if model is None:
            sr = imresize_uint8(lr, scale)
        else:
            sr, rep = up(lr)
            if model.cfg.quantized:
                fabs.append(fab(rep.tile_bits))
                counts.update(rep.tile_bits)
                per_level.update(rep.tile_levels)
                bops.append(sum(bitops(macs[lv], [b]) for lv, b in zip(rep.tile_levels, rep.tile_bits, strict=True)) / 1e9)
                if rep.cost is not None:
                    costs.append(rep.cost * rep.tiles)
            else:
                bops.append(sum(m for m, _ in macs["fp32"]) * 32 * 32 * rep.tiles / 1e9)
        ps.append(psnr_y(sr, hr, scale))
        ss.append(ssim_y(sr, hr, scale))
        if progress:
            progress(1)
    return EvalResult(dataset, label or (model.cfg.name if model else "bicubic"), float(np.mean(ps)), float(np.mean(ss)),
                      float(np.mean(fabs)) if fabs else None, float(np.mean(bops)) if bops else None,
                      dict(counts), len(pairs), dict(per_level), up.budget if model is not None else None,
                      sum(costs) / sum(per_level.values()) if costs else None)
