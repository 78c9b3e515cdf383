"""How a training run starts: a fresh model, a resumed one (``last.pt``), or one initialised
from a checkpoint (the same kind of model trained further, its full-precision twin, or a
smaller scale's twin); and ``Run``, what the steps of one run share."""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..checkpoint import init_from_fp, read_checkpoint
from ..config import ModelConfig, check_target_fab, from_dict, level_key
from ..data.calibration import calibration_tiles
from ..data.dataset import CropSampler
from ..errors import CheckpointError, ConfigError
from ..models import GDQNet, build_from_config
from .calibration import calibrate_e2b
from .train_config import TrainConfig


def read_state(last: Path) -> dict[str, Any]:
    """The training state of a run to resume (its ``last.pt``)."""
    if not last.is_file():
        raise CheckpointError(f"``resume``: no '{last}' to resume from")
    return read_checkpoint(last)


def resumed_config(last: str | os.PathLike[str], given: dict[str, Any]) -> TrainConfig:
    """The training options of the run in ``last`` (a ``last.pt``) with the ``given`` ones
    replacing theirs. ``given`` holds only what the user set, so that a bare resume continues
    the run unchanged (``train`` logs every option that then trains differently and refuses
    another ``mode``)."""
    stored = from_dict(TrainConfig, read_state(Path(last))["train"]["config"])
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ConfigError(f"resumed_config: unknown option(s) {unknown}")
    return dataclasses.replace(stored, **given)


def describe(m: ModelConfig) -> str:
    q = f" (Granular-DQ, bits {'/'.join(map(str, m.quant.bits))}, {m.numerics} numerics)" if m.quantized else ""
    return f"{m.arch} x{m.scale}, {m.n_blocks} blocks of {m.n_feats} channels{q}"


@dataclass
class Run:
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
        assert self.model is not None, "built by build_model"
        return self.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        assert self.opt is not None, "built by _make_optimizer"
        return self.opt


def load_state(cfg: TrainConfig, last: Path, model_cfg: ModelConfig | None,
                resume: bool) -> tuple[dict[str, Any] | None, ModelConfig]:
    """The training state to resume (``last.pt``; its model config replaces ``model_cfg``), or None."""
    state: dict[str, Any] | None = None
    if resume:
        state = read_state(last)
        model_cfg = from_dict(ModelConfig, state["model"])
        old_mode = state["train"]["config"]["mode"]
        if old_mode != cfg.mode:
            raise ConfigError(f"``resume``: '{last}' was trained with mode={old_mode!r}, not {cfg.mode!r}")
        old_level = int(state["train"]["config"].get("tune_level", 0))
        if old_level != cfg.tune_level:
            # its Adam moments and rates belong to the stored level: they would move that one
            raise ConfigError(f"``resume``: '{last}' was trained with tune_level={old_level}, not {cfg.tune_level}; "
                              f"start a new run from it with ``init``")
        old_own = bool(state["train"]["config"].get("own_weights", False))
        if old_own != cfg.own_weights:  # another optimizer layout
            raise ConfigError(f"``resume``: '{last}' was trained with own_weights={old_own}, not {cfg.own_weights}; "
                              f"start a new run from it with ``init``")
        old_blocks = int(state["train"]["config"].get("blocks", 0))
        if old_blocks != cfg.blocks:  # another level
            raise ConfigError(f"``resume``: '{last}' was trained with blocks={old_blocks}, not {cfg.blocks}; "
                              f"start a new run from it with ``init``")
    if model_cfg is None:
        raise ConfigError("a model config is needed (or ``resume``)")
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
                              f"time (``tune_level``); fine-tune its shared network before adding them")
        if cfg.own_weights and not cfg.blocks and cfg.tune_level not in model_cfg.level_weights:
            raise ConfigError(f"own_weights: level {cfg.tune_level} has no weights of its own in this model "
                              f"(level_weights {list(model_cfg.level_weights)}); gdq quantize --own-weights adds them")
    return state, model_cfg


def build_model(run: Run, fresh: bool) -> None:
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
    run.model = model.to(memory_format=run.fmt)  # type: ignore[call-overload]  # torch's stubs lack memory_format


def restore(run: Run, state: dict[str, Any]) -> None:
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


