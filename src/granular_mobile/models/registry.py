"""Variants of the registered model families (``gdq models`` lists them, from
``models/family.py``) and building a model from its config. Importing this module imports
the package's own families (``family.BUILTIN``), which registers them."""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from ..config import ModelConfig, QuantConfig
from ..errors import ConfigError, ModelNotFoundError
from .base import GDQNet
from .family import BUILTIN, FAMILIES, family_names

for _f in BUILTIN.values():
    importlib.import_module(_f.module)


def _variants() -> dict[str, tuple[str, bool]]:
    """variant name -> (family, quantized)."""
    out: dict[str, tuple[str, bool]] = {}
    for f in FAMILIES.values():
        out[f.name] = (f.name, False)
        out[f.name + "_gdq"] = (f.name, True)
    return out


def create_model(name: str, scale: int = 2, **kw: Any) -> GDQNet:
    variants = _variants()
    if name not in variants:
        raise ModelNotFoundError(f"unknown model '{name}'; registered: {sorted(variants)}")
    arch, quantized = variants[name]
    if "bits" in kw:
        kw["quant"] = QuantConfig(bits=tuple(kw.pop("bits")))
    return build_from_config(ModelConfig(arch=arch, scale=scale, quantized=quantized, **kw))


def build_from_config(cfg: ModelConfig) -> GDQNet:
    fam = FAMILIES.get(cfg.arch)
    if fam is None:
        raise ConfigError(f"architecture '{cfg.arch}' is not a registered model family; registered: {family_names()}")
    return fam.cls(cfg)


def twin_config(cfg: ModelConfig, quantized: bool) -> ModelConfig:
    """The same network with or without quantization (same layer names)."""
    return dataclasses.replace(cfg, quantized=quantized, numerics=cfg.numerics if quantized else "float")
