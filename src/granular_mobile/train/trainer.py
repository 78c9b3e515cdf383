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

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from ..checkpoint import init_from_fp, load_model, read_checkpoint, save_model
from ..config import ModelConfig, TileConfig, check_target_fab, from_dict, level_key, to_dict
from ..data.benchmark import benchmark_pairs
from ..data.calibration import calibration_tiles
from ..data.dataset import CropSampler, load_folder_images
from ..defaults import bench_root, train_folders
from ..errors import CheckpointError, ConfigError
from ..eval.evaluate import evaluate_dataset
from ..models import GDQNet, build_from_config
from ..quant.lsq import ActQuantizer, GridQuantizer, WeightQuantizer
from .calibration import calibrate_e2b, calibrate_gate

SCHEDULES = ("cosine", "step")

__all__ = ["SCHEDULES", "TrainConfig", "calibrate_e2b", "calibrate_gate", "resumed_config", "train"]


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "fp"  # "fp" (gdq train) or "qat" (gdq quantize)
    #: default: $GDQ_DATA_ROOT/{T91,BSD200} (defaults.py)
    data: tuple[str, ...] = field(default_factory=train_folders)
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
    #: a quantizer's steps move by about lr * step_lr_mult of their mean size per iteration
    #: (one Adam group per quantizer; see _param_groups): 0.1 % at lr 5e-5
    step_lr_mult: float = 20.0
    #: after the warm-up, the share of crops at a uniformly random bit level instead of the
    #: gate's (GDQNet.random_levels): the gate trains mostly at low bits, so without it the 8-bit
    #: level's steps and grids barely train (measured: Set5 8-bit level below the 6-bit one)
    random_levels: float = 0.0
    #: weight of an L1 term towards the full-precision twin's output (``distill_from``: a
    #: checkpoint, or "default" for the shipped twin); 0: off
    distill: float = 0.0
    distill_from: str = ""
    #: a bit level of the model (0: off): train only that level's quantizer steps (its
    #: activation steps and int8 grids), every crop at that level, from a Granular-DQ --init;
    #: the weights, the gate, E2B and the other levels stay bit for bit, so their graphs
    #: export unchanged. For a level the controller rarely picks: the joint fine-tuning trains
    #: its steps on few crops, and they co-adapt with the weights (so recomputing them by minimum
    #: quantization error instead is no substitute; docs/METHOD.md, "Training")
    tune_level: int = 0
    #: with tune_level: the level also trains weights of its own (``ModelConfig.level_weights``,
    #: a copy of the shared network when the --init has none for it) at ``lr``; the shared
    #: network, the gate and the other levels still stay bit for bit
    own_weights: bool = False
    #: with tune_level and own_weights: the tuned level is the exit level (tune_level, blocks)
    #: (``ModelConfig.exits``): its copy runs only the first ``blocks`` residual blocks; 0: full depth
    blocks: int = 0
    #: default: $GDQ_BENCH_ROOT (defaults.py)
    val_root: str = field(default_factory=bench_root)
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
        check_target_fab(self.target_fab)  # the model's bit set narrows it in train()
        if self.step_lr_mult <= 0:
            raise ConfigError(f"step_lr_mult={self.step_lr_mult} must be > 0")
        if not (0 <= self.random_levels <= 1):
            raise ConfigError(f"random_levels={self.random_levels} must be in [0, 1]")
        if self.distill < 0:
            raise ConfigError(f"distill={self.distill} must be >= 0")
        if self.distill > 0 and not self.distill_from:
            raise ConfigError("distill > 0 needs distill_from (the full-precision twin's checkpoint)")
        if self.tune_level < 0:
            raise ConfigError(f"tune_level={self.tune_level} must be a bit level of the model, or 0 (off)")
        if self.tune_level and self.mode != "qat":
            raise ConfigError("tune_level needs mode 'qat' (a Granular-DQ model)")
        if self.tune_level and (self.gate_warmup or self.random_levels):
            raise ConfigError("tune_level trains every crop at that level: drop gate_warmup and random_levels")
        if self.own_weights and not self.tune_level:
            raise ConfigError("own_weights needs tune_level (the bit level that gets weights of its own)")
        if self.blocks < 0:
            raise ConfigError(f"blocks={self.blocks} must be >= 1 (an exit level's depth), or 0 (full depth)")
        if self.blocks and not (self.tune_level and self.own_weights):
            raise ConfigError("blocks (an exit level) needs tune_level and own_weights: an exit level trains a network of its own")

    def level_index(self, model_cfg: ModelConfig) -> int:
        """Level index (``ModelConfig.levels``) of the tuned level (tune_level, blocks); ConfigError
        when the model has no such level."""
        if self.tune_level not in model_cfg.quant.bits:
            raise ConfigError(f"tune_level={self.tune_level} is not a bit level of the model; valid: {list(model_cfg.quant.bits)}")
        if self.blocks and not 1 <= self.blocks < model_cfg.n_blocks:
            raise ConfigError(f"blocks={self.blocks}: an exit level runs 1..{model_cfg.n_blocks - 1} of the model's "
                              f"{model_cfg.n_blocks} blocks")
        return model_cfg.level_index(self.tune_level, self.blocks or None)

    def lr_at(self, it: int) -> float:
        warm = min(1.0, (it + 1) / max(1, self.warmup))
        if self.schedule == "cosine":
            c = 0.5 * (1 + math.cos(math.pi * min(it, self.iters) / self.iters))
            return warm * (self.lr_min + (self.lr - self.lr_min) * c)
        return warm * self.lr * 0.5 ** sum(it >= m for m in self.milestones)