def init_from_checkpoint(run: Run, init: str | None) -> None:
    """Start from ``init``'s weights: the same kind of model trained further, or (Granular-DQ)
    its full-precision twin, whose first batch then initialises the quantizers."""
    cfg, model_cfg, model = run.cfg, run.model_cfg, run.net
    if init is None:
        raise ConfigError("a Granular-DQ run needs ``init`` (a full-precision twin or a Granular-DQ model of the "
                          "same architecture), or ``resume``")
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
        raise ConfigError(f"``tune_level``: ``init`` {init} must be the Granular-DQ model whose level is tuned "
                          f"({describe(model_cfg)}), not {describe(init_cfg)}")
    sd = {k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
    if not (init_cfg.quantized or model_cfg.quantized) and init_cfg.scale < model_cfg.scale and \
            dataclasses.replace(init_cfg, scale=model_cfg.scale) == model_cfg:
        _init_larger_scale(run, init, init_cfg, sd)
        return
    if init_cfg.quantized == model_cfg.quantized:
        _init_same_kind(run, init, init_cfg, sd, new_level)
    else:
        _init_from_twin(run, init, init_cfg, sd)
    if model_cfg.int8_tensors and not (init_cfg.quantized and init_cfg.numerics == "int8"):
        # new grids start where post-training calibration would put them (an int8-numerics
        # --init brings its learned ones)
        model.init_grids(calibration_tiles(model_cfg.e2b.tile).to(run.device))
        if run.is_main:
            run.log(f"int8 grids initialised on the bundled calibration tiles ({len(model.grid_modules())} tensors)")


def _init_larger_scale(run: Run, init: str, init_cfg: ModelConfig, sd: dict[str, torch.Tensor]) -> None:
    """A larger scale from a smaller one's twin (x4 from x2, the usual way to train x4 faster):
    the body, the first x2 upsampling stage and the tail conv carry over; the further
    upsampling stages start fresh."""
    model = run.net
    own = model.state_dict()
    fits = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fits, strict=False)
    if run.is_main:
        run.log(f"initialised from {init} (x{init_cfg.scale}): {len(fits)} of {len(own)} tensors loaded; "
                f"new: {sorted(set(own) - set(fits))}")


def _init_same_kind(run: Run, init: str, init_cfg: ModelConfig, sd: dict[str, torch.Tensor],
                    new_level: str | None) -> None:
    """The same kind of model trained further; ``new_level``: a level whose copy is new here."""
    model_cfg, model = run.model_cfg, run.net
    # the same kind of model trained further (a new schedule: fresh optimizer): all its
    # weights, for Granular-DQ its quantizer steps and gate too. The E2B thresholds are
    # this run's (recomputed above), and quantizer settings do not shape an fp network
    # A float-numerics Granular-DQ model may start an int8-numerics one (its grids are
    # then initialised from calibration tiles, below)
    ignored: dict[str, Any] = {"e2b": model_cfg.e2b, "numerics": model_cfg.numerics, "level_weights": model_cfg.level_weights,
               "exits": model_cfg.exits} | (
        {} if model_cfg.quantized else {"quant": model_cfg.quant})
    if dataclasses.replace(init_cfg, **ignored) != model_cfg or (
            init_cfg.numerics == "int8" and model_cfg.numerics != "int8"):
        raise CheckpointError(f"``init`` {init}: its model ({describe(init_cfg)}) is not the one asked for "
                              f"({describe(model_cfg)})")
    own_init = {level_key(b) for b in init_cfg.level_weights} | {level_key(b, k) for b, k in init_cfg.exits}
    own_run = {level_key(b) for b in model_cfg.level_weights} | {level_key(b, k) for b, k in model_cfg.exits}
    if own_init - own_run or own_run - own_init - {new_level}:
        raise CheckpointError(f"``init`` {init}: its levels with weights of their own {sorted(own_init)} "
                              f"are not this run's {sorted(own_run)}")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # a packed file leaves out the blocks an exit level never runs (checkpoint.pack_model)
    missing = [k for k in missing if not k.startswith(model.unused_state_prefixes())]
    if new_level is not None:
        missing = [k for k in missing if not k.startswith(f"level_nets.{new_level}.")]
    bad = [k for k in missing if ".grids." not in k and not k.startswith("grids.")]
    if bad or unexpected or (missing and init_cfg.numerics == model_cfg.numerics):
        raise CheckpointError(f"``init`` {init}: state dict does not fit: missing {(bad or missing)[:5]}, "
                              f"unexpected {unexpected[:5]}")
    if new_level is not None:  # the level starts as the shared network, value for value
        model.level_nets[new_level].load_state_dict(model.shared_state())


def _init_from_twin(run: Run, init: str, init_cfg: ModelConfig, sd: dict[str, torch.Tensor]) -> None:
    """A Granular-DQ model from its full-precision twin; its first batch initialises the quantizers."""
    cfg, model_cfg, model = run.cfg, run.model_cfg, run.net
    if not model_cfg.quantized:
        raise CheckpointError(f"``init`` {init}: its model ({describe(init_cfg)}) is not the one asked for "
                              f"({describe(model_cfg)})")
    if dataclasses.replace(init_cfg, quantized=True, e2b=model_cfg.e2b, quant=model_cfg.quant,
                            numerics=model_cfg.numerics) != model_cfg:
        raise CheckpointError(f"``init`` {init}: its model ({describe(init_cfg)}) is not the full-precision twin "
                              f"of the one asked for ({describe(model_cfg)})")
    init_from_fp(model, sd)
    # first batch sets quantizer signedness and steps (LSQ init), identically on every rank
    lr0, _ = CropSampler(run.images, model_cfg.scale, cfg.patch, seed=12345).sample(cfg.batch)
    model.eval()
    with torch.no_grad(), model.observing_grids():
        model(lr0.to(run.device), 0)
