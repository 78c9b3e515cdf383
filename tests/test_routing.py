"""Routing: every tile's pixels are what its own level's graph computes on that tile alone.

The report (levels per tile, FAB) says nothing of which graph produced which pixels: a runtime
that ran a row's tiles at one tile's level would report the same. So each tile is run again
alone, its level is the controller's decision for it alone, and the stitched output must equal
that level's graph's output wherever that tile alone decides a pixel (every pixel with merge
"center"; the overlap-free interior with "blend").
"""
import numpy as np
import pytest

from granular_mobile.runtime import Upscaler
from granular_mobile.runtime.budget import allocate
from granular_mobile.runtime.tiler import TilePlan, axis_weights, extract_tiles


def mixed_image(h: int = 104, w: int = 152) -> np.ndarray:
    """Flat, smooth and busy regions side by side, so that the tiles take several levels; the
    size puts tiles of 32 every 24 pixels exactly, so that each keeps an interior with "blend"."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.float32)
    img[...] = 120.0
    img[:, w // 3:2 * w // 3] = (60 + 80 * np.sin(xx[:, w // 3:2 * w // 3] / 9.0) * np.cos(yy[:, w // 3:2 * w // 3] / 7.0))[..., None]
    img[:, 2 * w // 3:] = rng.random((h, w - 2 * w // 3, 3)) * 255
    img[: h // 2, : w // 3] = rng.random((h // 2, w // 3, 3)) * 40 + 100
    return np.clip(img, 0, 255).astype(np.uint8)


def own_pixels(plan: TilePlan, i: int) -> np.ndarray:
    """(tile*s, tile*s) mask of the output pixels tile i decides alone: its weight 1, every other
    tile's 0 (the weights are >= 0, so: its weight 1 where they sum to 1)."""
    s, t = plan.scale, plan.tile * plan.scale

    def axis(positions: list[int], length: int, k: int) -> np.ndarray:
        ws = axis_weights(positions, plan.tile, length, s, plan.merge)
        total = np.zeros((max(positions) * s + t,), np.float32)
        for p, w in zip(positions, ws, strict=True):
            total[p * s:p * s + t] += w
        return (ws[k] == 1.0) & (total[positions[k] * s:positions[k] * s + t] == 1.0)

    r, c = divmod(i, len(plan.xs))
    return np.outer(axis(plan.ys, plan.height, r), axis(plan.xs, plan.width, c))


def check_routing(up: Upscaler, img: np.ndarray, sr: np.ndarray | None = None, rep=None, allocated: bool = True) -> set[int]:
    """Every tile's own pixels in ``sr`` (default: ``up(img)``) equal its level's graph run on it
    alone (``allocated``: with a level gate, the report's levels are the image's own allocation;
    False: they were given, e.g. a shared budget's)."""
    if sr is None:
        sr, rep = up(img)
    be = up.backend
    plan = TilePlan(img.shape[0], img.shape[1], be.tile, be.tile - up.overlap, be.scale, up.merge)
    tiles = extract_tiles(img, plan).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    s, t = be.scale, be.tile * be.scale
    if up.budget is not None and allocated:  # the level gate: the image's allocation, from every tile's scores
        want_levels = [be.level_gate.choices[c] for c in allocate(be.scores(tiles), up.costs, up.budget)]
        assert rep.tile_levels == want_levels, "the report's levels are not the budget's allocation"
    for i, ((y, x), b) in enumerate(zip(plan.positions, rep.tile_levels, strict=True)):
        if up.bits == "auto" and up.budget is None:
            assert f"a{int(be.controller(tiles[i:i + 1])[2][0])}" == b, f"tile {i}: the report's level is not the controller's"
        want = np.clip(np.round(be.sr(tiles[i:i + 1], b)[0].transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
        got = sr[y * s:y * s + t, x * s:x * s + t]
        mask = own_pixels(plan, i)[:got.shape[0], :got.shape[1]]
        assert mask.sum() > 0, f"tile {i} decides no pixel alone"
        diff = np.abs(got[mask].astype(int) - want[:got.shape[0], :got.shape[1]][mask].astype(int))
        assert diff.max() == 0, f"tile {i} (level {b}): {int((diff > 0).sum())} pixels differ from its level's graph"
    return set(rep.tile_levels)


@pytest.mark.parametrize("merge", ["center", "blend"])
@pytest.mark.parametrize("backend", ["onnxruntime", "tflite"])
def test_each_tile_runs_its_own_level(tiny_export, backend, merge):
    exp, _ = tiny_export
    up = Upscaler(Upscaler.load(str(exp), backend=backend).backend, overlap=8, merge=merge)
    levels = check_routing(up, mixed_image())
    assert len(levels) >= 2, f"the test image took one level only ({levels}): it proves no routing"


def test_levels_differ_on_the_test_tiles(tiny_export):
    """The check above can fail only where the levels give different pixels: they do."""
    exp, _ = tiny_export
    be = Upscaler.load(str(exp), backend="onnxruntime").backend
    img = mixed_image()
    plan = TilePlan(img.shape[0], img.shape[1], be.tile, be.tile - 8, be.scale, "center")
    tiles = extract_tiles(img, plan).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    outs = [np.round(be.sr(tiles, b) * 255) for b in be.bits]
    for a, b in zip(outs, outs[1:], strict=False):
        assert (a != b).mean() > 0.05


def test_a_misrouting_runtime_fails_the_check(tiny_export, monkeypatch):
    """Plant the bug the check guards against (a row's tiles all at one tile's level, the one the
    controller saw last; the report unchanged) and watch the check fail."""
    exp, _ = tiny_export
    up = Upscaler(Upscaler.load(str(exp), backend="onnxruntime").backend, overlap=8, merge="center")
    be = up.backend
    real_sr, real_ctrl = be.sr, be.controller
    state: dict[str, int] = {}

    def ctrl(tiles):
        logits, ent, bits = real_ctrl(tiles)
        state["first"] = int(bits[0])
        return logits, ent, bits

    def sr(tiles, level):
        return real_sr(tiles, state["first"] if level is not None else None)

    monkeypatch.setattr(be, "controller", ctrl)
    monkeypatch.setattr(be, "sr", sr)
    img = mixed_image()
    sr_bad, rep_bad = up(img)
    monkeypatch.setattr(be, "sr", real_sr)  # the check's own reference runs use the real graphs
    assert len(set(rep_bad.tile_bits)) >= 2
    with pytest.raises(AssertionError, match="differ from its level's graph"):
        check_routing(up, img, sr_bad, rep_bad)
    check_routing(up, img)  # and the real runtime passes it
