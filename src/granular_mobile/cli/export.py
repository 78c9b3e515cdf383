"""`gdq export`, `verify`: the graphs and their parity."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..defaults import (
    DEFAULT_TILE,
)
from ..errors import ConfigError
from ..progress import console, progress
from ..progress import out as stdout
from .app import BENCH_DEFAULT, _need, _split, app


@app.command("export")
def export_cmd(
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (graphs + manifest.json)."),
    model: str = typer.Option("default", "--model", "-m", help="Granular-DQ checkpoint, or 'default'."),
    fp: str | None = typer.Option(None, help="Full-precision twin checkpoint (default model: found automatically)."),
    target: str = typer.Option("onnx", help="onnx | tflite | all"),
    tile: int = typer.Option(DEFAULT_TILE, help="Static LR tile size of every graph."),
    fp_layers: str = typer.Option("int8", help="Head/body-end/upsampler/tail: int8 (full integer, NNAPI) | float."),
    single_file: bool = typer.Option(False, "--single-file", help="TFLite: also one file with one signature per graph "
                                     "(needs the tflite target: --target tflite or all)."),
    verify: bool = typer.Option(False, "--verify", help="Compare every graph with PyTorch on Set5/Set14 tiles."),
    verify_data: str = typer.Option(BENCH_DEFAULT, help="Benchmark root for --verify."),
) -> None:
    """Export the controller and one static integer graph per level (bit levels and exit levels), plus manifest.json.

    Needs the export extra: pip install 'granular-mobile\\[export]'.

    Examples:
      gdq export -o export/ --target all --verify
      gdq export -m runs/gdq_x2/final.pt --fp runs/fp_x2/final.pt -o out/ --target tflite --single-file
    """
    _need("export")
    from ..checkpoint import load_model
    from ..export import TARGETS, export
    from ..export.exporter import check_targets, parity_ok

    # the checks that can fail run before the work (and its progress bar) starts
    targets = check_targets(sorted(TARGETS) if target == "all" else _split(target), {"single_file": single_file})
    load_model(model)
    if fp is not None:
        load_model(fp)
    with progress() as pb:
        task = pb.add_task("export", total=None)
        man = export(model, targets, out, tile=tile, fp_layers=fp_layers, fp_model=fp, verify=verify,
                     verify_root=verify_data, single_file=single_file, log=lambda s: pb.console.print(s))
        pb.update(task, total=1, completed=1)
    t = Table("file", "bytes", "sha256")
    for name, f in man.files.items():
        t.add_row(name, str(f.bytes), f.sha256[:12])
    stdout.print(t)
    if man.parity is not None:
        pt = Table("target", "graph", "PSNR vs torch (dB)", "worst tile (dB)", "max abs", "mean abs", "controller agrees")
        for tname, e in man.parity.items():
            for g, v in e["sr"].items():
                pt.add_row(tname, g, f"{v['psnr_db']:.2f}", f"{v['worst_tile_psnr_db']:.2f}", f"{v['max_abs']:.4f}",
                           f"{v['mean_abs']:.5f}", f"{e['controller_agreement']:.1%}")
        stdout.print(pt)
        if not parity_ok(man.parity):
            raise ConfigError("parity below the bar (>= 45 dB per graph, >= 99% controller agreement): see the table")
    console.print(f"wrote {out / 'manifest.json'}")


@app.command("verify")
def verify_cmd(
    out: Path | None = typer.Option(None, "-o", "--out", help="Export folder (its manifest.json gets the figures)."),
    arch: str = typer.Option("arm64", help="arm64: the aarch64 runtimes under QEMU user-mode emulation."),
    setup: bool = typer.Option(False, "--setup", help="First build the arm64 root (once; Debian packages and the "
                               "aarch64 wheels of the runtimes installed here; root or sudo, about 400 MB)."),
    graphs: str = typer.Option("subset", help="all | subset (controller + sr_a4) | a list like controller,4,8,fp32."),
    tiles: int = typer.Option(2, help="Bundled calibration tiles to run (1-24, spread evenly)."),
    target: str = typer.Option("all", help="onnx | tflite | all"),
    cpu: str = typer.Option("cortex-a76", help="Emulated CPU: cortex-a76 | cortex-a55 | max."),
    model: str | None = typer.Option(None, "--model", "-m", help="Checkpoint of the export (default: the manifest's source)."),
    fp: str | None = typer.Option(None, help="Full-precision twin, for sr_fp32 (default model: found automatically)."),
    write: bool = typer.Option(True, "--write/--no-write", help="Add the figures to manifest.json (parity.<target>.arm64)."),
) -> None:
    """Run the exported graphs with the aarch64 builds of onnxruntime and LiteRT (the kernels a
    phone runs) and compare them with the integer reference and with this machine's runtimes.

    Needs the arm64 root that `--setup` builds. Emulation is slow (tens of seconds per graph and
    tile); only numerics are reported.

    Examples:
      gdq verify --arch arm64 --setup
      gdq verify --arch arm64 -o src/granular_mobile/assets/export --graphs all --tiles 6
      gdq verify --arch arm64 -o export/ --graphs controller,8 --target tflite --no-write
    """
    if arch != "arm64":
        raise ConfigError(f"--arch '{arch}' is unknown; valid: ['arm64']")
    from ..verify.arm64 import arm64_ok, arm64_parity, setup_root

    if setup:  # needs the runtimes only, not torch
        setup_root(log=lambda s: console.print(s, highlight=False))
        if out is None:
            return
    if out is None:
        raise ConfigError("gdq verify needs -o EXPORT (the export folder to check), or --setup alone")
    _need("export")
    targets = None if target == "all" else _split(target)
    res = arm64_parity(out, targets, graphs, tiles, cpu, model, fp, write=write,
                       log=lambda s: console.print(s, highlight=False))
    t = Table("target", "graph", "PSNR vs reference (dB)", "worst tile", "identical", "max step",
              "vs x86 (dB)", "identical to x86", "x86 vs reference (dB)")
    for tname, e in res.items():
        if "controller_agreement" in e:
            t.add_row(tname, "controller", f"agrees {e['controller_agreement']:.0%}", "", "", "",
                      "", f"{e['controller_agreement_x86']:.0%}", "")
        for g, v in e["sr"].items():
            t.add_row(tname, g, f"{v['psnr_db']:.2f}", f"{v['worst_tile_psnr_db']:.2f}", f"{v['identical']:.1%}",
                      f"{v['max_abs_255']}/255", f"{v['vs_x86']['psnr_db']:.2f}", f"{v['vs_x86']['identical']:.1%}",
                      f"{v['x86_psnr_db']:.2f}")
    stdout.print(t)
    if write:
        console.print(f"wrote parity.<target>.arm64 into {out / 'manifest.json'}")
    if not arm64_ok(res):
        raise ConfigError("ARM64 parity below the bar (>= 45 dB per integer graph, the controller as on x86): see the table")
