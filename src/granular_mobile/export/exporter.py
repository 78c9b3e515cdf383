"""The export driver: targets table, calibration, manifest, parity checks (``gdq export``)."""
from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..checkpoint import DEFAULT_FILES, DEFAULT_MODEL, load_model
from ..config import level_name, to_dict
from ..data.calibration import calibration_tiles
from ..defaults import DEFAULT_TILE, bench_root
from ..errors import ConfigError, DataError, GdqError
from ..ir import FP_LAYER_MODES, Program, build_program, calibrate_program, deployed_level_programs
from ..models import GDQNet
from ..models.base import count_macs
from ..runtime.level_info import LevelGateInfo, LevelInfo
from ..runtime.manifest import GRAPH_IO, E2BInfo, FileEntry, Manifest, ModelInfo, TargetEntry, sha256
from ..runtime.targets import GRAPH_SUFFIXES, TARGET_SPECS, TargetSpec, target_spec
from .controller import ControllerSpec, controller_spec

#: a writer: (out, programs per level name, fp32 program, controller, tile, **its options) -> the
#: files it wrote: {"controller": path, "controller_outputs": {role: graph output}, "sr": {level: path},
#: "fp32": path | None, and optionally "batch", "single_file", "signatures", "size_saved_bytes", "u8u8_convs"}
Writer = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Target:
    """An export target: its files and backend (runtime/targets.py), its writer, and the
    ``export()`` options the writer takes (any other option given for it is refused)."""

    spec: TargetSpec
    writer: Writer
    options: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def layout(self) -> str:
        return self.spec.layout


#: every export option: how messages name it and the value that means "not given"
OPTIONS: dict[str, tuple[str, Any]] = {"single_file": ("``single_file``", False)}


def _write_onnx(out: Path, progs: dict[str, Program], fp: Program | None, ctrl: ControllerSpec, tile: int) -> dict[str, Any]:
    from .onnx import controller_to_onnx, program_to_onnx, save_onnx

    ctrl_graph = controller_to_onnx(ctrl, tile)
    files: dict[str, Any] = {"controller": save_onnx(ctrl_graph, out / "controller.onnx"), "sr": {}, "u8u8_convs": {},
                             # the ONNX graph names its outputs after their roles
                             "controller_outputs": {o.name: o.name for o in ctrl_graph.graph.output}}
    for lv, p in progs.items():
        # report: the convs left on onnxruntime's slower non-saturating kernels (channel_pairs.py)
        report: dict[str, list[str]] = {}
        files["sr"][lv] = save_onnx(program_to_onnx(p, tile, name=f"sr_{lv}", report=report), out / f"sr_{lv}.onnx")
        files["u8u8_convs"][lv] = report["u8u8_convs"]
    files["fp32"] = save_onnx(program_to_onnx(fp, tile, name="sr_fp32"), out / "sr_fp32.onnx") if fp else None
    return files


def _write_tflite(out: Path, progs: dict[str, Program], fp: Program | None, ctrl: ControllerSpec, tile: int,
                  single_file: bool = False) -> dict[str, Any]:
    from .tflite import write_tflite

    return write_tflite(out, progs, fp, ctrl, tile, single_file=single_file)


_WRITERS: dict[str, tuple[Writer, tuple[str, ...]]] = {
    "onnx": (_write_onnx, ()),
    "tflite": (_write_tflite, ("single_file",)),
}
TARGETS: dict[str, Target] = {name: Target(spec, *_WRITERS[name]) for name, spec in TARGET_SPECS.items()}


def _kept_targets(out: Path, config: Mapping[str, Any], tile: int, fp_layers: str,
                  targets: Sequence[str]) -> tuple[dict[str, TargetEntry], dict[str, Any]]:
    """The targets (and their parity) of a manifest already in ``out`` that this export does not
    write: kept when that export is of the same model, tile and numerics and its graphs are still
    on disk as it wrote them, so that exporting one target adds it instead of dropping the others."""
    p = out / "manifest.json"
    if not p.is_file():
        return {}, {}
    try:
        old = Manifest.from_json(p.read_text(), str(p))
    except (GdqError, OSError, ValueError):  # an unreadable or older manifest is replaced
        return {}, {}
    if dict(old.model.config) != dict(config) or old.tile != tile or old.fp_layers != fp_layers:
        return {}, {}
    kept = {}
    for name, t in old.targets.items():
        if name not in targets and all(
                (out / f).is_file() and f in old.files and sha256(out / f) == old.files[f].sha256 for f in t.files()):
            kept[name] = t
    return kept, {k: v for k, v in (old.parity or {}).items() if k in kept}


