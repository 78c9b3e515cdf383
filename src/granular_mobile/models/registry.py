"""Model registry: each variant is a small function that builds it (``gdq models`` lists them)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ..config import ModelConfig, QuantConfig
from ..errors import ConfigError, ModelNotFoundError
from .base import GDQNet
from .edsr import EDSR
from .srresnet import SRResNet

_REGISTRY: dict[str, tuple[Callable[..., GDQNet], str]] = {}


def register(description: str):
    def deco(fn: Callable[..., GDQNet]) -> Callable[..., GDQNet]:
        _REGISTRY[fn.__name__] = (fn, description)
        return fn
    return deco


def _cfg(arch: str, quantized: bool, scale: int, **kw: Any) -> ModelConfig:
    if "bits" in kw:
        kw["quant"] = QuantConfig(bits=tuple(kw.pop("bits")))
    return ModelConfig(arch=arch, scale=scale, quantized=quantized, **kw)


@register("SRResNet (16 blocks, 64 ch, BN, PReLU), full precision")
def srresnet(scale: int = 2, **kw: Any) -> GDQNet:
    return SRResNet(_cfg("srresnet", False, scale, **kw))


@register("SRResNet Granular-DQ: 32 block convs at a per-tile bit level {4,5,6,8}, weights int8")
def srresnet_gdq(scale: int = 2, **kw: Any) -> GDQNet:
    return SRResNet(_cfg("srresnet", True, scale, **kw))


@register("EDSR-baseline (16 blocks, 64 ch, ReLU, no BN), full precision")
def edsr(scale: int = 2, **kw: Any) -> GDQNet:
    return EDSR(_cfg("edsr", False, scale, **kw))


@register("EDSR-baseline Granular-DQ: 32 block convs at a per-tile bit level {4,5,6,8}, weights int8")
def edsr_gdq(scale: int = 2, **kw: Any) -> GDQNet:
    return EDSR(_cfg("edsr", True, scale, **kw))


def list_models() -> dict[str, str]:
    return {k: d for k, (_, d) in _REGISTRY.items()}


def create_model(name: str, scale: int = 2, **kw: Any) -> GDQNet:
    if name not in _REGISTRY:
        raise ModelNotFoundError(f"unknown model '{name}'; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name][0](scale=scale, **kw)


def build_from_config(cfg: ModelConfig) -> GDQNet:
    cls = {"srresnet": SRResNet, "edsr": EDSR}.get(cfg.arch)
    if cls is None:
        raise ConfigError(f"arch '{cfg.arch}' has no builder; valid: ['edsr', 'srresnet']")
    return cls(cfg)


def twin_config(cfg: ModelConfig, quantized: bool) -> ModelConfig:
    """The same network with or without quantization (same layer names)."""
    return dataclasses.replace(cfg, quantized=quantized, numerics=cfg.numerics if quantized else "float")
