"""Granular-DQ networks: the families (one file each, registered in ``family.py``) and their variants."""
from . import edsr, srresnet  # noqa: F401  (importing a family registers it)
from .base import ControllerOut, GDQNet, count_macs
from .family import FAMILIES, register_family
from .registry import build_from_config, create_model, list_models, twin_config

__all__ = [
    "FAMILIES", "ControllerOut", "GDQNet", "build_from_config", "count_macs", "create_model", "list_models",
    "register_family", "twin_config",
]
