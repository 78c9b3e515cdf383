"""manifest.json, the contract between an export and its readers: one typed schema.

``gdq export`` builds a :class:`Manifest` and writes it with :meth:`Manifest.to_json`; the
runtime reads it back with :meth:`Manifest.from_json` (through :class:`ExportFolder`, which
also checks each graph against its sha256). The Android core
(``android_demo/core/.../Manifest.java``) reads the same JSON: fields are only ever added,
and a field added after schema 1 shipped is optional, so older manifests still load.

This module is on the runtime side: no torch, nothing from ``export``.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelNotFoundError
from .level_info import LevelGateInfo, LevelInfo
from .schema import Reader

#: the version of this schema; the Android core checks it too (Manifest.java)
SCHEMA_VERSION = 1

#: the controller graph's outputs, by role: GBC logits (N, 3), tile entropy (N,), final bits (N,)
CONTROLLER_OUTPUTS: tuple[str, ...] = ("logits", "entropy", "bits")
#: and, with a level gate (``Manifest.level_gate``), each choice's predicted gain (N, L)
SCORES = "scores"

#: graph output names of each role in exports written before the manifest named them: the
#: ONNX graph names its outputs after their roles, and the TFLite converter names a function's
#: outputs Identity, Identity_1, ... in the key-sorted order of the dict it returns
_LEGACY_CONTROLLER_OUTPUTS: dict[str, dict[str, str]] = {
    "onnx": {k: k for k in CONTROLLER_OUTPUTS},
    "tflite": {"logits": "Identity_2", "entropy": "Identity_1", "bits": "Identity"},
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    """An image tensor at a graph's boundary: name, element type, value range, channel order."""

    name: str
    dtype: str
    range: tuple[float, float]
    #: the consumer clamps to ``range`` (the graph does not)
    clamp: bool | None = None
    channels: str = "RGB"
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "range": list(self.range)}
        if self.clamp is not None:
            d["clamp"] = self.clamp
        d["channels"] = self.channels
        if self.note is not None:
            d["note"] = self.note
        return d

    @classmethod
    def _read(cls, r: Reader) -> TensorSpec:
        lo, hi = r.floats("range")
        return cls(r.get("name", str), r.get("dtype", str), (lo, hi), r.get("clamp", bool, None),
                   r.get("channels", str, "RGB"), r.get("note", str, None))


@dataclass(frozen=True)
class IOSpec:
    """What the graphs take and give; the same for every target (layouts are per target)."""

    sr_input: TensorSpec
    sr_output: TensorSpec
    controller_input: TensorSpec
    #: role (CONTROLLER_OUTPUTS) -> what it is; the graph's names are per target (TargetEntry)
    controller_outputs: Mapping[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"sr_input": self.sr_input.to_dict(), "sr_output": self.sr_output.to_dict(),
                "controller_input": self.controller_input.to_dict(),
                "controller_outputs": dict(self.controller_outputs)}

    @classmethod
    def _read(cls, r: Reader) -> IOSpec:
        return cls(TensorSpec._read(r.sub("sr_input")), TensorSpec._read(r.sub("sr_output")),
                   TensorSpec._read(r.sub("controller_input")), dict(r.get("controller_outputs", dict)))


#: the graphs' interface as ``gdq export`` writes them (export/onnx.py, export/tflite.py)
GRAPH_IO = IOSpec(
    sr_input=TensorSpec("lr", "float32", (0.0, 1.0), channels="RGB"),
    sr_output=TensorSpec("sr", "float32", (0.0, 1.0), clamp=True, channels="RGB",
                         note="not clamped by the graph: clamp to [0, 1], then round(x * 255)"),
    controller_input=TensorSpec("lr", "float32", (0.0, 1.0), channels="RGB"),
    controller_outputs={"logits": "GBC logits (N, 3), float32", "entropy": "tile entropy (N,), float32, nats",
                        "bits": "final activation bit-width (N,), int32: run sr_a<bits>"},
)


@dataclass(frozen=True)
class ModelInfo:
    """The exported model: its registry name, where it came from, and its ModelConfig as a dict
    (``config.to_dict``; kept as data here, so that the runtime needs neither torch nor models)."""

    name: str
    source: str
    config: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "config": dict(self.config)}

    @classmethod
    def _read(cls, r: Reader) -> ModelInfo:
        return cls(r.get("name", str), r.get("source", str), r.get("config", dict))


