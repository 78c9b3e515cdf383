"""``gdq train`` / ``gdq quantize``: resumable, seeded, single process or torchrun (DDP).

Full precision: L1. Granular-DQ (quantization-aware fine-tuning of a full-precision
checkpoint): L1 + lambda * |E[FAB] - target_fab| (``fab_two_sided=False``: relu(E[FAB] -
target_fab)), where E[FAB] is the batch mean of the
expected tile bit-width under the gate probabilities routed through E2B. The gate is trained
with straight-through Gumbel-softmax (hard forward, soft gradients). BatchNorm statistics are
frozen during fine-tuning so that the network trained is the one exported (BN folds into
the conv scales with exactly these statistics).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from ..checkpoint import load_model, save_model
from ..config import ModelConfig, TileConfig, from_dict, to_dict
from ..data.benchmark import benchmark_pairs
from ..data.dataset import CropSampler, load_folder_images
from ..errors import CheckpointError, ConfigError
from ..eval.evaluate import evaluate_dataset
from ..models import GDQNet
from ..quant.lsq import ActQuantizer, GridQuantizer, WeightQuantizer
from .calibration import calibrate_e2b, calibrate_gate
from .start import Run, build_model, init_from_checkpoint, load_state, restore, resumed_config
from .train_config import SCHEDULES, TrainConfig, changed_options

__all__ = ["SCHEDULES", "TrainConfig", "calibrate_e2b", "calibrate_gate", "resumed_config", "train"]


# -- distributed ---------------------------------------------------------------------
def _dist_setup() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


# -- training -------------------------------------------------------------------------
def _param_groups(model: GDQNet, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Weights at lr; the gate at gate_lr_mult x lr; each quantizer step size (an ``alpha``) in
    a group of its own whose rate is relative to its size (``step_lr_mult``): Adam normalises
    gradients, so a shared rate would move a 0.002 weight step by 2.5 % per iteration at lr
    5e-5, re-rounding every weight of that conv (measured: weight steps 10-18 % off and Set5
    -0.3 dB after 150 iterations of an int8 fine-tuning of a converged model).

    The size is the mean over the quantizer's steps (one per bit level), taken when the
    optimizer is built (at the start and at each resume), so a level whose step is far from
    the mean moves at another relative rate: in the model shipped 2026-12-01 a conv input's
    4-bit step at 0.46-0.63x the nominal fraction, its 8-bit step (several times smaller)
    at 2.3-7.1x; the int8 grids' levels at 0.7-1.9x. Per-level rates would need one
    parameter per level (another checkpoint layout)."""
    if cfg.tune_level:
        # only the tuned level's entry of each step moves (every crop runs at that level, so the
        # others get zero gradients, and Adam from a fresh state never moves them), at a rate
        # relative to that entry's size
        li = cfg.level_index(model.cfg)
        bi = model.level_spec(li)[0]  # the steps hold one entry per bit level
        tuned: list[dict[str, Any]] = [
            {"params": [p], "lr_mult": cfg.step_lr_mult * float(p.detach()[bi].abs().clamp_min(1e-8)), "name": "step"}
            for p in _level_steps(model.net_for(li))]
        if cfg.own_weights:
            tuned.append({"params": _own_weights(model, li), "lr_mult": 1.0, "name": "weights"})
        return tuned
    gate, steps, rest = [], [], []
    for n, p in model.named_parameters():
        if n.startswith("encoder."):
            gate.append(p)
        elif n.endswith(".alpha") and cfg.mode == "qat":
            steps.append(p)
        else:
            rest.append(p)
    groups: list[dict[str, Any]] = [{"params": rest, "lr_mult": 1.0, "name": "weights"}]
    if gate:
        groups.append({"params": gate, "lr_mult": cfg.gate_lr_mult, "name": "gate"})
    for p in steps:
        groups.append({"params": [p], "lr_mult": cfg.step_lr_mult * float(p.detach().abs().mean().clamp_min(1e-8)),
                       "name": "step"})
    return groups


def _level_steps(model: GDQNet) -> list[nn.Parameter]:
    """The steps with one entry per bit level: conv inputs' (ActQuantizer) and int8 grids'."""
    return [m.alpha for m in model.modules() if isinstance(m, ActQuantizer | GridQuantizer)]


def _own_weights(model: GDQNet, li: int) -> list[nn.Parameter]:
    """The weights of level ``li``'s own network (``ModelConfig.level_weights``): every parameter
    of it but the quantizer steps. The int8 weight steps stay: at the weights' rate Adam would
    move a 0.002 step by a percent per iteration, re-rounding every weight of its conv."""
    net = model.net_for(li)
    assert net is not model, "own_weights: the level has no weights of its own"
    steps = {id(m.alpha) for m in net.modules() if isinstance(m, ActQuantizer | GridQuantizer | WeightQuantizer)}
    return [p for p in net.parameters() if id(p) not in steps]


