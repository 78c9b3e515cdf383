"""Whole-image PSNR between the exported graphs (through a runtime backend) and the PyTorch model
as trained (its own forward: the training numerics), and between the exported graphs and the
integer reference (``run_program``), on a benchmark set; same tiles, same bit levels. Also the
Y-PSNR against the HR image (shave = scale, as ``gdq eval``) of the exported graphs and of the
reference, so that a difference between them shows as the quality it costs or gains.

    python experiments/export_vs_trained.py --export src/granular_mobile/assets/export --data Set14 \
        --backend onnxruntime --json docs/export_vs_trained_set14.json
    python experiments/export_vs_trained.py --data BSD100 --backend tflite --bits 8   # one static level
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from granular_mobile.checkpoint import load_model
from granular_mobile.data.benchmark import benchmark_pairs
from granular_mobile.defaults import bench_root
from granular_mobile.metrics import psnr_y
from granular_mobile.runtime import Upscaler
from granular_mobile.runtime.backends.torch import TorchBackend


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 999.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", default="src/granular_mobile/assets/export")
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--data", default="Set14")
    ap.add_argument("--root", default=bench_root(), help="benchmark root (GDQ_BENCH_ROOT)")
    ap.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tflite"])
    ap.add_argument("--bits", default="auto", help="auto (the controller) or a static bit level for every tile")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = load_model(a.model)
    exp = Upscaler.load(a.export, backend=a.backend, threads=a.threads, bits=a.bits)
    tile = exp.backend.tile
    trained = Upscaler(TorchBackend.from_models(m, tile=tile, numerics="float"), overlap=exp.overlap, bits=a.bits)
    reference = Upscaler(TorchBackend.from_models(m, tile=tile, numerics="int8"), overlap=exp.overlap, bits=a.bits)
    rows = []
    s = m.cfg.scale
    for name, lr, hr in benchmark_pairs(a.root, a.data, s):
        e, rep = exp(lr)
        t, rep_t = trained(lr)
        r, rep_r = reference(lr)
        same_bits = rep.tile_bits == rep_t.tile_bits == rep_r.tile_bits
        rows.append({"image": name, "vs_trained_db": psnr(e, t), "vs_integer_reference_db": psnr(e, r),
                     "same_bits": bool(same_bits), "exported_vs_hr_db": psnr_y(e, hr, s),
                     "reference_vs_hr_db": psnr_y(r, hr, s)})
        print(f"{name}: exported vs trained {rows[-1]['vs_trained_db']:.2f} dB, vs integer reference "
              f"{rows[-1]['vs_integer_reference_db']:.2f} dB, same bit levels {same_bits}", flush=True)
    out = {"export": a.export, "backend": a.backend, "data": a.data, "bits": a.bits, "images": rows,
           "exported_vs_hr_db": float(np.mean([r["exported_vs_hr_db"] for r in rows])),
           "reference_vs_hr_db": float(np.mean([r["reference_vs_hr_db"] for r in rows])),
           "min_vs_trained_db": min(r["vs_trained_db"] for r in rows),
           "mean_vs_trained_db": float(np.mean([r["vs_trained_db"] for r in rows])),
           "min_vs_integer_reference_db": min(r["vs_integer_reference_db"] for r in rows)}
    print(json.dumps({k: v for k, v in out.items() if k != "images"}))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
