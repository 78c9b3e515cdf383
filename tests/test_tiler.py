import itertools

import numpy as np
import pytest

from granular_mobile.runtime.tiler import Stitcher, TilePlan, axis_positions, extract_tiles


@pytest.mark.parametrize("length, tile, step", [(96, 96, 90), (97, 96, 90), (300, 96, 90), (50, 96, 90), (200, 64, 48)])
def test_positions_cover_with_static_tiles(length, tile, step):
    pos = axis_positions(length, tile, step)
    assert pos[0] == 0
    if length >= tile:
        assert pos[-1] == length - tile
        assert all(b - a <= step for a, b in itertools.pairwise(pos))


@pytest.mark.parametrize("merge", ["center", "blend"])
@pytest.mark.parametrize("hw", [(96, 96), (130, 250), (40, 70), (191, 97)])
def test_stitch_identity(merge, hw):
    """Tiles cut from an upscaled image, stitched back, give that image exactly (weights sum to 1)."""
    s, t = 2, 32
    rng = np.random.default_rng(0)
    lr = rng.random((*hw, 3)).astype(np.float32)
    hr = lr.repeat(s, 0).repeat(s, 1)
    plan = TilePlan(hw[0], hw[1], t, 24, s, merge)
    tiles = extract_tiles(lr, plan)
    assert tiles.shape[1:] == (t, t, 3)
    st = Stitcher(plan)
    for i, tl in enumerate(tiles):
        st.add(i, tl.repeat(s, 0).repeat(s, 1))
    out = st.result()
    assert out.shape == hr.shape
    np.testing.assert_allclose(out, hr, atol=1e-5)


def test_center_merge_gives_each_pixel_to_one_tile():
    plan = TilePlan(200, 180, 96, 90, 2, "center")
    acc = np.zeros((400, 360))
    for (y, x), w in zip(plan.positions, plan.weights(), strict=True):
        acc[y * 2:y * 2 + 192, x * 2:x * 2 + 192] += w
    assert set(np.unique(acc)) == {1.0}


@pytest.mark.parametrize("merge", ["center", "blend"])
@pytest.mark.parametrize("hw", [(96, 96), (130, 250), (40, 70), (191, 97)])
def test_band_stitcher_equals_whole_image_stitcher(merge, hw):
    from granular_mobile.runtime.tiler import BandStitcher

    s, t = 2, 32
    plan = TilePlan(hw[0], hw[1], t, 24, s, merge)
    rng = np.random.default_rng(1)
    srs = rng.random((len(plan), t * s, t * s, 3)).astype(np.float32)
    whole = Stitcher(plan)
    band = BandStitcher(plan)
    rows = []
    for k, tl in enumerate(srs):
        whole.add(k, tl)
    for r in range(len(plan.ys)):
        for c in range(len(plan.xs)):
            band.add(r, c, srs[r * len(plan.xs) + c])
        rows.append(band.flush(r))
    want = np.clip(np.round(whole.result() * 255.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(np.concatenate(rows), want)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_blend_ramps_are_linear_over_each_overlap(scale):
    """The blend weights, checked directly: 1 inside a tile, a linear ramp (pixel centres,
    (j + 0.5) / overlap) up over the overlap with the previous tile and down over the next, the
    two ramps summing to 1, and a tile's weights ending where the image does."""
    from granular_mobile.runtime.tiler import axis_weights

    tile, step, length = 32, 24, 80  # positions 0, 24, 48: overlaps of 8 LR pixels
    pos = axis_positions(length, tile, step)
    assert pos == [0, 24, 48]
    w = axis_weights(pos, tile, length, scale, "blend")
    ov = 8 * scale
    ramp = (np.arange(ov, dtype=np.float32) + 0.5) / ov
    np.testing.assert_array_equal(w[0][: tile * scale - ov], 1.0)
    np.testing.assert_array_equal(w[0][tile * scale - ov:], 1.0 - ramp)
    np.testing.assert_array_equal(w[1][:ov], ramp)
    np.testing.assert_array_equal(w[1][ov: tile * scale - ov], 1.0)
    np.testing.assert_array_equal(w[1][tile * scale - ov:], 1.0 - ramp)
    np.testing.assert_array_equal(w[2][:ov], ramp)
    np.testing.assert_array_equal(w[2][ov:], 1.0)
    np.testing.assert_allclose(w[0][tile * scale - ov:] + w[1][:ov], 1.0, atol=1e-6)
    # a tile longer than the image: weights only where there are pixels
    short = axis_weights([0], tile, 20, scale, "blend")[0]
    np.testing.assert_array_equal(short[: 20 * scale], 1.0)
    np.testing.assert_array_equal(short[20 * scale:], 0.0)
