"""PyTorch backend: runs the checkpoint directly (fake-quantized; the reference for parity)."""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...defaults import DEFAULT_TILE
from ...errors import require
from ..level_info import LevelGateInfo

if TYPE_CHECKING:  # (the ir imports torch: this module imports it only when the backend is made)
    from ...ir import Program

NUMERICS = ("float", "int8")


class TorchBackend:
    name = "torch"
    max_batch = 16
    #: batches on torch's own intra-op threads, one at a time
    workers = 1

    def __init__(self, model: str = "default", threads: int = 0, tile: int | None = None) -> None:
        torch = require("torch", "torch")
        from ...checkpoint import DEFAULT_FILES, DEFAULT_MODEL, load_model, resolve_model_path

        if threads:
            torch.set_num_threads(threads)
        gdq = load_model(model)
        fp = load_model(DEFAULT_MODEL, fp=True) if model == DEFAULT_MODEL and DEFAULT_FILES["fp"].is_file() else None
        model_id = hashlib.sha256(Path(resolve_model_path(model)).read_bytes()).hexdigest()[:16]
        self._setup(gdq, fp, tile, model_id)

    @classmethod
    def from_models(cls, model, fp=None, tile: int | None = None, numerics: str = "float") -> TorchBackend:
        """Wrap in-memory models (a Granular-DQ model and/or its full-precision twin), e.g. during
        training; inputs go to the model's device.

        ``numerics="int8"`` runs the bit-level subgraphs with the export's integer numerics (the
        calibrated programs of ``gdq export``: int8 full-precision layers and int8 tensors
        between convs), i.e. what a device computes; "float" runs the model as trained."""
        from ...errors import ConfigError

        if numerics not in NUMERICS:
            raise ConfigError(f"numerics '{numerics}' is unknown; valid: {list(NUMERICS)}")
        self = cls.__new__(cls)
        self._setup(model, fp, tile, "in-memory")
        if numerics == "int8" and self.gdq is not None:
            from ...data.calibration import calibration_tiles
            from ...ir import deployed_level_programs

            # programs are built from CPU parameters; copy rather than move the caller's model
            gdq = self.gdq if self.device.type == "cpu" else copy.deepcopy(self.gdq).cpu()
            self.programs = deployed_level_programs(gdq, calibration_tiles(self.tile))
        return self

    def _setup(self, gdq, fp, tile: int | None, model_id: str) -> None:
        self._torch = require("torch", "torch")
        self.programs: dict[str, Program] | None = None
        if not gdq.cfg.quantized:
            gdq, fp = None, gdq
        self.gdq, self.fp = gdq, fp
        for m in (gdq, fp):
            if m is not None:
                m.eval()
        m = gdq or fp
        self.device = next(m.parameters()).device
        self.scale = m.cfg.scale
        self.bits = gdq.cfg.quant.bits if gdq is not None else ()
        self.tile = tile or (gdq.cfg.e2b.tile if gdq is not None else DEFAULT_TILE)
        self.has_fp = fp is not None
        self.model_id = model_id
        self.thresholds = gdq.cfg.e2b.thresholds if gdq is not None else None
        cfg = gdq.cfg if gdq is not None else None
        self.levels = cfg.level_names if cfg is not None else ()
        self.level_bits = {n: b for n, (b, _) in zip(self.levels, cfg.levels, strict=True)} if cfg is not None else {}
        g = cfg.level_gate if cfg is not None else None
        self.level_gate = None if g is None else LevelGateInfo(g.choices, g.costs, g.budget, g.cost_source)

    def _t(self, tiles: np.ndarray):
        return self._torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32)).to(self.device)

    def controller(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from ...errors import ConfigError

        if self.gdq is None:
            raise ConfigError("this model is full precision: it has no bit controller (use ``precision`` fp32)")
        with self._torch.no_grad():
            c = self.gdq.controller(self._t(tiles))
        bits = np.asarray(self.bits)[c.bit_index.cpu().numpy()]
        return c.logits.cpu().numpy(), c.entropy.cpu().numpy(), bits

    def scores(self, tiles: np.ndarray) -> np.ndarray:
        from ...errors import ConfigError

        if self.gdq is None or self.level_gate is None:
            raise ConfigError("this model has no level gate (gdq fit-gate --levels fits one)")
        with self._torch.no_grad():
            return self.gdq.level_scores(self._t(tiles)).cpu().numpy()

    def sr(self, tiles: np.ndarray, level: int | str | None) -> np.ndarray:
        from ...errors import ConfigError

        with self._torch.no_grad():
            if level is None:
                if self.fp is None:
                    raise ConfigError("no full-precision twin is available for this model")
                return self.fp(self._t(tiles)).cpu().numpy()
            if self.gdq is None:
                raise ConfigError("this model is full precision: use ``precision`` fp32")
            cfg = self.gdq.cfg
            index = cfg.level_by_name(level) if isinstance(level, str) else cfg.level_index(level)
            if self.programs is not None:
                from ...ir import run_program

                return run_program(self.programs[self.levels[index]], self._t(tiles).cpu()).numpy()
            return self.gdq(self._t(tiles), index).cpu().numpy()
