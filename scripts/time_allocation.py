"""What levels that differ in time could buy: every static level, the best static mix and the
oracle per-tile allocation, on a time axis (each level's measured cost per tile), with the
deployed integer numerics, on a benchmark set.

A level is a (bits, blocks) pair of the model (``ModelConfig.levels``: its bit levels and any
exit levels trained with ``gdq quantize --tune-level B --blocks K``). Its cost is its graph's
measured time per tile relative to a reference level, read from ``bench/level_cost.py``'s JSON
(``--cost``). With the paper's protocol (merge "center") a tile's SR does not depend on its
neighbours' levels, so any allocation's image is a composite of the static-level images and is
scored exactly from per-tile squared errors (Y, shave = scale, as ``gdq eval``).

The oracle maximises the mean PSNR over images for a time budget (Lagrangian on each tile's
error reduction per unit of time); no controller that reads only the LR tile reaches it.

    python scripts/time_allocation.py -m runs/exit_6k4/best.pt --data Set14 \\
        --cost docs/level_cost_onnx.json --json docs/time_allocation_set14.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from granular_mobile.checkpoint import load_model
from granular_mobile.config import TileConfig, level_name
from granular_mobile.defaults import bench_root
from granular_mobile.eval import benchmark_pairs
from granular_mobile.eval.evaluate import LevelBackend
from granular_mobile.metrics import best_static_mix
from granular_mobile.runtime import Upscaler
from granular_mobile.runtime.tiler import TilePlan
from granular_mobile.train.gate_fit import tile_errors


def score(recs: list[dict], alloc: list[list[str]], cost: dict[str, float]) -> tuple[float, float]:
    """(mean Y-PSNR over images, mean time per tile relative to the reference) of an allocation."""
    ps, times = [], []
    for r, a in zip(recs, alloc, strict=True):
        se = sum(r["se"][lv][i] for i, lv in enumerate(a))
        ps.append(10 * np.log10(255.0**2 * r["npix"] / max(se, 1e-12)))
        times += [cost[lv] for lv in a]
    return float(np.mean(ps)), float(np.mean(times))


def oracle_points(recs: list[dict], levels: list[str], cost: dict[str, float]) -> list[tuple[float, float]]:
    """(time, PSNR) of oracle allocations over a sweep of the price of time."""
    cheap = min(levels, key=lambda lv: cost[lv])
    pts = []
    for lam in np.geomspace(1e-6, 10.0, 400):
        alloc = []
        for r in recs:
            w = 10 / np.log(10) / sum(r["se"][cheap])  # d PSNR / d SE of the image, at the cheapest level
            n = len(r["se"][cheap])
            alloc.append([max(levels, key=lambda lv, i=i: w * (r["se"][cheap][i] - r["se"][lv][i]) - lam * cost[lv])
                          for i in range(n)])
        p, t = score(recs, alloc, cost)
        pts.append((t, p))
    return pts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--data", default="Set14")
    ap.add_argument("--root", default=bench_root(), help="benchmark root (GDQ_BENCH_ROOT)")
    ap.add_argument("--cost", type=Path, required=True, help="bench/level_cost.py's JSON (ms per tile per level)")
    ap.add_argument("--budgets", default="0.4,0.5,0.55,0.7,0.85,1.0", help="time budgets (relative to the reference)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = load_model(a.model).eval()
    nb = m.cfg.n_blocks
    measured = json.loads(a.cost.read_text())["levels"]
    names = {level_name(b, k, nb): i for i, (b, k) in enumerate(m.cfg.levels)}
    missing = sorted(set(names) - set(measured))
    if missing:
        raise SystemExit(f"{a.cost} has no cost for the levels {missing}; run bench/level_cost.py with them")
    ref = min(names, key=lambda n: (-m.cfg.levels[names[n]][1], m.cfg.levels[names[n]][0]))  # full depth, fewest bits
    cost = {n: measured[n]["ms_per_tile"] / measured[ref]["ms_per_tile"] for n in names}
    tiles = TileConfig()
    s = m.cfg.scale
    static = {n: Upscaler(LevelBackend(m, i, tiles.tile), bits=m.cfg.levels[i][0], precision="int8",  # type: ignore[arg-type]
                          overlap=tiles.overlap, merge=tiles.merge) for n, i in names.items()}
    recs = []
    for name, lr, hr in benchmark_pairs(a.root, a.data, s):
        plan = TilePlan(lr.shape[0], lr.shape[1], tiles.tile, tiles.step, s, tiles.merge)
        recs.append({"image": name, "npix": (hr.shape[0] - 2 * s) * (hr.shape[1] - 2 * s),
                     "se": {n: tile_errors(up(lr)[0], hr, plan, s) for n, up in static.items()}})
        print(f"{name}: {len(plan)} tiles", flush=True)
    levels = list(names)
    stat = {n: score(recs, [[n] * len(r["se"][n]) for r in recs], cost) for n in levels}
    hull = [(t, p) for p, t in stat.values()]
    orc = oracle_points(recs, levels, cost)
    lo, hi = min(t for t, _ in hull), max(t for t, _ in hull)
    budgets = [b for b in (float(x) for x in a.budgets.split(",")) if lo <= b <= hi]
    out = {
        "model": a.model, "data": a.data, "tiles": sum(len(r["se"][ref]) for r in recs), "reference": ref,
        "cost_source": str(a.cost), "cost": {n: round(c, 3) for n, c in cost.items()},
        "static": {n: {"psnr": round(p, 4), "time": round(t, 3)} for n, (p, t) in stat.items()},
        "at_budget": {f"{b:.2f}": {"best_static_mix": round(best_static_mix(hull, b), 4),
                                   "oracle": round(best_static_mix(orc, b), 4)} for b in budgets},
    }
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
