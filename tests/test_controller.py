import math

import numpy as np
import pytest
import torch

from granular_mobile.config import E2BConfig, QuantConfig
from granular_mobile.controller import E2B, GBC, tile_entropy
from granular_mobile.models import create_model


def numpy_entropy(tile_hwc: np.ndarray, bins: int = 32, sigma: float = 0.0255) -> float:
    """Independent re-implementation of paper Eq. 8 (float64, explicit Gaussian normaliser)."""
    g = tile_hwc[..., 0] * 0.2989 + tile_hwc[..., 1] * 0.5870 + tile_hwc[..., 2] * 0.1140
    c = np.linspace(0.0, 1.0, bins)
    dens = np.zeros(bins)
    for j in range(bins):
        dens[j] = np.mean(np.exp(-((g - c[j]) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi)))
    p = dens / dens.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


@pytest.mark.parametrize("kind", ["flat", "ramp", "noise"])
def test_entropy_matches_numpy(kind):
    rng = np.random.default_rng(0)
    if kind == "flat":
        t = np.full((24, 24, 3), 0.4)
    elif kind == "ramp":
        t = np.repeat(np.linspace(0, 1, 24)[None, :, None], 24, 0).repeat(3, 2)
    else:
        t = rng.random((24, 24, 3))
    h = tile_entropy(torch.from_numpy(t).permute(2, 0, 1)[None].double())
    assert abs(float(h) - numpy_entropy(t)) < 1e-9
    assert 0 <= float(h) <= math.log(32) + 1e-9
    if kind == "noise":
        assert float(h) > 3.0
    if kind == "flat":
        assert float(h) < 1.5


def test_e2b_rule():
    e = E2B(QuantConfig(), E2BConfig(thresholds=(2.0, 3.0)))
    choice = torch.tensor([0, 1, 2, 2, 2, 2])
    h = torch.tensor([3.5, 0.1, 1.0, 2.0, 2.5, 3.1])
    bits = torch.tensor(QuantConfig().bits)[e.final_bit_index(choice, h)]
    assert bits.tolist() == [4, 6, 4, 4, 5, 8]  # H <= t1 -> 4, t1 < H <= t2 -> 5, H > t2 -> 8
    mix = e.final_mix(torch.eye(3)[choice], h)
    assert torch.equal(mix.argmax(1), e.final_bit_index(choice, h))


def test_gbc_granularities_differ():
    torch.manual_seed(0)
    g = GBC(16)
    z = torch.randn(1, 16, 32, 32) + torch.linspace(0, 3, 16).view(1, 16, 1, 1)
    f = g.features(z).view(3, 16)
    assert not torch.allclose(f[0], f[1], atol=1e-3) and not torch.allclose(f[1], f[2], atol=1e-3)
    # the reference (no GroupNorm, global mean) collapses them: the defect we fixed
    ref = GBC(16, groupnorm=False).features(z).view(3, 16)
    assert torch.allclose(ref[0], ref[1], atol=1e-5) and torch.allclose(ref[1], ref[2], atol=1e-5)


def test_gbc_deterministic_in_eval_even_with_equal_logits():
    m = create_model("srresnet_gdq", n_blocks=1, n_feats=8).eval()
    with torch.no_grad():
        m.encoder.gbc.gate[0].weight.zero_()  # equal logits: the reference's Gumbel noise flipped bits here
    x = torch.rand(6, 3, 24, 24)
    outs = {tuple(m.controller(x).bit_index.tolist()) for _ in range(20)}
    assert len(outs) == 1


def test_gate_gets_gradient_in_training():
    torch.manual_seed(0)
    m = create_model("srresnet_gdq", n_blocks=1, n_feats=8).train()
    x = torch.rand(8, 3, 16, 16)
    sr, ctrl = m(x, return_ctrl=True)
    (sr.abs().mean() + ctrl.expected_bits.mean()).backward()
    w = m.encoder.gbc.gate[0].weight.grad
    assert w is not None and w.abs().sum() > 0


@pytest.mark.parametrize("target", [4.0, 5.0, 6.0])
def test_calibrate_gate_reaches_target_fab(target):
    """The gate-bias shift sets the argmax controller's average bits on the given tiles."""
    from granular_mobile.train import calibrate_gate

    torch.manual_seed(0)
    m = create_model("srresnet_gdq", n_blocks=1, n_feats=16).eval()
    with torch.no_grad():
        m.encoder.gbc.gate[0].weight.normal_(0, 0.5)
    rng = np.random.default_rng(1)
    imgs = [(rng.random((64, 64, 3)) * rng.random() * 255).astype(np.uint8) for _ in range(12)]
    bias0 = m.encoder.gbc.gate[0].bias.detach().clone()
    from granular_mobile.data.dataset import tile_grid

    t, before, after, n = calibrate_gate(m, tile_grid(imgs, 16, 2), target)
    assert n == 12 * 4  # 64 px HR -> 32 px LR -> 2 x 2 tiles of 16
    assert abs(after - target) < 0.35, (t, before, after)
    # what the model now does on the same tiles is what was reported
    tiles = torch.from_numpy(tile_grid(imgs, 16, 2))
    with torch.no_grad():
        got = float(np.asarray(m.bits)[m.controller(tiles).bit_index.numpy()].mean())
    assert abs(got - after) < 1e-6
    shift = m.encoder.gbc.gate[0].bias.detach() - bias0
    assert torch.allclose(shift, t * torch.tensor([0.0, 1.0, 2.0]), atol=1e-6)


def test_e2b_thresholds_are_the_entropy_quantiles():
    """``calibrate_e2b``'s thresholds against an independent quantile: the sorted tile
    entropies interpolated linearly at q * (n - 1) (numpy's default; a percentile passed as a
    quantile, or another interpolation, moves them)."""
    from granular_mobile.data.dataset import tile_grid
    from granular_mobile.train.calibration import calibrate_e2b

    rng = np.random.default_rng(5)
    images = []
    for i in range(4):  # flat to busy content: entropies spread out
        y, x = np.mgrid[0:128, 0:160]
        img = 120 + 60 * np.sin(x / (4 + 10 * i)) * np.cos(y / (5 + 7 * i)) + rng.normal(0, 4 * i, (128, 160))
        images.append(np.repeat(img[..., None], 3, 2).clip(0, 255).astype(np.uint8))
    cfg = E2BConfig(quantiles=(0.3, 0.85), tile=16)
    got, n = calibrate_e2b(images, cfg, scale=2)
    tiles = torch.from_numpy(tile_grid(images, 16, 2))
    h = np.sort(tile_entropy(tiles, cfg.bins, cfg.sigma).numpy().astype(np.float64))
    assert n == len(h) > 20 and h[-1] - h[0] > 0.5

    def quantile(q: float) -> float:
        k = q * (len(h) - 1)
        lo = int(math.floor(k))
        return float(h[lo] + (h[min(lo + 1, len(h) - 1)] - h[lo]) * (k - lo))

    assert got.thresholds == pytest.approx((quantile(0.3), quantile(0.85)), abs=1e-5)
    assert got.calibrated and got.tile == 16
