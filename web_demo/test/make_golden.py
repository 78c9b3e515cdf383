"""Vectors for the Node unit tests of the page's modules (src/granular_mobile/web_page/src: PNG
decoding, the alpha channel's bicubic resize), written by OpenCV as the Python runtime reads and resizes:

    python web_demo/test/make_golden.py   # writes web_demo/test/golden/

tests/test_web_demo.py checks that the committed files are what this writes now."""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import cv2
import numpy as np

OUT = Path(__file__).resolve().parent / "golden"


def resize_cases() -> list[dict]:
    rng = np.random.default_rng(0)
    cases = []
    for h, w, s in [(5, 7, 2), (40, 33, 2), (9, 12, 4), (2, 2, 2), (30, 20, 2)]:
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        if h == 30:  # hard edges: the cubic kernel over- and undershoots, saturated
            a = (a > 128).astype(np.uint8) * 255
        cases.append(_resize(a, s))
    # a ramp with plateaus (0, 128, 255): float SIMD and fixed-point rounding part on a few rows
    ramp = np.clip(np.mgrid[:90, :90][1] * 4 - 60, 0, 255).astype(np.uint8)
    ramp[:10], ramp[70:, :30] = 0, 128
    return cases + [_resize(ramp, 2), _resize(ramp[:, :45], 4)]


def _resize(a: np.ndarray, s: int) -> dict:
    h, w = a.shape
    d = cv2.resize(a, (w * s, h * s), interpolation=cv2.INTER_CUBIC)
    return {"h": h, "w": w, "scale": s, "src": a.ravel().tolist(), "dst": d.ravel().tolist()}


def png_cases() -> list[dict]:
    """Small PNGs of each layout OpenCV writes or reads, and the pixels IMREAD_UNCHANGED gives."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    imgs = {"grey": rgb[..., 0], "rgb": rgb, "rgba": np.concatenate([rgb, rgb[..., :1]], 2)}
    cases = []
    for name, img in imgs.items():
        for level in (0, 9):  # stored and compressed: different filters
            bgr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR if img.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
            ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, level])
            assert ok
            cases.append({"name": f"{name}_z{level}", "png": base64.b64encode(buf.tobytes()).decode(),
                          "shape": list(img.shape), "pixels": img.ravel().tolist()})
    return cases


def write(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "resize.json").write_text(json.dumps(resize_cases()))
    (out / "png.json").write_text(json.dumps(png_cases()))


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
