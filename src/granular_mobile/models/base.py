"""Shared plumbing of the Granular-DQ networks.

I/O contract (every model, every backend): input NCHW float32 RGB on [0, 1]; output NCHW
float32 RGB, nominally on [0, 1] but not clamped (the runtime clamps and rounds, once).
Internally the network sees ``input * rgb_range`` and its output is divided by it, which is
how checkpoints trained on 0..255 (the reference code) run unchanged.

Numerics: a model family writes its network twice over one structure: ``sr_forward`` (full
precision, and the float numerics: k-bit conv inputs only) and ``lower`` (every rounding point
of the full-integer export, in the order the program runs them). ``lower`` is the one place
that says where each rounding point is: the export builds its program from it
(``ir.ProgramBuilder``), and with ``cfg.numerics == "int8"`` the forward at a bit level
runs it too, eagerly, with the integer arithmetic of the exported kernels
(``models/integer_forward.py``): what training optimises is, value for value, what the
exported graphs compute. A model with ``numerics == "float"`` trains with the k-bit conv
inputs only; its export calibrates the other grids after training.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig, level_key
from ..controller import E2B, GBC
from ..quant import GridQuantizer
from .integer_forward import IntegerForward

if TYPE_CHECKING:
    from ..ir import ProgramBuilder


_ModuleT = TypeVar("_ModuleT", bound=nn.Module)


def as_module(m: nn.Module | torch.Tensor, kind: type[_ModuleT]) -> _ModuleT:
    """``m`` as the ``kind`` it was built as: torch types a container's items as ``nn.Module``
    and a submodule attribute as ``Tensor | Module``."""
    assert isinstance(m, kind), f"expected a {kind.__name__}, got {type(m).__name__}"
    return m


def grid_of(grids: nn.ModuleDict, name: str) -> GridQuantizer | None:
    """The learned int8 grid ``name`` (None in float numerics)."""
    return as_module(grids[name], GridQuantizer) if name in grids else None


@dataclass
class ControllerOut:
    logits: torch.Tensor  # (N, 3) GBC logits
    entropy: torch.Tensor  # (N,) tile entropy (nats)
    bit_index: torch.Tensor  # (N,) index into cfg.quant.bits
    mix: torch.Tensor | None = None  # (N, len(bits)) straight-through one-hot (training)
    expected_bits: torch.Tensor | None = None  # (N,) E[bits] under the gate probabilities


class GDQNet(nn.Module):
    """Base class: subclasses build ``head`` (conv [+act]), ``body`` (blocks, end conv[, BN]) and ``tail``."""

    cfg: ModelConfig
    head: nn.Sequential
    body: nn.ModuleList
    tail: nn.Sequential

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tau = 1.0
        #: the integer forward computes exact integer values (False: its float surrogate alone,
        #: every rounding point as LSQ fake quantization; experiments/rounding_cost.py ablates that)
        self.exact_integer = True
        #: training: the share of tiles run at a uniformly random bit level instead of the gate's
        #: choice (set by the trainer); every level's quantizers keep training while the gate
        #: learns from the other tiles
        self.random_levels = 0.0
        if cfg.quantized:
            self.encoder = nn.Module()
            self.encoder.gbc = GBC(cfg.n_feats, groupnorm=cfg.gbc_groupnorm)
            self.e2b = E2B(cfg.quant, cfg.e2b)
        if cfg.level_gate is not None:
            # predicted gain (dB of the tile's image) of each choice; fitted, not trained
            # (train/level_gate.py). Zero until fitted: every score ties, and ties go to the
            # cheapest choice, so an unfitted gate runs every tile at the cheapest level
            self.level_gate = nn.Linear(3 * cfg.n_feats + 1, len(cfg.level_gate.choices))
            with torch.no_grad():
                self.level_gate.weight.zero_()
                self.level_gate.bias.zero_()
        if cfg.level_weights or cfg.exits:
            # a level with weights of its own: the same network without a controller (the one
            # controller picks the levels; this copy only runs the tiles sent to its level).
            # An exit level's copy keeps every block (its state loads from the shared network's);
            # it runs the first ``blocks`` of them
            nets = {}
            for key in [level_key(b) for b in cfg.level_weights] + [level_key(b, k) for b, k in cfg.exits]:
                net = type(self)(dataclasses.replace(cfg, level_weights=(), exits=(), level_gate=None))
                del net.encoder, net.e2b
                nets[key] = net
            self.level_nets = nn.ModuleDict(nets)

    def level_spec(self, level: int) -> tuple[int, int | None]:
        """(bit index, blocks or None for every block) of level index ``level`` (``ModelConfig.levels``)."""
        bits, blocks = self.cfg.levels[level]
        return self.bits.index(bits), None if blocks == self.cfg.n_blocks else blocks

    def blocks_run(self, b: object) -> int:
        """The residual blocks a ``lower`` call runs: its builder's ``blocks`` (an exit level), else all."""
        k = getattr(b, "blocks", None)
        return self.cfg.n_blocks if k is None else int(k)

    def net_for(self, level: int | None) -> GDQNet:
        """The network that runs level ``level`` (an index into ``cfg.levels``; the bit levels
        first, so a bit index is its level): a level's own copy (``cfg.level_weights``, every
        exit level), else this one."""
        if level is None:
            return self
        bits, blocks = self.cfg.levels[level]
        if blocks != self.cfg.n_blocks:
            return as_module(self.level_nets[level_key(bits, blocks)], GDQNet)
        if bits in self.cfg.level_weights:
            return as_module(self.level_nets[level_key(bits)], GDQNet)
        return self

    def unused_state_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes no level ever runs: the blocks of an exit level's copy after its
        exit. A packed file leaves them out (``checkpoint.pack_model``), and loading tolerates
        their absence (they keep their initial values and are never read)."""
        return tuple(f"level_nets.{level_key(b, k)}.body.{i}." for b, k in self.cfg.exits
                     for i in range(k, self.cfg.n_blocks))

    def shared_state(self) -> dict[str, torch.Tensor]:
        """The shared network's state (no controller, no level copies): what a level copy loads
        when it is created from it."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("encoder.", "e2b.", "level_nets.", "level_gate."))}

    # -- rounding points (numerics "int8") ---------------------------------------------
    def make_grids(self, *names: str) -> nn.ModuleDict:
        """One learned int8 grid per named tensor (empty for numerics "float")."""
        n = len(self.cfg.quant.bits)
        return nn.ModuleDict({k: GridQuantizer(n) for k in names} if self.cfg.int8_tensors else {})

    def grid_modules(self) -> list[GridQuantizer]:
        return [m for m in self.modules() if isinstance(m, GridQuantizer)]

    @contextlib.contextmanager
    def observing_grids(self) -> Iterator[None]:
        """Inside: the int8 grids pass tensors through unrounded and record max|x| per level."""
        grids = self.grid_modules()
        dev = next(self.parameters()).device
        for g in grids:
            g.observed = torch.zeros(len(self.bits), device=dev)
        try:
            yield
        finally:
            for g in grids:
                g.observed = None

    @torch.no_grad()
    def init_grids(self, tiles: torch.Tensor, batch: int = 8) -> None:
        """Start every learned int8 grid at max|x| / 127 over ``tiles`` (N, 3, T, T) [0, 1], per
        bit level: the scales post-training calibration gives, so a model fine-tuned from a
        float-numerics checkpoint starts at that checkpoint's deployed numerics."""
        grids = self.grid_modules()
        if not grids:
            return
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        try:
            with self.observing_grids():
                for lv in range(len(self.bits)):
                    for i in range(0, len(tiles), batch):
                        self(tiles[i:i + batch].to(dev), lv)
                for g in grids:
                    assert g.observed is not None
                    g.alpha.copy_(g.observed.clamp_min(1e-8) / g.qp)
                    g.initialized.fill_(1)
        finally:
            self.train(was)

    def lower(self, b: ProgramBuilder, bit_index: int | None) -> None:
        """Write this network at one static bit level (None: full precision) into ``b``."""
        from ..errors import ConfigError

        raise ConfigError(f"model family {type(self).__name__} does not lower into the export program "
                          "(it needs a lower() method beside its forward)")

    # -- subclass hooks -------------------------------------------------------------
    def head_conv(self, xs: torch.Tensor) -> torch.Tensor:
        """The float head conv: the controller's input (the controller graph is float)."""
        return self.head[0](xs)

    def sr_forward(self, x: torch.Tensor, z1: torch.Tensor, bit_index: torch.Tensor | None,
                   mix: torch.Tensor | None) -> torch.Tensor:
        """SR of x ([0, 1]) given the float head output ``z1``: full precision (``bit_index``
        None) or the float numerics (k-bit inputs of the quantized convs only)."""
        raise NotImplementedError

    # -- controller -----------------------------------------------------------------
    @property
    def bits(self) -> tuple[int, ...]:
        return self.cfg.quant.bits

    def n_quant_convs(self) -> int:
        return sum(1 for m in self.modules() if getattr(m, "quantized", False))

    def controller(self, x: torch.Tensor, z1: torch.Tensor | None = None) -> ControllerOut:
        """Bit level of each tile of x ([0, 1] RGB). Deterministic in eval mode (argmax)."""
        if not self.cfg.quantized:
            raise RuntimeError("a full-precision model has no controller")
        if z1 is None:
            z1 = self.head_conv(x * self.cfg.rgb_range)
        logits = as_module(self.encoder.gbc, GBC)(z1)
        h = self.e2b.entropy(x)
        if self.training:
            y = F.gumbel_softmax(logits, tau=self.tau, hard=True)
            mix = self.e2b.final_mix(y, h)
            probs = self.e2b.final_mix(logits.softmax(1), h)
            bits_t = torch.tensor(self.bits, dtype=probs.dtype, device=probs.device)
            return ControllerOut(logits, h, mix.argmax(1), mix, (probs * bits_t).sum(1))
        return ControllerOut(logits, h, self.e2b.final_bit_index(logits.argmax(1), h))

    def level_features(self, x: torch.Tensor, z1: torch.Tensor | None = None) -> torch.Tensor:
        """The level gate's input per tile of x ([0, 1] RGB): the GBC features and the entropy, (N, 3C + 1)."""
        if z1 is None:
            z1 = self.head_conv(x * self.cfg.rgb_range)
        return torch.cat([as_module(self.encoder.gbc, GBC).features(z1), self.e2b.entropy(x)[:, None]], 1)

    def level_scores(self, x: torch.Tensor, z1: torch.Tensor | None = None) -> torch.Tensor:
        """(N, len(level_gate.choices)): each choice's predicted gain (``ModelConfig.level_gate``)."""
        if self.cfg.level_gate is None:
            raise RuntimeError("this model has no level gate (gdq fit-gate --levels fits one)")
        return self.level_gate(self.level_features(x, z1))

    # -- forward --------------------------------------------------------------------
    def forward(self, x: torch.Tensor, bit_index: torch.Tensor | int | None = None, return_ctrl: bool = False):
        """SR of x. Quantized models pick bits per tile unless ``bit_index`` forces them.

        ``return_ctrl`` returns (sr, ControllerOut | None) (a keyword, so DDP passes it on)."""
        sr, ctrl = self.forward_with_bits(x, bit_index)
        return (sr, ctrl) if return_ctrl else sr

    def _random_levels(self, bit_index: torch.Tensor, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = bit_index.shape[0]
        pick = torch.rand(n, device=bit_index.device) < self.random_levels
        if not bool(pick.any()):
            return bit_index, mix
        rnd = torch.randint(len(self.bits), (n,), device=bit_index.device)
        # the replaced tiles' one-hot is a constant: no gate gradient from a choice it did not make
        mix = torch.where(pick[:, None], F.one_hot(rnd, len(self.bits)).to(mix), mix)
        return torch.where(pick, rnd, bit_index), mix

    def forward_with_bits(
        self, x: torch.Tensor, bit_index: torch.Tensor | int | None = None
    ) -> tuple[torch.Tensor, ControllerOut | None]:
        xs = x * self.cfg.rgb_range
        # the float head conv: the controller's input, and the float forward's first layer
        # (the integer forward runs its own int8 head)
        z1: torch.Tensor | None = None
        ctrl: ControllerOut | None = None
        mix = None
        if self.cfg.quantized:
            if bit_index is None:
                z1 = self.head_conv(xs)
                ctrl = self.controller(x, z1)
                bit_index, mix = ctrl.bit_index, ctrl.mix
                if self.training and self.random_levels > 0 and mix is not None:
                    bit_index, mix = self._random_levels(bit_index, mix)
            elif isinstance(bit_index, int):
                bit_index = torch.full((x.shape[0],), bit_index, dtype=torch.long, device=x.device)
        else:
            bit_index = None
        if self.cfg.int8_tensors and bit_index is not None:
            return self._routed_integer_forward(x, bit_index, mix), ctrl
        return self.sr_forward(x, self.head_conv(xs) if z1 is None else z1, bit_index, mix), ctrl

    def _routed_integer_forward(self, x: torch.Tensor, level: torch.Tensor, mix: torch.Tensor | None) -> torch.Tensor:
        """``integer_forward`` with each sample run by the network of its level (``net_for``) at
        that level's bits and depth; ``level`` indexes ``cfg.levels`` (a bit index is its level)."""
        if not (self.cfg.level_weights or self.cfg.exits):
            return self.integer_forward(x, level, mix)
        # groups of levels one call runs: the same network and depth
        groups: dict[tuple[int, int | None], tuple[GDQNet, list[int]]] = {}
        for lv in level.unique().tolist():
            net = self.net_for(lv)
            groups.setdefault((id(net), self.level_spec(lv)[1]), (net, []))[1].append(lv)

        def run(key: tuple[int, int | None], net: GDQNet, lv: torch.Tensor, m: torch.Tensor | None,
                xs: torch.Tensor) -> torch.Tensor:
            bi = lv if key[1] is None else torch.full_like(lv, self.level_spec(int(lv[0]))[0])
            # the gate's mix covers the bit levels; an exit level is never the gate's choice
            return net.integer_forward(xs, bi, m if key[1] is None else None, exact=self.exact_integer, blocks=key[1])

        if len(groups) == 1:
            (key, (net, _)), = groups.items()
            return run(key, net, level, mix, x)
        out: torch.Tensor | None = None
        for key, (net, levels) in groups.items():
            idx = torch.isin(level, torch.tensor(levels, device=level.device)).nonzero().squeeze(1)
            m = None if mix is None or key[1] is not None else mix[idx]
            y = run(key, net, level[idx], m, x[idx])
            out = (y.new_zeros((x.shape[0], *y.shape[1:])) if out is None else out).index_copy(0, idx, y)
        assert out is not None
        return out

    def integer_forward(self, x: torch.Tensor, bit_index: torch.Tensor, mix: torch.Tensor | None = None,
                        exact: bool | None = None, blocks: int | None = None) -> torch.Tensor:
        """SR of x at each sample's bit level in the integer numerics: this family's ``lower`` run
        eagerly (exact integer values, straight-through gradients). While the grids observe
        (``observing_grids``), the float surrogate runs and they record instead of rounding.
        ``exact``: default ``self.exact_integer`` (a level copy takes its owner's)."""
        observing = any(g.observed is not None for g in self.grid_modules())
        exact = self.exact_integer if exact is None else exact
        b = IntegerForward(x, bit_index, mix, exact=exact and not observing, blocks=blocks)
        # the eager builder takes each sample's level from bit_index; the int tells lower()
        # that this is a quantized (not a full-precision) program
        self.lower(b, 0)  # type: ignore[arg-type]
        if b.output is None:
            raise ValueError(f"{type(self).__name__}.lower did not end with output_conv")
        return b.output


def count_macs(model: GDQNet, lr_h: int, lr_w: int, blocks: int | None = None) -> list[tuple[str, int, bool]]:
    """(name, MACs, quantized) of every conv for one LR input of lr_h x lr_w (GBC/E2B excluded);
    ``blocks``: of an exit level that runs only the first ``blocks`` residual blocks."""
    rows: list[tuple[str, int, bool]] = []
    hooks = []

    def hook(name: str):
        def fn(mod: nn.Conv2d, inp, out) -> None:
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            rows.append((name, int(out.shape[1] * out.shape[2] * out.shape[3] * k), bool(getattr(mod, "quantized", False))))
        return fn

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            x = torch.zeros(1, 3, lr_h, lr_w, device=next(model.parameters()).device)
            # the float forward: the same convs at any numerics (the integer forward computes
            # them without calling the modules, so their hooks would count nothing)
            bi = torch.zeros(1, dtype=torch.long, device=x.device) if model.cfg.quantized else None
            model.sr_forward(x, model.head_conv(x * model.cfg.rgb_range), bi, None)
            model.train(was)
    finally:
        for h in hooks:
            h.remove()
    if blocks is not None:
        skipped = tuple(f"body.{i}." for i in range(blocks, model.cfg.n_blocks))
        rows = [r for r in rows if not r[0].startswith(skipped)]
    return rows
