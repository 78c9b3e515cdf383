"""Fit the GBC gate to measured per-tile gains (``gdq fit-gate``).

Why: trained end to end (Gumbel samples under a bit budget), the gate learns which tiles the
*training loss* wants at more bits, not which tiles gain most in PSNR per extra bit, and the
deployed controller ended up no better than a static mix of levels at the same average bits
(``experiments/fab_curve.py``). Here the gain is measured instead: every training tile runs at each
level the gate can pick, with the deployed integer numerics, and a ridge regression on the
gate's own input features (``GBC.features``) predicts how much each choice above the first adds
to its image's PSNR. That regression is linear in those features, so it *is* a gate: its
coefficients become the gate's weights, and ``calibrate_gate`` then sets the operating point.

A tile's gain is weighted by its image (d PSNR / d squared error at the lowest choice), because
the figure that matters is the PSNR averaged over images: a tile's error counts by its share of
its own image's error.
"""
from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..config import QuantConfig, TileConfig
from ..controller.gbc import GBC
from ..data.dataset import bicubic_pair
from ..errors import ConfigError, DataError
from ..metrics import best_static_mix, rgb_to_y
from ..models import GDQNet, build_from_config
from ..runtime import Upscaler
from ..runtime.backends.torch import TorchBackend
from ..runtime.tiler import TilePlan, extract_tiles

#: cross-validation folds (over images) of the fit's report
FOLDS = 5


@dataclass(frozen=True)
class GateFitConfig:
    """What the fitted gate can choose and how it is fitted.

    ``gbc_bits`` / ``e2b_bits``: the gate's three choices (``QuantConfig``); ``e2b_bits=None``
    makes choice 2 always ``gbc_bits[2]`` (E2B's entropy then plays no part). ``ridge``: the
    L2 penalty on the standardised features' coefficients.
    """

    gbc_bits: tuple[int, int, int] = (4, 5, 6)
    e2b_bits: tuple[int, int, int] | None = None
    ridge: float = 100.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "gbc_bits", tuple(int(b) for b in self.gbc_bits))
        if self.e2b_bits is not None:
            object.__setattr__(self, "e2b_bits", tuple(int(b) for b in self.e2b_bits))
        if len(self.gbc_bits) != 3:
            raise ConfigError(f"gate choices {list(self.gbc_bits)}: the GBC gate has exactly 3 choices")
        if self.e2b_bits is not None and len(self.e2b_bits) != 3:
            raise ConfigError(f"E2B bits {list(self.e2b_bits)}: E2B has exactly 3 choices")
        if not self.gbc_bits[0] < self.gbc_bits[1] < self.gbc_bits[2]:
            # calibrate_gate's shift t * (0, 1, 2) must raise the bits as t grows
            raise ConfigError(f"gate choices {list(self.gbc_bits)} must be increasing (lowest first)")
        if not self.ridge > 0:
            # the gate's features are collinear (GroupNorm's per-group means), so the fit needs a penalty
            raise ConfigError(f"ridge={self.ridge} must be > 0")

    def quant(self, q: QuantConfig) -> QuantConfig:
        """The model's bit set with these choices (validated against it)."""
        e2b = self.e2b_bits if self.e2b_bits is not None else (self.gbc_bits[2],) * 3
        return dataclasses.replace(q, gbc_bits=self.gbc_bits, e2b_bits=e2b)

    def to_dict(self) -> dict[str, Any]:
        return {"gbc_bits": list(self.gbc_bits), "e2b_bits": None if self.e2b_bits is None else list(self.e2b_bits),
                "ridge": self.ridge}