#: options that only say how a run is watched or scheduled on this machine: a resumed run may
#: change them without changing what it trains
_RUN_ONLY = frozenset({"iters", "eval_every", "ckpt_every", "val_root", "val_set", "threads"})


def _read_state(last: Path) -> dict[str, Any]:
    """The training state of a run to resume (its ``last.pt``)."""
    if not last.is_file():
        raise CheckpointError(f"--resume: no '{last}' to resume from")
    return read_checkpoint(last)


def resumed_config(last: str | os.PathLike[str], given: dict[str, Any]) -> TrainConfig:
    """The training options of the run in ``last`` (a ``last.pt``) with the ``given`` ones
    replacing theirs. ``given`` holds only what the user set, so that a bare resume continues
    the run unchanged (``train`` logs every option that then trains differently and refuses
    another ``mode``)."""
    stored = from_dict(TrainConfig, _read_state(Path(last))["train"]["config"])
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"resumed_config: unknown option(s) {unknown}")
    return dataclasses.replace(stored, **given)


def _changes(stored: TrainConfig, cfg: TrainConfig) -> list[str]:
    """A line per option in which ``cfg`` trains differently from ``stored``."""
    return [f"{f.name}: {getattr(stored, f.name)!r} -> {getattr(cfg, f.name)!r}" for f in dataclasses.fields(cfg)
            if f.name not in _RUN_ONLY and getattr(stored, f.name) != getattr(cfg, f.name)]


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
        groups = [{"params": [p], "lr_mult": cfg.step_lr_mult * float(p.detach()[bi].abs().clamp_min(1e-8)),
                   "name": "step"} for p in _level_steps(model.net_for(li))]
        if cfg.own_weights:
            groups.append({"params": _own_weights(model, li), "lr_mult": 1.0, "name": "weights"})
        return groups
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


def _describe(m: ModelConfig) -> str:
    q = f" (Granular-DQ, bits {'/'.join(map(str, m.quant.bits))}, {m.numerics} numerics)" if m.quantized else ""
    return f"{m.arch} x{m.scale}, {m.n_blocks} blocks of {m.n_feats} channels{q}"


def _freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@dataclass
class _Run:
    """What the steps of one training run share (built by ``train``, in this order)."""

    cfg: TrainConfig
    out: Path
    rank: int
    world: int
    device: torch.device
    log: Callable[[str], None]
    model_cfg: ModelConfig
    images: list[np.ndarray]
    sampler: CropSampler
    #: memory format of the model and its inputs
    fmt: torch.memory_format = torch.contiguous_format
    model: GDQNet | None = None
    #: the model as trained (DistributedDataParallel around ``model`` with several processes)
    ddp_model: nn.Module | None = None
    opt: torch.optim.Optimizer | None = None
    teacher: GDQNet | None = None
    start: int = 0
    best: float = -math.inf

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def net(self) -> GDQNet:
        assert self.model is not None, "built by _build_model"
        return self.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        assert self.opt is not None, "built by _make_optimizer"
        return self.opt


