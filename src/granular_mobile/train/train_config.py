"""The training options (``TrainConfig``): what ``gdq train`` / ``gdq quantize`` run with,
validated, stored in every training state so that a resumed run continues unchanged."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..config import ModelConfig, check_target_fab
from ..defaults import bench_root, train_folders
from ..errors import ConfigError

SCHEDULES = ("cosine", "step")


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
RUN_ONLY = frozenset({"iters", "eval_every", "ckpt_every", "val_root", "val_set", "threads"})


def changed_options(stored: TrainConfig, cfg: TrainConfig) -> list[str]:
    """A line per option in which ``cfg`` trains differently from ``stored``."""
    return [f"{f.name}: {getattr(stored, f.name)!r} -> {getattr(cfg, f.name)!r}" for f in dataclasses.fields(cfg)
            if f.name not in RUN_ONLY and getattr(stored, f.name) != getattr(cfg, f.name)]