@dataclass(frozen=True)
class E2BInfo:
    """The controller's decision table, for runtimes that re-implement the controller (Android)."""

    thresholds: tuple[float, float]
    quantiles: tuple[float, float]
    calibrated_tile: int
    gbc_bits: tuple[int, int, int]
    e2b_bits: tuple[int, int, int]

    def __post_init__(self) -> None:
        for name in ("thresholds", "quantiles", "gbc_bits", "e2b_bits"):
            n = 2 if name in ("thresholds", "quantiles") else 3
            if len(getattr(self, name)) != n:
                raise ConfigError(f"e2b.{name} {list(getattr(self, name))} must have {n} entries")

    def to_dict(self) -> dict[str, Any]:
        return {"thresholds": list(self.thresholds), "quantiles": list(self.quantiles),
                "calibrated_tile": self.calibrated_tile, "gbc_bits": list(self.gbc_bits), "e2b_bits": list(self.e2b_bits)}

    @classmethod
    def _read(cls, r: Reader) -> E2BInfo:
        def pair(key: str) -> tuple[float, float]:
            v = r.floats(key)
            if len(v) != 2:
                raise ConfigError(f"{r.source}: 'e2b.{key}' = {list(v)} must have 2 entries")
            return v[0], v[1]

        def triple(key: str) -> tuple[int, int, int]:
            v = r.ints(key)
            if len(v) != 3:
                raise ConfigError(f"{r.source}: 'e2b.{key}' = {list(v)} must have 3 entries")
            return v[0], v[1], v[2]

        return cls(pair("thresholds"), pair("quantiles"), r.get("calibrated_tile", int), triple("gbc_bits"),
                   triple("e2b_bits"))


@dataclass(frozen=True)
class TargetEntry:
    """One target's graphs (file names in the export folder)."""

    layout: str
    #: "dynamic", or the static batch of every graph
    batch: int | str
    controller: str
    sr: Mapping[int, str]
    fp32: str | None
    export_seconds: float
    #: role (CONTROLLER_OUTPUTS) -> the controller graph's output of that role
    controller_outputs: Mapping[str, str] = field(default_factory=dict)
    #: TFLite --single-file: one file with one signature per graph, and what it saved
    single_file: str | None = None
    signatures: tuple[str, ...] | None = None
    size_saved_bytes: int | None = None
    #: ONNX: per bit level, the convs left on onnxruntime's slower u8u8 kernels (channel_pairs.py)
    u8u8_convs: Mapping[int, tuple[str, ...]] | None = None
    #: every level's graph, by level name (``Manifest.levels``); ``sr`` names the full-depth
    #: ones by bits, as exports before levels did (None in those: ``level_files`` derives it)
    levels: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise ConfigError(f"target layout '{self.layout}' is unknown; valid: ['NCHW', 'NHWC']")
        missing = [k for k in CONTROLLER_OUTPUTS if k not in self.controller_outputs]
        if self.controller_outputs and missing:
            raise ConfigError(f"controller_outputs {dict(self.controller_outputs)} lacks {missing}; "
                              f"valid roles: {list(CONTROLLER_OUTPUTS)}")

    def files(self) -> list[str]:
        """The graphs: the controller, one per level, and the fp32 twin if any."""
        return [self.controller, *dict.fromkeys([*self.sr.values(), *self.level_files().values()]),
                *([self.fp32] if self.fp32 else [])]

    def level_files(self) -> dict[str, str]:
        """Level name -> graph file (an export before levels: its bit levels, ``a<bits>``)."""
        return dict(self.levels) if self.levels is not None else {f"a{b}": f for b, f in self.sr.items()}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"layout": self.layout, "batch": self.batch, "controller": self.controller}
        if self.controller_outputs:
            d["controller_outputs"] = dict(self.controller_outputs)
        d.update({"sr": {str(b): f for b, f in self.sr.items()}, "fp32": self.fp32,
                  "export_seconds": self.export_seconds})
        if self.single_file is not None:
            d["single_file"] = self.single_file
        if self.signatures is not None:
            d["signatures"] = list(self.signatures)
        if self.size_saved_bytes is not None:
            d["size_saved_bytes"] = self.size_saved_bytes
        if self.u8u8_convs is not None:
            d["u8u8_convs"] = {str(b): list(v) for b, v in self.u8u8_convs.items()}
        if self.levels is not None:
            d["levels"] = dict(self.levels)
        return d

    @classmethod
    def _read(cls, r: Reader, name: str) -> TargetEntry:
        sr = r.get("sr", dict)
        try:
            sr_files = {int(b): str(f) for b, f in sr.items()}
        except ValueError:
            raise ConfigError(f"{r.source}: '{r.where}.sr' keys {list(sr)} must be bit-widths") from None
        outs = r.get("controller_outputs", dict, None) or _LEGACY_CONTROLLER_OUTPUTS.get(name, {})
        sigs = r.get("signatures", list, None)
        u8 = r.get("u8u8_convs", dict, None)
        lv = r.get("levels", dict, None)
        if lv is not None and not all(isinstance(v, str) for v in lv.values()):
            raise ConfigError(f"{r.source}: '{r.where}.levels' = {lv!r} must map level names to graph files")
        return cls(
            layout=r.get("layout", str), batch=r.get("batch", (int, str)), controller=r.get("controller", str),
            sr=sr_files, fp32=r.get("fp32", str, optional=True), export_seconds=float(r.get("export_seconds", (int, float), 0.0)),
            controller_outputs=dict(outs), single_file=r.get("single_file", str, None),
            signatures=None if sigs is None else tuple(sigs), size_saved_bytes=r.get("size_saved_bytes", int, None),
            u8u8_convs=None if u8 is None else {int(b): tuple(v) for b, v in u8.items()}, levels=lv)


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "bytes": self.bytes}


