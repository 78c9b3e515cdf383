"""onnxruntime backend: runs the exported QDQ graphs (integer QLinearConv on CPU)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import require
from .exported import ExportedBackend


class OnnxRuntimeBackend(ExportedBackend):
    name = "onnxruntime"
    # tile by tile: batches of 6 tiles ran 2-15 % slower per tile than single tiles (measured
    # per graph, 1 and 2 threads; larger activations fall out of cache)
    max_batch = 1

    def __init__(self, export_dir: str | Path, threads: int = 0) -> None:
        self.ort = require("onnxruntime", "runtime")
        super().__init__(export_dir, threads)
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _session(self, fname: str):
        # one thread per session, no pool: the runtime runs ``workers`` tiles at once, each on
        # its caller's thread (ExportedBackend.workers says why), and a session is safe to run
        # from several threads; a pool of its own would only spin beside them
        with self._lock:
            if fname not in self._sessions:
                so = self.ort.SessionOptions()
                so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                so.intra_op_num_threads = 1
                so.inter_op_num_threads = 1
                self._sessions[fname] = self.ort.InferenceSession(str(self.m.file(fname)), so,
                                                                  providers=["CPUExecutionProvider"])
            return self._sessions[fname]

    def controller(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        outs = [self.t.controller_outputs[k] for k in ("logits", "entropy", "bits")]
        logits, ent, bits = self._session(self.t.controller).run(outs, {"lr": np.ascontiguousarray(tiles, np.float32)})
        return logits, ent, bits.astype(np.int64)

    def scores(self, tiles: np.ndarray) -> np.ndarray:
        out = self.t.controller_outputs["scores"]
        return self._session(self.t.controller).run([out], {"lr": np.ascontiguousarray(tiles, np.float32)})[0]

    def sr(self, tiles: np.ndarray, level: int | str | None) -> np.ndarray:
        return self._session(self.graph_file(level)).run(None, {"lr": np.ascontiguousarray(tiles, np.float32)})[0]
