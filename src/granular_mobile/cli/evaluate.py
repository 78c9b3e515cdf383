"""`gdq eval`, `import-reference`."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ..defaults import (
    DEFAULT_STEP,
    DEFAULT_TILE,
)
from ..progress import console, progress
from ..progress import out as stdout
from .app import BENCH_DEFAULT, _need, _split, app


@app.command("eval")
def eval_cmd(
    model: str = typer.Option("default", "--model", "-m", help="Checkpoint, or 'default' (the shipped model)."),
    data: str = typer.Option("Set5,Set14,BSD100", "--data", help="Comma-separated benchmark sets."),
    scale: int | None = typer.Option(None, help="Scale (default: the model's)."),
    root: str = typer.Option(BENCH_DEFAULT, help="Benchmark root (SET/HR, SET/LR_bicubic/X<s>)."),
    tile: int = typer.Option(DEFAULT_TILE, help="LR tile size."),
    step: int = typer.Option(DEFAULT_STEP, help="Step between tiles."),
    fp: str | None = typer.Option(None, help="Full-precision twin checkpoint ('default' model: found automatically)."),
    bits: int | None = typer.Option(None, help="Force every tile to this bit-width (static quantization)."),
    blocks: int = typer.Option(0, help="With --bits: the exit level that runs this many residual blocks (a level of "
                               "the model, trained with gdq quantize --tune-level B --blocks K). 0: full depth."),
    budget: float | None = typer.Option(None, help="With a level gate: the tiles' mean time relative to the full graph "
                                        "(default: the model's)."),
    bicubic: bool = typer.Option(True, help="Also report bicubic."),
    numerics: str = typer.Option("int8", help="int8: what a device computes, the integer numerics of `gdq export` "
                                 "(int8 full-precision layers and tensors; bit-exact with the ONNX graphs) | float: "
                                 "the PyTorch model's own forward, as trained (the same integer values for a model "
                                 "trained with --numerics int8; the float numerics for one trained with float)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write results as JSON."),
) -> None:
    """PSNR / SSIM (Y, shave = scale), FAB, BitOPs and tiles per bit on benchmark sets.

    Examples:
      gdq eval --data Set5,Set14,BSD100 --scale 2
      gdq eval --data Set5 --numerics float  # the PyTorch forward instead of the deployed numerics
      gdq eval --model runs/gdq_x2/final.pt --fp runs/fp_x2/final.pt --json eval.json
      gdq eval --model runs/gdq_x2_6k4/final.pt --bits 6 --blocks 4 --data Set14  # an exit level
    """
    _need("torch")
    from ..config import TileConfig
    from ..eval.benchmarks import evaluate_benchmarks

    with progress() as pb:
        task = pb.add_task("eval", total=None)
        ev = evaluate_benchmarks(model, _split(data), root, scale, TileConfig(tile=tile, step=step), fp, bits, blocks,
                                 budget, numerics, bicubic, on_total=lambda n: pb.update(task, total=n),
                                 advance=lambda n: pb.advance(task, n))
    results, s, levels = ev.results, ev.scale, ev.levels
    t = Table("set", "model", "PSNR", "SSIM", "FAB", "GBitOPs/img", "tiles " + "/".join(map(str, levels)))
    for r in results:
        tb = "/".join(str(r.tiles_per_bit.get(b, 0)) for b in levels) if r.tiles_per_bit else ""
        t.add_row(r.dataset, r.model, f"{r.psnr:.3f}", f"{r.ssim:.4f}", "" if r.fab is None else f"{r.fab:.3f}",
                  "" if r.bitops_g is None else f"{r.bitops_g:.1f}", tb)
    stdout.print(t)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"scale": s, "tile": tile, "step": step, "numerics": numerics,
                                        "results": [r.to_dict() for r in results]}, indent=2))
        console.print(f"wrote {json_out}")


@app.command("import-reference")
def import_reference_cmd(
    ckpt: Path = typer.Argument(..., help="Reference-code SRResNet checkpoint (.pt/.pth)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output granular-mobile checkpoint."),
    data: str | None = typer.Option(None, help=f"Calibrate E2B thresholds on these HR folders (tile {DEFAULT_TILE})."),
) -> None:
    """Convert a checkpoint of the Granular-DQ reference implementation (SRResNet).

    Example: gdq import-reference model_best.pt -o srresnet_ref_x4.pt
    """
    _need("torch")
    import dataclasses

    import torch

    from ..checkpoint import save_model
    from ..config import E2BConfig
    from ..errors import CheckpointError
    from ..models import build_from_config
    from ..reference import convert_reference

    if not ckpt.is_file():
        raise CheckpointError(f"'{ckpt}' does not exist")
    try:
        obj = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read '{ckpt}': {e}") from e
    model, notes = convert_reference(obj, e2b_thresholds=(0.0, 0.0) if data else None)
    if data:
        from ..data.dataset import load_folder_images
        from ..train import calibrate_e2b

        e2b, n = calibrate_e2b(load_folder_images(_split(data)), E2BConfig(quantiles=model.cfg.e2b.quantiles), model.cfg.scale)
        new = build_from_config(dataclasses.replace(model.cfg, e2b=e2b))
        new.load_state_dict(model.state_dict())
        model = new
        notes.append(f"E2B thresholds calibrated on {n} tiles: {e2b.thresholds}")
    save_model(model, out, meta={"imported_from": str(ckpt)})
    for n_ in notes:
        console.print(f"note: {n_}")
    console.print(f"wrote {out} ({model.cfg.name} x{model.cfg.scale}, rgb_range 255)")
