"""Tiling must not show seams: tiled full-precision output vs the untiled one."""
import math

import numpy as np
import pytest
import torch

from conftest import BENCH, needs_data
from granular_mobile.runtime import Upscaler
from granular_mobile.runtime.backends.torch import TorchBackend


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _untiled(model, img: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        y = model(x)[0].permute(1, 2, 0).numpy()
    return np.clip(np.round(y * 255), 0, 255).astype(np.uint8)


def test_tiny_model_seamless(tmp_path):
    from granular_mobile.checkpoint import save_model
    from granular_mobile.models import create_model

    torch.manual_seed(0)
    fp = create_model("srresnet", n_blocks=2, n_feats=16).eval()
    save_model(fp, tmp_path / "fp.pt")
    be = TorchBackend(str(tmp_path / "fp.pt"), tile=48)
    img = (np.random.default_rng(0).random((100, 130, 3)) * 255).astype(np.uint8)
    import cv2

    img = cv2.GaussianBlur(img, (5, 5), 1.5)
    # receptive radius of this net is ~12 LR pixels; an overlap covering it leaves no seam
    sr, rep = Upscaler(be, precision="fp32", overlap=16, merge="blend")(img)
    assert rep.tiles > 4
    assert _psnr(sr, _untiled(be.fp, img)) >= 50.0


def _worst_line(a: np.ndarray, b: np.ndarray) -> float:
    d = (a.astype(np.float64) - b) ** 2
    m = max(d.mean(axis=(1, 2)).max(), d.mean(axis=(0, 2)).max())
    return math.inf if m == 0 else 10 * math.log10(255**2 / m)


@pytest.mark.slow
@needs_data
def test_default_model_seamless_on_set14():
    """Shipped model, default runtime tiling, Set14 x2: tiled vs untiled >= 50 dB on every image
    and >= 35 dB on every output row and column (where a seam would show)."""
    from granular_mobile.eval import benchmark_pairs

    be = TorchBackend("default")
    up = Upscaler(be, precision="fp32")
    worst = worst_line = math.inf
    for _, lr, _ in benchmark_pairs(BENCH, "Set14", 2):
        if lr.ndim == 3 and lr.shape[2] == 3:
            sr, _ = up(lr)
            ref = _untiled(be.fp, lr)
            worst = min(worst, _psnr(sr, ref))
            worst_line = min(worst_line, _worst_line(sr, ref))
    print(f"worst Set14 tiled-vs-untiled PSNR: {worst:.2f} dB, worst row/column {worst_line:.2f} dB")
    assert worst >= 50.0, worst
    assert worst_line >= 35.0, worst_line
