"""Export targets and the runtime backends that run their graphs: the one table of both.

The exporter (``export/exporter.py``) adds a writer and its options to each target; the
runtime (``runtime/backends``) opens a target's graphs with the backend named here; ``gdq
export --verify``, ``gdq bench`` and the error messages read the pairing from here.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class TargetSpec:
    """An export target: what its graph files look like and which backend runs them."""

    name: str  #: ``gdq export --target`` value, and the key of its entry in manifest.json
    backend: str  #: ``gdq run --backend`` value that runs its graphs
    suffix: str  #: file suffix of its graphs
    layout: str  #: layout of its graphs' image tensors
    module: str  #: the module the backend imports (checked before a command starts)
    extra: str  #: the pip extra that installs ``module`` ("runtime": a base dependency)
    dist: str  #: the pip distribution of ``module`` (its version names the runtime in measurements)


TARGET_SPECS: dict[str, TargetSpec] = {
    "onnx": TargetSpec("onnx", "onnxruntime", ".onnx", "NCHW", "onnxruntime", "runtime", "onnxruntime"),
    "tflite": TargetSpec("tflite", "tflite", ".tflite", "NHWC", "ai_edge_litert.interpreter", "tflite",
                         "ai-edge-litert"),
}

#: backend name -> the export target whose graphs it runs (the torch backend runs checkpoints)
TARGET_OF_BACKEND: dict[str, str] = {t.backend: t.name for t in TARGET_SPECS.values()}

#: every suffix an export writes a graph with (listed with its sha256 in manifest.json)
GRAPH_SUFFIXES: tuple[str, ...] = tuple(t.suffix for t in TARGET_SPECS.values())


def target_spec(name: str) -> TargetSpec:
    """The export target ``name``, or a ConfigError naming the valid ones."""
    spec = TARGET_SPECS.get(name)
    if spec is None:
        raise ConfigError(f"unknown export target '{name}'; valid: {sorted(TARGET_SPECS)} (or 'all')")
    return spec


def backend_target(backend: str) -> TargetSpec | None:
    """The export target a backend runs (None: the backend runs checkpoints, e.g. torch)."""
    name = TARGET_OF_BACKEND.get(backend)
    return None if name is None else TARGET_SPECS[name]
