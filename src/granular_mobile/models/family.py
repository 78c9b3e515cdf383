"""The registry of model families: the only list of architectures.

A family is one file that defines a ``GDQNet`` subclass (its structure, ``sr_forward`` and
``lower``) and registers it with ``@register_family``; the registry gives it two variants,
``NAME`` (full precision) and ``NAME_gdq`` (Granular-DQ). CLI choices, ``gdq models`` and the
errors for unknown architectures all read this registry.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .base import GDQNet

T = TypeVar("T", bound="type[GDQNet]")


@dataclass(frozen=True)
class Family:
    name: str
    cls: type[GDQNet]
    description: str  # of the full-precision network
    gdq_description: str  # of its Granular-DQ variant


FAMILIES: dict[str, Family] = {}


def register_family(name: str, description: str, gdq_description: str) -> Callable[[T], T]:
    def deco(cls: T) -> T:
        if name in FAMILIES and FAMILIES[name].cls is not cls:
            raise ValueError(f"model family '{name}' is registered twice")
        FAMILIES[name] = Family(name, cls, description, gdq_description)
        return cls
    return deco


def family_names() -> list[str]:
    return sorted(FAMILIES)
