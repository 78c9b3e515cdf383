"""Write JPEG copies of the training images (4:4:4), for a machine that the PNGs do not fit.

Why: the lent GPU machine of session 5 took at most 64 MiB with the repository; the PNG
training set is 60 MB, these copies 29 MB (T91 quality 99, BSD200 quality 98; the worst
image is 46.2 dB PSNR against its PNG, i.e. about one 8-bit step of noise, far below the
model's own error). The training recipe is the same on the PNGs.

    python scripts/jpeg_train_copy.py OUT_DIR      # writes OUT_DIR/T91, OUT_DIR/BSD200
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from granular_mobile.defaults import data_root

SRC = Path(data_root())  # $GDQ_DATA_ROOT
QUALITY = {"T91": 99, "BSD200": 98}


def main(out: Path) -> None:
    worst = np.inf
    for name, q in QUALITY.items():
        (out / name).mkdir(parents=True, exist_ok=True)
        for p in sorted((SRC / name).glob("*.png")):
            im = cv2.imread(str(p))
            ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, q,
                                                cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
            if not ok:
                raise SystemExit(f"could not encode {p}")
            (out / name / f"{p.stem}.jpg").write_bytes(buf.tobytes())
            err = cv2.imdecode(buf, cv2.IMREAD_COLOR).astype(np.float64) - im
            worst = min(worst, 10 * np.log10(255.0**2 / max((err**2).mean(), 1e-12)))
    print(f"wrote {out}/T91, {out}/BSD200; worst image {worst:.2f} dB against its PNG")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
