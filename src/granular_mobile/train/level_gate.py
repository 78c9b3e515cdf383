"""Fit the level gate to measured per-tile gains and measured cost (``gdq fit-gate --levels``).

The levels that buy time are exits after fewer residual blocks (docs/TIME.md): what a tile
gains from a dearer level is measured, not learned through a bit budget. Every tile of the
training images runs at each choice with the deployed integer numerics; a ridge regression on
the GBC features and the tile entropy (``GDQNet.level_features``) predicts each choice's gain
over the cheapest in its image's PSNR (dB, to first order: a tile's error drop times d PSNR /
d error of its image). The regression is linear, so it is the gate: its coefficients become
``GDQNet.level_gate``. The runtime spends a time budget with it (``runtime/budget.py``).

The report compares, on the measured tiles, 5-fold cross-validated over images, the gate's
allocation at several budgets with the best static mix of levels at the same mean cost and
with the oracle (the same allocation on the measured gains), each the exact mean over images
of their PSNR: with merge "center" a tile's output does not depend on its neighbours' levels,
so an allocation's image is a composite of the static-level images.
"""
from __future__ import annotations

import dataclasses
import json
import math
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import LevelGateConfig, TileConfig
from ..data.dataset import bicubic_pair
from ..errors import ConfigError, DataError
from ..metrics import best_static_mix
from ..models import GDQNet, build_from_config
from ..models.base import count_macs
from ..runtime import Upscaler
from ..runtime.backends.torch import TorchBackend
from ..runtime.budget import allocate
from ..runtime.tiler import TilePlan, extract_tiles
from .gate_fit import FOLDS, fingerprint, image_weights, ridge_fit, tile_errors

#: the budgets the fit's report compares at (mean cost per tile, relative to the full graph)
REPORT_BUDGETS: tuple[float, ...] = (0.4, 0.5, 0.55, 0.6, 0.7, 0.85, 1.0)


