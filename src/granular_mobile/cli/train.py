"""`gdq models`, `train`, `quantize`, `calibrate`, `pack`: models and their training."""
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
from .app import _TRAIN_HELP_COMMON, _int_list, _need, _split, app


@app.command("models")
def models_cmd() -> None:
    """List the registered model variants.

    Example: gdq models
    """
    from ..models.family import list_models

    t = Table("name", "description")
    for k, d in list_models().items():
        t.add_row(k, d)
    stdout.print(t)



def _train_config(ctx: typer.Context, out: Path, resume: bool, model_options: tuple[str, ...], **parsed):
    """The training options as given (the command's options named like ``TrainConfig``'s fields,
    ``parsed`` replacing those the command converts); with --resume, those not set on the command
    line come from OUT/last.pt (a bare --resume continues the run as it was started), and the
    options that shape the model (``model_options``) cannot be set at all: the model is the one
    in last.pt."""
    import dataclasses

    from ..train import TrainConfig, resumed_config

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    options = {k: v for k, v in ctx.params.items() if k in fields} | parsed
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
    from ..train import train

    with progress("loss {task.fields[loss]:.4f}", "lr {task.fields[lr]:.2e}", "FAB {task.fields[fab]:.2f}") as pb:
        task = pb.add_task("train" if cfg.mode == "fp" else "quantize", total=cfg.iters, loss=0.0, lr=0.0, fab=0.0)

        def on_step(d: dict) -> None:
            pb.update(task, completed=d["iteration"], loss=d["loss"], lr=d["lr"], fab=d["fab"])

        return train(cfg, out, model_cfg=model_cfg, init=init, resume=resume, on_step=on_step, log=lambda s: pb.console.print(s))


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
    val_root: str = _TRAIN_HELP_COMMON["val_root"],
    val_set: str = _TRAIN_HELP_COMMON["val_set"],
    threads: int = _TRAIN_HELP_COMMON["threads"],
    resume: bool = _TRAIN_HELP_COMMON["resume"],
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
    from ..config import ModelConfig
    from ..models.family import family_names

    if model not in family_names():
        raise ConfigError(f"--model '{model}' is not a full-precision model; valid: {family_names()} "
                          "(gdq quantize makes the _gdq one)")
    if init is not None and resume:
        raise ConfigError("--init and --resume exclude each other: --resume continues OUT/last.pt")
    cfg = _train_config(ctx, out, resume, ("model", "scale", "n_blocks", "n_feats"), mode="fp",
                        data=tuple(_split(data)), milestones=_int_list("--milestones", milestones))
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
    val_root: str = _TRAIN_HELP_COMMON["val_root"],
    val_set: str = _TRAIN_HELP_COMMON["val_set"],
    threads: int = _TRAIN_HELP_COMMON["threads"],
    resume: bool = _TRAIN_HELP_COMMON["resume"],
) -> None:
    """Quantization-aware fine-tuning of a full-precision model into Granular-DQ.

    Calibrates the E2B thresholds at the deployment tile size (the E2B config's tile) first.

    Examples:
      gdq quantize --init runs/fp_x2/final.pt -o runs/gdq_x2
      gdq quantize --init runs/gdq_x2/final.pt -o runs/gdq_x2_more --iters 3000 --lr 5e-5
      gdq quantize --init default -o runs/gdq_x2_int8 --distill 1 --distill-from default
      gdq quantize -o runs/gdq_x2_int8 --resume   (continues with the run's own options)
      gdq quantize --init default -o runs/gdq_x2_a8 --tune-level 8 --iters 300 --lr 1e-4 --distill 1 --distill-from default
      gdq quantize --init default -o runs/gdq_x2_w8 --tune-level 8 --own-weights --iters 1200 --lr 5e-5 --distill 1 ...
      gdq quantize --init default -o runs/gdq_x2_6k4 --tune-level 6 --blocks 4 --iters 1500 --lr 2e-4 --distill 1 ...
    """
    _need("torch")
    from ..checkpoint import resolve_model_path
    from ..train.qat import qat_model_config

    if init == "default":
        init = str(resolve_model_path("default"))

    cfg = _train_config(ctx, out, resume, ("init", "bits", "numerics"), mode="qat", data=tuple(_split(data)),
                        own_weights=own_weights or blocks > 0)
    mc = None
    if not resume:  # (with --resume, OUT/last.pt has the model; --init is not read)
        if init is None:
            raise ConfigError("gdq quantize needs --init (a full-precision twin or a Granular-DQ model), or --resume")
        mc = qat_model_config(init, _int_list("--bits", bits), numerics, tune_level, own_weights, blocks)
        if tune_level:
            cfg.level_index(mc)  # the tuned level is one of the model's
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

    from ..checkpoint import load_model, save_model
    from ..config import check_target_fab
    from ..data.dataset import load_folder_images, tile_grid
    from ..models import build_from_config
    from ..train import calibrate_e2b, calibrate_gate

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




@app.command("pack")
def pack_cmd(
    ckpt: str = typer.Argument(..., help="Checkpoint to pack (e.g. runs/gdq_x2/final.pt)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output file."),
) -> None:
    """Write a compact checkpoint for shipping (fp16 weights; quantized integers kept exact).

    Example: gdq pack runs/gdq_x2/final.pt -o src/granular_mobile/assets/srresnet_gdq_x2.pt
    """
    _need("torch")
    from ..checkpoint import load_model, pack_model, read_checkpoint

    meta = read_checkpoint(ckpt).get("meta", {})
    pack_model(load_model(ckpt), out, meta={**meta, "packed_from": str(ckpt)})
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