def _idle(model: GDQNet, cfg: TrainConfig) -> set[int]:
    """ids of the tuned exit level's parameters its forward never reaches (the copy's blocks
    after its exit): in the optimizer's groups (one layout for every level) but no gradient."""
    if not cfg.blocks:
        return set()
    net, nb = model.net_for(cfg.level_index(model.cfg)), model.cfg.n_blocks
    return {id(p) for i in range(cfg.blocks, nb) for p in net.body[i].parameters()}


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _make_optimizer(run: Run, state: dict[str, Any] | None) -> None:
    """DDP around the model with several processes; Adam over _param_groups (its state from ``state``)."""
    model = run.net
    run.ddp_model = model
    if run.world > 1:
        run.ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    run.opt = torch.optim.Adam(_param_groups(model, run.cfg), lr=run.cfg.lr, betas=(0.9, 0.999))
    if state is not None and "optimizer" in state["train"]:
        try:
            run.opt.load_state_dict(state["train"]["optimizer"])
        except ValueError as e:  # another optimizer layout (a state written before step groups)
            raise CheckpointError(f"``resume``: the optimizer state in '{run.out / 'last.pt'}' does not fit this "
                                  f"version ({e}); start a new schedule from it with ``init`` instead") from None


def _save_state(run: Run, it: int) -> None:
    """``last.pt``: the model and everything ``_restore`` needs (main process only)."""
    if not run.is_main:
        return
    save_model(run.net, run.out / "last.pt", meta={"iteration": it}, train={
        "config": to_dict(run.cfg), "iteration": it, "optimizer": run.optimizer.state_dict(),
        "sampler": run.sampler.state(), "torch_rng": torch.get_rng_state(), "best_psnr": run.best})


def _validation_pairs(run: Run) -> list[tuple[str, np.ndarray, np.ndarray]] | None:
    """The validation set (main process, ``eval_every`` > 0), or None when it cannot be read."""
    if not (run.is_main and run.cfg.eval_every > 0):
        return None
    try:
        return benchmark_pairs(run.cfg.val_root, run.cfg.val_set, run.model_cfg.scale)
    except Exception as e:  # validation is optional: training data is what is required
        run.log(f"validation disabled: {e}")
        return None


