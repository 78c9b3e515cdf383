"""LiteRT (TFLite) backend: runs the exported full-integer graphs with XNNPack (static batch 1)."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import require
from .exported import ExportedBackend

#: what LiteRT's native code prints on every interpreter, not a message for the user
_NATIVE_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate",)


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """LiteRT's C++ logs to file descriptor 2 (no Python logger, no environment switch): catch
    it while an interpreter is made and pass on every line but its routine INFO line."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (an embedding host): leave it alone
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode(errors="replace").splitlines():
                if line.strip() and not line.startswith(_NATIVE_NOISE):
                    print(line, file=sys.stderr)


class TFLiteBackend(ExportedBackend):
    name = "tflite"
    max_batch = 1

    def __init__(self, export_dir: str | Path, threads: int = 0) -> None:
        self.litert = require("ai_edge_litert.interpreter", "tflite")
        super().__init__(export_dir, threads)
        # an interpreter runs one invoke at a time: each worker thread has its own (one thread each)
        self._local = threading.local()
        self._quiet = threading.Lock()  # descriptor 2 is the process's: one catcher at a time

    def _run(self, fname: str, tiles: np.ndarray) -> list[dict[str, np.ndarray]]:
        interp: dict[str, Any] = self._local.__dict__.setdefault("interp", {})  # LiteRT has no type stubs
        if fname not in interp:
            path = str(self.m.file(fname))
            with self._quiet, _quiet_native_stderr():
                it = self.litert.Interpreter(model_path=path, num_threads=1)
                it.allocate_tensors()
            interp[fname] = it
        it = interp[fname]
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

    def scores(self, tiles: np.ndarray) -> np.ndarray:
        out = self.t.controller_outputs["scores"]
        return np.stack([r[out] for r in self._run(self.t.controller, tiles)])

    def sr(self, tiles: np.ndarray, level: int | str | None) -> np.ndarray:
        res = self._run(self.graph_file(level), tiles)
        return np.stack([next(iter(r.values())) for r in res]).transpose(0, 3, 1, 2)
