"""What `gdq run` does is one library call (``runtime.batch``): a batch's outputs, failures,
summary and stats file, and its checks before any work."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from granular_mobile.errors import ImageError, OutputError
from granular_mobile.imageio import read_image
from granular_mobile.runtime import Batch, Upscaler, upscale_files


def _images(folder, n=2):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"im{i}.png"), (rng.random((40 + 8 * i, 52, 3)) * 255).astype(np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    return folder


def test_upscale_files_is_what_gdq_run_does(tiny_export, tmp_path):
    exp, _ = tiny_export
    src = _images(tmp_path / "in")
    th = 0
    res = upscale_files([src, src / "im0.png"], tmp_path / "out", model=str(exp), threads=th, stats=tmp_path / "s.json")
    assert res.summary() == {"done": 2, "failed": 1, "skipped": 1}  # im0.png named twice: once
    assert [f["input"] for f in res.failed] == [str(src / "broken.png")] and res.failed[0]["error"]
    up = Upscaler.load(str(exp), threads=th)
    for i in range(2):
        want, rep = up(read_image(src / f"im{i}.png"))
        assert np.array_equal(read_image(tmp_path / "out" / f"im{i}_x2.png"), want)
        assert res.reports[i]["tiles_per_level"] == rep.tiles_per_level and res.reports[i]["output"].endswith(f"im{i}_x2.png")
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(json.dumps(res.stats()))
    assert res.stats()["summary"] == res.summary()


def test_one_input_to_one_file_raises_its_error(tiny_export, tmp_path):
    exp, _ = tiny_export
    src = _images(tmp_path / "in")
    with pytest.raises(ImageError):
        upscale_files([src / "broken.png"], tmp_path / "o.png", model=str(exp), threads=0)
    assert not (tmp_path / "o.png").exists()


def test_a_batch_checks_its_outputs_before_loading_the_model(tmp_path):
    """The model here does not exist: each output error must come first."""
    src = _images(tmp_path / "in")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(OutputError, match="need an output folder"):
        Batch([src], tmp_path / "file.png", model="nope")
    with pytest.raises(OutputError, match="names an image file"):
        Batch([src], tmp_path / "new.png", model="nope")
    with pytest.raises(OutputError, match="exists"):
        Batch([src / "im0.png"], tmp_path / "file.png", model="nope")
    with pytest.raises(OutputError, match="``bitmap`` takes one input"):
        Batch([src], tmp_path / "out", bitmap=tmp_path / "b.png", model="nope")
    with pytest.raises(ImageError, match="does not exist"):
        Batch([tmp_path / "missing.png"], tmp_path / "o.png", model="nope")


def test_an_interrupted_batch_counts_what_it_did_not_reach(tiny_export, tmp_path):
    exp, _ = tiny_export
    src = _images(tmp_path / "in")  # broken.png (fails), im0.png, im1.png
    batch = Batch([src], tmp_path / "out", model=str(exp), threads=0)
    started = []

    def start(f):
        started.append(f)
        if len(started) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch.run(on_start=start)
    assert batch.result.summary() == {"done": 1, "failed": 1, "skipped": 1}
    assert (tmp_path / "out" / "im0_x2.png").is_file() and not (tmp_path / "out" / "im1_x2.png").exists()
    assert batch.run().summary() == {"done": 2, "failed": 1, "skipped": 0}  # a second run starts afresh


def test_a_shared_budget_is_one_allocation_over_the_batch(tiny_timed_export, tmp_path):
    """--share-budget: the batch's tiles are allocated together (one price), each image then runs
    its share; per image, the allocation is that image's alone."""
    from granular_mobile.runtime.budget import allocate
    from test_routing import check_routing, mixed_image

    exp, _ = tiny_timed_export
    up = Upscaler.load(str(exp), threads=0, overlap=8, merge="center", budget=0.8)
    busy = mixed_image()
    flat = np.full_like(busy, 128)
    flat[::7] = 140  # a few edges: not constant, but far easier than the busy image
    scores = [up.scores(busy), up.scores(flat)]
    shared = up.share_budget(scores)
    choice = allocate(np.concatenate(scores), up.costs, 0.8)
    gate = up.backend.level_gate
    assert shared == [[gate.choices[c] for c in choice[:len(scores[0])]], [gate.choices[c] for c in choice[len(scores[0]):]]]
    own = [up(busy)[1], up(flat)[1]]
    assert [o.tile_levels for o in own] != shared  # sharing moved time between the images
    costs = dict(zip(gate.choices, up.costs, strict=True))
    mean = np.mean([costs[lv] for lv in shared[0] + shared[1]])
    assert mean <= 0.8 + 1e-9
    sr, rep = up(busy, levels=shared[0])
    assert rep.tile_levels == shared[0] and rep.cost == pytest.approx(np.mean([costs[lv] for lv in shared[0]]))
    check_routing(up, busy, sr, rep, allocated=False)  # each tile ran its given level
    with pytest.raises(Exception, match="tile levels for"):
        up(busy, levels=shared[0][:-1])

    # the batch: the same allocation, and the per-image costs in the reports
    cv2.imwrite(str(tmp_path / "a_busy.png"), busy[..., ::-1])
    cv2.imwrite(str(tmp_path / "b_flat.png"), flat[..., ::-1])
    res = upscale_files([tmp_path / "a_busy.png", tmp_path / "b_flat.png"], tmp_path / "out", model=str(exp),
                        threads=0, overlap=8, merge="center", budget=0.8, share_budget=True,
                        stats=tmp_path / "s.json")
    from collections import Counter

    assert [r["tiles_per_level"] for r in res.reports] == [dict(sorted(Counter(s).items())) for s in shared]
    assert res.mean_cost() == pytest.approx(mean)
    assert all(r["timings_s"]["controller"] > 0 for r in res.reports)  # the scoring pass's time, per image
    summary = json.loads((tmp_path / "s.json").read_text())["summary"]
    assert summary["budget_shared"] is True and summary["mean_cost"] == pytest.approx(mean)


def test_share_budget_needs_a_level_gate(tiny_export, tmp_path):
    from granular_mobile.errors import ConfigError

    exp, _ = tiny_export
    src = _images(tmp_path / "in")
    with pytest.raises(ConfigError, match="``share_budget``"):
        Batch([src], tmp_path / "out", model=str(exp), threads=0, share_budget=True)
