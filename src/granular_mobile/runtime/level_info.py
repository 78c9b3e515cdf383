"""The manifest's level sections: each level a graph computes (``LevelInfo``) and the time-aware
controller (``LevelGateInfo``) with its measured cost tables (``MeasuredCosts``). Part of the one
manifest schema (``runtime/manifest.py``); no torch."""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigError, GdqWarning
from .schema import Reader
from .targets import TARGET_OF_BACKEND


@dataclass(frozen=True)
class LevelInfo:
    """One level: what one static graph computes. ``name`` (``a6``, ``a6k4``), activation ``bits``,
    residual ``blocks`` run, ``macs`` per tile, and ``cost``: its time per tile relative to the
    full-depth graph's (measured for the level gate's choices, else MACs relative)."""

    name: str
    bits: int
    blocks: int
    macs: int
    cost: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bits": self.bits, "blocks": self.blocks, "macs": self.macs, "cost": self.cost}

    @classmethod
    def _read(cls, r: Reader) -> LevelInfo:
        return cls(r.get("name", str), r.get("bits", int), r.get("blocks", int), r.get("macs", int),
                   float(r.get("cost", (int, float))))


@dataclass(frozen=True)
class MeasuredCosts:
    """Each gate choice's time per tile relative to the full-depth graph, measured on one
    runtime at one thread count (``gdq bench --costs``): an exit level gains less from a
    second thread than a full-depth graph, so one table does not fit every thread count."""

    costs: tuple[float, ...]
    #: the runtime and version that ran the graphs, e.g. "onnxruntime 1.32.0"
    runtime: str = ""
    #: the command that measured them
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"costs": list(self.costs), "runtime": self.runtime, "command": self.command}

    @classmethod
    def _read(cls, r: Reader) -> MeasuredCosts:
        return cls(r.floats("costs"), r.get("runtime", str, ""), r.get("command", str, ""))


def cost_key(backend: str, threads: int) -> str:
    """The key of a measured cost table: ``onnxruntime@2``."""
    return f"{backend}@{threads}"


@dataclass(frozen=True)
class LevelGateInfo:
    """The time-aware controller (``ModelConfig.level_gate``): the controller graph's ``scores``
    output gives each tile's predicted gain at each of ``choices``; the runtime picks per tile
    so that the mean ``costs`` of an image's tiles fit a budget (``runtime/budget.py``),
    ``budget`` unless the caller gives one. ``measured``: cost tables per runtime and thread
    count (``cost_key``), used instead of ``costs`` where one matches (``costs_for``)."""

    choices: tuple[str, ...]
    costs: tuple[float, ...]
    budget: float
    cost_source: str = ""
    measured: Mapping[str, MeasuredCosts] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.choices) < 2 or len(self.costs) != len(self.choices):
            raise ConfigError(f"level_gate: choices {list(self.choices)} and costs {list(self.costs)} must pair up (>= 2)")
        for key, m in self.measured.items():
            why = self.table_problem(key, m)
            if why:
                raise ConfigError(why)

    def table_problem(self, key: str, m: MeasuredCosts) -> str | None:
        """Why a measured table cannot price these choices (None: it can)."""
        if len(m.costs) != len(self.choices) or not all(c > 0 for c in m.costs):
            return (f"level_gate.measured['{key}']: costs {list(m.costs)} must be one positive cost per choice "
                    f"{list(self.choices)}")
        # the allocation (runtime/budget.py) takes the choices cheapest first
        if any(b < a for a, b in zip(m.costs, m.costs[1:], strict=False)):
            return (f"level_gate.measured['{key}']: costs {list(m.costs)} are not cheapest first like the choices "
                    f"{list(self.choices)}; re-measure (gdq bench --costs)")
        be, _, th = key.partition("@")
        if be not in TARGET_OF_BACKEND or not th.isdigit() or int(th) < 1:
            return (f"level_gate.measured: key '{key}' is not BACKEND@THREADS with a backend from "
                    f"{sorted(TARGET_OF_BACKEND)} (e.g. onnxruntime@2)")
        return None

    def costs_for(self, backend: str, threads: int) -> tuple[tuple[float, ...], str]:
        """The costs to allocate with on ``backend`` at ``threads`` threads, and their key: the
        table measured there, else the same backend's at the nearest thread count (ties: fewer),
        else ``costs`` (key ``"default"``)."""
        same = [(int(k.partition("@")[2]), k) for k in self.measured if k.partition("@")[0] == backend]
        if not same:
            return self.costs, "default"
        _, key = min(same, key=lambda tk: (abs(tk[0] - threads), tk[0]))
        return self.measured[key].costs, key

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"choices": list(self.choices), "costs": list(self.costs), "budget": self.budget,
                             "cost_source": self.cost_source}
        if self.measured:
            d["measured"] = {k: m.to_dict() for k, m in sorted(self.measured.items())}
        return d

    @classmethod
    def _read(cls, r: Reader) -> LevelGateInfo:
        choices = r.get("choices", list)
        if not all(isinstance(c, str) for c in choices):
            raise ConfigError(f"{r.source}: 'level_gate.choices' = {choices!r} must be level names")
        gate = cls(tuple(choices), r.floats("costs"), float(r.get("budget", (int, float))), r.get("cost_source", str, ""))
        if "measured" not in r.data:
            return gate
        mr = r.sub("measured")
        measured = {}
        for k in mr.data:
            m = MeasuredCosts._read(mr.sub(k))
            why = gate.table_problem(k, m)
            if why:  # a table is an optional refinement: without it the gate's own costs price the choices
                warnings.warn(f"{r.source}: {why}; the table is left out", GdqWarning, stacklevel=2)
            else:
                measured[k] = m
        return replace(gate, measured=measured)
