"""The registry of model families: the only list of architectures.

A family is one file that defines a ``GDQNet`` subclass (its structure, ``sr_forward`` and
``lower``) and registers it with ``@register_family``; the registry gives it two variants,
``NAME`` (full precision) and ``NAME_gdq`` (Granular-DQ). CLI choices, ``gdq models`` and the
errors for unknown architectures all read this registry.

This module needs no torch: the package's own families are described in ``BUILTIN`` (their
files register the classes when ``models.registry`` imports them), so ``gdq models`` lists
them from a runtime-only install. A family defined elsewhere gives its descriptions to
``register_family`` itself.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .base import GDQNet

T = TypeVar("T", bound="type[GDQNet]")


@dataclass(frozen=True)
class FamilyInfo:
    name: str
    description: str  # of the full-precision network
    gdq_description: str  # of its Granular-DQ variant
    module: str = ""  # the module that defines and registers it (the package's own families)


#: the package's families, by name: described here, defined and registered in ``module``
BUILTIN: dict[str, FamilyInfo] = {f.name: f for f in (
    FamilyInfo("srresnet", "SRResNet (16 blocks, 64 ch, BN, PReLU), full precision",
               "SRResNet Granular-DQ: 32 block convs at a per-tile bit level {4,5,6,8}, weights int8",
               "granular_mobile.models.srresnet"),
    FamilyInfo("edsr", "EDSR-baseline (16 blocks, 64 ch, ReLU, no BN), full precision",
               "EDSR-baseline Granular-DQ: 32 block convs at a per-tile bit level {4,5,6,8}, weights int8",
               "granular_mobile.models.edsr"),
)}


@dataclass(frozen=True)
class Family:
    name: str
    cls: type[GDQNet]
    description: str  # of the full-precision network
    gdq_description: str  # of its Granular-DQ variant


FAMILIES: dict[str, Family] = {}


def register_family(name: str, description: str | None = None, gdq_description: str | None = None
                    ) -> Callable[[T], T]:
    """Register a ``GDQNet`` subclass as family ``name`` (descriptions: the ``BUILTIN`` entry's
    for the package's own families, required for any other)."""
    info = BUILTIN.get(name)
    if info is None and (description is None or gdq_description is None):
        raise ValueError(f"model family '{name}' needs a description and a gdq_description")
    desc = description if description is not None else info.description  # type: ignore[union-attr]
    gdq = gdq_description if gdq_description is not None else info.gdq_description  # type: ignore[union-attr]

    def deco(cls: T) -> T:
        if name in FAMILIES and FAMILIES[name].cls is not cls:
            raise ValueError(f"model family '{name}' is registered twice")
        FAMILIES[name] = Family(name, cls, desc, gdq)
        return cls
    return deco


def family_names() -> list[str]:
    """Every family: the package's own and any registered since."""
    return sorted({*BUILTIN, *FAMILIES})


def list_models() -> dict[str, str]:
    """Every variant name -> its description (``gdq models``), without importing torch."""
    out: dict[str, str] = {}
    for name in family_names():
        f = FAMILIES.get(name) or BUILTIN[name]
        out[name] = f.description
        out[name + "_gdq"] = f.gdq_description
    return out
