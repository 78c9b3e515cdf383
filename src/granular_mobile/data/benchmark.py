"""Benchmark sets on disk: SET/HR/*.png with SET/LR_bicubic/X<scale>/ of the same names."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..imageio import list_images, read_rgb


def benchmark_pairs(root: str | os.PathLike[str], name: str, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LR, HR cropped to LR*scale) for a benchmark folder with HR/ and LR_bicubic/X<s>/."""
    d = Path(root) / name
    hr_dir, lr_dir = d / "HR", d / "LR_bicubic" / f"X{scale}"
    if not hr_dir.is_dir() or not lr_dir.is_dir():
        raise DataError(f"'{d}' needs HR/ and LR_bicubic/X{scale}/ (Set5, Set14, BSD100 in that layout; "
                        f"point ``root`` or GDQ_BENCH_ROOT at their parent folder)")
    out = []
    for hp in list_images(hr_dir):
        lp = lr_dir / hp.name
        if not lp.is_file():
            raise DataError(f"no LR image for '{hp.name}' in '{lr_dir}'")
        lr, hr = read_rgb(lp), read_rgb(hp)
        out.append((hp.stem, lr, hr[: lr.shape[0] * scale, : lr.shape[1] * scale]))
    return out
