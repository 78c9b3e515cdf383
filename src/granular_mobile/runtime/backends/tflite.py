"""LiteRT (TFLite) backend: runs the exported full-integer graphs with XNNPack (static batch 1)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import require
from .exported import ExportedBackend


class TFLiteBackend(ExportedBackend):
    name = "tflite"
    max_batch = 1

    def __init__(self, export_dir: str | Path, threads: int = 0) -> None:
        self.litert = require("ai_edge_litert.interpreter", "tflite")
        super().__init__(export_dir, threads)
        self._interp: dict[str, Any] = {}  # LiteRT has no type stubs

    def _run(self, fname: str, tiles: np.ndarray) -> list[dict[str, np.ndarray]]:
        if fname not in self._interp:
            it = self.litert.Interpreter(model_path=str(self.m.file(fname)), num_threads=self.threads or None)
            it.allocate_tensors()
            self._interp[fname] = it
        it = self._interp[fname]
        inp = it.get_input_details()[0]
        outs = it.get_output_details()
        res = []
        for tile in np.ascontiguousarray(tiles.transpose(0, 2, 3, 1), np.float32):  # NCHW -> NHWC, batch 1
            it.set_tensor(inp["index"], tile[None])
            it.invoke()
            res.append({o["name"]: it.get_tensor(o["index"])[0] for o in outs})
        return res

    def controller(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        res = self._run(self.t.controller, tiles)
        # by the names the manifest gives: the converter names outputs Identity, Identity_1, ...
        out = self.t.controller_outputs
        logits = np.stack([r[out["logits"]] for r in res])
        ent = np.asarray([float(r[out["entropy"]]) for r in res], np.float32)
        bits = np.asarray([int(r[out["bits"]]) for r in res], np.int64)
        return logits, ent, bits

    def sr(self, tiles: np.ndarray, bits: int | None) -> np.ndarray:
        res = self._run(self.graph_file(bits), tiles)
        return np.stack([next(iter(r.values())) for r in res]).transpose(0, 3, 1, 2)
