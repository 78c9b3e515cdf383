"""`gdq fit-gate`: fit the controller's gate to measured per-tile gains."""
from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from ..defaults import (
    DEFAULT_STEP,
    DEFAULT_TILE,
)
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
    from ..config import TileConfig
    from ..train.gate_pipeline import fit_bit_gate_to_data, fit_level_gate_to_data

    def table(report: dict) -> None:
        t = Table("budget", "mean cost", "PSNR (gate, CV)", "best static mix", "oracle")
        for r in report["cv"]:
            t.add_row(f"{r['budget']:.2f}", f"{r['cost']:.3f}", f"{r['psnr']:.3f}", f"{r['static_mix_psnr']:.3f}",
                      f"{r['oracle_psnr']:.3f}")
        console.print(t)

    with progress() as pb:
        tasks: list = []  # the bar shows while tiles are measured (not with a --cache)

        def advance(done: int, total: int) -> None:
            if not tasks:
                tasks.append(pb.add_task("measure tiles", total=total))
            pb.update(tasks[0], completed=done, total=total)

        def log(s: str) -> None:
            pb.console.print(s, highlight=False)

        if levels:
            fit_level_gate_to_data(model, out, _split(levels), budget, _split(data), cost, images, ridge,
                                   TileConfig(tile, step), cache, json_out, "gdq " + " ".join(sys.argv[1:]),
                                   advance, log, on_fitted=table)
        else:
            fit_bit_gate_to_data(model, out, _int_list("--choices", choices),
                                 _int_list("--e2b-bits", e2b_bits) if e2b_bits else None, target_fab, _split(data),
                                 images, ridge, TileConfig(tile, step), cache, advance, log)
    if levels and json_out:
        console.print(f"wrote {json_out}")
    console.print(f"-> {out}")
