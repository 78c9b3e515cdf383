"""Checkpoints: a dict with the model config, the state dict and optional training state.

Format (torch.save): {"format": "granular-mobile", "version": 1, "model": ModelConfig dict,
"state_dict": ..., "meta": {...}, optional "train": {...}}. Writes are atomic.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, cast

import torch

from .config import ModelConfig, from_dict, to_dict
from .errors import CheckpointError, ConfigError, ModelNotFoundError
from .imageio import default_mode
from .models import GDQNet, build_from_config
from .models.base import as_module

FORMAT = "granular-mobile"
VERSION = 1
ASSETS = Path(__file__).parent / "assets"
#: the shipped default model (x2 SRResNet Granular-DQ) and its full-precision twin
DEFAULT_MODEL = "default"
DEFAULT_FILES = {"gdq": ASSETS / "srresnet_gdq_x2.pt", "fp": ASSETS / "srresnet_x2.pt"}


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: GDQNet, path: str | os.PathLike[str], meta: dict[str, Any] | None = None,
               train: dict[str, Any] | None = None, half: bool = False) -> None:
    sd = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    if half:
        # a shipped file: without the blocks an exit level's copy never runs (a third of the file
        # of a model with a 4- and an 8-block exit)
        unused = unwrap(model).unused_state_prefixes()
        sd = {k: v for k, v in sd.items() if not k.startswith(unused)}
        # conv/linear weights only: quantizer steps, BN statistics and scalars stay fp32
        sd = {k: (v.half() if v.is_floating_point() and v.dim() >= 2 else v) for k, v in sd.items()}
    obj: dict[str, Any] = {"format": FORMAT, "version": VERSION, "model": to_dict(unwrap(model).cfg),
                           "state_dict": sd, "meta": meta or {}}
    if train is not None:
        obj["train"] = train
    atomic_save(obj, path)


def unwrap(model: torch.nn.Module) -> GDQNet:
    # the caller's GDQNet, or DistributedDataParallel around it (``module``); getattr is untyped
    return cast(GDQNet, getattr(model, "module", model))


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint '{path}': {e}") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"'{path}' is not a granular-mobile checkpoint (reference-code checkpoints: run `gdq import-reference` first)"
        )
    if obj.get("version", 0) > VERSION:
        raise CheckpointError(f"'{path}' has checkpoint version {obj['version']}; this granular-mobile reads <= {VERSION}")
    return obj


def model_from_checkpoint(obj: dict[str, Any], source: str = "checkpoint") -> GDQNet:
    try:
        cfg = from_dict(ModelConfig, obj["model"])
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{source}: bad model config: {e}") from e
    model = build_from_config(cfg)
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in obj["state_dict"].items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith(model.unused_state_prefixes())]
    if missing or unexpected:
        raise CheckpointError(f"{source}: state dict does not fit {cfg.name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    return model


def resolve_model_path(name_or_path: str, fp: bool = False) -> Path:
    if name_or_path in (DEFAULT_MODEL, "", None):
        return DEFAULT_FILES["fp" if fp else "gdq"]
    return Path(name_or_path)


def load_model(name_or_path: str = DEFAULT_MODEL, fp: bool = False) -> GDQNet:
    """Load a checkpoint file, or the shipped default model ("default"; ``fp`` for its twin)."""
    path = resolve_model_path(name_or_path, fp)
    return model_from_checkpoint(read_checkpoint(path), str(path))


def init_from_fp(model: GDQNet, fp_state: dict[str, torch.Tensor]) -> None:
    """Initialise a quantized model from its full-precision twin's state dict."""
    missing, unexpected = model.load_state_dict(fp_state, strict=False)
    allowed = (".wq.", ".aq.", "encoder.", "e2b.", "grids.")
    bad = [k for k in missing if not any(a in k for a in allowed)]
    if bad or unexpected:
        raise CheckpointError(f"full-precision state dict does not fit: missing {bad[:5]}, unexpected {unexpected[:5]}")


@torch.no_grad()
def pack_model(model: GDQNet, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> None:
    """Compact copy for shipping: no training state, conv/linear weights in fp16.

    Quantized conv weights are first snapped onto their int8 grid (w = k * alpha): fp16 keeps
    k * alpha within 0.06 * alpha of it for |k| <= 127, so the integers the model uses (and
    exports) are exactly the same after loading. In an int8-numerics model the full-precision
    layers' weights are snapped onto their 7-bit per-channel grid too (|k| <= 63: fp16 moves
    k * s and the channel's step by far less than half a step), so their integers survive as
    well (the head's float copy, which the controller reads, moves by less than half a 7-bit
    step). Other weights lose fp16 precision; evaluate the packed file, not the training
    checkpoint.
    """
    from .quant import QConv2d, fake_quant_fp_weight

    m = unwrap(model)
    for mod in m.modules():
        if getattr(mod, "quantized", False):
            conv = as_module(mod, QConv2d)
            conv.weight.copy_(conv.wq.integer_weight(conv.weight) * conv.wq.alpha)
        elif m.cfg.int8_tensors and isinstance(mod, torch.nn.Conv2d) and mod.groups == 1:
            mod.weight.copy_(fake_quant_fp_weight(mod.weight.detach()))
    save_model(m, path, meta=meta, half=True)
