"""``gdq fit-gate`` as library calls: pick the training images, measure every tile at each
choice (or read the cache), fit the gate, set its operating point and write the model.

    from granular_mobile.train.gate_pipeline import fit_level_gate_to_data
    report = fit_level_gate_to_data("runs/exit/best.pt", "timed.pt", ["a6k4", "a6k8", "a6", "a8"],
                                    budget=0.55, folders=["T91", "BSD200"], cost="docs/level_cost_onnx.json")
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import load_model, save_model
from ..config import LevelGateConfig, TileConfig, check_target_fab
from ..errors import ConfigError, DataError
from ..imageio import check_output, list_images, read_rgb
from .gate_fit import FOLDS, GateFitConfig, TileGains, fit_gate, measure_tile_gains
from .level_gate import LevelGains, fit_level_gate, level_costs, measure_level_gains

#: progress of the measurement: (images done, images)
Progress = Callable[[int, int], None]


def spread_images(folders: Sequence[str], n: int) -> list[Path]:
    """``n`` images of the folders, spread evenly over them (all of them if there are fewer)."""
    files = [p for f in folders for p in list_images(f)]
    if not files:
        raise DataError(f"no images in {list(folders)}")
    stride = len(files) / min(n, len(files))
    return [files[int(i * stride)] for i in range(min(n, len(files)))]


def _check_images(images: int) -> None:
    if images < FOLDS:
        raise ConfigError(f"``images`` {images}: the fit's {FOLDS}-fold cross-validation needs at least {FOLDS} images")


def _check_cache(cache: Path | None) -> None:
    if cache is not None and not cache.is_file() and not cache.parent.is_dir():
        raise ConfigError(f"``cache`` {cache}: the folder {cache.parent} does not exist")


def _measure(folders: Sequence[str], images: int, measure: Callable[..., Any], progress: Progress | None) -> Any:
    pick = spread_images(folders, images)
    done = [0]

    def advance() -> None:
        done[0] += 1
        if progress:
            progress(done[0], len(pick))

    return measure([read_rgb(p) for p in pick], advance=advance)


def fit_bit_gate_to_data(model: str, out: str | Path, choices: tuple[int, ...], e2b_bits: tuple[int, ...] | None,
                         target_fab: float, folders: Sequence[str], images: int = 60, ridge: float = 100.0,
                         tiles: TileConfig | None = None, cache: Path | None = None, progress: Progress | None = None,
                         log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """The bit controller's gate (GBC) fitted to measured per-tile gains, its bias set so that
    the data's tiles average ``target_fab`` bits; writes the model to ``out``, returns the report."""
    from ..data.dataset import load_folder_images, tile_grid
    from . import calibrate_gate

    tc = tiles or TileConfig()
    check_target_fab(target_fab)
    _check_images(images)
    cfg = GateFitConfig(choices, e2b_bits, ridge)  # type: ignore[arg-type]
    m = load_model(model)
    if not m.cfg.quantized:
        raise ConfigError(f"'{model}' is a full-precision model; only Granular-DQ models have a gate")
    cfg.quant(m.cfg.quant)  # the choices against the model's bit set, before the measurement
    check_target_fab(target_fab, (*choices, *(e2b_bits or ())))
    _check_cache(cache)
    if cache is not None and cache.is_file():
        gains = TileGains.load(cache)
        if (gains.tiles.tile, gains.tiles.step) != (tc.tile, tc.step):
            raise ConfigError(f"``cache`` {cache} was measured with ``tile`` {gains.tiles.tile} ``step`` {gains.tiles.step}, "
                              f"not ``tile`` {tc.tile} ``step`` {tc.step}; give those or another ``cache``")
        log(f"tile measurements from {cache}: {len(gains.img)} tiles of {len(set(gains.img.tolist()))} images")
    else:
        gains = _measure(folders, images, lambda imgs, advance: measure_tile_gains(m, imgs, m.bits, tc, advance=advance),
                         progress)
        if cache is not None:
            gains.save(cache)
    new, report = fit_gate(m, gains, cfg, target_fab)
    t, before, after, n = calibrate_gate(new, tile_grid(load_folder_images(list(folders)), tc.tile, m.cfg.scale),
                                         target_fab)
    report["gate_bias_shift"] = {"t": t, "target_fab": target_fab, "fab_before": before, "fab_after": after, "tiles": n}
    cv, old = report["cv_vs_static_mix_db"], report["trained_gate_vs_static_mix_db"]
    log(f"fitted on {report['tiles']} tiles of {report['images']} images; cross-validated, against the best "
        f"static mix: {cv:+.4f} dB at FAB {report['cv_fab']:.2f}" +
        (f" (the current gate: {old:+.4f} dB at {report['trained_gate_fab']:.2f})" if old is not None else ""))
    log(f"operating point: FAB {after:.3f} on {n} tiles of {', '.join(folders)} (target {target_fab})")
    save_model(new, out, meta={"gate_fit": report, "calibrated_on": list(folders)})
    return report


