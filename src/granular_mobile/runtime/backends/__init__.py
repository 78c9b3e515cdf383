"""Inference backends of the tiled runtime. Each one runs, on batches of NCHW float32 tiles
on [0, 1]: the controller (-> GBC logits, entropy, final bit-width) and the SR network at
a given bit-width (None: the full-precision twin)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np

from ...defaults import DEFAULT_TILE
from ..level_info import LevelGateInfo
from ..targets import TARGET_OF_BACKEND, target_spec


class Backend(Protocol):
    name: str
    scale: int
    tile: int
    bits: tuple[int, ...]
    #: every level's name (``a6``, ``a6k4``), by level index, and each one's activation bits
    levels: tuple[str, ...]
    level_bits: dict[str, int]
    #: the time-aware controller (choices, costs, default budget), if the model has one
    level_gate: LevelGateInfo | None
    has_fp: bool
    model_id: str
    #: largest batch a graph accepts (1 for static-batch exported graphs)
    max_batch: int
    #: how many ``sr`` / ``controller`` / ``scores`` calls may run at once (threads of the caller)
    workers: int

    def controller(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(logits (N, 3), entropy (N,), bit-width (N,) int)."""
        ...

    def scores(self, tiles: np.ndarray) -> np.ndarray:
        """The level gate's predicted gain of each choice (N, len(level_gate.choices))."""
        ...

    def sr(self, tiles: np.ndarray, level: int | str | None) -> np.ndarray:
        """SR tiles (N, 3, tile*s, tile*s) at a level: its name, a bit-width (that full-depth
        level), or None (full precision)."""
        ...


#: the backends of exported graphs (one per export target, runtime/targets.py), then torch (checkpoints)
BACKENDS: tuple[str, ...] = (*TARGET_OF_BACKEND, "torch")

#: the shipped default model, exported (manifest.json + graphs); used by the integer backends
DEFAULT_EXPORT = Path(__file__).resolve().parents[2] / "assets" / "export"


#: the smallest tile a backend may be asked for: below it the overlap range is empty
MIN_TILE = 8


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under taskset or a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_threads(threads: int) -> int:
    """A thread count for a backend: 0 (its default) or 1..cores. More threads than cores is
    clamped with a GdqWarning: oversubscribed, a run took 637 s instead of 1.6 s (1000 threads
    on 2 cores)."""
    from ...errors import ConfigError, GdqWarning

    n = usable_cores()
    if threads < 0:
        raise ConfigError(f"``threads`` {threads} is invalid; valid: 0 (the backend's default) or 1..{n} (this machine's cores)")
    if threads > n:
        warnings.warn(f"``threads`` {threads} is more than the {n} cores here; using {n}", GdqWarning, stacklevel=3)
        return n
    return threads


def create_backend(name: str, model: str = "default", threads: int = 0, tile: int | None = None) -> Backend:
    """``model``: 'default', an export folder (manifest.json) for onnxruntime/tflite, or a
    checkpoint for torch. ``threads``: 0 (the backend's default) or 1..cores (more is clamped
    with a warning). Every file the backend may use is checked here, before any tile runs."""
    from ...errors import ConfigError, ModelNotFoundError

    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}'; valid: {list(BACKENDS)}")
    threads = check_threads(threads)
    if tile is not None and tile < MIN_TILE:
        raise ConfigError(f"``tile`` {tile} is too small; use at least {MIN_TILE} (default: the model's, {DEFAULT_TILE})")
    if name == "torch":
        if Path(model).is_dir():
            raise ConfigError(f"the torch backend runs checkpoints (.pt), and '{model}' is an export folder; "
                              "use ``backend`` onnxruntime or tflite for it")
        from .torch import TorchBackend

        return TorchBackend(model, threads=threads, tile=tile)
    folder = DEFAULT_EXPORT if model == "default" else Path(model)
    target = TARGET_OF_BACKEND[name]
    if not folder.is_dir():
        if folder.is_file():
            raise ConfigError(f"the {name} backend runs exported graphs: export '{model}' first "
                              f"(gdq export -m {model} -o DIR --target {target}) or use ``backend`` torch")
        raise ModelNotFoundError(f"model '{model}' is neither 'default' nor an export folder")
    if tile is not None:
        from ..manifest import ExportFolder

        have = ExportFolder(folder).tile
        if have != tile:
            raise ConfigError(f"``tile`` {tile}: the graphs in '{folder}' have a static tile of {have} "
                              f"(re-export with gdq export --tile {tile})")
    return open_export(target, folder, threads)


def open_export(target: str, folder: str | Path, threads: int = 0) -> Backend:
    """The backend that runs an export target's graphs in ``folder`` (runtime/targets.py pairs
    them), on ``threads`` threads (0: every usable core), one tile per thread."""
    backend = target_spec(target).backend
    threads = threads or usable_cores()
    if backend == "onnxruntime":
        from .onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(folder, threads)
    from .tflite import TFLiteBackend

    return TFLiteBackend(folder, threads)
