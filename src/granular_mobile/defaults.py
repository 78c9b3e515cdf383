"""Defaults shared by the commands and the library, each defined once.

The data roots come from the environment, so that a checkout anywhere finds its data
without flags: ``GDQ_DATA_ROOT`` (training images: T91/, BSD200/ under it) and
``GDQ_BENCH_ROOT`` (benchmark sets: Set5/, Set14/, BSD100/ under it). Unset, they are the
``../shared/datasets`` folders next to the checkout that the project's scripts were run with.
"""
from __future__ import annotations

import os
from pathlib import Path

#: LR tile side of deployment: the exported graphs' static input, E2B's calibration, the runtime's tiles
DEFAULT_TILE = 96
#: step between tiles of ``gdq eval`` (an overlap of DEFAULT_TILE - DEFAULT_STEP pixels)
DEFAULT_STEP = 90
#: how overlapping tiles merge: "center" gives each output pixel to one tile, split at the
#: middle of each overlap (the paper's protocol); "blend" ramps weights linearly across overlaps
MERGES: tuple[str, ...] = ("center", "blend")
#: the runtime's tiling (``gdq run``, ``Upscaler``, the browser and Android demos): the same as
#: ``gdq eval``'s, so what eval measures is what run computes. Each tile keeps the centre of
#: its overlaps ("center"): 6 LR pixels of overlap against 16 blended before, 1.14x the pixels
#: of a large photo instead of 1.44x. On Set14 the full-precision graph's tiled output against
#: the untiled twin: mean 64.9 / worst image 52.3 / worst row or column 40.2 dB, against 62.3 /
#: 52.4 / 38.0 before (``experiments/seams.py``, docs/seams_set14.json; docs/TIME.md).
DEFAULT_OVERLAP = DEFAULT_TILE - DEFAULT_STEP
DEFAULT_MERGE = "center"

DATA_ROOT_ENV = "GDQ_DATA_ROOT"
BENCH_ROOT_ENV = "GDQ_BENCH_ROOT"
DATA_ROOT_FALLBACK = "../shared/datasets/train"
BENCH_ROOT_FALLBACK = "../shared/datasets/benchmark"
#: the training sets under the data root (291 images)
TRAIN_SETS: tuple[str, ...] = ("T91", "BSD200")

def data_root() -> str:
    """Root of the training image folders: $GDQ_DATA_ROOT, else ``../shared/datasets/train``."""
    return os.environ.get(DATA_ROOT_ENV) or DATA_ROOT_FALLBACK


def bench_root() -> str:
    """Root of the benchmark sets: $GDQ_BENCH_ROOT, else ``../shared/datasets/benchmark``."""
    return os.environ.get(BENCH_ROOT_ENV) or BENCH_ROOT_FALLBACK


def train_folders() -> tuple[str, ...]:
    """The training image folders: TRAIN_SETS under data_root()."""
    return tuple(str(Path(data_root()) / s) for s in TRAIN_SETS)

#: ``gdq run`` refuses an output above this many megapixels without ``--large`` (its RGB bytes
#: alone are 3 bytes a pixel: 600 MB at 200 MP), saying what it would cost
MAX_OUTPUT_MP = 200