@dataclass(frozen=True)
class Manifest:
    """manifest.json of an export folder (schema :data:`SCHEMA_VERSION`)."""

    model: ModelInfo
    scale: int
    #: static LR tile of every graph
    tile: int
    bits: tuple[int, ...]
    fp_layers: str
    e2b: E2BInfo
    io: IOSpec = GRAPH_IO
    targets: Mapping[str, TargetEntry] = field(default_factory=dict)
    #: tool versions of the export (granular_mobile, torch, onnx, tensorflow, ...)
    versions: Mapping[str, str] = field(default_factory=dict)
    #: every graph file -> its sha256 and size (checked before a graph is run)
    files: Mapping[str, FileEntry] = field(default_factory=dict)
    #: ``gdq export --verify``'s measurements per target (verify/parity.py), if it ran
    parity: Mapping[str, Any] | None = None
    export_seconds: float | None = None
    #: every level, by level index (the bit levels, then the exit levels); () in exports
    #: before levels (``level_list`` derives the bit levels then)
    levels: tuple[LevelInfo, ...] = ()
    level_gate: LevelGateInfo | None = None

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ConfigError(f"manifest scale {self.scale} must be >= 1")
        if self.tile < 1:
            raise ConfigError(f"manifest tile {self.tile} must be >= 1")
        if not self.bits:
            raise ConfigError("manifest bits: at least one bit level is needed")
        for name, t in self.targets.items():
            extra = sorted(set(t.sr) - set(self.bits))
            if extra:
                raise ConfigError(f"target '{name}' has graphs for bits {extra} outside the manifest's bits {list(self.bits)}")
            names = [lv.name for lv in self.levels]
            missing = [n for n in names if n not in t.level_files()]
            if missing:
                raise ConfigError(f"target '{name}' has no graph for levels {missing} (levels: {names}); re-export")
        if self.level_gate is not None:
            names = [lv.name for lv in self.level_list()]
            bad = [c for c in self.level_gate.choices if c not in names]
            if bad:
                raise ConfigError(f"level_gate choices {bad} are not levels of the export; valid: {names}")

    def level_list(self) -> tuple[LevelInfo, ...]:
        """Every level (an export before levels: its bit levels, at full depth, MACs unknown (0), cost 1)."""
        if self.levels:
            return self.levels
        n = int(self.model.config.get("n_blocks", 0))
        return tuple(LevelInfo(f"a{b}", b, n, 0, 1.0) for b in self.bits)

    def replace(self, **changes: Any) -> Manifest:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "model": self.model.to_dict(), "scale": self.scale, "tile": self.tile,
            "bits": list(self.bits), "fp_layers": self.fp_layers, "e2b": self.e2b.to_dict(), "io": self.io.to_dict(),
            "targets": {k: t.to_dict() for k, t in self.targets.items()}, "versions": dict(self.versions),
            "files": {k: f.to_dict() for k, f in self.files.items()}}
        if self.parity is not None:
            d["parity"] = dict(self.parity)
        if self.export_seconds is not None:
            d["export_seconds"] = self.export_seconds
        if self.levels:
            d["levels"] = [lv.to_dict() for lv in self.levels]
        if self.level_gate is not None:
            d["level_gate"] = self.level_gate.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def write(self, folder: str | Path) -> Path:
        """Write manifest.json (whole or not at all: a reader never sees half a manifest)."""
        p = Path(folder) / "manifest.json"
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, p)
        return p

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest.json") -> Manifest:
        r = Reader(data, "", source)
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ConfigError(f"'{source}': schema_version {version} is not supported (expected {SCHEMA_VERSION})")
        targets = r.sub("targets")
        files = r.sub("files") if "files" in data else None
        return cls(
            model=ModelInfo._read(r.sub("model")), scale=r.get("scale", int), tile=r.get("tile", int),
            bits=r.ints("bits"), fp_layers=r.get("fp_layers", str), e2b=E2BInfo._read(r.sub("e2b")),
            io=IOSpec._read(r.sub("io")) if "io" in data else GRAPH_IO,
            targets={k: TargetEntry._read(targets.sub(k), k) for k in targets.data},
            versions={str(k): str(v) for k, v in r.get("versions", dict, {}).items()},
            files={} if files is None else {
                k: FileEntry(files.sub(k).get("sha256", str), files.sub(k).get("bytes", int)) for k in files.data},
            parity=r.get("parity", dict, None), export_seconds=r.get("export_seconds", (int, float), None),
            levels=tuple(LevelInfo._read(Reader(x, f"levels[{i}]", source)) for i, x in enumerate(r.get("levels", list, []))),
            level_gate=LevelGateInfo._read(r.sub("level_gate")) if "level_gate" in data else None)

    @classmethod
    def from_json(cls, text: str, source: str = "manifest.json") -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"'{source}' is not valid JSON: {e}") from e
        return cls.from_dict(data, source)


