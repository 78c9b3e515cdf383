"""``gdq export --verify``: run every exported graph on benchmark tiles and compare with PyTorch."""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.benchmark import benchmark_pairs
from ..errors import DataError
from ..ir import Program, run_program
from ..models import GDQNet
from ..runtime.backends import open_export
from ..runtime.budget import allocate
from ..runtime.manifest import Manifest
from ..runtime.tiler import TilePlan, extract_tiles

#: the benchmark sets whose tiles --verify compares on
VERIFY_SETS: tuple[str, ...] = ("Set5", "Set14")


def verify_tiles(root: str | Path, scale: int, tile: int, max_tiles: int = 64, sets: tuple[str, ...] = VERIFY_SETS) -> np.ndarray:
    """LR tiles (N, 3, T, T) float [0, 1] cut on a grid from benchmark images, spread evenly."""
    tiles = []
    for s in sets:
        try:
            pairs = benchmark_pairs(root, s, scale)
        except DataError as e:
            raise DataError(f"``verify`` needs benchmark images: {e} (give ``verify_root`` ROOT)") from e
        for _, lr, _ in pairs:
            if min(lr.shape[:2]) < tile:
                continue
            plan = TilePlan(lr.shape[0], lr.shape[1], tile, tile, scale)
            tiles.append(extract_tiles(lr, plan))
    if not tiles:
        raise DataError(f"no benchmark image under '{root}' is at least {tile} px for ``verify``")
    arr = np.concatenate(tiles)
    if len(arr) > max_tiles:
        arr = arr[np.linspace(0, len(arr) - 1, max_tiles).round().astype(int)]
    return arr.transpose(0, 3, 1, 2).astype(np.float32) / 255.0


def _cmp(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    a, b = np.clip(a, 0, 1), np.clip(b, 0, 1)
    d = np.abs(a.astype(np.float64) - b)
    mse = float((d**2).mean())
    per_tile = [(d[i] ** 2).mean() for i in range(len(d))]
    worst = max(per_tile)
    return {"psnr_db": round(10 * math.log10(1 / mse), 2) if mse > 0 else 999.0,
            "worst_tile_psnr_db": round(10 * math.log10(1 / worst), 2) if worst > 0 else 999.0,
            "max_abs": round(float(d.max()), 5), "mean_abs": round(float(d.mean()), 6)}


def _batched(fn: Callable[..., Any], tiles: np.ndarray, n: int, *args: Any, out: int | None = None) -> np.ndarray:
    """``fn(batch, *args)`` (its output ``out``, if it returns several) over ``tiles`` in
    batches of at most ``n`` (a backend's ``max_batch``), concatenated."""
    res = [fn(tiles[i:i + n], *args) for i in range(0, len(tiles), n)]
    return np.concatenate([r if out is None else r[out] for r in res])


def _run_program(tiles: np.ndarray, prog: Program) -> np.ndarray:
    return run_program(prog, torch.from_numpy(tiles)).numpy()


@torch.no_grad()
def verify_export(out: Path, manifest: Manifest, model: GDQNet, fp: GDQNet | None, root: str | Path,
                  progs: dict[str, Program] | None = None, max_tiles: int = 64,
                  log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Parity of every exported graph with PyTorch on benchmark tiles.

    The reference of a bit level is the PyTorch model executed with the integer numerics of
    the export (``progs``: the same rounding points and scales, run by ``run_program``), so
    the figure isolates what the integer kernels and the graph translation change. The
    distance to the model's own forward (what training optimises) is reported next to it as
    ``psnr_vs_float_db``: for a float-numerics model (float full-precision layers, no output
    requantization) that is the numerical cost of deploying, which ``gdq eval --numerics
    int8`` measures against ground truth; an int8-numerics model's forward is the integer
    program itself (999 on ONNX).
    """
    manifest.write(out)  # the backends read it
    tiles = verify_tiles(root, manifest.scale, manifest.tile, max_tiles)
    x = torch.from_numpy(tiles)
    ref_ctrl = model.controller(x)
    ref_bits = np.asarray(model.bits)[ref_ctrl.bit_index.numpy()]
    # parity keys: a full-depth level by its bits (as before levels), an exit level by its name
    cfg = model.cfg
    keys = {name: str(b) if k == cfg.n_blocks else name
            for name, (b, k) in zip(cfg.level_names, cfg.levels, strict=True)}
    floats = {keys[name]: model(x, i).numpy() for i, name in enumerate(cfg.level_names)}
    # an int8-numerics model's forward is its integer program, bit for bit (tests/test_numerics.py),
    # when the export is full-integer (not with --fp-layers float): running the program again
    # would only double the time there (minutes per level on a 2-core CPU)
    same = cfg.numerics == "int8" and progs is not None and all(p.fp_layers == "int8" for p in progs.values())
    refs: dict[str, np.ndarray] = {
        keys[name]: (_batched(_run_program, tiles, 16, progs[name])
                     if progs is not None and not same else floats[keys[name]]) for name in cfg.level_names}
    gate = cfg.level_gate
    ref_scores = model.level_scores(x).numpy() if gate is not None else None
    # the level each tile gets at the gate's budget, all tiles as one image
    ref_levels = allocate(ref_scores, gate.costs, gate.budget) if gate is not None and ref_scores is not None else None
    level_of = {v: k for k, v in keys.items()}
    if fp is not None:
        refs["fp32"] = fp(x).numpy()
    res: dict[str, Any] = {}
    for target in manifest.targets:
        be = open_export(target, out)
        bits = _batched(be.controller, tiles, be.max_batch, out=2)
        entry: dict[str, Any] = {"tiles": len(tiles), "controller_agreement": round(float((bits == ref_bits).mean()), 4),
                                 "sr": {}}
        if gate is not None and ref_scores is not None and ref_levels is not None:
            scores = _batched(be.scores, tiles, be.max_batch)
            entry["gate_agreement"] = round(float((allocate(scores, gate.costs, gate.budget) == ref_levels).mean()), 4)
            entry["gate_scores_max_abs_diff"] = round(float(np.abs(scores - ref_scores).max()), 5)
        for b, ref in refs.items():
            lv = None if b == "fp32" else level_of[b]
            out_b = _batched(be.sr, tiles, be.max_batch, lv)
            entry["sr"][str(b)] = _cmp(out_b, ref)
            if b in floats:
                entry["sr"][str(b)]["psnr_vs_float_db"] = _cmp(out_b, floats[b])["psnr_db"]
        res[target] = entry
        gate_said = f", the level gate on {entry['gate_agreement']:.1%}" if "gate_agreement" in entry else ""
        log(f"{target}: controller agrees on {entry['controller_agreement']:.1%} of {len(tiles)} tiles{gate_said}; " +
            ", ".join(f"{k}: {v['psnr_db']} dB" for k, v in entry["sr"].items()))
    return res
