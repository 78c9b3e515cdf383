"""PyTorch backend: runs the checkpoint directly (fake-quantized; the reference for parity)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ...errors import require


class TorchBackend:
    name = "torch"
    max_batch = 16

    def __init__(self, model: str = "default", threads: int = 0, tile: int | None = None) -> None:
        torch = require("torch", "torch")
        from ...checkpoint import DEFAULT_FILES, DEFAULT_MODEL, load_model, resolve_model_path

        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.gdq = load_model(model)
        self.fp = None
        if not self.gdq.cfg.quantized:
            self.gdq, self.fp = None, self.gdq
        elif model == DEFAULT_MODEL and DEFAULT_FILES["fp"].is_file():
            self.fp = load_model(DEFAULT_MODEL, fp=True)
        m = self.gdq or self.fp
        self.scale = m.cfg.scale
        self.bits = m.cfg.quant.bits if self.gdq is not None else ()
        self.tile = tile or (m.cfg.e2b.tile if self.gdq is not None else 96)
        self.has_fp = self.fp is not None
        path = resolve_model_path(model)
        self.model_id = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
        self.thresholds = self.gdq.cfg.e2b.thresholds if self.gdq is not None else None

    def _t(self, tiles: np.ndarray):
        return self._torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32))

    def controller(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from ...errors import ConfigError

        if self.gdq is None:
            raise ConfigError("this model is full precision: it has no bit controller (use --precision fp32)")
        with self._torch.no_grad():
            c = self.gdq.controller(self._t(tiles))
        bits = np.asarray(self.bits)[c.bit_index.numpy()]
        return c.logits.numpy(), c.entropy.numpy(), bits

    def sr(self, tiles: np.ndarray, bits: int | None) -> np.ndarray:
        from ...errors import ConfigError

        with self._torch.no_grad():
            if bits is None:
                if self.fp is None:
                    raise ConfigError("no full-precision twin is available for this model")
                return self.fp(self._t(tiles)).numpy()
            if self.gdq is None:
                raise ConfigError("this model is full precision: use --precision fp32")
            return self.gdq(self._t(tiles), self.gdq.cfg.quant.index(bits)).numpy()
