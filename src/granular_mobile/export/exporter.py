"""The export driver: targets table, calibration, manifest, parity checks (``gdq export``)."""
from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..checkpoint import DEFAULT_FILES, DEFAULT_MODEL, load_model
from ..config import to_dict
from ..data.calibration import calibration_tiles
from ..errors import ConfigError
from ..models import GDQNet
from ..runtime.manifest import sha256
from .controller import ControllerSpec, controller_spec
from ..program import FP_LAYER_MODES, Program, build_program, calibrate_program, deployed_programs

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Target:
    name: str
    suffix: str
    layout: str  # of the graph's image tensors
    writer: Callable[..., dict[str, Any]]  # returns {"controller": path, "sr": {bits: path}, "fp32": path|None, ...}
    options: tuple[str, ...] = ()


def _write_onnx(out: Path, progs: dict[int, Program], fp: Program | None, ctrl: ControllerSpec, tile: int,
                **_: Any) -> dict[str, Any]:
    from .onnx import controller_to_onnx, program_to_onnx, save_onnx

    files: dict[str, Any] = {"controller": save_onnx(controller_to_onnx(ctrl, tile), out / "controller.onnx"), "sr": {},
                             "u8u8_convs": {}}
    for b, p in progs.items():
        # report: the convs left on onnxruntime's slower non-saturating kernels (channel_pairs.py)
        report: dict[str, list[str]] = {}
        files["sr"][b] = save_onnx(program_to_onnx(p, tile, name=f"sr_a{b}", report=report), out / f"sr_a{b}.onnx")
        files["u8u8_convs"][str(b)] = report["u8u8_convs"]
    files["fp32"] = save_onnx(program_to_onnx(fp, tile, name="sr_fp32"), out / "sr_fp32.onnx") if fp else None
    return files


def _write_tflite(out: Path, progs: dict[int, Program], fp: Program | None, ctrl: ControllerSpec, tile: int,
                  single_file: bool = False, **_: Any) -> dict[str, Any]:
    from .tflite import write_tflite

    return write_tflite(out, progs, fp, ctrl, tile, single_file=single_file)


TARGETS: dict[str, Target] = {
    "onnx": Target("onnx", ".onnx", "NCHW", _write_onnx),
    "tflite": Target("tflite", ".tflite", "NHWC", _write_tflite, ("single_file",)),
}