@dataclass
class TileGains:
    """Per training tile: the gate's input features, E2B entropy, image index, and the squared
    Y error (shave = scale) of the output pixels the tile owns at each measured level."""

    feat: np.ndarray  # (N, F) float32
    entropy: np.ndarray  # (N,)
    img: np.ndarray  # (N,) int
    se: np.ndarray  # (N, len(levels)) float64
    levels: tuple[int, ...]  # increasing
    tiles: TileConfig
    model: str  # fingerprint() of the model measured

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:  # np.savez(path) would append ".npz" to a path without it
            np.savez(f, feat=self.feat, ent=self.entropy, img=self.img, se=self.se, levels=np.array(self.levels),
                     tile=self.tiles.tile, step=self.tiles.step, model=self.model)

    @classmethod
    def load(cls, path: str | Path) -> TileGains:
        try:
            with np.load(path) as d:
                return cls(d["feat"], d["ent"], d["img"], d["se"], tuple(int(b) for b in d["levels"]),
                           TileConfig(int(d["tile"]), int(d["step"])), str(d["model"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise DataError(f"'{path}' is not a tile measurement of gdq fit-gate ({e}); remove it to measure again") from None

    def column(self, bit: int) -> np.ndarray:
        if bit not in self.levels:
            raise DataError(f"the tile measurements have no {bit}-bit column (measured: {list(self.levels)}); measure again")
        return self.se[:, self.levels.index(bit)]


def fingerprint(model: GDQNet) -> str:
    """SHA-256 of the model's tensors except the gate's linear layer: what a tile measurement
    depends on (the features and every level's output), so a fitted model can be refitted from
    the measurements of the model it came from."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        if not k.startswith(("encoder.gbc.gate.", "level_gate.")):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def tile_errors(sr: np.ndarray, hr: np.ndarray, plan: TilePlan, shave: int) -> list[float]:
    """Sum of squared Y errors of the output pixels each tile owns (merge "center"): with the
    paper's protocol a tile's SR does not depend on its neighbours' levels, so any per-tile
    allocation's image is a composite of static-level images and its error is a sum of these."""
    e = (rgb_to_y(sr).astype(np.float64) - rgb_to_y(hr).astype(np.float64)) ** 2
    keep = np.zeros_like(e)
    keep[shave:e.shape[0] - shave, shave:e.shape[1] - shave] = 1.0
    e *= keep
    s, t = plan.scale, plan.tile * plan.scale
    out = []
    for (py, px), w in zip(plan.positions, plan.weights(), strict=True):
        reg = e[py * s:py * s + t, px * s:px * s + t]
        out.append(float((reg * w[:reg.shape[0], :reg.shape[1]]).sum()))
    return out


@torch.no_grad()
def measure_tile_gains(model: GDQNet, images: Sequence[np.ndarray], levels: Sequence[int],
                       tiles: TileConfig | None = None, advance: Callable[[], None] = lambda: None) -> TileGains:
    """Run every HR image (8-bit RGB, downscaled here like the benchmark sets' LR) at each of
    ``levels`` with the deployed integer numerics and record the per-tile errors and features."""
    tc = tiles or TileConfig()
    if tc.merge != "center":
        raise ConfigError(f"merge '{tc.merge}': per-tile errors need merge 'center' (each output pixel from one tile)")
    levels = sorted(set(levels))
    for b in levels:
        model.cfg.quant.index(b)
    model.eval()
    s = model.cfg.scale
    be = TorchBackend.from_models(model, tile=tc.tile, numerics="int8")
    static = {b: Upscaler(be, bits=b, overlap=tc.overlap, merge=tc.merge) for b in levels}
    feats, ents, ses, img = [], [], [], []
    for k, im in enumerate(images):
        advance()
        hr, lr = bicubic_pair(im, s)
        if min(lr.shape[:2]) < tc.tile:
            continue
        plan = TilePlan(lr.shape[0], lr.shape[1], tc.tile, tc.step, s, tc.merge)
        x = torch.from_numpy(extract_tiles(lr, plan)).permute(0, 3, 1, 2).float() / 255
        feats.append(_gbc(model).features(model.head_conv(x * model.cfg.rgb_range)).numpy())
        ents.append(model.e2b.entropy(x).numpy())
        ses.append(np.array([tile_errors(static[b](lr)[0], hr, plan, s) for b in levels]).T)
        img += [k] * len(plan)
    if not feats:
        raise DataError(f"no image is at least {tc.tile * s} px on its short side for {tc.tile}-px LR tiles")
    return TileGains(np.concatenate(feats), np.concatenate(ents), np.array(img), np.concatenate(ses), tuple(levels), tc, fingerprint(model))


def _gbc(model: GDQNet) -> GBC:
    """The model's GBC (its encoder's attributes are untyped modules)."""
    return cast(GBC, model.encoder.gbc)


def choice_levels(quant: QuantConfig, model: GDQNet, entropy: np.ndarray) -> np.ndarray:
    """(N, 3) bit-width of each gate choice per tile (choice 2 follows E2B's entropy level)."""
    lvl = model.e2b.level(torch.from_numpy(entropy)).numpy()
    return np.stack([np.full(len(entropy), quant.gbc_bits[0]), np.full(len(entropy), quant.gbc_bits[1]),
                     np.array(quant.e2b_bits)[lvl]], 1)


def _level_se(g: TileGains, bits: np.ndarray) -> np.ndarray:
    """Squared error of each tile at the bit-width ``bits`` gives it (same shape as ``bits``)."""
    col = np.searchsorted(g.levels, bits)  # levels are increasing (measure_tile_gains sorts them)
    return g.se[np.arange(len(g.se)).reshape(-1, *([1] * (bits.ndim - 1))), col]


def image_weights(img: np.ndarray, se_ref: np.ndarray) -> np.ndarray:
    """d PSNR / d squared error of each tile's image (dB), at the reference errors ``se_ref``:
    a tile's error drop times this is its image's PSNR gain, to first order."""
    w = np.zeros(len(img))
    for j in np.unique(img):
        w[img == j] = 10 / np.log(10) / max(float(se_ref[img == j].sum()), 1e-12)
    return w


def _gains(g: TileGains, bits: np.ndarray) -> np.ndarray:
    """(N, 2): each tile's gain in its image's PSNR at choices 1 and 2 over choice 0."""
    se = _level_se(g, bits)
    return (se[:, :1] - se[:, 1:]) * image_weights(g.img, se[:, 0])[:, None]


def ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Coefficients (F + 1, K) on standardised features plus an unpenalised intercept."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    reg = np.diag([1.0] * x.shape[1] + [0.0])
    return np.linalg.solve(xa.T @ xa + ridge * reg, xa.T @ y)


def _vs_static_mix(g: TileGains, bits: np.ndarray, logits: np.ndarray, target_fab: float) -> tuple[float, float]:
    """(dB over the best static mix of the measured levels, FAB) where the argmax of ``logits`` +
    t * (0, 1, 2) comes closest to ``target_fab`` over a sweep of t; PSNRs are image means, to
    first order, against every tile at the lowest measured level."""
    images = np.unique(g.img)
    w0 = image_weights(g.img, g.se[:, 0])

    def psnr_gain(se: np.ndarray) -> float:
        d = (g.se[:, 0] - se) * w0
        return float(np.mean([d[g.img == j].sum() for j in images]))

    lg = logits - logits[:, :1]
    lg = lg / (lg.std() or 1.0)  # the sweep's range of t is for logits of spread 1, whatever the gains' size
    static = [(float(b), psnr_gain(g.se[:, i])) for i, b in enumerate(g.levels)]
    best = (float("inf"), 0.0)
    for t in np.concatenate([-np.geomspace(1e-3, 1e2, 300), [0.0], np.geomspace(1e-3, 1e2, 300)]):
        chosen = bits[np.arange(len(bits)), np.argmax(lg + t * np.array([0.0, 1.0, 2.0]), 1)]
        fab = float(chosen.mean())
        if abs(fab - target_fab) < abs(best[0] - target_fab):
            best = (fab, psnr_gain(_level_se(g, chosen)))
    return best[1] - best_static_mix(static, best[0]), best[0]


def fit_gate(model: GDQNet, gains: TileGains, cfg: GateFitConfig, target_fab: float,
             folds: int = FOLDS) -> tuple[GDQNet, dict[str, Any]]:
    """A copy of ``model`` whose gate has ``cfg``'s choices and the regression's weights (not yet
    calibrated: ``calibrate_gate`` sets the operating point), and a report: tiles, images, and
    the ``folds``-fold cross-validated (over images) gain over the best static mix of the
    measured levels near ``target_fab`` on these tiles, next to the trained gate's."""
    if not model.cfg.quantized:
        raise ConfigError("a full-precision model has no gate to fit")
    quant = cfg.quant(model.cfg.quant)
    if gains.model != fingerprint(model):
        raise DataError("the tile measurements are of another network (the gate aside); measure this model's tiles "
                        "(another ``cache``)")
    for b in {*quant.gbc_bits, *quant.e2b_bits}:
        gains.column(b)
    images = np.unique(gains.img)
    if len(images) < folds:
        raise DataError(f"{len(images)} measured images: the fit needs at least {folds} (one per cross-validation fold)")
    bits = choice_levels(quant, model, gains.entropy)
    y = _gains(gains, bits)
    mu, sd = gains.feat.mean(0), gains.feat.std(0) + 1e-9
    x = (gains.feat - mu) / sd

    fold = np.searchsorted(images, gains.img) % folds
    pred = np.zeros_like(y)
    for k in range(folds):
        tr, te = fold != k, fold == k
        pred[te] = np.hstack([x[te], np.ones((int(te.sum()), 1))]) @ ridge_fit(x[tr], y[tr], cfg.ridge)
    cv, cv_fab = _vs_static_mix(gains, bits, np.hstack([np.zeros((len(y), 1)), pred]), target_fab)

    coef = ridge_fit(x, y, cfg.ridge)
    # logits in units of the predictions' spread, so calibrate_gate's grid of shifts (steps of
    # 0.01) resolves the operating point whatever the size of the gains
    scale = float((np.hstack([x, np.ones((len(x), 1))]) @ coef).std()) or 1.0
    w = coef[:-1].T / sd / scale  # (2, F) on the raw features
    b = (coef[-1] - (coef[:-1] * (mu / sd)[:, None]).sum(0)) / scale

    new = build_from_config(dataclasses.replace(model.cfg, quant=quant))
    new.load_state_dict(model.state_dict())
    gate = cast(torch.nn.Linear, _gbc(new).gate[0])
    with torch.no_grad():
        trained = _gbc(model).gate(torch.from_numpy(gains.feat).float()).numpy()
        gate.weight.zero_()
        gate.bias.zero_()
        gate.weight[1:] = torch.from_numpy(w).to(gate.weight)
        gate.bias[1:] = torch.from_numpy(b).to(gate.bias)
    old_bits = choice_levels(model.cfg.quant, model, gains.entropy)
    trained_cv = (_vs_static_mix(gains, old_bits, trained, target_fab)
                  if all(bb in gains.levels for bb in {*model.cfg.quant.gbc_bits, *model.cfg.quant.e2b_bits}) else None)
    report = {"tiles": len(y), "images": len(images), "levels": list(gains.levels), **cfg.to_dict(),
              "target_fab": target_fab, "cv_vs_static_mix_db": cv, "cv_fab": cv_fab,
              "trained_gate_vs_static_mix_db": None if trained_cv is None else trained_cv[0],
              "trained_gate_fab": None if trained_cv is None else trained_cv[1]}
    return new, report


__all__ = ["FOLDS", "GateFitConfig", "TileGains", "choice_levels", "fingerprint", "fit_gate", "image_weights",
           "measure_tile_gains", "ridge_fit", "tile_errors"]
