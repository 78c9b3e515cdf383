"""``gdq eval`` as one library call: a model (and its full-precision twin, and bicubic) on
benchmark sets, with the options checked before any data is read."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import TileConfig
from ..data.benchmark import benchmark_pairs
from ..errors import ConfigError
from ..models import GDQNet
from .evaluate import EvalResult, evaluate_dataset


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate_benchmarks`` ran: its results (per set: the model, its twin, bicubic), the
    scale, and the bit levels of the model (empty for a full-precision one)."""

    results: list[EvalResult]
    scale: int
    levels: tuple[int, ...]


def evaluate_benchmarks(model: str | GDQNet = "default", sets: Sequence[str] = ("Set5", "Set14", "BSD100"),
                        root: str | Path | None = None, scale: int | None = None, tiles: TileConfig | None = None,
                        fp: str | None = None, bits: int | None = None, blocks: int = 0,
                        budget: float | None = None, numerics: str = "int8", bicubic: bool = True,
                        on_total: Callable[[int], None] = lambda n: None,
                        advance: Callable[[int], None] = lambda n: None) -> Evaluation:
    """PSNR / SSIM (Y, shave = scale), FAB, BitOPs and tiles per bit of ``model`` on ``sets``
    under ``root`` (default: ``defaults.bench_root()``), beside its full-precision twin (``fp``;
    the shipped one's for the default model) and bicubic. ``bits`` (with ``blocks``): every tile
    at that level; ``budget``: the level gate's operating point; ``numerics``: "int8" (what a
    device computes) or "float" (the PyTorch forward). ``on_total`` gets the number of images
    to run, ``advance`` each one done."""
    from ..checkpoint import DEFAULT_FILES, DEFAULT_MODEL, load_model
    from ..defaults import bench_root
    from ..runtime.backends.torch import NUMERICS

    if numerics not in NUMERICS:
        raise ConfigError(f"``numerics`` '{numerics}' is unknown; valid: {list(NUMERICS)}")
    m = load_model(model) if isinstance(model, str) else model
    s = scale or m.cfg.scale
    if s != m.cfg.scale:
        raise ConfigError(f"``scale`` {s}: the model is x{m.cfg.scale}")
    models: list[tuple[str, GDQNet]] = [("gdq" if m.cfg.quantized else "fp", m)]
    if m.cfg.quantized:
        fp_path = fp or (str(DEFAULT_FILES["fp"]) if model == DEFAULT_MODEL else None)
        if fp_path:
            models.append(("fp", load_model(fp_path, fp=fp_path == DEFAULT_MODEL)))
    bit_index = None
    if bits is not None:
        if not m.cfg.quantized:
            raise ConfigError("``bits`` needs a Granular-DQ model")
        bit_index = m.cfg.level_index(bits, blocks or None)
    elif blocks:
        raise ConfigError("``blocks`` picks an exit level together with ``bits`` (e.g. 6 and 4)")
    if budget is not None:
        if m.cfg.level_gate is None:
            raise ConfigError("``budget`` needs a model with a level gate (gdq fit-gate --levels)")
        if bits is not None:
            raise ConfigError("``budget`` sets the controller's operating point: drop ``bits``")
    tc = tiles or TileConfig()
    data = {name: benchmark_pairs(bench_root() if root is None else root, name, s) for name in sets}
    on_total(sum(len(p) for p in data.values()) * (len(models) + int(bicubic)))
    results = []
    for name, pairs in data.items():
        for kind, mm in models:
            label = (f"{mm.cfg.name}" + (f" (bits={bits}{f', blocks={blocks}' if blocks else ''})"
                                          if kind == "gdq" and bits else "")
                     + (f" {numerics}" if kind == "gdq" else ""))
            results.append(evaluate_dataset(mm, pairs, name, s, tc, label, bit_index if kind == "gdq" else None,
                                            advance, numerics=numerics, budget=budget if kind == "gdq" else None))
        if bicubic:
            results.append(evaluate_dataset(None, pairs, name, s, tc, "bicubic", progress=advance))
    return Evaluation(results, s, tuple(m.bits) if m.cfg.quantized else ())
