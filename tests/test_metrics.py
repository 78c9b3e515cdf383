import math

import numpy as np
import pytest

from conftest import BENCH, needs_data
from granular_mobile.metrics import bitops, fab, psnr_y, rgb_to_y, ssim


def test_psnr_known_value():
    a = np.full((20, 20, 3), 100, np.uint8)
    b = a.copy()
    b[..., :] = 110  # Y differs by (65.738 + 129.057 + 25.064) * 10 / 256 everywhere
    dy = (65.738 + 129.057 + 25.064) * 10 / 256
    assert psnr_y(b, a, 2) == pytest.approx(20 * math.log10(255 / dy), abs=1e-9)
    assert psnr_y(a, a, 2) == math.inf
    assert rgb_to_y(np.array([[[255, 255, 255]]]))[0, 0] == pytest.approx(235.0, abs=0.1)


def test_ssim_known_values():
    x = np.random.default_rng(0).random((32, 32)) * 255
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    c1 = (0.01 * 255) ** 2
    a, b = np.full((32, 32), 50.0), np.full((32, 32), 80.0)
    assert ssim(a, b) == pytest.approx((2 * 50 * 80 + c1) / (50**2 + 80**2 + c1), rel=1e-9)


def test_fab_and_bitops_hand_computed():
    assert fab([4, 4, 8, 5]) == 5.25
    layers = [(100, False), (1000, True), (1000, True), (50, False)]
    # tile at 4 bits: 2000*8*4 + 150*32*32; tile at 8: 2000*8*8 + 150*1024
    assert bitops(layers, [4, 8]) == 2000 * 8 * 4 + 150 * 1024 + 2000 * 8 * 8 + 150 * 1024


@needs_data
def test_bicubic_set5_x2_matches_published():
    from granular_mobile.eval import benchmark_pairs, evaluate_dataset

    r = evaluate_dataset(None, benchmark_pairs(BENCH, "Set5", 2), "Set5", 2)
    assert r.psnr == pytest.approx(33.66, abs=0.03)  # published bicubic x2 (MATLAB)


@needs_data
@pytest.mark.parametrize("scale", [2, 4])
def test_imresize_matches_matlab_lr(scale):
    from granular_mobile.data.imresize import imresize_uint8
    from granular_mobile.eval import benchmark_pairs

    for _, lr, hr in benchmark_pairs(BENCH, "Set5", scale):
        mine = imresize_uint8(hr, 1 / scale)
        d = np.abs(mine.astype(int) - lr)
        assert 10 * np.log10(255**2 / (d**2).mean()) > 55.0  # bicubic-pytorch: 55.5-56.7 dB
        assert (d <= 1).mean() > 0.99 and (d == 0).mean() > 0.8


def test_best_static_mix_is_the_upper_hull():
    """The controller is compared with the best static mix of levels (experiments/fab_curve.py, gdq
    fit-gate): a level below the line of two others (a weak 5-bit level) is no part of it."""
    from granular_mobile.metrics import best_static_mix

    static = [(4, 30.0), (5, 30.01), (6, 30.1), (8, 30.2)]
    assert best_static_mix(static, 4) == 30.0 and best_static_mix(static, 8) == 30.2
    # 4.5: three quarters of the tiles at 4 bits and one at 6 (30.025) beat half at 4 and 5 (30.005)
    assert abs(best_static_mix(static, 4.5) - 30.025) < 1e-9
    assert abs(best_static_mix(static, 5) - 30.05) < 1e-9  # above the 5-bit level itself
    assert abs(best_static_mix(static, 7) - 30.15) < 1e-9
    with pytest.raises(ValueError, match="outside"):
        best_static_mix(static, 3.5)
