"""How much a per-tile bit controller could gain: the controller's allocation, the best static
mix of levels, and the oracle allocation (each tile's level chosen knowing its error at every
level) at the same average bits, with the deployed (integer) numerics, on a benchmark set.

With the paper's protocol (tiles every ``step`` pixels, each output pixel from one tile) a
tile's SR does not depend on its neighbours' levels, so any allocation's image is the
composite of the static-level images; this script runs every static level once and scores
allocations exactly from per-tile squared errors (Y, shave = scale, as ``gdq eval``).

The oracle maximises the mean PSNR over images for a bit budget (Lagrangian on each tile's
error reduction per extra bit); it is an upper bound that no controller reading the LR tile
reaches (it also exploits chance: which tiles happen to gain). ``--feature-rank`` reports how
well a simple LR feature (mean absolute luminance gradient, the kind of signal E2B's entropy
is) ranks tiles by their 4 -> 8-bit gain (Spearman).

    python experiments/tile_allocation.py -m default --data Set14 --json docs/tile_allocation_set14.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from granular_mobile.checkpoint import load_model
from granular_mobile.config import TileConfig
from granular_mobile.defaults import bench_root
from granular_mobile.eval import benchmark_pairs
from granular_mobile.metrics import best_static_mix, psnr_y, rgb_to_y
from granular_mobile.runtime import Upscaler
from granular_mobile.runtime.backends.torch import TorchBackend
from granular_mobile.runtime.tiler import TilePlan
from granular_mobile.train.gate_fit import tile_errors


def score(recs: list[dict], alloc: list[list[int]]) -> tuple[float, float]:
    """(mean Y-PSNR over images, FAB) of an allocation (a level per tile of each image)."""
    ps, fabs = [], []
    for r, a in zip(recs, alloc, strict=True):
        se = sum(r["se"][str(b)][i] for i, b in enumerate(a))
        ps.append(10 * np.log10(255.0**2 * r["npix"] / max(se, 1e-12)))
        fabs.append(float(np.mean(a)))
    return float(np.mean(ps)), float(np.mean(fabs))


def oracle_points(recs: list[dict], levels: list[int]) -> list[tuple[float, float]]:
    """(FAB, PSNR) of oracle allocations over a sweep of the price of a bit."""
    pts = []
    for lam in np.geomspace(1e-7, 1.0, 300):
        alloc = []
        for r in recs:
            w = 10 / np.log(10) / sum(r["se"][str(levels[0])])  # d PSNR / d SE of the image, at the lowest level
            alloc.append([levels[int(np.argmax([w * (r["se"][str(levels[0])][i] - r["se"][str(b)][i]) - lam * (b - levels[0])
                                               for b in levels]))] for i in range(len(r["bits"]))])
        p, f = score(recs, alloc)
        pts.append((f, p))
    return pts


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--data", default="Set14")
    ap.add_argument("--root", default=bench_root(), help="benchmark root (GDQ_BENCH_ROOT)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = load_model(a.model)
    if not m.cfg.quantized:
        raise SystemExit(f"{a.model}: not a Granular-DQ model")
    tiles = TileConfig()
    be = TorchBackend.from_models(m, tile=tiles.tile, numerics="int8")
    s, levels = m.cfg.scale, list(m.bits)
    static = {b: Upscaler(be, bits=b, overlap=tiles.overlap, merge=tiles.merge) for b in levels}
    auto = Upscaler(be, bits="auto", overlap=tiles.overlap, merge=tiles.merge)
    recs = []
    for name, lr, hr in benchmark_pairs(a.root, a.data, s):
        plan = TilePlan(lr.shape[0], lr.shape[1], tiles.tile, tiles.step, s, tiles.merge)
        sr_auto, rep = auto(lr)
        r = {"image": name, "bits": [int(b) for b in rep.tile_bits], "npix": (hr.shape[0] - 2 * s) * (hr.shape[1] - 2 * s),
             "psnr_auto": psnr_y(sr_auto, hr, s),
             "se": {str(b): tile_errors(static[b](lr)[0], hr, plan, s) for b in levels}}
        ly = rgb_to_y(lr).astype(np.float64)
        r["lr_gradient"] = [float(np.abs(np.diff(t, axis=0)).mean() + np.abs(np.diff(t, axis=1)).mean())
                            for t in (ly[py:py + tiles.tile, px:px + tiles.tile] for py, px in plan.positions)]
        recs.append(r)
        print(f"{name}: {len(plan)} tiles", flush=True)
    stat = {b: score(recs, [[b] * len(r["bits"]) for r in recs]) for b in levels}
    hull_pts = [(f, p) for p, f in stat.values()]
    ctrl_psnr, ctrl_fab = score(recs, [r["bits"] for r in recs])
    # the composite is exact: the controller's allocation scores what the dynamic run computed
    measured = float(np.mean([r["psnr_auto"] for r in recs]))
    if abs(measured - ctrl_psnr) > 1e-3:
        raise SystemExit(f"composite {ctrl_psnr:.4f} dB != dynamic run {measured:.4f} dB: the per-tile scoring is off")
    orc = oracle_points(recs, levels)
    lo, hi = str(levels[0]), str(levels[-1])
    gains = [(r["se"][lo][i] - r["se"][hi][i]) / sum(r["se"][lo]) for r in recs for i in range(len(r["bits"]))]
    out = {
        "model": a.model, "data": a.data, "tiles": sum(len(r["bits"]) for r in recs),
        "static": {str(b): {"psnr": p, "fab": f} for b, (p, f) in stat.items()},
        "controller": {"psnr": ctrl_psnr, "fab": ctrl_fab, "vs_static_mix_db": ctrl_psnr - best_static_mix(hull_pts, ctrl_fab)},
        "oracle_at_controller_fab": {"psnr": best_static_mix(orc, ctrl_fab),
                                     "vs_static_mix_db": best_static_mix(orc, ctrl_fab) - best_static_mix(hull_pts, ctrl_fab)},
        "oracle_vs_static_mix_db": {f"{f:.2f}": best_static_mix(orc, f) - best_static_mix(hull_pts, f) for f in (4.25, 4.5, 5.0, 6.0)},
        "spearman_lr_gradient_vs_gain": spearman([g for r in recs for g in r["lr_gradient"]], gains),
    }
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