@dataclass
class LevelGains:
    """Per training tile: the level gate's input (``GDQNet.level_features``), its image, and the
    squared Y error of the output pixels it owns at each choice; per image its pixel count."""

    feat: np.ndarray  # (N, F) float32
    img: np.ndarray  # (N,) int
    se: np.ndarray  # (N, L) float64
    npix: np.ndarray  # (images,) pixels of each image's PSNR (shave removed)
    choices: tuple[str, ...]
    tiles: TileConfig
    model: str  # fingerprint() of the model measured

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, feat=self.feat, img=self.img, se=self.se, npix=self.npix, choices=np.array(self.choices),
                     tile=self.tiles.tile, step=self.tiles.step, model=self.model)

    @classmethod
    def load(cls, path: str | Path) -> LevelGains:
        try:
            with np.load(path) as d:
                return cls(d["feat"], d["img"], d["se"], d["npix"], tuple(str(c) for c in d["choices"]),
                           TileConfig(int(d["tile"]), int(d["step"])), str(d["model"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise DataError(f"'{path}' is not a level measurement of gdq fit-gate --levels ({e}); remove it to "
                            "measure again") from None

    def subset(self, choices: Sequence[str]) -> LevelGains:
        """The measurements of some of the choices (columns), in the given order."""
        missing = [c for c in choices if c not in self.choices]
        if missing:
            raise DataError(f"the measurements have no {missing} (measured: {list(self.choices)}); measure again")
        cols = [self.choices.index(c) for c in choices]
        return dataclasses.replace(self, se=self.se[:, cols], choices=tuple(choices))

    def psnr(self, choice: np.ndarray) -> float:
        """Mean over images of each image's PSNR (Y, dB) with tile i at ``choice[i]``."""
        se = self.se[np.arange(len(self.se)), choice]
        return float(np.mean([10 * math.log10(255.0**2 * self.npix[j] / max(float(se[self.img == j].sum()), 1e-12))
                              for j in np.unique(self.img)]))


def measure_level_gains(model: GDQNet, images: Sequence[np.ndarray], choices: Sequence[str],
                        tiles: TileConfig | None = None, advance: Callable[[], None] = lambda: None) -> LevelGains:
    """Run every HR image (8-bit RGB, downscaled like the benchmark sets' LR) at each choice with
    the deployed integer numerics; record the per-tile errors and the gate's features."""
    s = model.cfg.scale
    return measure_pairs(model, (bicubic_pair(im, s)[::-1] for im in images), choices, tiles, advance)


@torch.no_grad()
def measure_pairs(model: GDQNet, pairs: Iterable[tuple[np.ndarray, np.ndarray]], choices: Sequence[str],
                  tiles: TileConfig | None = None, advance: Callable[[], None] = lambda: None) -> LevelGains:
    """``measure_level_gains`` on (LR, HR) pairs, e.g. a benchmark set's."""
    tc = tiles or TileConfig()
    if tc.merge != "center":
        raise ConfigError(f"merge '{tc.merge}': per-tile errors need merge 'center' (each output pixel from one tile)")
    for c in choices:
        model.cfg.level_by_name(c)
    model.eval()
    s = model.cfg.scale
    be = TorchBackend.from_models(model, tile=tc.tile, numerics="int8")
    static = {c: Upscaler(be, bits=c, overlap=tc.overlap, merge=tc.merge) for c in choices}
    feats: list[np.ndarray] = []
    ses: list[np.ndarray] = []
    img: list[int] = []
    npix: list[int] = []
    for lr, hr in pairs:
        advance()
        if min(lr.shape[:2]) < tc.tile:
            continue
        plan = TilePlan(lr.shape[0], lr.shape[1], tc.tile, tc.step, s, tc.merge)
        x = torch.from_numpy(extract_tiles(lr, plan)).permute(0, 3, 1, 2).float() / 255
        feats.append(model.level_features(x).numpy())
        ses.append(np.array([tile_errors(static[c](lr)[0], hr, plan, s) for c in choices]).T)
        img += [len(npix)] * len(plan)
        npix.append((hr.shape[0] - 2 * s) * (hr.shape[1] - 2 * s))
    if not feats:
        raise DataError(f"no image is at least {tc.tile * s} px on its short side for {tc.tile}-px LR tiles")
    return LevelGains(np.concatenate(feats), np.array(img), np.concatenate(ses), np.array(npix, np.float64),
                      tuple(choices), tc, fingerprint(model))


def level_costs(model: GDQNet, choices: Sequence[str], tile: int, cost_json: str | Path | None = None
                ) -> tuple[tuple[float, ...], str]:
    """Each choice's time per tile relative to the full-depth graph, and where it came from.

    From ``bench/level_cost.py``'s JSON (measured): the full-depth graphs without u8u8 convs have
    equal MACs and the same kernels, so their spread is the run's noise: each costs 1.0, and
    their median time is the reference of every other level's measured time (an exit level; a
    graph on onnxruntime's slower u8u8 kernels). Without one: MACs relative to the full depth
    (time follows MACs, docs/TIME.md)."""
    cfg = model.cfg
    if cost_json is None:
        full = sum(m for _, m, _ in count_macs(model, tile, tile))
        by_macs = []
        for c in choices:
            k = cfg.levels[cfg.level_by_name(c)][1]
            by_macs.append(round(sum(m for _, m, _ in count_macs(model, tile, tile, blocks=k)) / full, 4))
        return tuple(by_macs), "macs"
    try:
        d = json.loads(Path(cost_json).read_text())
        lv = d["levels"]
        plain = {n for n, v in lv.items() if v["blocks"] == cfg.n_blocks and not v.get("u8u8_convs")}
        ref = float(np.median([lv[n]["ms_per_tile"] for n in plain]))
        missing = [c for c in choices if c not in lv]
        if missing:
            raise DataError(f"``cost_json`` {cost_json} has no time for {missing} (it has {sorted(lv)}); measure them with "
                            "bench/level_cost.py")
        costs = tuple(1.0 if c in plain else round(lv[c]["ms_per_tile"] / ref, 4) for c in choices)
        return costs, f"{Path(cost_json).name}: {d['command']}"
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"``cost_json`` {cost_json} is not a bench/level_cost.py JSON ({e})") from None


def image_gains(g: LevelGains) -> np.ndarray:
    """(N, L): each choice's gain over the first in its image's PSNR, to first order (dB)."""
    return (g.se[:, :1] - g.se) * image_weights(g.img, g.se[:, 0])[:, None]


def allocate_per_image(g: LevelGains, scores: np.ndarray, costs: Sequence[float], budget: float) -> np.ndarray:
    """Each image's tiles allocated on its own (as the runtime does)."""
    out = np.zeros(len(scores), np.int64)
    for j in np.unique(g.img):
        sel = g.img == j
        out[sel] = allocate(scores[sel], costs, budget)
    return out


def compare_at_budgets(g: LevelGains, scores: np.ndarray, costs: Sequence[float],
                       budgets: Sequence[float] = REPORT_BUDGETS) -> list[dict[str, float]]:
    """Per budget: the allocation by ``scores`` (PSNR, mean cost), the best static mix at that
    cost and the oracle (by the measured gains), each the mean over images of the exact PSNR."""
    c = np.asarray(costs)
    static = [(float(c[i]), g.psnr(np.full(len(g.se), i))) for i in range(len(c))]
    oracle_scores = image_gains(g)
    rows = []
    for b in budgets:
        if b < c.min():
            continue
        ch = allocate_per_image(g, scores, costs, b)
        cost = float(c[ch].mean())
        orc = allocate_per_image(g, oracle_scores, costs, b)
        rows.append({"budget": b, "cost": round(cost, 4), "psnr": round(g.psnr(ch), 4),
                     "static_mix_psnr": round(best_static_mix(static, min(max(cost, c.min()), c.max())), 4),
                     "oracle_psnr": round(g.psnr(orc), 4), "oracle_cost": round(float(c[orc].mean()), 4)})
    return rows


def fit_level_gate(model: GDQNet, gains: LevelGains, costs: Sequence[float], budget: float, ridge: float = 100.0,
                   cost_source: str = "macs", folds: int = FOLDS) -> tuple[GDQNet, dict[str, Any]]:
    """A copy of ``model`` with a level gate over ``gains.choices`` (the regression's weights,
    ``costs``, default ``budget``), and a report: the cross-validated comparison at
    ``REPORT_BUDGETS`` and at ``budget``."""
    if not model.cfg.quantized:
        raise ConfigError("a full-precision model has no controller to fit")
    if gains.model != fingerprint(model):
        raise DataError("the level measurements are of another network; measure this model's tiles (another ``cache``)")
    if not ridge > 0:
        raise ConfigError(f"``ridge`` {ridge} must be > 0 (the GBC features are collinear)")
    gate = LevelGateConfig(gains.choices, tuple(costs), budget, cost_source)  # validates costs and budget
    images = np.unique(gains.img)
    if len(images) < folds:
        raise DataError(f"{len(images)} measured images: the fit needs at least {folds} (one per cross-validation fold)")
    y = image_gains(gains)
    mu, sd = gains.feat.mean(0), gains.feat.std(0) + 1e-9
    x = (gains.feat - mu) / sd
    fold = np.searchsorted(images, gains.img) % folds
    pred = np.zeros_like(y)
    for k in range(folds):
        tr, te = fold != k, fold == k
        pred[te] = np.hstack([x[te], np.ones((int(te.sum()), 1))]) @ ridge_fit(x[tr], y[tr], ridge)
    budgets = sorted({*REPORT_BUDGETS, budget})
    cv = compare_at_budgets(gains, pred, costs, budgets)

    coef = ridge_fit(x, y, ridge)  # (F + 1, L) on standardised features
    w = coef[:-1].T / sd  # (L, F) on the raw features
    b = coef[-1] - (coef[:-1] * (mu / sd)[:, None]).sum(0)
    new = build_from_config(dataclasses.replace(model.cfg, level_gate=gate))
    # a gated model refits: its old gate (maybe of other choices) is not loaded
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("level_gate.")}
    missing, unexpected = new.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("level_gate.") for k in missing), (missing, unexpected)
    with torch.no_grad():
        new.level_gate.weight.copy_(torch.from_numpy(w))
        new.level_gate.bias.copy_(torch.from_numpy(b))
    new.eval()
    report = {"tiles": len(y), "images": len(images), "choices": list(gains.choices), "costs": list(costs),
              "cost_source": cost_source, "budget": budget, "ridge": ridge, "folds": folds,
              "static_psnr": {c: round(gains.psnr(np.full(len(y), i)), 4) for i, c in enumerate(gains.choices)},
              "cv": cv}
    return new, report


__all__ = ["REPORT_BUDGETS", "LevelGains", "allocate_per_image", "compare_at_budgets", "fit_level_gate", "image_gains",
           "level_costs", "measure_level_gains", "measure_pairs"]
