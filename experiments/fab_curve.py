"""PSNR against FAB: the dynamic controller at several operating points next to the static
bit levels, with the deployed (integer) numerics, on a benchmark set.

A static mix of two levels at the same average bits (a share of the tiles at each, chosen
without looking at them) lies on the straight line between the two static points; the best
static mix at a FAB is the upper concave hull of the static points there (a level below the
line of two others, e.g. a weak 5-bit level, is no part of it). The controller earns its keep
where its points sit above that hull (``vs_static_mix_db`` in the JSON).

    python experiments/fab_curve.py -m default --data Set14 --targets 4.25,4.5,5,6 \
        --json docs/fab_curve_set14.json --svg docs/fab_curve_set14.svg

The operating points are set as ``gdq calibrate --target-fab`` sets them (a shift of the gate's
bias found on tiles of the training images), then each model is evaluated like ``gdq eval``.
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from granular_mobile.checkpoint import DEFAULT_FILES, DEFAULT_MODEL, load_model
from granular_mobile.config import TileConfig
from granular_mobile.data.dataset import load_folder_images, tile_grid
from granular_mobile.defaults import bench_root
from granular_mobile.eval import benchmark_pairs, evaluate_dataset
from granular_mobile.metrics import best_static_mix
from granular_mobile.train import TrainConfig, calibrate_gate


def svg_plot(series: dict[str, list[tuple[float, float]]], title: str, ref: float | None,
             dashed: tuple[str, ...] = ()) -> str:
    """A small dependency-free line chart (x: FAB, y: PSNR); ``dashed``: series drawn dashed (so
    that a line lying on another stays visible)."""
    pts = [p for s in series.values() for p in s] + ([(4.0, ref)] if ref is not None else [])
    x0, x1 = min(p[0] for p in pts) - 0.1, max(p[0] for p in pts) + 0.1
    y0, y1 = min(p[1] for p in pts) - 0.02, max(p[1] for p in pts) + 0.02
    w, h, m = 640, 420, 60

    def xy(x: float, y: float) -> tuple[float, float]:
        return m + (x - x0) / (x1 - x0) * (w - 2 * m), h - m - (y - y0) / (y1 - y0) * (h - 2 * m)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>',
           f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 15}" text-anchor="middle">FAB (average activation bits)</text>',
           f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" text-anchor="middle">Y-PSNR (dB)</text>']
    for i in range(6):
        xv, yv = x0 + (x1 - x0) * i / 5, y0 + (y1 - y0) * i / 5
        px, _ = xy(xv, y0)
        _, py = xy(x0, yv)
        out += [f'<text x="{px}" y="{h - m + 16}" text-anchor="middle">{xv:.2f}</text>',
                f'<text x="{m - 6}" y="{py + 4}" text-anchor="end">{yv:.2f}</text>',
                f'<line x1="{m}" y1="{py}" x2="{w - m}" y2="{py}" stroke="#ddd"/>']
    if ref is not None:
        _, py = xy(x0, ref)
        out += [f'<line x1="{m}" y1="{py}" x2="{w - m}" y2="{py}" stroke="#888" stroke-dasharray="4 4"/>',
                f'<text x="{w - m}" y="{py - 4}" text-anchor="end" fill="#555">full precision {ref:.3f}</text>']
    colors = ["#1f77b4", "#d62728", "#2ca02c"]
    for k, (name, s) in enumerate(series.items()):
        s = sorted(s)
        c = colors[k % len(colors)]
        path = " ".join(f"{'M' if i == 0 else 'L'}{xy(x, y)[0]:.1f},{xy(x, y)[1]:.1f}" for i, (x, y) in enumerate(s))
        dash = ' stroke-dasharray="6 4"' if name in dashed else ""
        out.append(f'<path d="{path}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        out += [f'<circle cx="{xy(x, y)[0]:.1f}" cy="{xy(x, y)[1]:.1f}" r="4" fill="{c}"/>' for x, y in s]
        out.append(f'<text x="{m + 10}" y="{m + 16 * (k + 1)}" fill="{c}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default=DEFAULT_MODEL)
    ap.add_argument("--fp", default=None, help="full-precision twin (default model: the shipped one)")
    ap.add_argument("--data", default="Set14")
    ap.add_argument("--root", default=bench_root(), help="benchmark root (default: $GDQ_BENCH_ROOT)")
    ap.add_argument("--train-data", default=",".join(TrainConfig().data), help="images for the operating points")
    ap.add_argument("--targets", default="4.25,4.5,5,6")
    ap.add_argument("--numerics", default="int8", choices=["int8", "float"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--svg", type=Path, required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = load_model(a.model)
    s = m.cfg.scale
    pairs = benchmark_pairs(a.root, a.data, s)
    tiles_cfg = TileConfig()
    res: dict = {"model": a.model, "data": a.data, "numerics": a.numerics, "static": [], "dynamic": []}
    for lv, b in enumerate(m.bits):
        r = evaluate_dataset(m, pairs, a.data, s, tiles_cfg, bit_index=lv, numerics=a.numerics)
        res["static"].append({"bits": b, "fab": b, "psnr": r.psnr, "ssim": r.ssim})
        print(f"static {b}: {r.psnr:.3f} dB", flush=True)
    train_tiles = tile_grid(load_folder_images(a.train_data.split(",")), m.cfg.e2b.tile, s)
    for target in (float(t) for t in a.targets.split(",")):
        mm = copy.deepcopy(m)
        t, _, after, _ = calibrate_gate(mm, train_tiles, target)
        r = evaluate_dataset(mm, pairs, a.data, s, tiles_cfg, numerics=a.numerics)
        mix = best_static_mix([(p["fab"], p["psnr"]) for p in res["static"]], r.fab)
        res["dynamic"].append({"target_fab": target, "gate_shift": t, "train_fab": after, "fab": r.fab, "psnr": r.psnr,
                               "ssim": r.ssim, "tiles_per_bit": {str(k): v for k, v in r.tiles_per_bit.items()},
                               "static_mix_psnr": mix, "vs_static_mix_db": r.psnr - mix})
        print(f"dynamic (target {target}): FAB {r.fab:.3f}, {r.psnr:.3f} dB ({r.psnr - mix:+.3f} dB against the best "
              "static mix)", flush=True)
    fp_path = a.fp or (str(DEFAULT_FILES["fp"]) if a.model == DEFAULT_MODEL else None)
    if fp_path:
        r = evaluate_dataset(load_model(fp_path), pairs, a.data, s, tiles_cfg)
        res["full_precision"] = {"psnr": r.psnr, "ssim": r.ssim}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=2))
    a.svg.write_text(plot(res, s))
    print(f"wrote {a.json} and {a.svg}")


def plot(res: dict, scale: int) -> str:
    """The SVG of a result (the JSON this script writes): static levels, controller, best mix."""
    static = [(p["fab"], p["psnr"]) for p in res["static"]]
    hull = [(x, y) for x, y in static if abs(best_static_mix(static, x) - y) < 1e-12]
    series, mix_name = {"static levels": static}, "best static mix (upper hull of the levels)"
    series |= {"Granular-DQ controller": [(p["fab"], p["psnr"]) for p in res["dynamic"]], mix_name: hull}
    ref = res.get("full_precision", {}).get("psnr")
    return svg_plot(series, f"{res['data']} x{scale}, {res['numerics']} numerics, tile 96 / step 90", ref, (mix_name,))


if __name__ == "__main__":
    main()