class ExportFolder:
    """An export folder: its manifest, and its graphs, each checked against its sha256 on first use."""

    def __init__(self, folder: str | Path) -> None:
        self.dir = Path(folder)
        p = self.dir / "manifest.json"
        if not p.is_file():
            raise ModelNotFoundError(f"'{self.dir}' has no manifest.json (make one with `gdq export -o {self.dir}`)")
        try:
            text = p.read_text()
        except OSError as e:
            raise ConfigError(f"'{p}' cannot be read: {e}") from e
        self.manifest = Manifest.from_json(text, str(p))
        self._checked: set[str] = set()

    @property
    def scale(self) -> int:
        return self.manifest.scale

    @property
    def tile(self) -> int:
        return self.manifest.tile

    @property
    def bits(self) -> tuple[int, ...]:
        return self.manifest.bits

    def target(self, name: str) -> TargetEntry:
        t = self.manifest.targets.get(name)
        if t is None:
            raise ModelNotFoundError(f"'{self.dir}' has no {name} export (targets: {sorted(self.manifest.targets)}); "
                                     f"run `gdq export --target {name} -o {self.dir}`")
        return t

    def file(self, name: str) -> Path:
        """Path of an artifact, after checking it exists and matches its sha256."""
        p = self.dir / name
        if not p.is_file():
            raise ModelNotFoundError(f"model file '{p}' is missing (re-run gdq export)")
        if name not in self._checked:
            entry = self.manifest.files.get(name)
            if entry is None:
                raise ConfigError(f"'{name}' is not listed in {self.dir / 'manifest.json'}")
            if sha256(p) != entry.sha256:
                raise ConfigError(f"'{p}' does not match the sha256 in manifest.json (modified or corrupt file; re-export)")
            self._checked.add(name)
        return p

    @property
    def model_id(self) -> str:
        files = {k: f.to_dict() for k, f in self.manifest.files.items()}
        return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
