"""`gdq fit-gate`: fit the controller's gate to measured per-tile gains."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from ..defaults import (
    DEFAULT_STEP,
    DEFAULT_TILE,
)
from ..errors import ConfigError
from ..progress import console, progress
from .app import _TRAIN_HELP_COMMON, _int_list, _need, _split, app


@app.command("fit-gate")
def fit_gate_cmd(
    model: str = typer.Argument(..., help="Granular-DQ checkpoint."),
    out: Path = typer.Option(..., "-o", "--out", help="Output checkpoint."),
    choices: str = typer.Option("4,5,6", help="The gate's three choices (bit-widths, lowest first)."),
    e2b_bits: str = typer.Option("", help="What E2B maps choice 3 to by entropy (low,mid,high); "
                                          "default: always the third choice."),
    target_fab: float = typer.Option(4.4, help="Operating point: average bits of the deployed controller "
                                               "on the data's tiles (as `gdq calibrate --target-fab`)."),
    images: int = typer.Option(60, help="Training images to measure, spread evenly over --data (not with a "
                                        "--cache that exists: its images are used)."),
    data: str = _TRAIN_HELP_COMMON["data"],
    ridge: float = typer.Option(100.0, help="L2 penalty of the regression (standardised features)."),
    tile: int = typer.Option(DEFAULT_TILE, help="Deployment tile size (LR pixels)."),
    step: int = typer.Option(DEFAULT_STEP, help="Step between the measured tiles."),
    cache: Path | None = typer.Option(None, help="An .npz of the tile measurements: read if it exists, else written."),
    levels: str = typer.Option("", help="Fit the time-aware level gate instead: its choices, level names cheapest "
                               "first (e.g. a6k4,a6k8,a6,a8; exit levels come from gdq quantize --blocks)."),
    budget: float = typer.Option(0.55, help="--levels: the default operating point, the tiles' mean time relative to "
                                 "the full graph (gdq run --budget moves it without re-export)."),
    cost: Path | None = typer.Option(None, help="--levels: bench/level_cost.py's JSON of measured times per level "
                                     "(default: MACs, which time follows)."),
    json_out: Path | None = typer.Option(None, "--json", help="--levels: write the fit's report (cross-validated "
                                         "PSNR against the best static mix and the oracle per budget)."),
) -> None:
    """Fit the controller's gate to measured per-tile gains, then set its operating point.

    With --levels: the level gate, which spends time. Every tile runs at each choice; a ridge
    regression on the GBC features and the tile entropy predicts each choice's gain in its
    image's PSNR; the runtime gives each image's tiles the levels that maximise it within the
    budget (a mean time per tile relative to the full graph, measured by --cost).

    Every tile of --images training images runs at each of the model's bit levels (deployed
    integer numerics); a ridge regression on the gate's own input features predicts what each
    choice adds to its image's PSNR, and becomes the gate's weights. Prints the 5-fold
    cross-validated gain over the best static mix of levels at --target-fab (on those tiles),
    next to the current gate's. The network and the graphs' weights are unchanged; re-export.

    Examples:
      gdq fit-gate default -o model_fitted.pt
      gdq fit-gate runs/gdq_x2/final.pt --choices 4,6,8 --e2b-bits 4,5,8 --images 120 -o fitted.pt
      gdq fit-gate runs/exit_6k8/best.pt --levels a6k4,a6k8,a6,a8 --cost docs/level_cost_onnx.json --budget 0.55 -o timed.pt
    """
    _need("torch")
    if levels:
        return _fit_level_gate(model, out, _split(levels), budget, cost, images, _split(data), ridge, tile, step, cache,
                               json_out)
    from ..checkpoint import load_model, save_model
    from ..config import TileConfig, check_target_fab
    from ..data.dataset import load_folder_images, tile_grid
    from ..imageio import read_rgb
    from ..train import calibrate_gate
    from ..train.gate_fit import FOLDS, GateFitConfig, TileGains, fit_gate, measure_tile_gains

    check_target_fab(target_fab)
    gb = _int_list("--choices", choices)
    eb = _int_list("--e2b-bits", e2b_bits) if e2b_bits else None
    if images < FOLDS:
        raise ConfigError(f"--images {images}: the fit's {FOLDS}-fold cross-validation needs at least {FOLDS} images")
    cfg = GateFitConfig(gb, eb, ridge)  # type: ignore[arg-type]
    tc = TileConfig(tile, step)
    m = load_model(model)
    if not m.cfg.quantized:
        raise ConfigError(f"'{model}' is a full-precision model; only Granular-DQ models have a gate")
    cfg.quant(m.cfg.quant)  # the choices against the model's bit set, before the measurement
    check_target_fab(target_fab, (*gb, *(eb or ())))
    folders = _split(data)
    if cache is not None and cache.is_file():
        gains = TileGains.load(cache)
        if (gains.tiles.tile, gains.tiles.step) != (tc.tile, tc.step):
            raise ConfigError(f"--cache {cache} was measured with --tile {gains.tiles.tile} --step {gains.tiles.step}, "
                              f"not --tile {tc.tile} --step {tc.step}; give those or another --cache")
        console.print(f"tile measurements from {cache}: {len(gains.img)} tiles of {len(set(gains.img.tolist()))} images")
    else:
        if cache is not None and not cache.parent.is_dir():
            raise ConfigError(f"--cache {cache}: the folder {cache.parent} does not exist")
        pick = _spread_images(folders, images)
        with progress() as pb:
            task = pb.add_task("measure tiles", total=len(pick))
            gains = measure_tile_gains(m, [read_rgb(p) for p in pick], m.bits, tc, advance=lambda: pb.advance(task))
        if cache is not None:
            gains.save(cache)
    new, report = fit_gate(m, gains, cfg, target_fab)
    tiles = tile_grid(load_folder_images(folders), tile, m.cfg.scale)
    t, before, after, n = calibrate_gate(new, tiles, target_fab)
    report["gate_bias_shift"] = {"t": t, "target_fab": target_fab, "fab_before": before, "fab_after": after, "tiles": n}
    cv, old = report["cv_vs_static_mix_db"], report["trained_gate_vs_static_mix_db"]
    console.print(f"fitted on {report['tiles']} tiles of {report['images']} images; cross-validated, against the best "
                  f"static mix: {cv:+.4f} dB at FAB {report['cv_fab']:.2f}" +
                  (f" (the current gate: {old:+.4f} dB at {report['trained_gate_fab']:.2f})" if old is not None else ""))
    console.print(f"operating point: FAB {after:.3f} on {n} tiles of {', '.join(folders)} (target {target_fab})")
    meta = {"gate_fit": report, "calibrated_on": folders}
    save_model(new, out, meta=meta)
    console.print(f"-> {out}")


def _spread_images(folders: list[str], n: int) -> list[Path]:
    """``n`` images of the folders, spread evenly over them (all of them if there are fewer)."""
    from ..errors import DataError
    from ..imageio import list_images

    files = [p for f in folders for p in list_images(f)]
    if not files:
        raise DataError(f"no images in {folders}")
    stride = len(files) / min(n, len(files))
    return [files[int(i * stride)] for i in range(min(n, len(files)))]


def _fit_level_gate(model: str, out: Path, choices: list[str], budget: float, cost: Path | None, images: int,
                    folders: list[str], ridge: float, tile: int, step: int, cache: Path | None,
                    json_out: Path | None) -> None:
    from ..checkpoint import load_model, save_model
    from ..config import TileConfig
    from ..imageio import check_output, read_rgb
    from ..train.gate_fit import FOLDS
    from ..train.level_gate import LevelGains, fit_level_gate, level_costs, measure_level_gains

    if images < FOLDS:
        raise ConfigError(f"--images {images}: the fit's {FOLDS}-fold cross-validation needs at least {FOLDS} images")
    if json_out:
        check_output(json_out, "--json", True, image=False)
    m = load_model(model)
    if not m.cfg.quantized:
        raise ConfigError(f"'{model}' is a full-precision model; only Granular-DQ models have a controller")
    for c in choices:
        m.cfg.level_by_name(c)
    costs, source = level_costs(m, choices, tile, cost)
    order = sorted(range(len(choices)), key=lambda i: costs[i])
    if order != list(range(len(choices))):
        raise ConfigError(f"--levels {','.join(choices)}: give them cheapest first (costs {list(costs)})")
    from ..config import LevelGateConfig

    LevelGateConfig(tuple(choices), costs, budget, source)  # the budget against the costs, before the measurement
    tc = TileConfig(tile, step)
    if cache is not None and cache.is_file():
        gains = LevelGains.load(cache)
        if (gains.tiles.tile, gains.tiles.step) != (tc.tile, tc.step) or list(gains.choices) != choices:
            raise ConfigError(f"--cache {cache} measured {list(gains.choices)} at --tile {gains.tiles.tile} --step "
                              f"{gains.tiles.step}; give those or another --cache")
        console.print(f"level measurements from {cache}: {len(gains.img)} tiles of {len(set(gains.img.tolist()))} images")
    else:
        if cache is not None and not cache.parent.is_dir():
            raise ConfigError(f"--cache {cache}: the folder {cache.parent} does not exist")
        pick = _spread_images(folders, images)
        with progress() as pb:
            task = pb.add_task("measure tiles", total=len(pick))
            gains = measure_level_gains(m, [read_rgb(p) for p in pick], choices, tc, advance=lambda: pb.advance(task))
        if cache is not None:
            gains.save(cache)
    new, report = fit_level_gate(m, gains, costs, budget, ridge, source)
    t = Table("budget", "mean cost", "PSNR (gate, CV)", "best static mix", "oracle")
    for r in report["cv"]:
        t.add_row(f"{r['budget']:.2f}", f"{r['cost']:.3f}", f"{r['psnr']:.3f}", f"{r['static_mix_psnr']:.3f}",
                  f"{r['oracle_psnr']:.3f}")
    console.print(f"fitted on {report['tiles']} tiles of {report['images']} images; costs {dict(zip(choices, costs, strict=True))} "
                  f"({source}); {FOLDS}-fold cross-validated over images, mean image PSNR (dB):")
    console.print(t)
    save_model(new, out, meta={"level_gate_fit": report, "fitted_on": folders})
    if json_out:
        json_out.write_text(json.dumps({"command": "gdq " + " ".join(sys.argv[1:]), **report}, indent=2))
        console.print(f"wrote {json_out}")
    console.print(f"-> {out}")