def level_infos(model: GDQNet, tile: int) -> tuple[LevelInfo, ...]:
    """Every level of the model with its MACs per tile and its cost: the level gate's measured
    cost for its choices, else MACs relative to the full-depth graph (time follows MACs,
    docs/TIME.md)."""
    cfg = model.cfg
    macs = {k: sum(m for _, m, _ in count_macs(model, tile, tile, blocks=k)) for k in {k for _, k in cfg.levels}}
    gate = cfg.level_gate
    measured = dict(zip(gate.choices, gate.costs, strict=True)) if gate is not None else {}
    out = []
    for b, k in cfg.levels:
        name = level_name(b, k, cfg.n_blocks)
        cost = measured.get(name, macs[k] / macs[cfg.n_blocks])
        out.append(LevelInfo(name=name, bits=b, blocks=k, macs=macs[k], cost=round(float(cost), 4)))
    return tuple(out)


def gate_info(model: GDQNet) -> LevelGateInfo | None:
    g = model.cfg.level_gate
    return None if g is None else LevelGateInfo(choices=g.choices, costs=g.costs, budget=g.budget,
                                                cost_source=g.cost_source)


def check_targets(targets: Sequence[str], options: Mapping[str, Any] | None = None) -> list[str]:
    """The targets, checked: each one known, and each option given (a value other than its
    "not given" one) taken by one of them, so that no option is silently ignored."""
    if not targets:
        raise ConfigError(f"no export target given; valid: {sorted(TARGETS)} (or 'all')")
    for t in targets:
        target_spec(t)
    for opt, value in (options or {}).items():
        if opt not in OPTIONS:
            raise ConfigError(f"export option '{opt}' is unknown; valid: {sorted(OPTIONS)}")
        flag, unset = OPTIONS[opt]
        if value == unset or any(opt in TARGETS[t].options for t in targets):
            continue
        takers = [n for n, t in TARGETS.items() if opt in t.options]
        raise ConfigError(f"{flag} is an option of the {' and '.join(takers)} target, not of {', '.join(targets)}: "
                          f"add ``targets`` {takers[0]}, or drop {flag}")
    return list(targets)


