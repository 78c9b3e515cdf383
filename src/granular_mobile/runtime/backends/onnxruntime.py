"""onnxruntime backend: runs the exported QDQ graphs (integer QLinearConv on CPU)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, require
from .exported import ExportedBackend

#: intra-op threads of this process's shared onnxruntime thread pool (None: not claimed yet)
_shared_pool: int | None = None


def _claim_shared_pool(ort: Any, threads: int) -> None:
    """Run every session of this process on one intra-op pool of ``threads`` threads.

    By default every session owns a pool, and Granular-DQ keeps several sessions busy in
    turn (the controller, then each bit level's graph): the idle pools' threads spin after
    their runs and take the cores from the running one. One shared pool measured 104-119
    instead of 127-142 ms per tile for the dynamic mode at 2 threads on the sample (2 cores);
    the static mode (one session) was unchanged. onnxruntime sizes that pool once per process
    and then refuses sessions with their own pools, hence one thread count per process.
    """
    global _shared_pool
    if _shared_pool is None:
        try:
            ort.capi._pybind_state.set_global_thread_pool_sizes(threads, 1)
        except Exception as e:  # someone else created the pools: sessions must use them
            raise ConfigError(f"onnxruntime's thread pools already exist in this process ({e}); "
                              "create the backend before other onnxruntime sessions") from e
        _shared_pool = threads
    elif _shared_pool != threads:
        raise ConfigError(f"onnxruntime runs every session of a process on one thread pool, already sized for "
                          f"{_shared_pool or 'the default number of'} threads here; asked for {threads}: use one "
                          f"thread count per process (e.g. one `gdq run --threads N` per process)")


class OnnxRuntimeBackend(ExportedBackend):
    name = "onnxruntime"
    # tile by tile: batches of 6 tiles ran 2-15 % slower per tile than single tiles (measured
    # per graph, 1 and 2 threads; larger activations fall out of cache)
    max_batch = 1

    def __init__(self, export_dir: str | Path, threads: int = 0) -> None:
        self.ort = require("onnxruntime", "runtime")
        super().__init__(export_dir, threads)
        self._sessions: dict[str, Any] = {}
        _claim_shared_pool(self.ort, threads)

    def _session(self, fname: str):
        if fname not in self._sessions:
            so = self.ort.SessionOptions()
            so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.use_per_session_threads = False  # the process's pool (_claim_shared_pool)
            self._sessions[fname] = self.ort.InferenceSession(str(self.m.file(fname)), so, providers=["CPUExecutionProvider"])
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
