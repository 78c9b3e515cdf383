"""Small frozen configuration dataclasses.

They validate on construction (naming the bad value and the valid choices), serialise to
JSON-compatible dicts and travel inside checkpoints and export manifests.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .defaults import DEFAULT_MERGE, DEFAULT_STEP, DEFAULT_TILE, MERGES
from .errors import ConfigError

T = TypeVar("T")

#: Activation bit-widths integer kernels can run with a clamp inside int8/uint8.
SUPPORTED_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
SCALES: tuple[int, ...] = (2, 4)
#: what a Granular-DQ model trains with: "float" rounds only the inputs of the quantized block
#: convs (the paper's numerics; every other tensor float), "int8" also every rounding point of
#: the full-integer export (int8 tensors between convs with learned steps, 7-bit weights of the
#: full-precision layers, the output on the 8-bit image grid), so what is trained is what is
#: deployed.
TRAIN_NUMERICS: tuple[str, ...] = ("float", "int8")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def check_target_fab(target_fab: float, bits: Sequence[int] | None = None) -> None:
    """The one rule for a bit budget (``--target-fab``, TrainConfig.target_fab): a mean tile
    bit-width the controller can reach, i.e. within the range of the model's bit set ``bits``;
    before the model is known, within the range of SUPPORTED_BITS."""
    levels = bits or SUPPORTED_BITS
    lo, hi = min(levels), max(levels)
    _check(lo <= target_fab <= hi, f"``target_fab`` {target_fab} must be within the bit levels' range [{lo}, {hi}]")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> JSON-compatible dict (tuples become lists)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        return v

    return conv(cfg)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a (possibly nested) config dataclass from a dict, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {unknown}; valid: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    hints = {c.__name__: c for c in (QuantConfig, E2BConfig, ModelConfig, TileConfig, LevelGateConfig)}
    for k, v in data.items():
        ftype = names[k].type if isinstance(names[k].type, str) else getattr(names[k].type, "__name__", "")
        ftype = ftype.removesuffix(" | None")
        if ftype in hints and isinstance(v, dict):
            v = from_dict(hints[ftype], v)
        elif isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        kwargs[k] = v
    return cls(**kwargs)


@dataclass(frozen=True)
class QuantConfig:
    """Bit set of a Granular-DQ model.

    ``bits`` is the set of activation bit-widths the quantized convs can run at (the
    final bits of the controller); ``gbc_bits`` the three choices of the GBC gate (index
    0, 1, 2), and ``e2b_bits`` what E2B maps a tile the gate put at ``gbc_bits[-1]`` to
    (low, middle, high entropy).
    """

    bits: tuple[int, ...] = (4, 5, 6, 8)
    weight_bits: int = 8
    gbc_bits: tuple[int, int, int] = (4, 6, 8)
    e2b_bits: tuple[int, int, int] = (4, 5, 8)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", tuple(int(b) for b in self.bits))
        object.__setattr__(self, "gbc_bits", tuple(int(b) for b in self.gbc_bits))
        object.__setattr__(self, "e2b_bits", tuple(int(b) for b in self.e2b_bits))
        for b in self.bits:
            _check(b in SUPPORTED_BITS, f"bit-width {b} is not supported; valid: {list(SUPPORTED_BITS)}")
        _check(len(self.bits) >= 1, "bits: at least one bit-width is needed")
        _check(list(self.bits) == sorted(set(self.bits)), f"bits {list(self.bits)} must be strictly increasing")
        _check(self.weight_bits == 8, f"weight_bits={self.weight_bits}: only 8-bit weights (int8 kernels) are supported; valid: [8]")
        _check(len(self.gbc_bits) == 3, f"gbc_bits {list(self.gbc_bits)}: the GBC gate has exactly 3 choices")
        _check(len(self.e2b_bits) == 3, f"e2b_bits {list(self.e2b_bits)}: E2B has exactly 3 choices")
        for b in (*self.gbc_bits, *self.e2b_bits):
            _check(b in self.bits, f"bit-width {b} of the controller is not in the bit set {list(self.bits)}")

    def index(self, bit: int) -> int:
        if bit not in self.bits:
            raise ConfigError(f"bit-width {bit} is not in this model's bit set; valid: {list(self.bits)}")
        return self.bits.index(bit)


@dataclass(frozen=True)
class E2BConfig:
    """Entropy-to-bit stage: entropy estimator and the calibrated thresholds.

    ``thresholds`` are entropy values (nats) at the ``quantiles`` of the tile-entropy
    distribution of the training data at tile size ``tile`` (``gdq calibrate``). The
    defaults are the reference implementation's table, used until calibrated.
    """

    quantiles: tuple[float, float] = (0.5, 0.9)
    thresholds: tuple[float, float] = (2.8009, 3.1828)
    tile: int = DEFAULT_TILE
    bins: int = 32
    sigma: float = 0.0255
    calibrated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        q1, q2 = self.quantiles
        _check(0.0 < q1 < q2 < 1.0, f"quantiles {list(self.quantiles)} must satisfy 0 < q1 < q2 < 1")
        t1, t2 = self.thresholds
        _check(0.0 <= t1 <= t2 <= math.log(self.bins) + 1e-6,
               f"thresholds {list(self.thresholds)} must satisfy 0 <= t1 <= t2 <= ln(bins)={math.log(self.bins):.4f}")
        _check(self.tile >= 8, f"tile={self.tile} is too small; use 8 or more")
        _check(self.bins >= 2, f"bins={self.bins} must be >= 2")
        _check(self.sigma > 0, f"sigma={self.sigma} must be > 0")


@dataclass(frozen=True)
class LevelGateConfig:
    """The time-aware controller (``gdq fit-gate --levels``): a linear gate on the GBC features
    and the tile entropy predicts each tile's gain in its image's PSNR at each of ``choices``
    over the first (dB, a tile's share); the runtime then gives each tile the level with the
    largest predicted gain minus lambda * cost, lambda set per image so that the tiles' mean
    cost fits the budget (``runtime/budget.py``).

    ``choices``: level names (``level_name``), cheapest first. ``costs``: each choice's time
    per tile relative to the full-depth graph's (measured: ``cost_source`` names how).
    ``budget``: the default operating point, a mean cost per tile (``gdq run --budget``
    moves it without re-export).
    """

    choices: tuple[str, ...]
    costs: tuple[float, ...]
    budget: float = 0.5
    cost_source: str = "macs"

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(str(c) for c in self.choices))
        object.__setattr__(self, "costs", tuple(float(c) for c in self.costs))
        _check(len(self.choices) >= 2, f"level gate choices {list(self.choices)}: at least 2 levels are needed")
        _check(len(set(self.choices)) == len(self.choices), f"level gate choices {list(self.choices)} must be distinct")
        _check(len(self.costs) == len(self.choices),
               f"level gate costs {list(self.costs)} must have one entry per choice {list(self.choices)}")
        _check(all(c > 0 for c in self.costs), f"level gate costs {list(self.costs)} must be > 0")
        _check(list(self.costs) == sorted(self.costs), f"level gate choices {list(self.choices)} must be cheapest first "
               f"(costs {list(self.costs)})")
        _check(self.budget >= self.costs[0], f"budget {self.budget} is below the cheapest choice's cost {self.costs[0]}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (the registry name is ``arch`` + ``_gdq`` if quantized)."""

    arch: str = "srresnet"
    scale: int = 2
    n_blocks: int = 16
    n_feats: int = 64
    quantized: bool = True
    #: the network sees ``input * rgb_range``; 1 for our models, 255 for reference checkpoints
    rgb_range: float = 1.0
    #: GroupNorm on each GBC granularity (our decision); False reproduces the reference gate
    gbc_groupnorm: bool = True
    quant: QuantConfig = field(default_factory=QuantConfig)
    e2b: E2BConfig = field(default_factory=E2BConfig)
    #: see TRAIN_NUMERICS; "float" for full-precision models and older checkpoints
    numerics: str = "float"
    #: bit levels that run a weight set of their own (``gdq quantize --tune-level B --own-weights``):
    #: a copy of the network trained at that level alone; the controller and the other levels
    #: share the one network. Each level's exported graph carries its weights anyway, so only
    #: a single-file TFLite (which stores weights shared by its graphs once) grows.
    level_weights: tuple[int, ...] = ()
    #: exit levels: (bits, blocks) pairs, each a level that runs only the first ``blocks``
    #: residual blocks (then the body end, upsampler and tail) at activation ``bits``, with a
    #: network copy of its own (``gdq quantize --tune-level B --blocks K``). Fewer blocks is
    #: fewer MACs at the same kernels: the levels that differ in time (4-, 5- and 6-bit
    #: activations run the same int8 kernels). Level indices: the bit levels first
    #: (``quant.bits``, full depth), then these.
    exits: tuple[tuple[int, int], ...] = ()
    #: the time-aware controller over levels (None: the paper's GBC + E2B over bit levels)
    level_gate: LevelGateConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "level_weights", tuple(int(b) for b in self.level_weights))
        object.__setattr__(self, "exits", tuple((int(b), int(k)) for b, k in self.exits))
        _check(self.numerics in TRAIN_NUMERICS, f"numerics '{self.numerics}' is unknown; valid: {list(TRAIN_NUMERICS)}")
        _check(self.numerics == "float" or self.quantized, "numerics 'int8' needs a Granular-DQ (quantized) model")
        if self.level_weights:
            _check(self.numerics == "int8", "level_weights (a bit level with weights of its own) needs numerics 'int8'")
            for b in self.level_weights:
                _check(b in self.quant.bits, f"level_weights: {b} is not a bit level of the model; valid: {list(self.quant.bits)}")
            _check(list(self.level_weights) == sorted(set(self.level_weights)),
                   f"level_weights {list(self.level_weights)} must be strictly increasing")
        if self.exits:
            _check(self.numerics == "int8", "exits (levels that exit after fewer blocks) need numerics 'int8'")
            for b, k in self.exits:
                _check(b in self.quant.bits, f"exits: {b} is not a bit level of the model; valid: {list(self.quant.bits)}")
                _check(1 <= k < self.n_blocks, f"exits: {k} blocks must be in 1..{self.n_blocks - 1} (n_blocks is the full depth)")
            _check(list(self.exits) == sorted(set(self.exits)), f"exits {[list(e) for e in self.exits]} must be sorted and distinct")
        if self.level_gate is not None:
            _check(self.quantized, "a level gate needs a Granular-DQ (quantized) model")
            names = [level_name(b, k, self.n_blocks) for b, k in self.levels]
            for c in self.level_gate.choices:
                _check(c in names, f"level gate choice '{c}' is not a level of the model; valid: {names}")
        # which architectures exist is the model-family registry's business (models/family.py):
        # building an unregistered one fails there, with the registered names
        _check(self.arch.isidentifier(), f"arch '{self.arch}' is not a model family name")
        _check(self.scale in SCALES, f"scale {self.scale} is not supported; valid: {list(SCALES)}")
        _check(1 <= self.n_blocks <= 64, f"n_blocks={self.n_blocks} must be in 1..64")
        _check(self.n_feats >= 4 and self.n_feats % 4 == 0, f"n_feats={self.n_feats} must be a multiple of 4, >= 4")
        _check(self.rgb_range > 0, f"rgb_range={self.rgb_range} must be > 0")

    @property
    def name(self) -> str:
        return self.arch + ("_gdq" if self.quantized else "")

    @property
    def levels(self) -> tuple[tuple[int, int], ...]:
        """(bits, blocks) of every level, by level index: the bit levels at full depth, then the exits."""
        return tuple((b, self.n_blocks) for b in self.quant.bits) + self.exits

    @property
    def level_names(self) -> tuple[str, ...]:
        """``level_name`` of every level, by level index."""
        return tuple(level_name(b, k, self.n_blocks) for b, k in self.levels)

    def level_by_name(self, name: str) -> int:
        """Index of the level named ``name`` (``a6``, ``a6k4``); ConfigError naming the levels."""
        if name not in self.level_names:
            raise ConfigError(f"level '{name}' is not a level of this model; valid: {', '.join(self.level_names)}")
        return self.level_names.index(name)

    def level_index(self, bits: int, blocks: int | None = None) -> int:
        """Index of the level (bits, blocks) (blocks None: full depth); ConfigError naming the levels."""
        key = (int(bits), self.n_blocks if blocks in (None, 0) else int(blocks))
        if key not in self.levels:
            valid = ", ".join(level_name(b, k, self.n_blocks) for b, k in self.levels)
            raise ConfigError(f"level {level_name(*key, self.n_blocks)} is not a level of this model; valid: {valid}")
        return self.levels.index(key)

    @property
    def int8_tensors(self) -> bool:
        """Trained with the full-integer export's rounding points (numerics "int8")."""
        return self.quantized and self.numerics == "int8"