def _versions() -> dict[str, str]:
    v = {"granular_mobile": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("onnx", "onnxruntime", "onnxsim", "tensorflow", "ai_edge_litert"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional tools
            pass
    return v


def _entry(tgt: Target, files: dict[str, Any], seconds: float, bit_levels: Mapping[str, int]) -> TargetEntry:
    """The manifest entry of what a target's writer wrote (file names relative to the folder).
    ``bit_levels``: the name of each full-depth level -> its bits (``sr`` names those graphs by
    bits, as manifests before levels did; ``levels`` names every graph by level)."""
    names = {lv: Path(p).name for lv, p in files["sr"].items()}
    return TargetEntry(
        layout=tgt.layout, batch=files.get("batch", "dynamic"), controller=Path(files["controller"]).name,
        sr={b: names[lv] for lv, b in bit_levels.items()}, levels=names,
        fp32=Path(files["fp32"]).name if files.get("fp32") else None, export_seconds=seconds,
        controller_outputs=files["controller_outputs"],
        single_file=Path(files["single_file"]).name if "single_file" in files else None,
        signatures=tuple(files["signatures"]) if "signatures" in files else None,
        size_saved_bytes=files.get("size_saved_bytes"),
        u8u8_convs={b: tuple(files["u8u8_convs"][lv]) for lv, b in bit_levels.items()} if "u8u8_convs" in files else None)


def _check_options(targets: Sequence[str], options: dict[str, Any], fp_layers: str, tile: int) -> list[str]:
    """The targets, checked with the options, before any file is written."""
    targets = check_targets(targets, options)
    if fp_layers not in FP_LAYER_MODES:
        raise ConfigError(f"``fp_layers`` '{fp_layers}' is unknown; valid: {list(FP_LAYER_MODES)}")
    if fp_layers != "int8" and "tflite" in targets:
        raise ConfigError(f"``fp_layers`` {fp_layers} is ONNX only (TFLite export is full integer); use ``targets`` onnx")
    if tile < 16 or tile % 4:
        raise ConfigError(f"``tile`` {tile} must be a multiple of 4, >= 16")
    return targets


def _check_verify_data(root: Path, scale: int) -> None:
    """--verify compares on the tiles of ``VERIFY_SETS``: they must be there."""
    from ..verify.parity import VERIFY_SETS

    for s in VERIFY_SETS:
        if not (root / s / "HR").is_dir() or not (root / s / "LR_bicubic" / f"X{scale}").is_dir():
            raise DataError(f"``verify`` needs {' and '.join(VERIFY_SETS)} under '{root}' (SET/HR/ and "
                            f"SET/LR_bicubic/X{scale}/); point ``verify_root`` or GDQ_BENCH_ROOT at their parent folder")


def _load_twin(model: str | GDQNet, fp_model: str | GDQNet | None, scale: int) -> GDQNet | None:
    """The full-precision twin to export beside the model (the shipped one's with the default model)."""
    if fp_model is None and model == DEFAULT_MODEL and DEFAULT_FILES["fp"].is_file():
        fp_model = DEFAULT_MODEL + ":fp"
    if fp_model is None:
        return None
    fpm = load_model(DEFAULT_MODEL, fp=True) if fp_model == DEFAULT_MODEL + ":fp" else (
        load_model(fp_model) if isinstance(fp_model, str) else fp_model)
    if fpm.cfg.quantized or fpm.cfg.scale != scale:
        raise ConfigError("``fp_model`` must be the full-precision twin (same scale) of the model")
    return fpm


def export(
    model: str | GDQNet = DEFAULT_MODEL,
    targets: Sequence[str] = ("onnx",),
    out_dir: str | Path = "export",
    tile: int = DEFAULT_TILE,
    fp_layers: str = "int8",
    fp_model: str | GDQNet | None = None,
    verify: bool = False,
    verify_root: str | Path | None = None,
    single_file: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> Manifest:
    """Export a Granular-DQ model; returns the manifest (also written to ``out_dir/manifest.json``).

    ``verify_root``: the benchmark root of ``verify`` (default: ``defaults.bench_root()``).
    ``single_file``: TFLite, also one file with one signature per graph (refused without a
    target that takes it)."""
    options = {"single_file": single_file}
    targets = _check_options(targets, options, fp_layers, tile)
    t0 = time.time()
    name = model if isinstance(model, str) else "<in-memory>"
    m = load_model(model) if isinstance(model, str) else model
    m.eval()
    if not m.cfg.quantized:
        raise ConfigError("export needs a Granular-DQ model (a *_gdq checkpoint); its full-precision twin goes in ``fp_model``")
    if verify:  # before any file is written
        _check_verify_data(Path(bench_root() if verify_root is None else verify_root), m.cfg.scale)
    fpm = _load_twin(model, fp_model, m.cfg.scale)
    if m.cfg.e2b.tile != tile:
        log(f"warning: E2B thresholds were calibrated at tile {m.cfg.e2b.tile}, exporting at {tile} "
            f"(run `gdq calibrate --tile {tile}` for matching thresholds)")
    calib = calibration_tiles(tile)
    progs = deployed_level_programs(m, calib, fp_layers)
    bit_levels = {level_name(b, m.cfg.n_blocks, m.cfg.n_blocks): b for b in m.bits}
    fp_prog = calibrate_program(build_program(fpm, None), calib) if fpm is not None else None
    ctrl = controller_spec(m)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    e2b, quant = m.cfg.e2b, m.cfg.quant
    entries, kept_parity = _kept_targets(out, to_dict(m.cfg), tile, fp_layers, targets)
    if entries:
        log(f"kept the {', '.join(sorted(entries))} export already in {out} (same model, tile and numerics)")
    for tname in targets:
        tgt = TARGETS[tname]
        t1 = time.time()
        files = tgt.writer(out, progs, fp_prog, ctrl, tile, **{k: options[k] for k in tgt.options})
        entries[tname] = _entry(tgt, files, round(time.time() - t1, 1), bit_levels)
        log(f"{tname}: wrote {len(files['sr']) + 1 + int(bool(files.get('fp32')))} graphs in "
            f"{entries[tname].export_seconds} s")
    manifest = Manifest(
        model=ModelInfo(m.cfg.name, name, to_dict(m.cfg)), scale=m.cfg.scale, tile=tile, bits=tuple(m.bits),
        fp_layers=fp_layers,
        e2b=E2BInfo(thresholds=e2b.thresholds, quantiles=e2b.quantiles, calibrated_tile=e2b.tile,
                    gbc_bits=quant.gbc_bits, e2b_bits=quant.e2b_bits),
        io=GRAPH_IO, targets=entries, versions=_versions(), levels=level_infos(m, tile), level_gate=gate_info(m),
        files={p.name: FileEntry(sha256(p), p.stat().st_size) for p in sorted(out.iterdir()) if p.suffix in GRAPH_SUFFIXES})
    if verify:
        from ..verify.parity import verify_export

        parity = verify_export(out, manifest, m, fpm, bench_root() if verify_root is None else verify_root,
                               progs=progs, log=log)
        manifest = manifest.replace(parity={**kept_parity, **parity})
    elif kept_parity:
        manifest = manifest.replace(parity=kept_parity)
    manifest = manifest.replace(export_seconds=round(time.time() - t0, 1))
    manifest.write(out)
    return manifest


def parity_ok(parity: Mapping[str, Any], min_psnr: float = 45.0, min_agree: float = 0.99) -> bool:
    for t in parity.values():
        if t["controller_agreement"] < min_agree or t.get("gate_agreement", 1.0) < min_agree:
            return False
        if any(v["psnr_db"] < min_psnr for v in t["sr"].values()):
            return False
    return True


__all__ = ["OPTIONS", "TARGETS", "Target", "calibration_tiles", "check_targets", "export", "parity_ok", "sha256"]
