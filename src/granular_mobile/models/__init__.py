"""Granular-DQ networks: the families (one file each, registered in ``family.py``) and their variants.

The names below load on first use (PEP 562), so that ``models.family`` (the registry's
descriptions, ``gdq models``) imports without torch; everything else needs torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .family import list_models, register_family

if TYPE_CHECKING:
    from .base import ControllerOut, GDQNet, count_macs
    from .family import FAMILIES
    from .registry import build_from_config, create_model, twin_config

_LAZY = {"FAMILIES": ".family", "ControllerOut": ".base", "GDQNet": ".base", "count_macs": ".base", "build_from_config": ".registry",
         "create_model": ".registry", "twin_config": ".registry"}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module(".registry", __name__)  # registers the package's families first
    return getattr(importlib.import_module(mod, __name__), name)


__all__ = [
    "FAMILIES", "ControllerOut", "GDQNet", "build_from_config", "count_macs", "create_model", "list_models",
    "register_family", "twin_config",
]