def _load_teacher(run: Run) -> GDQNet | None:
    """The full-precision twin to distil from (``distill`` > 0), frozen."""
    cfg = run.cfg
    if cfg.distill <= 0:
        return None
    # "default" stays a name in the run's config (a path would tie a resumed run to one checkout)
    teacher = load_model(cfg.distill_from, fp=cfg.distill_from == "default").to(run.device)
    if teacher.cfg.quantized or teacher.cfg.scale != run.model_cfg.scale:
        raise ConfigError(f"``distill_from`` {cfg.distill_from}: needs the full-precision twin (x{run.model_cfg.scale})")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _train_step(run: Run, it: int, l1: nn.Module) -> tuple[float, float, float]:
    """One optimizer step at iteration ``it``; returns (reconstruction L1, lr, batch FAB)."""
    cfg, model, opt, device = run.cfg, run.net, run.optimizer, run.device
    assert run.ddp_model is not None
    ddp_model = run.ddp_model
    ddp_model.train()
    if cfg.mode == "qat":
        _freeze_bn(model)
    lr = cfg.lr_at(it)
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)
    lr_t, hr_t = run.sampler.sample(cfg.batch)
    lr_t, hr_t = lr_t.to(device, memory_format=run.fmt), hr_t.to(device)
    if cfg.tune_level:
        li = cfg.level_index(model.cfg)
        sr = ddp_model(lr_t, torch.full((lr_t.shape[0],), li, dtype=torch.long, device=device))
        rec = loss = l1(sr, hr_t)
        fab_now = float(cfg.tune_level)
    elif cfg.mode == "qat" and it < cfg.gate_warmup:
        for g in opt.param_groups:
            if g.get("name") == "gate":
                g["lr"] = 0.0  # gate frozen
        rand_bits = torch.randint(len(model.bits), (lr_t.shape[0],), device=device)
        sr = ddp_model(lr_t, rand_bits)
        rec = loss = l1(sr, hr_t)
        fab_now = float(torch.tensor(model.bits, dtype=torch.float32)[rand_bits.cpu()].mean())
    elif cfg.mode == "qat":
        sr, ctrl = ddp_model(lr_t, return_ctrl=True)
        rec = l1(sr, hr_t)
        gap = ctrl.expected_bits.mean() - cfg.target_fab
        loss = rec + cfg.fab_lambda * (gap.abs() if cfg.fab_two_sided else torch.relu(gap))
        fab_now = float(torch.tensor(model.bits, dtype=torch.float32)[ctrl.bit_index.cpu()].mean())
    else:
        sr = ddp_model(lr_t)
        rec = loss = l1(sr, hr_t)
        fab_now = 32.0
    if run.teacher is not None:
        with torch.no_grad():
            target = run.teacher(lr_t)
        loss = loss + cfg.distill * l1(sr, target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    return float(rec.item()), lr, fab_now


def _validate(run: Run, done: int, val_pairs: list[tuple[str, np.ndarray, np.ndarray]],
              step_info: dict[str, float]) -> None:
    """PSNR on the validation set, logged to metrics.jsonl; a new best is written to ``best.pt``."""
    cfg = run.cfg
    r = evaluate_dataset(run.net, val_pairs, cfg.val_set, run.model_cfg.scale, TileConfig(),
                         bit_index=cfg.level_index(run.net.cfg) if cfg.tune_level else None)
    rec_d = {**step_info, f"{cfg.val_set}_psnr": r.psnr, f"{cfg.val_set}_fab": r.fab}
    with open(run.out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(rec_d) + "\n")
    run.log(f"iter {done}: {cfg.val_set} PSNR {r.psnr:.3f} dB" + (f", FAB {r.fab:.3f}" if r.fab else ""))
    if r.psnr > run.best:
        run.best = r.psnr
        save_model(run.net, run.out / "best.pt", meta={"iteration": done, f"{cfg.val_set}_psnr": r.psnr, "fab": r.fab})
    _save_state(run, done)


def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    model_cfg: ModelConfig | None = None,
    init: str | None = None,
    resume: bool = False,
    on_step: Callable[[dict[str, float]], None] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Train; returns the path of the final checkpoint (``out_dir/final.pt``).

    ``init``: the checkpoint a fine-tuning starts from: for "qat" (required) the full-precision
    twin, or a Granular-DQ model to fine-tune further; for "fp" (optional) a full-precision
    model of the same config.

    Writes ``last.pt`` (full training state, every ``ckpt_every``), ``best.pt`` (best
    validation PSNR), ``metrics.jsonl``. ``resume`` continues from ``last.pt`` (the
    iteration count may be raised on resume to train longer; the schedule follows).
    """
    # the steps run in this order (each one's random draws follow the previous ones')
    out = Path(out_dir)
    rank, world, device = _dist_setup()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    state, model_cfg = load_state(cfg, out / "last.pt", model_cfg, resume)
    if state is not None and rank == 0:
        for line in changed_options(from_dict(TrainConfig, state["train"]["config"]), cfg):
            log(f"resume: {line}")

    images = load_folder_images(cfg.data)
    run = Run(cfg, out, rank, world, device, log, model_cfg, images,
               CropSampler(images, model_cfg.scale, cfg.patch, seed=cfg.seed * 1000 + rank))
    build_model(run, fresh=state is None)
    if state is not None:
        restore(run, state)
    elif init is not None or cfg.mode == "qat":
        init_from_checkpoint(run, init)
    if cfg.mode == "qat":
        for m in run.net.modules():  # quantizers initialised (from init or checkpoint)
            if isinstance(m, ActQuantizer | WeightQuantizer | GridQuantizer):
                m.initialized.fill_(1)
    run.net.random_levels = cfg.random_levels if cfg.mode == "qat" and not cfg.tune_level else 0.0
    if cfg.tune_level:  # no weight gradients (but the level's own): the backward costs only the activations'
        # exactly what the optimizer trains (_param_groups): a parameter that requires a gradient
        # and gets none (the shared network's steps when a level's own copy runs) stops DDP's reduction
        tuned = {id(p) for g in _param_groups(run.net, cfg) for p in g["params"]} - _idle(run.net, cfg)
        for p in run.net.parameters():
            p.requires_grad_(id(p) in tuned)
    _make_optimizer(run, state)
    val_pairs = _validation_pairs(run)
    run.teacher = _load_teacher(run)

    l1 = nn.L1Loss()
    ema: dict[str, float] = {}
    t0 = time.time()
    if run.is_main:
        out.mkdir(parents=True, exist_ok=True)
    for it in range(run.start, cfg.iters):
        rec, lr, fab_now = _train_step(run, it, l1)
        for k, v in (("loss", rec), ("fab", fab_now)):
            ema[k] = v if k not in ema else 0.98 * ema[k] + 0.02 * v
        step_info = {"iteration": it + 1, "loss": ema["loss"], "lr": lr, "fab": ema["fab"], "elapsed": time.time() - t0}
        if on_step and run.is_main:
            on_step(step_info)
        done = it + 1
        if done % cfg.ckpt_every == 0 or done == cfg.iters:
            _save_state(run, done)
        if val_pairs is not None and (done % cfg.eval_every == 0 or done == cfg.iters):
            _validate(run, done, val_pairs, step_info)
    final = out / "final.pt"
    if run.is_main:
        save_model(run.net, final, meta={"iteration": cfg.iters, "world_size": world, "train_config": to_dict(cfg)})
    if dist.is_initialized():
        dist.barrier()
    return final
