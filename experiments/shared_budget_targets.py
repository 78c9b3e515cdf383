"""Can one time budget over a batch buy PSNR? The gate's targets against targets whose scale
compares across images.

The shipped level gate predicts each choice's gain in its tile's *image's* PSNR: (se0 - se) *
w_img, with w_img = d PSNR / d SE of the whole image. Inside one image w_img is a constant, so
the runtime's per-image allocation only needs the order of the tiles; across images the tile
features cannot know w_img (it depends on every other tile of the image), so one budget shared
over a batch (`gdq run --share-budget`) spends it on the wrong images (docs/TIME.md: no PSNR
gain on BSD100).

The alternative here ("absolute"): regress each choice's *absolute* error drop (se0 - se) and,
separately, log se0; at run time estimate each image's weight from its own tiles' predicted
errors, w_hat = 10 / ln 10 / sum(exp(predicted log se0)), and score a tile by its predicted drop
times its image's w_hat. Within an image that is a scale of the absolute prediction, across
images it is the first-order PSNR gain the shared allocation needs.

Both are fitted on the training measurements of `gdq fit-gate --levels --cache` (ridge on the
standardised gate features, as `train/level_gate.py` fits) and evaluated on a benchmark's
measurements at the same choices: mean image PSNR (exact, from the per-tile errors) at several
budgets, per image and shared over the set, beside the best static mix and the oracles (the
same allocations on the measured gains). Costs: the shipped gate's (`level_gate.costs`).

    python experiments/shared_budget_targets.py --train runs/timed/level_gains.npz \
        --eval runs/timed/bsd100.npz --json docs/shared_budget_targets_bsd100.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys

import numpy as np

from granular_mobile.metrics import best_static_mix
from granular_mobile.runtime.backends import DEFAULT_EXPORT
from granular_mobile.runtime.budget import allocate
from granular_mobile.runtime.manifest import ExportFolder
from granular_mobile.train.gate_fit import image_weights, ridge_fit
from granular_mobile.train.level_gate import LevelGains, allocate_per_image, image_gains

BUDGETS = (0.45, 0.5, 0.55, 0.6, 0.7, 0.85)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True, help="training measurements (gdq fit-gate --levels --cache)")
    ap.add_argument("--eval", required=True, help="benchmark measurements at the same choices")
    ap.add_argument("--ridge", type=float, default=100.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    gate = ExportFolder(DEFAULT_EXPORT).manifest.level_gate
    assert gate is not None, "the shipped export has a level gate"
    tr = LevelGains.load(a.train).subset(gate.choices)
    ev = LevelGains.load(a.eval).subset(gate.choices)
    costs = np.asarray(gate.costs)

    mu, sd = tr.feat.mean(0), tr.feat.std(0) + 1e-9

    def design(g: LevelGains) -> np.ndarray:
        x = (g.feat - mu) / sd
        return np.hstack([x, np.ones((len(x), 1))])

    xt = (tr.feat - mu) / sd
    # the shipped targets: gain in the tile's image's PSNR
    pred_img = design(ev) @ ridge_fit(xt, image_gains(tr), a.ridge)
    # absolute targets: the error drop (scaled to order 1) and log of the cheapest choice's error
    scale = float(tr.se[:, 0].mean())
    drop = design(ev) @ ridge_fit(xt, (tr.se[:, :1] - tr.se) / scale, a.ridge)
    log_se0 = design(ev) @ ridge_fit(xt, np.log(tr.se[:, :1] + 1.0), a.ridge)
    w_hat = image_weights(ev.img, np.exp(log_se0[:, 0]))  # each image's weight from its own tiles
    pred_abs = drop * scale * w_hat[:, None]
    oracle = image_gains(ev)  # the measured gains, in the tile's image's PSNR

    static = [(float(costs[i]), ev.psnr(np.full(len(ev.se), i))) for i in range(len(costs))]
    rows = []
    for b in BUDGETS:
        row: dict[str, float] = {"budget": b}
        for name, alloc in (("gate per image", allocate_per_image(ev, pred_img, costs, b)),
                            ("gate shared", allocate(pred_img, costs, b)),
                            ("absolute per image", allocate_per_image(ev, pred_abs, costs, b)),
                            ("absolute shared", allocate(pred_abs, costs, b)),
                            ("oracle per image", allocate_per_image(ev, oracle, costs, b)),
                            ("oracle shared", allocate(oracle, costs, b))):
            row[f"{name}: psnr"] = round(ev.psnr(alloc), 4)
            row[f"{name}: cost"] = round(float(costs[alloc].mean()), 4)
        row["static mix at the gate's cost"] = round(best_static_mix(static, row["gate per image: cost"]), 4)
        rows.append(row)
    # how well each predicts the measured per-image weights (what a shared budget needs)
    w_true = image_weights(ev.img, ev.se[:, 0])
    first = np.array([np.flatnonzero(ev.img == j)[0] for j in np.unique(ev.img)])
    res = {
        "command": "python " + shlex.join(sys.argv),
        "train": {"tiles": len(tr.img), "images": int(len(np.unique(tr.img)))},
        "eval": {"tiles": len(ev.img), "images": int(len(np.unique(ev.img)))},
        "choices": list(gate.choices), "costs": costs.tolist(), "ridge": a.ridge,
        "static_psnr": {c: round(p, 4) for c, (_, p) in zip(gate.choices, static, strict=True)},
        "image_weight_log_corr": round(float(np.corrcoef(np.log(w_true[first]), np.log(w_hat[first]))[0, 1]), 4),
        "rows": rows,
    }
    for r in rows:
        print(" | ".join(f"{k} {v}" for k, v in r.items()))
    print("corr(log w_img, log w_hat) over images:", res["image_weight_log_corr"])
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
