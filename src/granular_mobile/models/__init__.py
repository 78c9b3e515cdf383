"""Granular-DQ networks and their registry."""
from .base import ControllerOut, GDQNet, count_macs
from .registry import build_from_config, create_model, list_models, twin_config

__all__ = ["ControllerOut", "GDQNet", "build_from_config", "count_macs", "create_model", "list_models", "twin_config"]
