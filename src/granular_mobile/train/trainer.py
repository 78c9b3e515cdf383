"""``gdq train`` / ``gdq quantize``: resumable, seeded, single process or torchrun (DDP).

Full precision: L1. Granular-DQ (quantization-aware fine-tuning of a full-precision
checkpoint): L1 + lambda * relu(E[FAB] - target_fab), where E[FAB] is the batch mean of the
expected tile bit-width under the gate probabilities routed through E2B. The gate is trained
with straight-through Gumbel-softmax (hard forward, soft gradients). BatchNorm statistics are
frozen during fine-tuning so that the network trained is the one exported (BN folds into
the conv scales with exactly these statistics).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from ..checkpoint import init_from_fp, load_model, read_checkpoint, save_model
from ..config import E2BConfig, ModelConfig, TileConfig, from_dict, to_dict
from ..controller.e2b import tile_entropy
from ..data.calibration import calibration_tiles
from ..data.dataset import CropSampler, load_folder_images, tile_grid
from ..errors import CheckpointError, ConfigError
from ..data.benchmark import benchmark_pairs
from ..eval.evaluate import evaluate_dataset
from ..models import GDQNet, build_from_config

SCHEDULES = ("cosine", "step")


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "fp"  # "fp" (gdq train) or "qat" (gdq quantize)
    data: tuple[str, ...] = ("../shared/datasets/train/T91", "../shared/datasets/train/BSD200")
    patch: int = 32  # LR patch side
    batch: int = 16  # per process
    iters: int = 10000
    lr: float = 1e-3
    lr_min: float = 1e-5
    warmup: int = 200
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()  # step schedule: lr halves at each
    grad_clip: float = 1.0
    seed: int = 0
    target_fab: float = 4.5  # qat only
    fab_lambda: float = 0.05
    #: penalise |E[FAB] - target| (True) or only relu(E[FAB] - target); the one-sided term let
    #: the gate collapse to 4 bits under a 4.5 target in the default model's fine-tuning
    fab_two_sided: bool = True
    gate_lr_mult: float = 10.0
    #: first iterations: uniformly random bit level per sample, gate frozen, no budget term,
    #: so every level's quantizers train before the gate chooses
    gate_warmup: int = 0
    #: a quantizer step size moves by about lr * step_lr_mult of its size per iteration (its
    #: own Adam group; see _param_groups): 0.1 % at lr 5e-5
    step_lr_mult: float = 20.0
    #: after the warm-up, the share of crops at a uniformly random bit level instead of the
    #: gate's (GDQNet.random_levels): the gate trains mostly at low bits, so without it the 8-bit
    #: level's steps and grids barely train (measured: Set5 8-bit level below the 6-bit one)
    random_levels: float = 0.0
    #: weight of an L1 term towards the full-precision twin's output (``distill_from``); 0: off
    distill: float = 0.0
    distill_from: str = ""
    val_root: str = "../shared/datasets/benchmark"
    val_set: str = "Set5"
    eval_every: int = 500
    ckpt_every: int = 100
    threads: int = 0  # 0: torch default

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(str(d) for d in self.data))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if self.mode not in ("fp", "qat"):
            raise ConfigError(f"mode '{self.mode}' is unknown; valid: ['fp', 'qat']")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule '{self.schedule}' is unknown; valid: {list(SCHEDULES)}")
        for name in ("patch", "batch", "iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if not (0 < self.lr < 1):
            raise ConfigError(f"lr={self.lr} must be in (0, 1)")
        if not (2 <= self.target_fab <= 8):
            raise ConfigError(f"target_fab={self.target_fab} must be in [2, 8]")
        if self.step_lr_mult <= 0:
            raise ConfigError(f"step_lr_mult={self.step_lr_mult} must be > 0")
        if not (0 <= self.random_levels <= 1):
            raise ConfigError(f"random_levels={self.random_levels} must be in [0, 1]")
        if self.distill < 0:
            raise ConfigError(f"distill={self.distill} must be >= 0")
        if self.distill > 0 and not self.distill_from:
            raise ConfigError("distill > 0 needs distill_from (the full-precision twin's checkpoint)")

    def lr_at(self, it: int) -> float:
        warm = min(1.0, (it + 1) / max(1, self.warmup))
        if self.schedule == "cosine":
            c = 0.5 * (1 + math.cos(math.pi * min(it, self.iters) / self.iters))
            return warm * (self.lr_min + (self.lr - self.lr_min) * c)
        return warm * self.lr * 0.5 ** sum(it >= m for m in self.milestones)


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


# -- E2B calibration ------------------------------------------------------------------
@torch.no_grad()
def calibrate_e2b(images: list[np.ndarray], cfg: E2BConfig, scale: int, tile: int | None = None,
                  tiles: np.ndarray | None = None) -> tuple[E2BConfig, int]:
    """E2B thresholds = quantiles of tile entropy over LR tiles of ``tile`` px (the deployment size).

    ``tiles``: those LR tiles (``tile_grid(images, tile, scale)``) when the caller already cut
    them (``gdq calibrate`` also hands them to ``calibrate_gate``)."""
    tile = tile or cfg.tile
    tiles = torch.from_numpy(tile_grid(images, tile, scale) if tiles is None else tiles)
    h = torch.cat([tile_entropy(tiles[i:i + 64], cfg.bins, cfg.sigma) for i in range(0, len(tiles), 64)]).numpy()
    t1, t2 = (float(np.quantile(h, q)) for q in cfg.quantiles)
    return dataclasses.replace(cfg, thresholds=(t1, t2), tile=tile, calibrated=True), len(h)


@torch.no_grad()
def calibrate_gate(model: GDQNet, tiles: np.ndarray, target_fab: float) -> tuple[float, float, float, int]:
    """Shift the GBC gate's bias by t * (0, 1, 2) so that the deterministic controller (argmax)
    averages ``target_fab`` bits over ``tiles`` (N, 3, T, T) LR [0, 1], e.g. ``tile_grid`` of
    training images at the deployment tile; returns (t, FAB before, FAB after, tiles). Changes
    ``model`` in place.

    Why: training budgets the expected bits under Gumbel sampling, which the argmax of the
    deployed controller does not follow (measured: 4.97 bits in training, 4.00 at inference),
    so the operating point is set here, on data, like the E2B thresholds. The offset is
    increasing in the bit level, so the argmax only moves up as t grows and the tile ranking
    of the trained gate is kept.
    """
    model.eval()
    tiles = torch.from_numpy(tiles)
    logits, ents = [], []
    for i in range(0, len(tiles), 32):
        c = model.controller(tiles[i:i + 32])
        logits.append(c.logits)
        ents.append(c.entropy)
    lg, h = torch.cat(logits), torch.cat(ents)
    bits = torch.tensor(model.bits, dtype=torch.float64)
    step = torch.tensor([0.0, 1.0, 2.0])

    def fab_at(t: float) -> float:
        return float(bits[model.e2b.final_bit_index((lg + t * step).argmax(1), h)].mean())

    grid = np.round(np.arange(-40.0, 40.0001, 0.01), 2)
    fabs = np.array([fab_at(float(t)) for t in grid])
    err = np.abs(fabs - target_fab)
    closest = np.flatnonzero(err <= err.min() + 1e-9)
    i = int(closest[np.argmin(np.abs(grid[closest]))])  # the smallest shift among the closest
    t = float(grid[i])
    model.encoder.gbc.gate[0].bias.add_(t * step.to(model.encoder.gbc.gate[0].bias))
    return t, float(fabs[np.argmin(np.abs(grid))]), float(fabs[i]), len(tiles)


# -- training -------------------------------------------------------------------------
def _param_groups(model: GDQNet, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Weights at lr; the gate at gate_lr_mult x lr; each quantizer step size (an ``alpha``) in
    a group of its own whose rate is relative to its size (``step_lr_mult``): Adam normalises
    gradients, so a shared rate would move a 0.002 weight step by 2.5 % per iteration at lr
    5e-5, re-rounding every weight of that conv (measured: weight steps 10-18 % off and Set5
    -0.3 dB after 150 iterations of an int8 fine-tuning of a converged model)."""
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


