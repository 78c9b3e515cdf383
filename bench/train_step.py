"""Time of one training step's forward and backward of an int8-numerics model: the exact
integer forward (what training runs) against its float surrogate alone
(``GDQNet.exact_integer = False``), alternated in one process, as a ratio.

    python bench/train_step.py --batch 16 --patch 32 --rounds 7
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from granular_mobile.checkpoint import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = load_model(a.model)
    if not m.cfg.int8_tensors:
        raise SystemExit(f"{a.model}: not an int8-numerics model")
    m.train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()  # as the trainer runs it
    g = torch.Generator().manual_seed(0)
    x = torch.rand(a.batch, 3, a.patch, a.patch, generator=g)
    levels = torch.randint(0, len(m.bits), (a.batch,), generator=g)
    times: dict[bool, list[float]] = {True: [], False: []}
    for r in range(a.rounds + 1):
        for exact in (True, False):
            m.exact_integer = exact
            m.zero_grad(set_to_none=True)
            t = time.perf_counter()
            m(x, levels).square().mean().backward()
            if r > 0:  # the first round warms up
                times[exact].append(time.perf_counter() - t)
    e, s = statistics.median(times[True]), statistics.median(times[False])
    print(f"exact integer forward {e:.3f} s, float surrogate {s:.3f} s per step (median of {a.rounds}); "
          f"ratio {e / s:.2f}")


if __name__ == "__main__":
    main()