def level_name(bits: int, blocks: int, n_blocks: int) -> str:
    """A level's name: ``a6`` (6-bit activations, every block), ``a6k4`` (the first 4 blocks)."""
    return f"a{bits}" if blocks == n_blocks else f"a{bits}k{blocks}"


def level_key(bits: int, blocks: int | None = None) -> str:
    """The key of a level's own network in ``GDQNet.level_nets``: ``"8"`` (a bit level with weights
    of its own, ``ModelConfig.level_weights``), ``"6k4"`` (an exit level, ``ModelConfig.exits``)."""
    return str(bits) if blocks is None else f"{bits}k{blocks}"


@dataclass(frozen=True)
class TileConfig:
    """Static tile shape (LR pixels) and the step between tiles; overlap = tile - step."""

    tile: int = DEFAULT_TILE
    step: int = DEFAULT_STEP
    #: defaults.MERGES: "center", each tile keeps its central part (paper protocol); "blend": linear ramps
    merge: str = DEFAULT_MERGE

    def __post_init__(self) -> None:
        _check(self.tile >= 8, f"tile={self.tile} must be >= 8")
        _check(1 <= self.step <= self.tile, f"step={self.step} must be in 1..tile ({self.tile})")
        _check(self.merge in MERGES, f"merge '{self.merge}' is unknown; valid: {list(MERGES)}")

    @property
    def overlap(self) -> int:
        return self.tile - self.step
