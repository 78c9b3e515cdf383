"""What each group of the full-integer export's rounding points costs: PSNR of an int8-numerics
model with one group of rounding points left out at a time, at static bit levels. It runs the
float surrogate of the model's integer forward (``GDQNet.exact_integer = False``: each rounding
point as fake quantization in float, the same points and steps, where a group can be switched
off); the surrogate has no int32 bias rounding and differs from the integer values at float32
rounding ties, so "exact" (the deployed integer values, what ``gdq eval`` reports) is given
beside "none" (the surrogate with every group).

    python experiments/rounding_cost.py -m runs/gdq_x2_int8/best.pt --data Set5 --bits 4,8 --json cost.json

Groups: the residual stream (block sums and the global sum), block conv outputs, PReLU
outputs, the full-precision layers' int8 tensors (head, body end, upsampler), the 7-bit
weights of the full-precision layers, and the 8-bit image grid of the output. "none" is the
surrogate with every group, "all" the model with only its k-bit conv inputs and weights rounded.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import torch

from granular_mobile.checkpoint import load_model
from granular_mobile.config import TileConfig
from granular_mobile.defaults import bench_root
from granular_mobile.eval import benchmark_pairs, evaluate_dataset
from granular_mobile.models import GDQNet
from granular_mobile.quant import GridQuantizer

GROUPS = {
    "residual stream": lambda n: n.endswith((".out", "grids.body_out")),
    "block conv outputs": lambda n: n.endswith((".conv1", ".conv2")) and ".grids." in n,
    "activations": lambda n: n.endswith((".act", "grids.head_act")) or n.endswith("_act"),
    "fp-layer outputs": lambda n: n in ("grids.head", "grids.body_end") or (n.startswith("grids.up") and
                                                                            not n.endswith("_act")),
}


@contextlib.contextmanager
def without(model: GDQNet, group: str) -> Iterator[None]:
    """Leave a group of rounding points out of the forward (identity)."""
    import granular_mobile.models.integer_forward as base

    saved: list[tuple[GridQuantizer, object]] = []
    fq_w, fq_img = base.fake_quant_fp_weight, base.fake_quant_image
    try:
        if group in GROUPS or group == "all":
            for name, mod in model.named_modules():
                # a level's own copy (ModelConfig.level_weights) names its grids level_nets.<bits>.*
                if isinstance(mod, GridQuantizer) and (group == "all" or GROUPS[group](re.sub(r"^level_nets\.\d+\.", "", name))):
                    saved.append((mod, mod.forward))
                    mod.forward = lambda x, bit_index: x  # type: ignore[method-assign]
        if group in ("fp-layer weights", "all"):
            base.fake_quant_fp_weight = lambda w: w  # type: ignore[assignment]
        if group in ("output grid", "all"):
            base.fake_quant_image = lambda x: x  # type: ignore[assignment]
        yield
    finally:
        for mod, fwd in saved:
            mod.forward = fwd  # type: ignore[method-assign]
        base.fake_quant_fp_weight, base.fake_quant_image = fq_w, fq_img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True, help="an int8-numerics Granular-DQ checkpoint")
    ap.add_argument("--data", default="Set5")
    ap.add_argument("--root", default=bench_root(), help="benchmark root (GDQ_BENCH_ROOT)")
    ap.add_argument("--bits", default="4,8")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = load_model(a.model)
    if not m.cfg.int8_tensors:
        raise SystemExit(f"{a.model}: not an int8-numerics model (gdq quantize --numerics int8)")
    pairs = benchmark_pairs(a.root, a.data, m.cfg.scale)
    res: dict[str, dict[str, float]] = {}
    for b in (int(x) for x in a.bits.split(",")):
        for group in ["none", "exact", *GROUPS, "fp-layer weights", "output grid", "all"]:
            m.exact_integer = group == "exact"
            with without(m, group):
                r = evaluate_dataset(m, pairs, a.data, m.cfg.scale, TileConfig(), bit_index=m.cfg.quant.index(b))
            res.setdefault(str(b), {})[group] = r.psnr
            what = group if group in ("none", "exact") else f"without {group}"
            print(f"{b} bits, {what}: {r.psnr:.3f} dB ({r.psnr - res[str(b)]['none']:+.3f})", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"model": a.model, "data": a.data, "psnr": res}, indent=2))


if __name__ == "__main__":
    main()
