"""``gdq``: the command line. Library errors (GdqError) become one line and exit code 1;
set GDQ_DEBUG=1 for the traceback. torch is imported only by the commands that need it."""
from __future__ import annotations

import inspect
import json
import os
import shlex
import sys
import warnings
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from . import __version__
from .defaults import (
    DEFAULT_MERGE,
    DEFAULT_OVERLAP,
    DEFAULT_STEP,
    DEFAULT_TILE,
    MAX_OUTPUT_MP,
    bench_root,
    train_folders,
)
from .errors import ConfigError, GdqError, GdqWarning, require
from .progress import console, progress
from .progress import out as stdout


def _flags_as_switches() -> None:
    """typer 0.29 shows a type after a flag (`--force <bool>`), which reads as if it took a
    value (`--force true` then fails): a flag shows none."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_gdq", False):
        return

    def display_type_rich(self, ctx):
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._gdq = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_as_switches()

app = typer.Typer(
    name="gdq",
    help="Granular-DQ super-resolution: train, quantize, evaluate, run.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# read when the command line is built (its help shows them): $GDQ_DATA_ROOT / $GDQ_BENCH_ROOT (defaults.py)
DATA_DEFAULT = ",".join(train_folders())
BENCH_DEFAULT = bench_root()


def _version(v: bool) -> None:
    if v:
        typer.echo(f"granular-mobile {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")) -> None:
    pass


def _split(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


#: what each extra must bring for a command to start; checked first, in one line, instead of
#: an import error deep in the command
_EXTRA_MODULES = {"torch": ("torch",), "export": ("torch", "onnx")}


def _need(extra: str) -> None:
    for module in _EXTRA_MODULES[extra]:
        require(module, extra)


@app.command("models")
def models_cmd() -> None:
    """List the registered model variants.

    Example: gdq models
    """
    from .models.family import list_models

    t = Table("name", "description")
    for k, d in list_models().items():
        t.add_row(k, d)
    stdout.print(t)


def _int_list(option: str, s: str) -> tuple[int, ...]:
    """A comma-separated list of integers (``--bits 4,8``), or a one-line error naming the option."""
    try:
        return tuple(int(x) for x in _split(s))
    except ValueError:
        raise ConfigError(f"{option} '{s}' is not a comma-separated list of integers (e.g. 4,5,6,8)") from None


def _train_config(ctx: typer.Context, out: Path, resume: bool, model_options: tuple[str, ...], **options):
    """The training options as given; with --resume, those not set on the command line come
    from OUT/last.pt (a bare --resume continues the run as it was started), and the options that
    shape the model (``model_options``) cannot be set at all: the model is the one in last.pt."""
    from .train import TrainConfig, resumed_config

    if not resume:
        return TrainConfig(**options)

    def given(name: str) -> bool:
        # by the source's name: typer vendors its click (typer._click), so no enum to import
        source = ctx.get_parameter_source(name)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    fixed = [name for name in model_options if given(name)]
    if fixed:
        flags = ", ".join("--" + n.replace("_", "-") for n in fixed)
        raise ConfigError(f"{flags}: with --resume the model is the one in {out / 'last.pt'}; drop {flags}")
    return resumed_config(out / "last.pt", {k: v for k, v in options.items() if k == "mode" or given(k)})


def _train_common(cfg, out: Path, model_cfg, init: str | None, resume: bool) -> Path:
    from .train import train

    with progress("loss {task.fields[loss]:.4f}", "lr {task.fields[lr]:.2e}", "FAB {task.fields[fab]:.2f}") as pb:
        task = pb.add_task("train" if cfg.mode == "fp" else "quantize", total=cfg.iters, loss=0.0, lr=0.0, fab=0.0)

        def on_step(d: dict) -> None:
            pb.update(task, completed=d["iteration"], loss=d["loss"], lr=d["lr"], fab=d["fab"])

        return train(cfg, out, model_cfg=model_cfg, init=init, resume=resume, on_step=on_step, log=lambda s: pb.console.print(s))


_TRAIN_HELP_COMMON = dict(
    data=typer.Option(DATA_DEFAULT, help="Comma-separated folders of HR training images."),
    patch=typer.Option(32, help="LR patch side (pixels)."),
    batch=typer.Option(16, help="Batch size per process."),
    lr=typer.Option(1e-3, help="Peak learning rate (Adam)."),
    schedule=typer.Option("cosine", help="cosine | step"),
    seed=typer.Option(0, help="Random seed."),
)


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "-o", "--out", help="Run folder (last.pt, best.pt, final.pt, metrics.jsonl)."),
    model: str = typer.Option("srresnet", help="Full-precision model: srresnet | edsr."),
    scale: int = typer.Option(2, help="Upscaling factor: 2 | 4."),
    n_blocks: int = typer.Option(16, help="Residual blocks (smaller for quick trials)."),
    n_feats: int = typer.Option(64, help="Channels."),
    data: str = _TRAIN_HELP_COMMON["data"],
    patch: int = _TRAIN_HELP_COMMON["patch"],
    batch: int = _TRAIN_HELP_COMMON["batch"],
    iters: int = typer.Option(3200, help="Total iterations (raise it with --resume to train longer)."),
    lr: float = _TRAIN_HELP_COMMON["lr"],
    warmup: int = typer.Option(100, help="Linear warm-up iterations."),
    schedule: str = _TRAIN_HELP_COMMON["schedule"],
    milestones: str = typer.Option("", help="Step schedule: comma-separated iterations where lr halves."),
    grad_clip: float = typer.Option(1.0, help="Gradient-norm clip (0: off)."),
    seed: int = _TRAIN_HELP_COMMON["seed"],
    eval_every: int = typer.Option(500, help="Validate on --val-set every N iterations (0: never)."),
    ckpt_every: int = typer.Option(50, help="Write last.pt every N iterations."),
    val_root: str = typer.Option(BENCH_DEFAULT, help="Benchmark root for validation."),
    val_set: str = typer.Option("Set5", help="Validation set."),
    threads: int = typer.Option(0, help="CPU threads (0: torch default)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt with the run's own options "
                                "(options given here replace them; a larger --iters trains longer)."),
    init: str | None = typer.Option(None, "--init", help="Start from this full-precision checkpoint's weights "
                                       "(fresh optimizer and schedule; its model must match --model/--scale/..., "
                                       "or be the x2 twin of a --scale 4 model: body, first upsampling stage and tail)."),
) -> None:
    """Train a full-precision model (L1, Adam, warm-up + cosine/step schedule).

    Runs unchanged under torchrun (DistributedDataParallel).

    Examples:
      gdq train -o runs/fp_x2
      gdq train -o runs/fp_x2 --resume   (continues with the run's own options)
      gdq train -o runs/fp_x2 --resume --iters 20000
      gdq train -o runs/fp_x2_ft --init src/granular_mobile/assets/srresnet_x2.pt --patch 48 --lr 5e-4
      gdq train -o runs/fp_x4 --scale 4 --init src/granular_mobile/assets/srresnet_x2.pt --patch 24 --lr 5e-4
      torchrun --nproc_per_node 4 -m granular_mobile.cli train -o runs/fp_x2
    """
    _need("torch")
    from .config import ModelConfig
    from .models.family import family_names

    if model not in family_names():
        raise ConfigError(f"--model '{model}' is not a full-precision model; valid: {family_names()} "
                          "(gdq quantize makes the _gdq one)")
    if init is not None and resume:
        raise ConfigError("--init and --resume exclude each other: --resume continues OUT/last.pt")
    cfg = _train_config(ctx, out, resume, ("model", "scale", "n_blocks", "n_feats"), mode="fp",
                        data=tuple(_split(data)), patch=patch, batch=batch, iters=iters, lr=lr, warmup=warmup,
                        schedule=schedule, milestones=_int_list("--milestones", milestones), grad_clip=grad_clip,
                        seed=seed, eval_every=eval_every, ckpt_every=ckpt_every, val_root=val_root, val_set=val_set,
                        threads=threads)
    mc = ModelConfig(arch=model, scale=scale, n_blocks=n_blocks, n_feats=n_feats, quantized=False)
    final = _train_common(cfg, out, mc, init, resume)
    console.print(f"wrote {final}")


@app.command("quantize")
def quantize_cmd(
    ctx: typer.Context,
    init: str | None = typer.Option(None, "--init", help="Full-precision twin to start from, or a Granular-DQ "
                                       "model to fine-tune further (a new schedule; its quantizer steps and gate are "
                                       "kept). Not with --resume (the run has its model)."),
    out: Path = typer.Option(..., "-o", "--out", help="Run folder."),
    target_fab: float = typer.Option(4.5, help="Bit budget: mean tile bit-width the gate is pushed towards "
                                    "(--no-fab-two-sided: only pushed below it)."),
    fab_lambda: float = typer.Option(0.05, help="Weight of the bit-budget term."),
    fab_two_sided: bool = typer.Option(True, help="Penalise |E[FAB] - target| (else only FAB above the target)."),
    gate_warmup: int = typer.Option(0, help="Iterations with random bit levels and a frozen gate before the gate trains."),
    bits: str = typer.Option("4,5,6,8", help="Activation bit set."),
    numerics: str = typer.Option("int8", help="int8: train with every rounding point of the full-integer export "
                                 "(learned int8 grids between convs; what is trained is what is deployed) | float: "
                                 "only the quantized convs' inputs (the paper's numerics; the export calibrates the rest)."),
    distill: float = typer.Option(0.0, help="Weight of an L1 term towards the full-precision twin's output "
                                  "(--distill-from); 0: off."),
    distill_from: str = typer.Option("", help="The full-precision twin for --distill ('default': the shipped one)."),
    random_levels: float = typer.Option(0.0, help="After --gate-warmup, the share of crops run at a uniformly random "
                                        "bit level instead of the gate's, so every level keeps training."),
    step_lr_mult: float = typer.Option(20.0, help="A quantizer's steps move by about lr x this fraction of their "
                                       "mean size per iteration (Adam; 0.1 % at lr 5e-5)."),
    tune_level: int = typer.Option(0, help="Train only this bit level's quantizer steps (activation steps and int8 "
                                   "grids), every crop at that level, from a Granular-DQ --init: weights, controller "
                                   "and the other levels stay bit for bit (the bit-budget and gate options then do "
                                   "nothing). 0: off."),
    own_weights: bool = typer.Option(False, "--own-weights", help="With --tune-level: the level also trains weights of "
                                     "its own (a copy of the shared network at the start, at --lr); the controller and "
                                     "the other levels keep the shared network. Each level's graph carries its weights "
                                     "anyway (a --single-file TFLite, which stores shared weights once, grows by the copy)."),
    blocks: int = typer.Option(0, help="With --tune-level: the tuned level is an exit level that runs only the first "
                               "BLOCKS residual blocks (then the body end, upsampler and tail), with a network of its "
                               "own (implies --own-weights): fewer MACs, a faster graph. 0: full depth."),
    data: str = _TRAIN_HELP_COMMON["data"],
    patch: int = typer.Option(48, help="LR patch side (pixels)."),
    batch: int = _TRAIN_HELP_COMMON["batch"],
    iters: int = typer.Option(1000, help="Total iterations."),
    lr: float = typer.Option(1e-4, help="Peak learning rate (the gate gets --gate-lr-mult times it)."),
    gate_lr_mult: float = typer.Option(10.0, help="Learning-rate multiplier of the GBC gate."),
    warmup: int = typer.Option(50, help="Linear warm-up iterations."),
    schedule: str = _TRAIN_HELP_COMMON["schedule"],
    seed: int = _TRAIN_HELP_COMMON["seed"],
    eval_every: int = typer.Option(250, help="Validate every N iterations (0: never)."),
    ckpt_every: int = typer.Option(25, help="Write last.pt every N iterations."),
    val_root: str = typer.Option(BENCH_DEFAULT, help="Benchmark root for validation."),
    val_set: str = typer.Option("Set5", help="Validation set."),
    threads: int = typer.Option(0, help="CPU threads (0: torch default)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.pt with the run's own options "
                                "(options given here replace them; a larger --iters trains longer)."),
) -> None:
    """Quantization-aware fine-tuning of a full-precision model into Granular-DQ.

    Calibrates the E2B thresholds at the deployment tile size (the E2B config's tile) first.

    Examples:
      gdq quantize --init runs/fp_x2/final.pt -o runs/gdq_x2
      gdq quantize --init runs/fp_x2/final.pt -o runs/gdq_x2_f4 --target-fab 4.0
      gdq quantize --init runs/gdq_x2/final.pt -o runs/gdq_x2_more --iters 3000 --lr 5e-5
      gdq quantize --init default -o runs/gdq_x2_int8 --distill 1 --distill-from default
      gdq quantize -o runs/gdq_x2_int8 --resume   (continues with the run's own options)
      gdq quantize --init default -o runs/gdq_x2_a8 --tune-level 8 --iters 300 --lr 1e-4 --distill 1 --distill-from default
      gdq quantize --init default -o runs/gdq_x2_w8 --tune-level 8 --own-weights --iters 1200 --lr 5e-5 --distill 1 ...
      gdq quantize --init default -o runs/gdq_x2_6k4 --tune-level 6 --blocks 4 --iters 1500 --lr 2e-4 --distill 1 ...
    """
    _need("torch")
    from .checkpoint import read_checkpoint, resolve_model_path
    from .config import TRAIN_NUMERICS, ModelConfig, QuantConfig, from_dict

    if numerics not in TRAIN_NUMERICS:
        raise ConfigError(f"--numerics '{numerics}' is unknown; valid: {list(TRAIN_NUMERICS)}")
    if init == "default":
        init = str(resolve_model_path("default"))

    cfg = _train_config(ctx, out, resume, ("init", "bits", "numerics"), mode="qat", data=tuple(_split(data)),
                        patch=patch, batch=batch, iters=iters, lr=lr, warmup=warmup, schedule=schedule, seed=seed,
                        target_fab=target_fab, fab_lambda=fab_lambda, fab_two_sided=fab_two_sided,
                        gate_warmup=gate_warmup, distill=distill, distill_from=distill_from,
                        step_lr_mult=step_lr_mult, random_levels=random_levels, gate_lr_mult=gate_lr_mult,
                        tune_level=tune_level, own_weights=own_weights or blocks > 0, blocks=blocks,
                        eval_every=eval_every, ckpt_every=ckpt_every, val_root=val_root, val_set=val_set,
                        threads=threads)
    mc = None
    if not resume:  # (with --resume, OUT/last.pt has the model; --init is not read)
        import dataclasses

        if init is None:
            raise ConfigError("gdq quantize needs --init (a full-precision twin or a Granular-DQ model), or --resume")
        fp_cfg = from_dict(ModelConfig, read_checkpoint(init)["model"])
        if tune_level and not fp_cfg.quantized:
            raise ConfigError(f"--tune-level: --init {init} is a full-precision model; it needs a Granular-DQ model")
        want = _int_list("--bits", bits)
        if fp_cfg.quantized and fp_cfg.quant.bits != want:
            raise ConfigError(f"--init {init} is a Granular-DQ model with bits {list(fp_cfg.quant.bits)}, not --bits {bits}")
        if fp_cfg.numerics == "int8" and numerics != "int8":
            raise ConfigError(f"--init {init} was trained with int8 numerics; it cannot go back to --numerics float")
        if tune_level:  # the --init's model as it is (its numerics too): only that level trains
            mc = fp_cfg
            if blocks and (tune_level, blocks) not in fp_cfg.exits:
                mc = dataclasses.replace(fp_cfg, exits=tuple(sorted({*fp_cfg.exits, (tune_level, blocks)})))
            elif own_weights and not blocks and tune_level not in fp_cfg.level_weights:
                mc = dataclasses.replace(fp_cfg, level_weights=tuple(sorted({*fp_cfg.level_weights, tune_level})))
            cfg.level_index(mc)
        elif fp_cfg.quantized:
            mc = dataclasses.replace(fp_cfg, numerics=numerics)
        else:
            mc = dataclasses.replace(fp_cfg, quantized=True, quant=QuantConfig(bits=want), numerics=numerics)
    final = _train_common(cfg, out, mc, init, resume)
    console.print(f"wrote {final}")


@app.command("calibrate")
def calibrate_cmd(
    model: str = typer.Argument(..., help="Granular-DQ checkpoint."),
    out: Path = typer.Option(..., "-o", "--out", help="Output checkpoint."),
    tile: int = typer.Option(DEFAULT_TILE, help="Deployment tile size (LR pixels)."),
    data: str = _TRAIN_HELP_COMMON["data"],
    quantiles: str = typer.Option("", help="q1,q2 (default: the model's, 0.5,0.9)."),
    target_fab: float | None = typer.Option(None, help="Also shift the GBC gate's bias so the deployed (argmax) "
                                               "controller averages this many bits on the data's tiles."),
) -> None:
    """Recompute the E2B entropy thresholds for a tile size on a data folder; optionally set the
    controller's operating point (average bits) with --target-fab.

    Examples:
      gdq calibrate runs/gdq_x2/final.pt --tile 128 -o model_t128.pt
      gdq calibrate runs/gdq_x2/final.pt --target-fab 4.5 -o model_f45.pt
    """
    _need("torch")
    import dataclasses

    from .checkpoint import load_model, save_model
    from .config import check_target_fab
    from .data.dataset import load_folder_images, tile_grid
    from .models import build_from_config
    from .train import calibrate_e2b, calibrate_gate

    if target_fab is not None:
        check_target_fab(target_fab)  # before the model loads; its own bit set narrows the range below
    m = load_model(model)
    if not m.cfg.quantized:
        raise ConfigError(f"'{model}' is a full-precision model; E2B thresholds belong to Granular-DQ models")
    if target_fab is not None:
        check_target_fab(target_fab, m.cfg.quant.bits)
    e2b = m.cfg.e2b
    if quantiles:
        try:
            q1, q2 = (float(q) for q in _split(quantiles))
        except ValueError:
            raise ConfigError(f"--quantiles '{quantiles}' is not a comma-separated pair of numbers (e.g. 0.33,0.67)") from None
        e2b = dataclasses.replace(e2b, quantiles=(q1, q2))
    images = load_folder_images(_split(data))
    tiles = tile_grid(images, tile, m.cfg.scale)  # cut once: the thresholds and the gate use the same tiles
    e2b, n = calibrate_e2b(images, e2b, m.cfg.scale, tile, tiles=tiles)
    new = build_from_config(dataclasses.replace(m.cfg, e2b=e2b))
    new.load_state_dict(m.state_dict())
    meta: dict = {"calibrated_on": _split(data), "tiles": n}
    console.print(f"E2B thresholds at tile {tile} ({n} tiles): {e2b.thresholds[0]:.4f}, {e2b.thresholds[1]:.4f}")
    if target_fab is not None:
        t, before, after, _ = calibrate_gate(new, tiles, target_fab)
        meta["gate_bias_shift"] = {"t": t, "target_fab": target_fab, "fab_before": before, "fab_after": after}
        console.print(f"gate bias shift t = {t:+.2f} * (0, 1, 2): FAB {before:.3f} -> {after:.3f} (target {target_fab})")
    save_model(new, out, meta=meta)
    console.print(f"-> {out}")


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
    from .checkpoint import load_model, save_model
    from .config import TileConfig, check_target_fab
    from .data.dataset import load_folder_images, tile_grid
    from .imageio import read_rgb
    from .train import calibrate_gate
    from .train.gate_fit import FOLDS, GateFitConfig, TileGains, fit_gate, measure_tile_gains

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
    from .errors import DataError
    from .imageio import list_images

    files = [p for f in folders for p in list_images(f)]
    if not files:
        raise DataError(f"no images in {folders}")
    stride = len(files) / min(n, len(files))
    return [files[int(i * stride)] for i in range(min(n, len(files)))]


def _fit_level_gate(model: str, out: Path, choices: list[str], budget: float, cost: Path | None, images: int,
                    folders: list[str], ridge: float, tile: int, step: int, cache: Path | None,
                    json_out: Path | None) -> None:
    from .checkpoint import load_model, save_model
    from .config import TileConfig
    from .imageio import check_output, read_rgb
    from .train.gate_fit import FOLDS
    from .train.level_gate import LevelGains, fit_level_gate, level_costs, measure_level_gains

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
    from .config import LevelGateConfig

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


@app.command("pack")
def pack_cmd(
    ckpt: str = typer.Argument(..., help="Checkpoint to pack (e.g. runs/gdq_x2/final.pt)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output file."),
) -> None:
    """Write a compact checkpoint for shipping (fp16 weights; quantized integers kept exact).

    Example: gdq pack runs/gdq_x2/final.pt -o src/granular_mobile/assets/srresnet_gdq_x2.pt
    """
    _need("torch")
    from .checkpoint import load_model, pack_model, read_checkpoint

    meta = read_checkpoint(ckpt).get("meta", {})
    pack_model(load_model(ckpt), out, meta={**meta, "packed_from": str(ckpt)})
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


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
    from .checkpoint import DEFAULT_FILES, DEFAULT_MODEL, load_model
    from .config import TileConfig
    from .eval import benchmark_pairs, evaluate_dataset
    from .runtime.backends.torch import NUMERICS

    if numerics not in NUMERICS:  # checked before the data is read
        raise ConfigError(f"--numerics '{numerics}' is unknown; valid: {list(NUMERICS)}")
    m = load_model(model)
    s = scale or m.cfg.scale
    if s != m.cfg.scale:
        raise ConfigError(f"--scale {s}: the model is x{m.cfg.scale}")
    models = [("gdq" if m.cfg.quantized else "fp", m)]
    if m.cfg.quantized:
        fp_path = fp or (str(DEFAULT_FILES["fp"]) if model == DEFAULT_MODEL else None)
        if fp_path:
            models.append(("fp", load_model(fp_path, fp=fp_path == DEFAULT_MODEL)))
    bit_index = None
    if bits is not None:
        if not m.cfg.quantized:
            raise ConfigError("--bits needs a Granular-DQ model")
        bit_index = m.cfg.level_index(bits, blocks or None)
    elif blocks:
        raise ConfigError("--blocks picks an exit level together with --bits (e.g. --bits 6 --blocks 4)")
    if budget is not None:
        if m.cfg.level_gate is None:
            raise ConfigError("--budget needs a model with a level gate (gdq fit-gate --levels)")
        if bits is not None:
            raise ConfigError("--budget sets the controller's operating point: drop --bits")
    tiles = TileConfig(tile=tile, step=step)
    sets = {name: benchmark_pairs(root, name, s) for name in _split(data)}
    results = []
    total = sum(len(p) for p in sets.values()) * (len(models) + int(bicubic))
    with progress() as pb:
        task = pb.add_task("eval", total=total)
        adv = lambda n: pb.advance(task, n)  # noqa: E731
        for name, pairs in sets.items():
            for kind, mm in models:
                label = (f"{mm.cfg.name}" + (f" (bits={bits}{f', blocks={blocks}' if blocks else ''})"
                                              if kind == "gdq" and bits else "")
                         + (f" {numerics}" if kind == "gdq" else ""))
                results.append(evaluate_dataset(mm, pairs, name, s, tiles, label, bit_index if kind == "gdq" else None, adv,
                                                numerics=numerics, budget=budget if kind == "gdq" else None))
            if bicubic:
                results.append(evaluate_dataset(None, pairs, name, s, tiles, "bicubic", progress=adv))
    levels = m.bits if m.cfg.quantized else ()
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

    from .checkpoint import save_model
    from .config import E2BConfig
    from .errors import CheckpointError
    from .models import build_from_config
    from .reference import convert_reference

    if not ckpt.is_file():
        raise CheckpointError(f"'{ckpt}' does not exist")
    try:
        obj = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read '{ckpt}': {e}") from e
    model, notes = convert_reference(obj, e2b_thresholds=(0.0, 0.0) if data else None)
    if data:
        from .data.dataset import load_folder_images
        from .train import calibrate_e2b

        e2b, n = calibrate_e2b(load_folder_images(_split(data)), E2BConfig(quantiles=model.cfg.e2b.quantiles), model.cfg.scale)
        new = build_from_config(dataclasses.replace(model.cfg, e2b=e2b))
        new.load_state_dict(model.state_dict())
        model = new
        notes.append(f"E2B thresholds calibrated on {n} tiles: {e2b.thresholds}")
    save_model(model, out, meta={"imported_from": str(ckpt)})
    for n_ in notes:
        console.print(f"note: {n_}")
    console.print(f"wrote {out} ({model.cfg.name} x{model.cfg.scale}, rgb_range 255)")


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
    from .checkpoint import load_model
    from .export import TARGETS, export
    from .export.exporter import check_targets, parity_ok

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
    out: Path = typer.Option(..., "-o", "--out", help="Export folder (its manifest.json gets the figures)."),
    arch: str = typer.Option("arm64", help="arm64: the aarch64 runtimes under QEMU user-mode emulation."),
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

    Needs the arm64 root of `bash scripts/arm64_setup.sh`. Emulation is slow (tens of seconds
    per graph and tile); only numerics are reported.

    Examples:
      gdq verify --arch arm64 -o src/granular_mobile/assets/export --graphs all --tiles 6
      gdq verify --arch arm64 -o export/ --graphs controller,8 --target tflite --no-write
    """
    _need("export")
    if arch != "arm64":
        raise ConfigError(f"--arch '{arch}' is unknown; valid: ['arm64']")
    from .export.arm64 import arm64_ok, arm64_parity

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
    threads: int = typer.Option(0, help="CPU threads: 0 (backend default) or 1..cores (more is clamped, with a "
                                "warning); onnxruntime: one value per process."),
    stats: Path | None = typer.Option(None, help="Write tiles per level and per bit, FAB, timings (the SR time of each "
                                      "level too; and a batch's failures) as JSON."),
    bitmap: Path | None = typer.Option(None, help="Write the input tinted by each tile's level (one input)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs (images, --stats, --bitmap)."),
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
    """
    from rich.markup import escape

    from .runtime.batch import Batch

    batch = Batch(inputs, out, force=force, stats=stats, bitmap=bitmap, large=large, model=model, backend=backend,
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
                            on_failed=lambda f, e: pb.console.print(Text.assemble(("failed:", "red"), f" {f}: {e}")))
        except KeyboardInterrupt:
            if batch.multi:  # what is written is whole (atomic writes); say what is not
                console.print(line(batch.result.summary()))
            raise
    if batch.multi:
        stdout.print(line(res.summary()), soft_wrap=True)
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
    from .bench import bench, markdown
    from .imageio import list_images
    from .runtime.backends import DEFAULT_EXPORT, check_threads
    from .runtime.targets import backend_target

    # each configuration runs in a worker process: a missing dependency would surface there,
    # after the configurations before it have run
    bes = _split(backends)
    if torch_model or "torch" in bes:
        require("torch", "torch")
    for be in bes:
        spec = backend_target(be)
        if spec is not None:
            require(spec.module, spec.extra)
    try:
        counts = [check_threads(int(t)) for t in _split(threads)]
    except ValueError:
        raise ConfigError(f"--threads '{threads}' must be comma-separated integers") from None
    # (not checkpoint.ASSETS: that module imports torch, and this command runs without it)
    imgs = list_images(images) if images else [DEFAULT_EXPORT.parent / "sample.png"]
    if not imgs:
        raise ConfigError(f"no images in '{images}'")
    level_names: tuple[str, ...] = ()
    if levels or costs:
        from .runtime.manifest import ExportFolder

        folder = ExportFolder(DEFAULT_EXPORT if model == "default" else model)
        man = folder.manifest
        level_names = tuple(lv.name for lv in man.level_list())
        if costs:
            if man.level_gate is None:
                raise ConfigError("--costs prices the level gate's choices: this export has no level gate "
                                  "(gdq fit-gate --levels)")
            if 0 in counts:
                raise ConfigError("--costs: give thread counts of 1 or more (a table is looked up by its count)")
            if not os.access(folder.dir / "manifest.json", os.W_OK):
                raise ConfigError(f"--costs writes into {folder.dir / 'manifest.json'}, which is not writable here")
            full = max(lv.blocks for lv in man.level_list())
            level_names = tuple(lv.name for lv in man.level_list()
                                if lv.blocks == full or lv.name in man.level_gate.choices)
            torch_model = ""
    res = bench(model, bes, list(dict.fromkeys(counts)), imgs, repeat, torch_model or None,
                log=lambda s: console.print(s, highlight=False), rounds=rounds, levels=level_names, only_levels=costs)
    typer.echo(markdown(res))
    if costs:
        from dataclasses import replace

        from .bench import cost_tables

        tables = cost_tables(res, man, "gdq " + shlex.join(sys.argv[1:]))
        res["cost_tables"] = {k: v.to_dict() for k, v in tables.items()}
        gate = man.level_gate
        assert gate is not None  # checked before the bench
        path = man.replace(level_gate=replace(gate, measured={**gate.measured, **tables})).write(folder.dir)
        t = Table("costs", *gate.choices)
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
) -> None:
    """Serve the browser demo (web_demo/) and an export on localhost, cross-origin isolated
    (COOP/COEP: multithreaded WebAssembly). Open the printed URL; Ctrl+C stops it.

    Examples:
      gdq web
      gdq web --model exports/mine --port 8080
    """
    from .runtime.backends import DEFAULT_EXPORT
    from .web import server

    srv = server(DEFAULT_EXPORT if model == "default" else Path(model), port)
    stdout.print(f"serving the browser demo on http://127.0.0.1:{srv.server_address[1]}/ (Ctrl+C stops)", soft_wrap=True)
    sys.stdout.flush()
    try:
        srv.serve_forever()
    finally:
        srv.server_close()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, GdqWarning):
        console.print(Text.assemble(("warning:", "yellow"), f" {message}"))
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def _error(message: str) -> None:
    # a Text, not markup: the message is printed as it is ('granular-mobile[tflite]', 'a[1].png')
    console.print(Text.assemble(("error:", "red"), f" {message}"))


def _reflow(doc: str) -> str:
    """A command's help from its docstring: each prose paragraph on one line (the terminal wraps
    it; the docstring's own line breaks made ragged help), indented blocks (examples) as they are."""
    paras = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines = para.split("\n")
        if any(line.startswith(" ") for line in lines[1:]):  # "Examples:" and its indented lines
            paras.append(para)
        else:
            paras.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paras)


for _cmd in app.registered_commands:
    if _cmd.help is None and _cmd.callback is not None and _cmd.callback.__doc__:
        _cmd.help = _reflow(_cmd.callback.__doc__)


def main() -> None:
    """Entry point: one line and exit code 1 for library errors (GDQ_DEBUG=1: traceback).

    Typer's standalone mode already turns usage errors into a message and exit code 2.
    """
    from .errors import EXTRA_OF, install_hint

    warnings.showwarning = _show_warning
    try:
        app()
    except GdqError as e:
        if os.environ.get("GDQ_DEBUG"):
            raise
        _error(str(e))
        sys.exit(1)
    except ModuleNotFoundError as e:
        # an optional dependency imported deep inside a command (the runtime-only install)
        if os.environ.get("GDQ_DEBUG") or (e.name or "").split(".")[0] not in EXTRA_OF:
            raise
        _error(install_hint(e.name or ""))
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("aborted")
        sys.exit(130)


if __name__ == "__main__":
    main()
