"""LiteRT (TFLite) backend: runs the exported full-integer graphs with XNNPack (static batch 1)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ConfigError, require
from ..manifest import Manifest


class TFLiteBackend:
    name = "tflite"
    max_batch = 1

    def __init__(self, export_dir: str | Path, threads: int = 0) -> None:
        self.litert = require("ai_edge_litert.interpreter", "tflite")
        self.m = Manifest(export_dir)
        self.t = self.m.target("tflite")
        self.scale, self.tile, self.bits = self.m.scale, self.m.tile, self.m.bits
        self.has_fp = bool(self.t.get("fp32"))
        self.model_id = self.m.model_id
        self.threads = threads or None
        self._interp: dict[str, object] = {}

    def _run(self, fname: str, tiles: np.ndarray) -> list[dict[str, np.ndarray]]:
        if fname not in self._interp:
            it = self.litert.Interpreter(model_path=str(self.m.file(fname)), num_threads=self.threads)
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
        res = self._run(self.t["controller"], tiles)
        # output names carry a signature prefix (e.g. "StatefulPartitionedCall:1"): match by shape/dtype
        logits, ent, bits = [], [], []
        for r in res:
            for v in r.values():
                if v.dtype.kind in "iu":
                    bits.append(int(v))
                elif v.ndim == 1:
                    logits.append(v)
                else:
                    ent.append(float(v))
        return np.stack(logits), np.asarray(ent, np.float32), np.asarray(bits, np.int64)

    def sr(self, tiles: np.ndarray, bits: int | None) -> np.ndarray:
        if bits is None:
            if not self.has_fp:
                raise ConfigError("this export has no full-precision graph (sr_fp32); --precision fp32 is unavailable")
            fname = self.t["fp32"]
        else:
            fname = self.t["sr"].get(str(bits))
            if fname is None:
                raise ConfigError(f"no graph for {bits} bits; valid: {list(self.bits)}")
        res = self._run(fname, tiles)
        return np.stack([next(iter(r.values())) for r in res]).transpose(0, 3, 1, 2)
