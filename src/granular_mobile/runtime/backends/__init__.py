"""Inference backends of the tiled runtime. Each one runs, on batches of NCHW float32 tiles
on [0, 1]: the controller (-> GBC logits, entropy, final bit-width) and the SR network at
a given bit-width (None: the full-precision twin)."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str
    scale: int
    tile: int
    bits: tuple[int, ...]
    has_fp: bool
    model_id: str
    #: largest batch a graph accepts (1 for static-batch exported graphs)
    max_batch: int

    def controller(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(logits (N, 3), entropy (N,), bit-width (N,) int)."""
        ...

    def sr(self, tiles: np.ndarray, bits: int | None) -> np.ndarray:
        """SR tiles (N, 3, tile*s, tile*s) at ``bits`` (None: full precision)."""
        ...


BACKENDS = ("torch",)


def create_backend(name: str, model: str, threads: int = 0, tile: int | None = None) -> Backend:
    from ...errors import ConfigError

    if name == "torch":
        from .torch import TorchBackend

        return TorchBackend(model, threads=threads, tile=tile)
    raise ConfigError(f"unknown backend '{name}'; valid: {list(BACKENDS)}")