def _versions() -> dict[str, str]:
    v = {"granular_mobile": __version__, "python": platform.python_version(), "torch": torch.__version__}
    for mod in ("onnx", "onnxruntime", "onnxsim", "tensorflow", "ai_edge_litert"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional tools
            pass
    return v


def export(
    model: str | GDQNet = DEFAULT_MODEL,
    targets: list[str] = ("onnx",),  # type: ignore[assignment]
    out_dir: str | Path = "export",
    tile: int = 96,
    fp_layers: str = "int8",
    fp_model: str | GDQNet | None = None,
    verify: bool = False,
    verify_root: str | Path = "../shared/datasets/benchmark",
    single_file: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Export a Granular-DQ model; returns the manifest (also written to ``out_dir/manifest.json``)."""
    for t in targets:
        if t not in TARGETS:
            raise ConfigError(f"unknown export target '{t}'; valid: {sorted(TARGETS)} (or 'all')")
    if fp_layers not in FP_LAYER_MODES:
        raise ConfigError(f"--fp-layers '{fp_layers}' is unknown; valid: {list(FP_LAYER_MODES)}")
    if tile < 16 or tile % 4:
        raise ConfigError(f"--tile {tile} must be a multiple of 4, >= 16")
    t0 = time.time()
    name = model if isinstance(model, str) else "<in-memory>"
    m = load_model(model) if isinstance(model, str) else model
    m.eval()
    if not m.cfg.quantized:
        raise ConfigError("export needs a Granular-DQ model (a *_gdq checkpoint); its full-precision twin goes in --fp")
    if fp_model is None and model == DEFAULT_MODEL and DEFAULT_FILES["fp"].is_file():
        fp_model = DEFAULT_MODEL + ":fp"
    fpm = None
    if fp_model is not None:
        fpm = load_model(DEFAULT_MODEL, fp=True) if fp_model == DEFAULT_MODEL + ":fp" else (
            load_model(fp_model) if isinstance(fp_model, str) else fp_model)
        if fpm.cfg.quantized or fpm.cfg.scale != m.cfg.scale:
            raise ConfigError("--fp must be the full-precision twin (same scale) of the model")
    if m.cfg.e2b.tile != tile:
        log(f"warning: E2B thresholds were calibrated at tile {m.cfg.e2b.tile}, exporting at {tile} "
            f"(run `gdq calibrate --tile {tile}` for matching thresholds)")
    calib = calibration_tiles(tile)
    progs = deployed_programs(m, calib, fp_layers)
    fp_prog = calibrate_program(build_program(fpm, None), calib) if fpm is not None else None
    ctrl = controller_spec(m)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": {"name": m.cfg.name, "source": name, "config": to_dict(m.cfg)},
        "scale": m.cfg.scale,
        "tile": tile,
        "bits": list(m.bits),
        "fp_layers": fp_layers,
        "e2b": {"thresholds": list(m.cfg.e2b.thresholds), "quantiles": list(m.cfg.e2b.quantiles),
                "calibrated_tile": m.cfg.e2b.tile, "gbc_bits": list(m.cfg.quant.gbc_bits), "e2b_bits": list(m.cfg.quant.e2b_bits)},
        "io": {
            "sr_input": {"name": "lr", "dtype": "float32", "range": [0.0, 1.0], "channels": "RGB"},
            "sr_output": {"name": "sr", "dtype": "float32", "range": [0.0, 1.0], "clamp": True, "channels": "RGB",
                          "note": "not clamped by the graph: clamp to [0, 1], then round(x * 255)"},
            "controller_input": {"name": "lr", "dtype": "float32", "range": [0.0, 1.0], "channels": "RGB"},
            "controller_outputs": {"logits": "GBC logits (N, 3), float32", "entropy": "tile entropy (N,), float32, nats",
                                   "bits": "final activation bit-width (N,), int32: run sr_a<bits>"},
        },
        "targets": {},
        "versions": _versions(),
    }
    for tname in targets:
        tgt = TARGETS[tname]
        t1 = time.time()
        files = tgt.writer(out, progs, fp_prog, ctrl, tile, single_file=single_file)
        entry: dict[str, Any] = {"layout": tgt.layout, "batch": files.pop("batch", "dynamic"),
                                 "controller": Path(files["controller"]).name,
                                 "sr": {str(b): Path(p).name for b, p in files["sr"].items()},
                                 "fp32": Path(files["fp32"]).name if files.get("fp32") else None,
                                 "export_seconds": round(time.time() - t1, 1)}
        for k in ("single_file", "signatures", "size_saved_bytes", "u8u8_convs"):
            if k in files:
                entry[k] = files[k] if k != "single_file" else Path(files[k]).name
        manifest["targets"][tname] = entry
        log(f"{tname}: wrote {len(files['sr']) + 1 + int(bool(files.get('fp32')))} graphs in {entry['export_seconds']} s")
    manifest["files"] = {p.name: {"sha256": sha256(p), "bytes": p.stat().st_size}
                         for p in sorted(out.iterdir()) if p.suffix in (".onnx", ".tflite")}
    if verify:
        from .verify import verify_export

        manifest["parity"] = verify_export(out, manifest, m, fpm, verify_root, progs=progs, log=log)
    manifest["export_seconds"] = round(time.time() - t0, 1)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def parity_ok(parity: dict[str, Any], min_psnr: float = 45.0, min_agree: float = 0.99) -> bool:
    for t in parity.values():
        if t["controller_agreement"] < min_agree:
            return False
        if any(v["psnr_db"] < min_psnr for v in t["sr"].values()):
            return False
    return True


__all__ = ["TARGETS", "calibration_tiles", "export", "parity_ok", "sha256"]
