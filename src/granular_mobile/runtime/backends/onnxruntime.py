"""onnxruntime backend: runs the exported QDQ graphs (integer QLinearConv on CPU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ConfigError, require
from ..manifest import Manifest


class OnnxRuntimeBackend:
    name = "onnxruntime"
    max_batch = 8

    def __init__(self, export_dir: str | Path, threads: int = 0) -> None:
        self.ort = require("onnxruntime", "runtime")
        self.m = Manifest(export_dir)
        self.t = self.m.target("onnx")
        self.scale, self.tile, self.bits = self.m.scale, self.m.tile, self.m.bits
        self.has_fp = bool(self.t.get("fp32"))
        self.model_id = self.m.model_id
        self.threads = threads
        self._sessions: dict[str, object] = {}

    def _session(self, fname: str):
        if fname not in self._sessions:
            so = self.ort.SessionOptions()
            so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if self.threads:
                so.intra_op_num_threads = self.threads
                so.inter_op_num_threads = 1
            self._sessions[fname] = self.ort.InferenceSession(str(self.m.file(fname)), so, providers=["CPUExecutionProvider"])
        return self._sessions[fname]

    def controller(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        logits, ent, bits = self._session(self.t["controller"]).run(None, {"lr": np.ascontiguousarray(tiles, np.float32)})
        return logits, ent, bits.astype(np.int64)

    def sr(self, tiles: np.ndarray, bits: int | None) -> np.ndarray:
        if bits is None:
            if not self.has_fp:
                raise ConfigError("this export has no full-precision graph (sr_fp32); --precision fp32 is unavailable")
            fname = self.t["fp32"]
        else:
            fname = self.t["sr"].get(str(bits))
            if fname is None:
                raise ConfigError(f"no graph for {bits} bits; valid: {list(self.bits)}")
        return self._session(fname).run(None, {"lr": np.ascontiguousarray(tiles, np.float32)})[0]
