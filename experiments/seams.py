"""Seams against tile work: the full-precision graph's tiled output against the PyTorch twin run
on the whole image, per overlap and merge, beside the pixels the tiles compute.

For each setting: PSNR of each image (tiled vs untiled, RGB, 8-bit), the worst single output
row or column over all images (where a seam would show), and the work: the tiles' LR pixels
over the image's.

    python experiments/seams.py --data Set14 --overlaps 4,8,12,16 --merges blend,center --threads 1 \
        --json docs/seams_set14.json
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 999.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def worst_line(a: np.ndarray, b: np.ndarray) -> float:
    """The lowest PSNR of one output row or column."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    rows = d.reshape(d.shape[0], -1).mean(1)
    cols = d.transpose(1, 0, 2).reshape(d.shape[1], -1).mean(1)
    m = float(max(rows.max(), cols.max()))
    return 999.0 if m == 0 else 10 * math.log10(255.0**2 / m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="export folder or 'default' (its sr_fp32 graph)")
    ap.add_argument("--twin", default="default", help="the full-precision PyTorch twin ('default': the shipped one)")
    ap.add_argument("--data", default="Set14")
    ap.add_argument("--root", default=None, help="benchmark root (default: $GDQ_BENCH_ROOT or ../shared/datasets/benchmark)")
    ap.add_argument("--overlaps", default="4,8,12,16")
    ap.add_argument("--merges", default="blend,center")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    import torch

    from granular_mobile.checkpoint import load_model
    from granular_mobile.defaults import bench_root
    from granular_mobile.eval import benchmark_pairs
    from granular_mobile.runtime import Upscaler
    from granular_mobile.runtime.tiler import TilePlan

    torch.set_num_threads(a.threads)
    twin = load_model(a.twin, fp=a.twin == "default").eval()
    pairs = [(n, lr) for n, lr, _ in benchmark_pairs(a.root or bench_root(), a.data, twin.cfg.scale)
             if lr.ndim == 3 and lr.shape[2] == 3]
    refs = {}
    with torch.no_grad():
        for n, lr in pairs:
            y = twin(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0).numpy()
            refs[n] = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
    be = Upscaler.load(a.model, backend=a.backend, threads=a.threads, precision="fp32").backend
    rows = []
    for merge in a.merges.split(","):
        for ov in (int(o) for o in a.overlaps.split(",")):
            up = Upscaler(be, precision="fp32", overlap=ov, merge=merge)
            per, lines, work = {}, [], []
            for n, lr in pairs:
                sr, rep = up(lr)
                per[n] = round(psnr(sr, refs[n]), 2)
                lines.append(worst_line(sr, refs[n]))
                plan = TilePlan(lr.shape[0], lr.shape[1], be.tile, be.tile - ov, be.scale, merge)
                work.append(len(plan) * be.tile**2 / (lr.shape[0] * lr.shape[1]))
            row = {"merge": merge, "overlap": ov, "mean_psnr": round(float(np.mean(list(per.values()))), 2),
                   "min_psnr": round(min(per.values()), 2), "worst_line_psnr": round(min(lines), 2),
                   "work": round(float(np.mean(work)), 3), "per_image": per}
            rows.append(row)
            print(f"{merge:6s} overlap {ov:2d}: mean {row['mean_psnr']:6.2f}  min {row['min_psnr']:6.2f}  worst row/col "
                  f"{row['worst_line_psnr']:6.2f} dB  work x{row['work']:.3f}", flush=True)
    out = {"command": "python experiments/seams.py " + " ".join(f"--{k} {v}" for k, v in vars(a).items() if k != "json" and v is not None),
           "dataset": a.data, "tile": be.tile, "rows": rows}
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