def fit_level_gate_to_data(model: str, out: str | Path, levels: Sequence[str], budget: float,
                           folders: Sequence[str], cost: str | Path | None = None, images: int = 60,
                           ridge: float = 100.0, tiles: TileConfig | None = None, cache: Path | None = None,
                           json_out: Path | None = None, command: str = "", progress: Progress | None = None,
                           log: Callable[[str], None] = lambda s: None,
                           on_fitted: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The time-aware level gate over ``levels`` (cheapest first) fitted to measured per-tile
    gains, priced by ``cost`` (bench/level_cost.py's JSON; default MACs), default operating
    point ``budget``; writes the model to ``out`` (and the report to ``json_out``), returns the
    report (``report["cv"]``: per budget, the cross-validated PSNR, the best static mix, the
    oracle), also given to ``on_fitted`` before the model is written."""
    tc = tiles or TileConfig()
    _check_images(images)
    if json_out:
        check_output(json_out, "``json_out``", True, image=False)
    m = load_model(model)
    if not m.cfg.quantized:
        raise ConfigError(f"'{model}' is a full-precision model; only Granular-DQ models have a controller")
    for c in levels:
        m.cfg.level_by_name(c)
    costs, source = level_costs(m, levels, tc.tile, cost)
    if sorted(range(len(levels)), key=lambda i: costs[i]) != list(range(len(levels))):
        raise ConfigError(f"``levels`` {','.join(levels)}: give them cheapest first (costs {list(costs)})")
    LevelGateConfig(tuple(levels), costs, budget, source)  # the budget against the costs, before the measurement
    _check_cache(cache)
    if cache is not None and cache.is_file():
        gains = LevelGains.load(cache)
        if (gains.tiles.tile, gains.tiles.step) != (tc.tile, tc.step) or list(gains.choices) != list(levels):
            raise ConfigError(f"``cache`` {cache} measured {list(gains.choices)} at ``tile`` {gains.tiles.tile} ``step`` "
                              f"{gains.tiles.step}; give those or another ``cache``")
        log(f"level measurements from {cache}: {len(gains.img)} tiles of {len(set(gains.img.tolist()))} images")
    else:
        gains = _measure(folders, images,
                         lambda imgs, advance: measure_level_gains(m, imgs, levels, tc, advance=advance), progress)
        if cache is not None:
            gains.save(cache)
    new, report = fit_level_gate(m, gains, costs, budget, ridge, source)
    log(f"fitted on {report['tiles']} tiles of {report['images']} images; costs {dict(zip(levels, costs, strict=True))} "
        f"({source}); {FOLDS}-fold cross-validated over images, mean image PSNR (dB):")
    if on_fitted:
        on_fitted(report)
    save_model(new, out, meta={"level_gate_fit": report, "fitted_on": list(folders)})
    if json_out:
        json_out.write_text(json.dumps({"command": command, **report}, indent=2))
    return report


__all__ = ["Progress", "fit_bit_gate_to_data", "fit_level_gate_to_data", "spread_images"]