def _load_state(cfg: TrainConfig, last: Path, model_cfg: ModelConfig | None,
                resume: bool) -> tuple[dict[str, Any] | None, ModelConfig]:
    """The training state to resume (``last.pt``; its model config replaces ``model_cfg``), or None."""
    state: dict[str, Any] | None = None
    if resume:
        state = _read_state(last)
        model_cfg = from_dict(ModelConfig, state["model"])
        old_mode = state["train"]["config"]["mode"]
        if old_mode != cfg.mode:
            raise ConfigError(f"--resume: '{last}' was trained with mode={old_mode!r}, not {cfg.mode!r}")
        old_level = int(state["train"]["config"].get("tune_level", 0))
        if old_level != cfg.tune_level:
            # its Adam moments and rates belong to the stored level: they would move that one
            raise ConfigError(f"--resume: '{last}' was trained with tune_level={old_level}, not {cfg.tune_level}; "
                              f"start a new run from it with --init")
        old_own = bool(state["train"]["config"].get("own_weights", False))
        if old_own != cfg.own_weights:  # another optimizer layout
            raise ConfigError(f"--resume: '{last}' was trained with own_weights={old_own}, not {cfg.own_weights}; "
                              f"start a new run from it with --init")
        old_blocks = int(state["train"]["config"].get("blocks", 0))
        if old_blocks != cfg.blocks:  # another level
            raise ConfigError(f"--resume: '{last}' was trained with blocks={old_blocks}, not {cfg.blocks}; "
                              f"start a new run from it with --init")
    if model_cfg is None:
        raise ConfigError("a model config is needed (or --resume)")
    if (cfg.mode == "qat") != model_cfg.quantized:
        raise ConfigError(f"mode '{cfg.mode}' needs a {'quantized' if cfg.mode == 'qat' else 'full-precision'} model")
    if cfg.mode == "qat":
        check_target_fab(cfg.target_fab, model_cfg.quant.bits)
        if cfg.tune_level:
            cfg.level_index(model_cfg)
        if (model_cfg.level_weights or model_cfg.exits) and not cfg.tune_level:
            # the joint fine-tuning would train a level's copy at the full rate from the few tiles
            # the gate sends to it, and the gate's gradient assumes one network for every level
            own = list(model_cfg.level_weights) + list(model_cfg.exits)
            raise ConfigError(f"a model with levels of their own {own} trains one level at a "
                              f"time (--tune-level); fine-tune its shared network before adding them")
        if cfg.own_weights and not cfg.blocks and cfg.tune_level not in model_cfg.level_weights:
            raise ConfigError(f"own_weights: level {cfg.tune_level} has no weights of its own in this model "
                              f"(level_weights {list(model_cfg.level_weights)}); gdq quantize --own-weights adds them")
    return state, model_cfg


def _build_model(run: _Run, fresh: bool) -> None:
    """The model of ``run.model_cfg`` on the device; a fresh Granular-DQ run first calibrates
    its E2B thresholds at the deployment tile size (stored in the checkpoint's config)."""
    cfg, model_cfg = run.cfg, run.model_cfg
    if cfg.mode == "qat" and fresh and not cfg.tune_level:  # tune_level keeps the --init's controller
        e2b, n = calibrate_e2b(run.images, model_cfg.e2b, model_cfg.scale)
        run.model_cfg = model_cfg = dataclasses.replace(model_cfg, e2b=e2b)
        if run.is_main:
            run.log(f"E2B thresholds at tile {e2b.tile}: {e2b.thresholds[0]:.4f}, {e2b.thresholds[1]:.4f} ({n} tiles)")
    model = build_from_config(model_cfg).to(run.device)
    if run.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop shapes: pick the fastest conv algorithms once
    # NHWC is ~2x faster for the forward convs of oneDNN on CPU; same numerics
    run.fmt = torch.channels_last if run.device.type == "cpu" else torch.contiguous_format
    run.model = model.to(memory_format=run.fmt)


def _restore(run: _Run, state: dict[str, Any]) -> None:
    """Continue a run: weights, iteration, best PSNR, data order and random state of ``last.pt``."""
    run.net.load_state_dict(state["state_dict"])
    run.start = int(state["train"]["iteration"])
    run.best = float(state["train"].get("best_psnr", -math.inf))
    if run.rank == 0:
        run.sampler.set_state(state["train"]["sampler"])
    else:
        run.sampler = CropSampler(run.images, run.model_cfg.scale, run.cfg.patch,
                                  seed=run.cfg.seed * 1000 + run.rank + run.start)
    torch.set_rng_state(state["train"]["torch_rng"])


