"""Would a per-level BatchNorm help one bit level beyond its quantizer steps?

``gdq quantize --tune-level B`` trains only level B's quantizer steps (its conv-input steps and
int8 grids: 102 numbers in SRResNet), every crop at level B; ``--own-weights`` also trains a
weight set of the level's own. In between lies a per-level ("switchable") BatchNorm, the usual
remedy of shared-weight multi-precision networks, free at deployment (it folds into each level's
graph). This probe measures what it could buy before it is built: the same training, each
variant from the same --init and seed, with

- ``steps``: exactly ``--tune-level`` (the control);
- ``bn``: also the residual blocks' BatchNorm scales and shifts. They are shared by every level,
  so its output is a measurement of level B alone, not a model to ship.

The trainer's validation logs each variant's PSNR at level B (``--val-set``, every
``--eval-every`` iterations); the summary is the last and the best of them, beside the --init's
PSNR at level B (the same validation).

    python experiments/level_capacity.py --init default --level 8 --iters 300 -o runs/level_capacity --json cap.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch.nn as nn

from granular_mobile.checkpoint import load_model
from granular_mobile.cli import app
from granular_mobile.config import TileConfig
from granular_mobile.defaults import bench_root
from granular_mobile.eval import benchmark_pairs, evaluate_dataset
from granular_mobile.models import GDQNet
from granular_mobile.train import trainer

VARIANTS = ("steps", "bn")


def _extra(model: GDQNet, variant: str, steps: set[int]) -> list[nn.Parameter]:
    """The parameters a variant trains beside level B's steps (``steps``: their ids)."""
    if variant == "bn":
        return [p for n, m in model.named_modules()
                if isinstance(m, nn.BatchNorm2d) and n.startswith("body.") and n.endswith(("bn1", "bn2"))
                for p in (m.weight, m.bias) if id(p) not in steps]
    return []


@contextlib.contextmanager
def trainable(variant: str, lr_mult: float) -> Iterator[None]:
    """Inside: ``--tune-level`` also trains the variant's extra parameters (at lr x lr_mult); the
    trainer lets exactly its optimizer groups' parameters require gradients."""
    param_groups = trainer._param_groups

    def groups(model: GDQNet, cfg: trainer.TrainConfig) -> list[dict]:
        out = param_groups(model, cfg)
        more = _extra(model, variant, {id(p) for g in out for p in g["params"]})
        return out + ([{"params": more, "lr_mult": lr_mult, "name": variant}] if more else [])

    trainer._param_groups = groups  # type: ignore[assignment]
    try:
        yield
    finally:
        trainer._param_groups = param_groups  # type: ignore[assignment]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", default="default", help="a Granular-DQ model")
    ap.add_argument("--distill-from", default="default", help="its full-precision twin ('default': the shipped one)")
    ap.add_argument("--level", type=int, default=8)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--extra-lr-mult", type=float, default=1.0, help="rate of the BatchNorm parameters, x --lr")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--out", type=Path, required=True, help="one run folder per variant goes here")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    m = load_model(a.init)
    pairs = benchmark_pairs(bench_root(), "Set5", m.cfg.scale)
    start = evaluate_dataset(m, pairs, "Set5", m.cfg.scale, TileConfig(), bit_index=m.cfg.quant.index(a.level)).psnr
    print(f"--init: level {a.level} Set5_psnr {start:.3f}", flush=True)
    res: dict[str, dict[str, float]] = {}
    for v in a.variants.split(","):
        if v not in VARIANTS:
            raise SystemExit(f"variant '{v}' is unknown; valid: {list(VARIANTS)}")
        run = a.out / v
        with trainable(v, a.extra_lr_mult):
            app(["quantize", "--init", a.init, "-o", str(run), "--tune-level", str(a.level), "--iters", str(a.iters),
                 "--lr", str(a.lr), "--warmup", "20", "--distill", "1", "--distill-from", a.distill_from, "--patch", "32",
                 "--batch", "16", "--eval-every", str(a.eval_every), "--ckpt-every", str(a.eval_every),
                 "--threads", str(a.threads)], standalone_mode=False)
        vals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        key = next(k for k in vals[-1] if k.endswith("_psnr"))
        res[v] = {"last": vals[-1][key], "best": max(r[key] for r in vals)}
        print(f"{v}: level {a.level} {key} last {res[v]['last']:.3f}, best {res[v]['best']:.3f}", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"init": a.init, "level": a.level, "iters": a.iters, "lr": a.lr,
                                      "extra_lr_mult": a.extra_lr_mult, "init_psnr": start, "psnr": res}, indent=2))


if __name__ == "__main__":
    main()
