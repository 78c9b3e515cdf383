"""``gdq fit-gate``: the gate fitted to measured per-tile gains (train/gate_fit.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from granular_mobile.config import TileConfig
from granular_mobile.data.dataset import bicubic_pair
from granular_mobile.errors import ConfigError, DataError
from granular_mobile.metrics import rgb_to_y
from granular_mobile.models import create_model
from granular_mobile.runtime import Upscaler
from granular_mobile.runtime.backends.torch import TorchBackend
from granular_mobile.runtime.tiler import TilePlan
from granular_mobile.train.gate_fit import (
    GateFitConfig,
    TileGains,
    fingerprint,
    fit_gate,
    measure_tile_gains,
    tile_errors,
)
from test_cli import gdq  # this folder


def _model():
    torch.manual_seed(0)
    m = create_model("srresnet_gdq", n_blocks=1, n_feats=16).eval()
    with torch.no_grad():
        m.encoder.gbc.gate[0].weight.normal_(0, 0.5)
    return m


def _synthetic(m, n_img: int = 30, per: int = 8, seed: int = 0) -> tuple[TileGains, np.ndarray]:
    """Tiles whose error at 5 and 6 bits falls by a known linear function of two gate features
    (plus noise): a fitted gate must find those tiles."""
    rng = np.random.default_rng(seed)
    n = n_img * per
    f = rng.normal(size=(n, 48)).astype(np.float32)
    true = np.clip(1.0 + 0.8 * f[:, 3] - 0.5 * f[:, 17], 0.05, None)  # a tile's error drop per extra bit
    se4 = 100 + 10 * rng.random(n)
    se = np.stack([se4, se4 - true, se4 - 1.6 * true, se4 - 1.8 * true], 1)
    se[:, 1:] += rng.normal(0, 0.05, (n, 3))
    g = TileGains(f, np.full(n, 3.0, np.float32), np.repeat(np.arange(n_img), per), se, tuple(m.bits), TileConfig(),
                  fingerprint(m))
    return g, true


def test_config_validation_names_the_bad_value():
    m = _model()
    with pytest.raises(ConfigError, match="exactly 3 choices"):
        GateFitConfig((4, 5))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"bit-width 7 .* not in the bit set \[4, 5, 6, 8\]"):
        GateFitConfig((4, 5, 7)).quant(m.cfg.quant)
    with pytest.raises(ConfigError, match="ridge=0"):
        GateFitConfig(ridge=0)
    with pytest.raises(ConfigError, match=r"\[6, 5, 4\] must be increasing"):
        GateFitConfig((6, 5, 4))
    assert GateFitConfig((4, 5, 6)).quant(m.cfg.quant).e2b_bits == (6, 6, 6)
    assert GateFitConfig((4, 6, 8), (4, 5, 8)).quant(m.cfg.quant).e2b_bits == (4, 5, 8)


def test_fitted_gate_finds_the_tiles_that_gain(tmp_path):
    m = _model()
    g, true = _synthetic(m)
    g.save(tmp_path / "g.npz")
    g = TileGains.load(tmp_path / "g.npz")
    new, rep = fit_gate(m, g, GateFitConfig((4, 5, 6), ridge=1.0), target_fab=4.5)
    assert new.cfg.quant.gbc_bits == (4, 5, 6) and new.cfg.quant.e2b_bits == (6, 6, 6)
    # the network is the model's; only the gate changed
    sd, sd0 = new.state_dict(), m.state_dict()
    assert [k for k in sd if not torch.equal(sd[k], sd0[k])] == ["encoder.gbc.gate.0.weight", "encoder.gbc.gate.0.bias"]
    with torch.no_grad():
        lg = new.encoder.gbc.gate(torch.from_numpy(g.feat)).numpy()
    assert np.all(lg[:, 0] == 0)
    # the gate computes the regression: a ridge fit of the gains (written out here as least squares
    # on rows augmented with sqrt(ridge) * I) times one common scale, weights and bias alike
    se = g.se
    w_img = np.array([10 / np.log(10) / se[g.img == j, 0].sum() for j in g.img])
    y = np.stack([se[:, 0] - se[:, 1], se[:, 0] - se[:, 2]], 1) * w_img[:, None]
    x = (g.feat - g.feat.mean(0)) / (g.feat.std(0) + 1e-9)
    xa = np.vstack([np.hstack([x, np.ones((len(x), 1))]), np.hstack([np.eye(48), np.zeros((48, 1))])])
    ya = np.vstack([y, np.zeros((48, 2))])
    pred = np.hstack([x, np.ones((len(x), 1))]) @ np.linalg.lstsq(xa, ya, rcond=None)[0]
    k = lg[:, 1:].std() / pred.std()
    np.testing.assert_allclose(lg[:, 1:], k * pred, atol=1e-4 * np.abs(lg).max())
    # so choice 1 (5 bits) is preferred over 4 exactly where the gain is large
    assert np.corrcoef(lg[:, 1], true)[0, 1] > 0.95
    # held out, the fitted gate beats a static mix (which gains about 0.02 dB over all tiles at 4
    # bits here) by half of that; the random gate it replaced by a third of what the fit does
    assert rep["cv_vs_static_mix_db"] > 0.01
    assert rep["trained_gate_vs_static_mix_db"] < rep["cv_vs_static_mix_db"] / 3
    assert rep["tiles"] == len(true) and rep["images"] == 30


def test_fit_needs_this_models_measurements_the_choices_levels_and_enough_images(tmp_path):
    m = _model()
    g, _ = _synthetic(m)
    other = _model()
    with torch.no_grad():
        dict(other.named_parameters())["head.0.weight"].add_(1e-3)
    with pytest.raises(DataError, match="another network"):
        fit_gate(other, g, GateFitConfig((4, 5, 6)), 4.5)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a tile measurement"):
        TileGains.load(tmp_path / "bad.npz")
    # a path without .npz is written as given, so that it is found again
    g.save(tmp_path / "tiles")
    assert TileGains.load(tmp_path / "tiles").model == g.model
    g.se, g.levels = g.se[:, :2], (4, 5)
    with pytest.raises(DataError, match="no 6-bit column"):
        fit_gate(m, g, GateFitConfig((4, 5, 6)), 4.5)
    g, _ = _synthetic(m, n_img=3)
    with pytest.raises(DataError, match="at least 5"):
        fit_gate(m, g, GateFitConfig((4, 5, 6)), 4.5)


def test_measured_tile_errors_add_up_to_the_image(tiny_data):
    """Each output pixel belongs to one tile (merge "center"), so the tiles' errors sum to the
    image's (shaved) squared Y error at every level; and the features are the gate's."""
    from granular_mobile.imageio import list_images, read_rgb

    m = _model()
    tc = TileConfig(tile=32, step=28)
    ims = [read_rgb(p) for p in list_images(tiny_data)[:2]]
    g = measure_tile_gains(m, ims, (4, 8), tc)
    assert g.se.shape == (len(g.img), 2) and g.levels == (4, 8)
    be = TorchBackend.from_models(m, tile=32, numerics="int8")
    for k, im in enumerate(ims):
        hr, lr = bicubic_pair(im, 2)
        plan = TilePlan(lr.shape[0], lr.shape[1], 32, 28, 2, "center")
        assert (g.img == k).sum() == len(plan)
        for j, b in enumerate((4, 8)):
            sr = Upscaler(be, bits=b, overlap=tc.overlap, merge="center")(lr)[0]
            d = (rgb_to_y(sr) - rgb_to_y(hr))[2:-2, 2:-2]
            assert g.se[g.img == k, j].sum() == pytest.approx(float((d**2).sum()), rel=1e-9)
            # without a shave, the whole image
            full = float(((rgb_to_y(sr) - rgb_to_y(hr)) ** 2).sum())
            assert sum(tile_errors(sr, hr, plan, 0)) == pytest.approx(full, rel=1e-9)
    x = torch.from_numpy(bicubic_pair(ims[0], 2)[1][:32, :32]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        f = m.encoder.gbc.features(m.head_conv(x * m.cfg.rgb_range)).numpy()
    np.testing.assert_allclose(g.feat[0], f[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_cli_fit_gate(tiny_data, tmp_path):
    from granular_mobile.checkpoint import load_model, read_checkpoint, save_model

    save_model(_model(), tmp_path / "q.pt")
    cache = tmp_path / "tiles.npz"
    r = gdq("fit-gate", tmp_path / "q.pt", "-o", tmp_path / "f.pt", "--data", tiny_data, "--images", "6",
            "--tile", "32", "--step", "28", "--target-fab", "4.5", "--cache", cache)
    assert r.returncode == 0, r.stderr
    assert "cross-validated" in r.stdout + r.stderr and cache.is_file()
    f = load_model(str(tmp_path / "f.pt"))
    assert f.cfg.quant.gbc_bits == (4, 5, 6)
    rep = read_checkpoint(tmp_path / "f.pt")["meta"]["gate_fit"]
    assert rep["images"] == 6 and rep["gate_bias_shift"]["target_fab"] == 4.5
    # the cache is read back: the same fit without measuring again
    r = gdq("fit-gate", tmp_path / "q.pt", "-o", tmp_path / "f2.pt", "--data", tiny_data, "--tile", "32", "--step", "28",
            "--target-fab", "4.5", "--cache", cache)
    assert r.returncode == 0 and "tile measurements from" in r.stdout + r.stderr
    assert torch.equal(load_model(str(tmp_path / "f2.pt")).encoder.gbc.gate[0].weight, f.encoder.gbc.gate[0].weight)
    # a cache measured with other tiles is refused, in one line
    r = gdq("fit-gate", tmp_path / "q.pt", "-o", tmp_path / "f3.pt", "--data", tiny_data, "--tile", "32", "--step", "30",
            "--cache", cache)
    assert r.returncode == 1 and "was measured with --tile 32 --step 28" in r.stderr


@pytest.mark.parametrize("args, needle", [
    (("--choices", "4,5,7"), "bit-width 7 of the controller is not in the bit set"),
    (("--choices", "4,5"), "exactly 3 choices"),
    (("--images", "3"), "at least 5 images"),
    (("--target-fab", "7"), "--target-fab 7.0 must be within the bit levels' range [4, 6]"),
])
def test_cli_fit_gate_errors(tmp_path, args, needle, gdq_here):
    """In process (``gdq_here``: ``cli.main``, what the `gdq` script runs)."""
    from granular_mobile.checkpoint import save_model

    save_model(_model(), tmp_path / "q.pt")
    r = gdq_here("fit-gate", tmp_path / "q.pt", "-o", tmp_path / "f.pt", *args)
    err = r.stderr
    assert r.returncode == 1 and needle in err, err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "f.pt").exists()