def _init_from_checkpoint(run: _Run, init: str | None) -> None:
    """Start from ``init``'s weights: the same kind of model trained further, or (Granular-DQ)
    its full-precision twin, whose first batch then initialises the quantizers."""
    cfg, model_cfg, model = run.cfg, run.model_cfg, run.net
    if init is None:
        raise ConfigError("gdq quantize needs --init (a full-precision twin or a Granular-DQ model of the same "
                          "architecture), or --resume")
    ck = read_checkpoint(init)
    init_cfg = from_dict(ModelConfig, ck["model"])
    # --own-weights on an --init without them for the tuned level: that level's copy is new
    if cfg.blocks:
        new_level = level_key(cfg.tune_level, cfg.blocks) if (cfg.tune_level, cfg.blocks) not in init_cfg.exits else None
    else:
        new_level = (level_key(cfg.tune_level) if cfg.own_weights and cfg.tune_level not in init_cfg.level_weights
                     and init_cfg.quantized else None)
    if cfg.tune_level and dataclasses.replace(init_cfg, level_weights=model_cfg.level_weights,
                                              exits=model_cfg.exits) != model_cfg:
        raise ConfigError(f"--tune-level: --init {init} must be the Granular-DQ model whose level is tuned "
                          f"({_describe(model_cfg)}), not {_describe(init_cfg)}")
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
    if not (init_cfg.quantized or model_cfg.quantized) and init_cfg.scale < model_cfg.scale and \
            dataclasses.replace(init_cfg, scale=model_cfg.scale) == model_cfg:
        # a larger scale from a smaller one's twin (x4 from x2, the usual way to train x4
        # faster): the body, the first x2 upsampling stage and the tail conv carry over; the
        # further upsampling stages start fresh
        own = model.state_dict()
        fits = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(fits, strict=False)
        if run.is_main:
            run.log(f"--init {init} (x{init_cfg.scale}): {len(fits)} of {len(own)} tensors loaded; "
                    f"new: {sorted(set(own) - set(fits))}")
        return
    if init_cfg.quantized == model_cfg.quantized:
        # the same kind of model trained further (a new schedule: fresh optimizer): all its
        # weights, for Granular-DQ its quantizer steps and gate too. The E2B thresholds are
        # this run's (recomputed above), and quantizer settings do not shape an fp network
        # A float-numerics Granular-DQ model may start an int8-numerics one (its grids are
        # then initialised from calibration tiles, below)
        ignored = {"e2b": model_cfg.e2b, "numerics": model_cfg.numerics, "level_weights": model_cfg.level_weights,
                   "exits": model_cfg.exits} | (
            {} if model_cfg.quantized else {"quant": model_cfg.quant})
        if dataclasses.replace(init_cfg, **ignored) != model_cfg or (
                init_cfg.numerics == "int8" and model_cfg.numerics != "int8"):
            raise CheckpointError(f"--init {init}: its model ({_describe(init_cfg)}) is not the one asked for "
                                  f"({_describe(model_cfg)})")
        own_init = {level_key(b) for b in init_cfg.level_weights} | {level_key(b, k) for b, k in init_cfg.exits}
        own_run = {level_key(b) for b in model_cfg.level_weights} | {level_key(b, k) for b, k in model_cfg.exits}
        if own_init - own_run or own_run - own_init - {new_level}:
            raise CheckpointError(f"--init {init}: its levels with weights of their own {sorted(own_init)} "
                                  f"are not this run's {sorted(own_run)}")
        missing, unexpected = model.load_state_dict(sd, strict=False)
        # a packed file leaves out the blocks an exit level never runs (checkpoint.pack_model)
        missing = [k for k in missing if not k.startswith(model.unused_state_prefixes())]
        if new_level is not None:
            missing = [k for k in missing if not k.startswith(f"level_nets.{new_level}.")]
        bad = [k for k in missing if ".grids." not in k and not k.startswith("grids.")]
        if bad or unexpected or (missing and init_cfg.numerics == model_cfg.numerics):
            raise CheckpointError(f"--init {init}: state dict does not fit: missing {(bad or missing)[:5]}, "
                                  f"unexpected {unexpected[:5]}")
        if new_level is not None:  # the level starts as the shared network, value for value
            model.level_nets[new_level].load_state_dict(model.shared_state())
    else:
        if not model_cfg.quantized:
            raise CheckpointError(f"--init {init}: its model ({_describe(init_cfg)}) is not the one asked for "
                                  f"({_describe(model_cfg)})")
        if dataclasses.replace(init_cfg, quantized=True, e2b=model_cfg.e2b, quant=model_cfg.quant,
                                numerics=model_cfg.numerics) != model_cfg:
            raise CheckpointError(f"--init {init}: its model ({_describe(init_cfg)}) is not the full-precision twin "
                                  f"of the one asked for ({_describe(model_cfg)})")
        init_from_fp(model, sd)
        # first batch sets quantizer signedness and steps (LSQ init), identically on every rank
        lr0, _ = CropSampler(run.images, model_cfg.scale, cfg.patch, seed=12345).sample(cfg.batch)
        model.eval()
        with torch.no_grad(), model.observing_grids():
            model(lr0.to(run.device), 0)
    if model_cfg.int8_tensors and not (init_cfg.quantized and init_cfg.numerics == "int8"):
        # new grids start where post-training calibration would put them (an int8-numerics
        # --init brings its learned ones)
        model.init_grids(calibration_tiles(model_cfg.e2b.tile).to(run.device))
        if run.is_main:
            run.log(f"int8 grids initialised on the bundled calibration tiles ({len(model.grid_modules())} tensors)")


