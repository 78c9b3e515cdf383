"""PSNR against time per tile on a benchmark set: every level static, the best static mix of the
level gate's choices, the oracle, and the model's level gate at several budgets.

Every tile of the set runs at each level of the model with the deployed integer numerics (a
level is a (bits, blocks) pair, ``ModelConfig.levels``). With the paper's protocol (merge
"center") a tile's SR does not depend on its neighbours' levels, so any allocation's image is a
composite of the static-level images and is scored exactly from per-tile squared errors (Y,
shave = scale, as ``gdq eval``): the gate's allocation at a budget is what ``gdq run --budget``
computes, image by image. Costs are each level's time per tile relative to the full graph, from
``bench/level_cost.py``'s JSON (``--cost``) or the model's level gate.

The oracle allocates, per image and budget, on the measured gains (the same Lagrangian as the
runtime); no controller that reads only the LR tile reaches it.

    python experiments/time_allocation.py -m runs/timed/model.pt --data Set14 \\
        --cost docs/level_cost_onnx.json --json docs/time_allocation_set14.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from granular_mobile.checkpoint import load_model
from granular_mobile.defaults import bench_root
from granular_mobile.eval import benchmark_pairs
from granular_mobile.train.level_gate import REPORT_BUDGETS, LevelGains, compare_at_budgets, level_costs, measure_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--data", default="Set14")
    ap.add_argument("--root", default=bench_root(), help="benchmark root (GDQ_BENCH_ROOT)")
    ap.add_argument("--cost", type=Path, default=None,
                    help="bench/level_cost.py's JSON (default: the level gate's costs, else MACs)")
    ap.add_argument("--choices", default="", help="levels to allocate among, cheapest first (default: the gate's)")
    ap.add_argument("--budgets", default=",".join(map(str, REPORT_BUDGETS)))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only-choices", action="store_true", help="measure the choices only (not every level)")
    ap.add_argument("--cache", type=Path, default=None, help=".npz of the measurements: read if it exists, else written")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = load_model(a.model).eval()
    gate = m.cfg.level_gate
    choices = a.choices.split(",") if a.choices else list(gate.choices) if gate else list(m.cfg.level_names)
    levels = choices if a.only_choices else list(m.cfg.level_names)
    if a.cache is not None and a.cache.is_file():
        g = LevelGains.load(a.cache)
        levels = list(g.choices)
    else:
        pairs = [(lr, hr) for _, lr, hr in benchmark_pairs(a.root, a.data, m.cfg.scale)]
        g = measure_pairs(m, pairs, levels, advance=lambda: print(".", end="", flush=True, file=sys.stderr))
        if a.cache is not None:
            g.save(a.cache)
    if gate is not None and a.cost is None and choices == list(gate.choices):
        costs, source = tuple(gate.costs), gate.cost_source
    else:
        costs, source = level_costs(m, choices, g.tiles.tile, a.cost)
    all_costs, _ = level_costs(m, levels, g.tiles.tile, a.cost)
    sub = g.subset(choices)
    budgets = [float(x) for x in a.budgets.split(",")]
    with torch.no_grad():
        scores = m.level_gate(torch.from_numpy(sub.feat)).numpy() if gate is not None and choices == list(gate.choices) \
            else np.zeros((len(sub.feat), len(choices)))
    rows = compare_at_budgets(sub, scores, costs, budgets)
    out = {
        "command": "python experiments/time_allocation.py " + " ".join(sys.argv[1:]),
        "model": a.model, "data": a.data, "images": len(sub.npix), "tiles": len(sub.se),
        "cost_source": source, "choices": choices, "costs": list(costs),
        "static": {lv: {"psnr": round(g.psnr(np.full(len(g.se), i)), 4), "cost": all_costs[i]}
                   for i, lv in enumerate(levels)},
        "gate": gate is not None and choices == list(gate.choices),
        "at_budget": rows,
    }
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
