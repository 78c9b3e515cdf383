"""onnxruntime backend: runs the exported QDQ graphs (integer QLinearConv on CPU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import require
from .exported import ExportedBackend


class OnnxRuntimeBackend(ExportedBackend):
    name = "onnxruntime"
    target = "onnx"
    max_batch = 8

    def __init__(self, export_dir: str | Path, threads: int = 0) -> None:
        self.ort = require("onnxruntime", "runtime")
        super().__init__(export_dir, threads)
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
        return self._session(self.graph_file(bits)).run(None, {"lr": np.ascontiguousarray(tiles, np.float32)})[0]