def _describe(m: ModelConfig) -> str:
    q = f" (Granular-DQ, bits {'/'.join(map(str, m.quant.bits))})" if m.quantized else ""
    return f"{m.arch} x{m.scale}, {m.n_blocks} blocks of {m.n_feats} channels{q}"


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


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
    out = Path(out_dir)
    rank, world, device = _dist_setup()
    is_main = rank == 0
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    last = out / "last.pt"
    state: dict[str, Any] | None = None
    if resume:
        if not last.is_file():
            raise CheckpointError(f"--resume: no '{last}' to resume from")
        state = read_checkpoint(last)
        model_cfg = from_dict(ModelConfig, state["model"])
        old_mode = state["train"]["config"]["mode"]
        if old_mode != cfg.mode:
            raise ConfigError(f"--resume: '{last}' was trained with mode={old_mode!r}, not {cfg.mode!r}")
    if model_cfg is None:
        raise ConfigError("a model config is needed (or --resume)")
    if (cfg.mode == "qat") != model_cfg.quantized:
        raise ConfigError(f"mode '{cfg.mode}' needs a {'quantized' if cfg.mode == 'qat' else 'full-precision'} model")

    images = load_folder_images(cfg.data)
    sampler = CropSampler(images, model_cfg.scale, cfg.patch, seed=cfg.seed * 1000 + rank)

    if cfg.mode == "qat" and state is None:
        # thresholds at the deployment tile size, stored in the checkpoint's config
        e2b, n = calibrate_e2b(images, model_cfg.e2b, model_cfg.scale)
        model_cfg = dataclasses.replace(model_cfg, e2b=e2b)
        if is_main:
            log(f"E2B thresholds at tile {e2b.tile}: {e2b.thresholds[0]:.4f}, {e2b.thresholds[1]:.4f} ({n} tiles)")
    model = build_from_config(model_cfg).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop shapes: pick the fastest conv algorithms once
    # NHWC is ~2x faster for the forward convs of oneDNN on CPU; same numerics
    fmt = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model = model.to(memory_format=fmt)

    start = 0
    best = -math.inf
    if state is not None:
        model.load_state_dict(state["state_dict"])
        start = int(state["train"]["iteration"])
        best = float(state["train"].get("best_psnr", -math.inf))
        if rank == 0:
            sampler.set_state(state["train"]["sampler"])
        else:
            sampler = CropSampler(images, model_cfg.scale, cfg.patch, seed=cfg.seed * 1000 + rank + start)
        torch.set_rng_state(state["train"]["torch_rng"])
    elif init is not None or cfg.mode == "qat":
        if init is None:
            raise ConfigError("gdq quantize needs --init (a full-precision twin or a Granular-DQ model of the same "
                              "architecture), or --resume")
        ck = read_checkpoint(init)
        init_cfg = from_dict(ModelConfig, ck["model"])
        sd = {k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
        if init_cfg.quantized == model_cfg.quantized:
            # the same kind of model trained further (a new schedule: fresh optimizer): all its
            # weights, for Granular-DQ its quantizer steps and gate too. The E2B thresholds are
            # this run's (recomputed above), and quantizer settings do not shape an fp network
            # A float-numerics Granular-DQ model may start an int8-numerics one (its grids are
            # then initialised from calibration tiles, below)
            ignored = {"e2b": model_cfg.e2b, "numerics": model_cfg.numerics} | (
                {} if model_cfg.quantized else {"quant": model_cfg.quant})
            if dataclasses.replace(init_cfg, **ignored) != model_cfg or (
                    init_cfg.numerics == "int8" and model_cfg.numerics != "int8"):
                raise CheckpointError(f"--init {init}: its model ({_describe(init_cfg)}) is not the one asked for "
                                      f"({_describe(model_cfg)})")
            missing, unexpected = model.load_state_dict(sd, strict=False)
            bad = [k for k in missing if ".grids." not in k and not k.startswith("grids.")]
            if bad or unexpected or (missing and init_cfg.numerics == model_cfg.numerics):
                raise CheckpointError(f"--init {init}: state dict does not fit: missing {(bad or missing)[:5]}, "
                                      f"unexpected {unexpected[:5]}")
        else:
            if not model_cfg.quantized:
                raise CheckpointError(f"--init {init}: its model ({_describe(init_cfg)}) is not the one asked for "
                                      f"({_describe(model_cfg)})")
            if dataclasses.replace(init_cfg, quantized=True, e2b=model_cfg.e2b, quant=model_cfg.quant) != model_cfg:
                raise CheckpointError(f"--init {init}: its model ({_describe(init_cfg)}) is not the full-precision twin "
                                      f"of the one asked for ({_describe(model_cfg)})")
            init_from_fp(model, sd)
            # first batch sets quantizer signedness and steps (LSQ init), identically on every rank
            lr0, _ = CropSampler(images, model_cfg.scale, cfg.patch, seed=12345).sample(cfg.batch)
            model.eval()
            with torch.no_grad(), model.observing_grids():
                model(lr0.to(device), 0)
        if model_cfg.int8_tensors and not (init_cfg.quantized and init_cfg.numerics == "int8"):
            # new grids start where post-training calibration would put them (an int8-numerics
            # --init brings its learned ones)
            model.init_grids(calibration_tiles(model_cfg.e2b.tile).to(device))
            if is_main:
                log(f"int8 grids initialised on the bundled calibration tiles ({len(model.grid_modules())} tensors)")
    if cfg.mode == "qat":
        for m in model.modules():  # quantizers initialised (from init or checkpoint)
            if hasattr(m, "initialized"):
                m.initialized.fill_(1)

    model.random_levels = cfg.random_levels if cfg.mode == "qat" else 0.0
    ddp_model: nn.Module = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(_param_groups(model, cfg), lr=cfg.lr, betas=(0.9, 0.999))
    if state is not None and "optimizer" in state["train"]:
        opt.load_state_dict(state["train"]["optimizer"])

    def save_state(it: int) -> None:
        if not is_main:
            return
        save_model(model, last, meta={"iteration": it}, train={
            "config": to_dict(cfg), "iteration": it, "optimizer": opt.state_dict(), "sampler": sampler.state(),
            "torch_rng": torch.get_rng_state(), "best_psnr": best})

    val_pairs = None
    if is_main and cfg.eval_every > 0:
        try:
            val_pairs = benchmark_pairs(cfg.val_root, cfg.val_set, model_cfg.scale)
        except Exception as e:  # validation is optional: training data is what is required
            log(f"validation disabled: {e}")

    teacher: GDQNet | None = None
    if cfg.distill > 0:
        teacher = load_model(cfg.distill_from).to(device)
        if teacher.cfg.quantized or teacher.cfg.scale != model_cfg.scale:
            raise ConfigError(f"--distill-from {cfg.distill_from}: needs the full-precision twin (x{model_cfg.scale})")
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)

    l1 = nn.L1Loss()
    ema: dict[str, float] = {}
    t0 = time.time()
    metrics_path = out / "metrics.jsonl"
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    for it in range(start, cfg.iters):
        ddp_model.train()
        if cfg.mode == "qat":
            _freeze_bn(model)
        lr = cfg.lr_at(it)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        lr_t, hr_t = sampler.sample(cfg.batch)
        lr_t, hr_t = lr_t.to(device, memory_format=fmt), hr_t.to(device)
        if cfg.mode == "qat" and it < cfg.gate_warmup:
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
        if teacher is not None:
            with torch.no_grad():
                target = teacher(lr_t)
            loss = loss + cfg.distill * l1(sr, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        for k, v in (("loss", float(rec.item())), ("fab", fab_now)):
            ema[k] = v if k not in ema else 0.98 * ema[k] + 0.02 * v
        step_info = {"iteration": it + 1, "loss": ema["loss"], "lr": lr, "fab": ema["fab"], "elapsed": time.time() - t0}
        if on_step and is_main:
            on_step(step_info)
        done = it + 1
        if done % cfg.ckpt_every == 0 or done == cfg.iters:
            save_state(done)
        if val_pairs is not None and (done % cfg.eval_every == 0 or done == cfg.iters):
            r = evaluate_dataset(model, val_pairs, cfg.val_set, model_cfg.scale, TileConfig())
            rec_d = {**step_info, f"{cfg.val_set}_psnr": r.psnr, f"{cfg.val_set}_fab": r.fab}
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec_d) + "\n")
            log(f"iter {done}: {cfg.val_set} PSNR {r.psnr:.3f} dB" + (f", FAB {r.fab:.3f}" if r.fab else ""))
            if r.psnr > best:
                best = r.psnr
                save_model(model, out / "best.pt", meta={"iteration": done, f"{cfg.val_set}_psnr": r.psnr, "fab": r.fab})
            save_state(done)
    final = out / "final.pt"
    if is_main:
        save_model(model, final, meta={"iteration": cfg.iters, "world_size": world, "train_config": to_dict(cfg)})
    if dist.is_initialized():
        dist.barrier()
    return final
