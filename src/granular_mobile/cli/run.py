"""`gdq run`, `bench`, `web`: the runtime's commands."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from ..defaults import (
    DEFAULT_MERGE,
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    MAX_OUTPUT_MP,
)
from ..errors import ConfigError, require
from ..progress import console, progress
from ..progress import out as stdout
from .app import _split, app, as_flags


@app.command("run")
def run_cmd(
    inputs: list[str] = typer.Argument(..., help="Image files, folders or globs."),
    out: str = typer.Option(..., "-o", "--out", help="Output file (one input: .png, .jpg, .webp, .bmp, .tif) or folder "
                            "(several inputs, an existing folder, or a path ending in /; files NAME_x2.png)."),
    model: str = typer.Option("default", "--model", "-m",
                              help="'default' (shipped model), an export folder (onnxruntime/tflite) or a checkpoint (torch)."),
    backend: str = typer.Option("onnxruntime", help="onnxruntime | tflite | torch"),
    bits: str = typer.Option("auto", help="auto (per-tile controller), or a level to force on every tile: a bit-width "
                             "(its full-depth level) or a level name (a6k4)."),
    budget: float | None = typer.Option(None, help="With a level gate: the tiles' mean time relative to the full "
                                        "graph (default: the model's; 1.0: the full graph's time)."),
    precision: str = typer.Option("int8", help="int8 (Granular-DQ) | fp32 (the full-precision twin)."),
    tile: int | None = typer.Option(None, help=f"LR tile size (default: the model's calibration tile, {DEFAULT_TILE})."),
    overlap: int | None = typer.Option(None, help=f"Overlap between tiles (LR pixels; default min({DEFAULT_OVERLAP}, tile/4))."),
    merge: str = typer.Option(DEFAULT_MERGE, help="How overlaps merge: center (each tile keeps the centre of its "
                              "overlaps, as gdq eval) | blend (linear ramps across the overlap)."),
    threads: int = typer.Option(0, help="CPU threads: 0 (every usable core) or 1..cores (more is clamped, with a "
                                "warning); onnxruntime and tflite run that many tiles at once, one thread each."),
    stats: Path | None = typer.Option(None, help="Write tiles per level and per bit, FAB, timings (the SR time of each "
                                      "level too; and a batch's failures) as JSON."),
    bitmap: Path | None = typer.Option(None, help="Write the input tinted by each tile's level (one input)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs (images, --stats, --bitmap)."),
    share_budget: bool = typer.Option(False, "--share-budget", help="With a level gate and several inputs: spend the "
                                      "budget over all the inputs' tiles together (one price for the batch: an easy "
                                      "image takes less time, a hard one more; their mean cost within the budget). "
                                      "Scores every input first."),
    large: bool = typer.Option(False, "--large", help=f"Run inputs whose output exceeds {MAX_OUTPUT_MP} megapixels "
                               "(refused by default, with the tile count and the output's memory)."),
) -> None:
    """Upscale images tile by tile, each tile at the level the controller gives it.

    What can fail before the work fails before it, in one line: output paths, extensions and
    permissions, existing files without --force, two inputs writing one output, the model's
    files (sha256) and options. In a batch, an input that cannot be read or upscaled is one
    line and the others go on; the run ends with done / failed / skipped and exit code 1 if
    any failed.

    Examples:
      gdq run photo.png -o photo_x2.png
      gdq run photos/ -o out/ --stats stats.json
      gdq run photo.png -o ref.png --precision fp32
      gdq run photos/ -o out/ --budget 0.5 --share-budget
    """
    from rich.markup import escape

    from ..runtime.batch import Batch

    batch = Batch(inputs, out, force=force, stats=stats, bitmap=bitmap, large=large, share_budget=share_budget,
                  model=model, backend=backend,
                  threads=threads, tile=tile, bits=bits, precision=precision, overlap=overlap, merge=merge, budget=budget)

    def done(d: dict) -> None:
        fab = "" if d["fab"] is None else f", FAB {d['fab']:.2f}, tiles per bit {d['tiles_per_bit']}"
        if d["budget"] is not None:
            costs = "" if d["cost_table"] == "default" else f", costs {d['cost_table']}"
            fab = (f", time {d['cost']:.2f} of the full graph's (budget {d['budget']:g}{costs}), "
                   f"tiles per level {d['tiles_per_level']}, FAB {d['fab']:.2f}")
        stdout.print(f"{d['input']} -> {d['output']} ({d['tiles']} tiles{fab})", soft_wrap=True)

    def line(s: dict[str, int]) -> str:
        return f"{s['done']} done, {s['failed']} failed, {s['skipped']} skipped"

    with progress(transient=True) as pb:
        task = pb.add_task("tiles", total=None)
        try:
            res = batch.run(on_start=lambda f: pb.update(task, description=escape(f.name), completed=0, total=None),
                            progress=lambda d, n: pb.update(task, completed=d, total=n), on_done=done,
                            on_failed=lambda f, e: pb.console.print(Text.assemble(("failed:", "red"), f" {f}: {as_flags(str(e))}")))
        except KeyboardInterrupt:
            if batch.multi:  # what is written is whole (atomic writes); say what is not
                console.print(line(batch.result.summary()))
            raise
    if batch.multi:
        shared = res.mean_cost() if share_budget else None
        tail = "" if shared is None else f"; the batch's tiles: time {shared:.2f} of the full graph's (budget shared)"
        stdout.print(line(res.summary()) + tail, soft_wrap=True)
    if res.failed:
        raise typer.Exit(1)


@app.command("bench")
def bench_cmd(
    model: str = typer.Option("default", "--model", "-m", help="Export folder, or 'default'."),
    backends: str = typer.Option("onnxruntime,tflite", help="Comma-separated backends."),
    threads: str = typer.Option("1,2", help="Comma-separated thread counts."),
    images: Path | None = typer.Option(None, help="Folder of images (default: the bundled sample)."),
    torch_model: str = typer.Option("default", help="Checkpoint for the PyTorch fp32 baseline ('' to skip)."),
    repeat: int = typer.Option(1, help="Passes over the images per configuration."),
    rounds: int = typer.Option(3, help="Interleaved rounds over all configurations; each row keeps its fastest."),
    levels: bool = typer.Option(False, "--levels", help="Also time each level of the export on every tile "
                                "(modes a4, a5, ...: what each level costs per tile), with ratios to the lowest."),
    costs: bool = typer.Option(False, "--costs", help="Time the level gate's choices and the full-depth levels "
                               "only, and write each choice's cost per backend and thread count into the export's "
                               "manifest.json (level_gate.measured): `gdq run` then allocates with the costs of the "
                               "backend and thread count it runs on."),
    json_out: Path | None = typer.Option(None, "--json", help="Write results as JSON."),
) -> None:
    """Latency per tile and per output megapixel, and peak RSS: fp32, static int8 and
    Granular-DQ dynamic per backend and thread count, plus PyTorch fp32 on the same images.

    Examples:
      gdq bench
      gdq bench --rounds 1 --backends onnxruntime --threads 2 --images photos/ --json bench.json
      gdq bench --levels --backends onnxruntime,tflite --threads 2 --torch-model ''
      gdq bench --costs -m exports/mine --threads 1,2 --rounds 3 --repeat 3
    """
    from ..bench import bench, cost_export, cost_levels, markdown, write_cost_tables
    from ..imageio import list_images
    from ..runtime.backends import DEFAULT_EXPORT, check_threads
    from ..runtime.targets import backend_target

    # each configuration runs in a worker process: a missing dependency would surface there,
    # after the configurations before it have run
    bes = _split(backends)
    try:
        counts = [check_threads(int(t)) for t in _split(threads)]
    except ValueError:
        raise ConfigError(f"--threads '{threads}' must be comma-separated integers") from None
    level_names: tuple[str, ...] = ()
    if costs:  # what --costs needs, first (it prices exported graphs: not torch)
        torch_model = ""  # the levels alone: no PyTorch baseline (a device's runtime-only install can run it)
        folder = cost_export(model, bes, counts)
        level_names = cost_levels(folder.manifest)
    if torch_model or "torch" in bes:
        require("torch", "torch")
    for be in bes:
        spec = backend_target(be)
        if spec is not None:
            require(spec.module, spec.extra)
    # (not checkpoint.ASSETS: that module imports torch, and this command runs without it)
    imgs = list_images(images) if images else [DEFAULT_EXPORT.parent / "sample.png"]
    if not imgs:
        raise ConfigError(f"no images in '{images}'")
    if levels and not costs:
        from ..runtime.manifest import ExportFolder

        level_names = tuple(lv.name for lv in ExportFolder(DEFAULT_EXPORT if model == "default" else model)
                            .manifest.level_list())
    res = bench(model, bes, list(dict.fromkeys(counts)), imgs, repeat, torch_model or None,
                log=lambda s: console.print(s, highlight=False), rounds=rounds, levels=level_names, only_levels=costs)
    typer.echo(markdown(res))
    if costs:
        tables, path = write_cost_tables(res, folder, "gdq " + shlex.join(sys.argv[1:]))
        t = Table("costs", *res["cost_choices"])
        for k, v in sorted(tables.items()):
            t.add_row(k, *(f"{c:.3f}" for c in v.costs))
        console.print(t)
        console.print(f"wrote the cost tables {sorted(tables)} into {path}", highlight=False)
    if json_out:
        json_out.write_text(json.dumps(res, indent=2))


@app.command("web")
def web_cmd(
    model: str = typer.Option("default", "--model", "-m", help="Export folder (manifest.json + ONNX graphs), or 'default'."),
    port: int = typer.Option(8000, help="Port on 127.0.0.1 (0: any free port)."),
    ort: Path | None = typer.Option(None, help="onnxruntime-web's dist folder (default: a checkout's web_demo/"
                                    "node_modules, else the one `npm install --prefix ~/.cache/granular-mobile/web "
                                    "onnxruntime-web@VERSION` puts in the cache)."),
) -> None:
    """Serve the browser demo and an export on localhost, cross-origin isolated (COOP/COEP:
    multithreaded WebAssembly). Open the printed URL; Ctrl+C stops it. The page ships with the
    package; onnxruntime-web comes from npm (the error says the command).

    Examples:
      gdq web
      gdq web --model exports/mine --port 8080
    """
    from ..runtime.backends import DEFAULT_EXPORT
    from ..web import server

    srv = server(DEFAULT_EXPORT if model == "default" else Path(model), port, ort=ort)
    stdout.print(f"serving the browser demo on http://127.0.0.1:{srv.server_address[1]}/ (Ctrl+C stops)", soft_wrap=True)
    sys.stdout.flush()
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
