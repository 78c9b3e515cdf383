"""Golden vectors for other implementations of the runtime (the Android app's Java core).

    python -m granular_mobile.runtime.golden OUT_DIR

writes ``tiling.json``: for several image sizes, tile sizes, overlaps and merge modes, the
tile positions, the per-axis weights and the uint8 image stitched from synthetic SR tiles
whose values follow a formula any implementation can regenerate:
    tile k, pixel (y, x), channel c: float32(((k * 7 + y * 3 + x * 5 + c) % 256) / 255)
Everything is numpy float32, so an IEEE-754 single-precision port that performs the same
operations in the same order reproduces it exactly (rounding half to even).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from .tiler import Stitcher, TilePlan, axis_weights

CASES = [  # (height, width, tile, overlap, scale, merge)
    (96, 96, 96, 16, 2, "blend"), (100, 150, 32, 8, 2, "blend"), (50, 20, 32, 8, 2, "blend"),
    (70, 45, 24, 6, 4, "blend"), (100, 150, 32, 2, 2, "center"), (61, 200, 40, 10, 2, "center"),
]


#: level names whose level-map colours the other implementations must reproduce
COLOUR_NAMES = ["a4", "a5", "a6", "a8", "a6k1", "a6k4", "a6k5", "a6k8", "a6k12", "a4k2", "fp32", "a7", "x"]


def synthetic_tile(k: int, size: int, channels: int = 3) -> np.ndarray:
    y, x, c = np.meshgrid(np.arange(size), np.arange(size), np.arange(channels), indexing="ij")
    return (((k * 7 + y * 3 + x * 5 + c) % 256) / np.float32(255)).astype(np.float32)


def case(h: int, w: int, tile: int, overlap: int, scale: int, merge: str) -> dict:
    plan = TilePlan(h, w, tile, tile - overlap, scale, merge)
    st = Stitcher(plan)
    for k in range(len(plan)):
        st.add(k, synthetic_tile(k, tile * scale))
    out = np.clip(np.round(st.result() * 255.0), 0, 255).astype(np.uint8)
    wy = axis_weights(plan.ys, tile, h, scale, merge)
    return {"height": h, "width": w, "tile": tile, "overlap": overlap, "scale": scale, "merge": merge,
            "ys": plan.ys, "xs": plan.xs, "weights_y": [a.tolist() for a in wy],
            "output_shape": list(out.shape), "output_sha256": hashlib.sha256(out.tobytes()).hexdigest(),
            "output_head": out.reshape(-1)[:24].tolist()}


def controller_vectors(export_dir: Path) -> dict:
    """Logits, entropy and bits of the exported ONNX controller on the bundled calibration tiles;
    with a level gate, its scores and each tile's level at the gate's budget (the tiles as one
    image: what the Java core's ``Budget`` must reproduce from the same scores)."""
    from .backends.onnxruntime import OnnxRuntimeBackend

    be = OnnxRuntimeBackend(export_dir)
    tiles = np.load(Path(__file__).resolve().parents[1] / "assets" / "calib_tiles.npz")["tiles"]
    x = tiles[:, :be.tile, :be.tile].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    logits, ent, bits = be.controller(x)
    e2b = be.m.manifest.e2b
    res = {"thresholds": list(e2b.thresholds), "gbc_bits": list(e2b.gbc_bits), "e2b_bits": list(e2b.e2b_bits),
           "logits": logits.tolist(), "entropy": ent.tolist(), "bits": bits.tolist()}
    gate = be.level_gate
    if gate is not None:
        from .budget import allocate

        scores = be.scores(x)
        res.update({"gate_choices": list(gate.choices), "gate_costs": list(gate.costs), "gate_budget": gate.budget,
                    "scores": scores.tolist(), "levels": allocate(scores, gate.costs, gate.budget).tolist()})
    return res


def write(out_dir: str | Path, export_dir: str | Path | None = None) -> Path:
    """Write tiling.json, colours.json, and controller.json from an export folder (default: the shipped one)."""
    from .backends import DEFAULT_EXPORT

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    p = out / "tiling.json"
    p.write_text(json.dumps({"formula": "((k*7 + y*3 + x*5 + c) % 256) / 255 as float32",
                             "cases": [case(*c) for c in CASES]}, indent=1))
    from .bitmap import level_colour

    (out / "colours.json").write_text(json.dumps({n: list(level_colour(n)) for n in COLOUR_NAMES}, indent=1))
    exp = Path(export_dir) if export_dir else DEFAULT_EXPORT
    if (exp / "manifest.json").is_file():
        (out / "controller.json").write_text(json.dumps(controller_vectors(exp)))
    return p


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else "golden"))