def _make_optimizer(run: _Run, state: dict[str, Any] | None) -> None:
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
            raise CheckpointError(f"--resume: the optimizer state in '{run.out / 'last.pt'}' does not fit this "
                                  f"version ({e}); start a new schedule from it with --init instead") from None


def _save_state(run: _Run, it: int) -> None:
    """``last.pt``: the model and everything ``_restore`` needs (main process only)."""
    if not run.is_main:
        return
    save_model(run.net, run.out / "last.pt", meta={"iteration": it}, train={
        "config": to_dict(run.cfg), "iteration": it, "optimizer": run.optimizer.state_dict(),
        "sampler": run.sampler.state(), "torch_rng": torch.get_rng_state(), "best_psnr": run.best})


def _validation_pairs(run: _Run) -> list[tuple[str, np.ndarray, np.ndarray]] | None:
    """The validation set (main process, ``eval_every`` > 0), or None when it cannot be read."""
    if not (run.is_main and run.cfg.eval_every > 0):
        return None
    try:
        return benchmark_pairs(run.cfg.val_root, run.cfg.val_set, run.model_cfg.scale)
    except Exception as e:  # validation is optional: training data is what is required
        run.log(f"validation disabled: {e}")
        return None


def _load_teacher(run: _Run) -> GDQNet | None:
    """The full-precision twin to distil from (``distill`` > 0), frozen."""
    cfg = run.cfg
    if cfg.distill <= 0:
        return None
    # "default" stays a name in the run's config (a path would tie a resumed run to one checkout)
    teacher = load_model(cfg.distill_from, fp=cfg.distill_from == "default").to(run.device)
    if teacher.cfg.quantized or teacher.cfg.scale != run.model_cfg.scale:
        raise ConfigError(f"--distill-from {cfg.distill_from}: needs the full-precision twin (x{run.model_cfg.scale})")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _train_step(run: _Run, it: int, l1: nn.Module) -> tuple[float, float, float]:
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


def _validate(run: _Run, done: int, val_pairs: list[tuple[str, np.ndarray, np.ndarray]],
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
    state, model_cfg = _load_state(cfg, out / "last.pt", model_cfg, resume)
    if state is not None and rank == 0:
        for line in _changes(from_dict(TrainConfig, state["train"]["config"]), cfg):
            log(f"resume: {line}")

    images = load_folder_images(cfg.data)
    run = _Run(cfg, out, rank, world, device, log, model_cfg, images,
               CropSampler(images, model_cfg.scale, cfg.patch, seed=cfg.seed * 1000 + rank))
    _build_model(run, fresh=state is None)
    if state is not None:
        _restore(run, state)
    elif init is not None or cfg.mode == "qat":
        _init_from_checkpoint(run, init)
    if cfg.mode == "qat":
        for m in run.net.modules():  # quantizers initialised (from init or checkpoint)
            if hasattr(m, "initialized"):
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
