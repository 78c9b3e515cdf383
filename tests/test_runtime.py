"""Tiled runtime over exported graphs: backends, torch-free import, stitching, bad input."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT
from granular_mobile.errors import ConfigError, ImageError, ModelNotFoundError
from granular_mobile.runtime import Upscaler

IMG = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("backend", ["onnxruntime", "tflite"])
def test_backend_runs_without_torch(tiny_export, backend, tmp_path):
    """The integer backends never import torch (checked in a fresh interpreter)."""
    exp, _ = tiny_export
    code = (
        "import sys, numpy as np\n"
        "from granular_mobile.runtime import Upscaler\n"
        f"up = Upscaler.load({str(exp)!r}, backend={backend!r})\n"
        "img = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)\n"
        "sr, rep = up(img)\n"
        "assert sr.shape == (140, 180, 3) and sr.dtype == np.uint8, sr.shape\n"
        "assert sum(int(v) for v in rep.tiles_per_bit.values()) == rep.tiles\n"
        "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules, 'heavy import'\n"
        "print('ok', rep.fab)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_backends_agree_with_torch(tiny_export):
    exp, ck = tiny_export
    ref, rep_t = Upscaler.load(str(ck / "q.pt"), backend="torch", tile=32)(IMG)
    for be in ("onnxruntime", "tflite"):
        sr, rep = Upscaler.load(str(exp), backend=be)(IMG)
        assert rep.tile_bits == rep_t.tile_bits  # same controller decisions
        mse = np.mean((sr.astype(float) - ref) ** 2)
        assert 10 * np.log10(255**2 / max(mse, 1e-12)) > 40, be


def test_tflite_runs_quietly(tiny_export):
    """LiteRT's native "Created TensorFlow Lite XNNPACK delegate" line is not the user's business:
    a run's stderr stays empty (the line came once per graph, on fd 2, past Python's logging)."""
    exp, _ = tiny_export
    code = ("import numpy as np\nfrom granular_mobile.runtime import Upscaler\n"
            f"up = Upscaler.load({str(exp)!r}, backend='tflite', threads=1)\n"
            "up((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8))\nprint('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
    assert "XNNPACK" not in r.stderr and r.stderr.strip() == "", r.stderr


def test_report_times_each_level(tiny_export):
    """The report gives the SR time of each level's tiles: the levels that ran, adding up to the SR time."""
    exp, _ = tiny_export
    _, rep = Upscaler.load(str(exp), backend="onnxruntime")(IMG)
    assert set(rep.sr_s_per_level) == set(rep.tiles_per_level) and all(v > 0 for v in rep.sr_s_per_level.values())
    assert abs(sum(rep.sr_s_per_level.values()) - rep.timings_s["sr"]) < 1e-9
    assert rep.to_dict()["sr_s_per_level"].keys() == rep.sr_s_per_level.keys()


def test_fixed_bits_and_fp32(tiny_export):
    exp, _ = tiny_export
    _, rep = Upscaler.load(str(exp), backend="onnxruntime", bits=5)(IMG)
    assert rep.tiles_per_bit == {"5": rep.tiles} and rep.fab == 5.0
    sr, rep = Upscaler.load(str(exp), backend="onnxruntime", precision="fp32")(IMG)
    assert rep.fab is None and sr.shape == (140, 180, 3)


@pytest.mark.parametrize("shape", [(50, 60), (50, 60, 4), (20, 20, 3)])
def test_grey_alpha_and_small_images(tiny_export, shape):
    exp, _ = tiny_export
    img = (np.random.default_rng(1).random(shape) * 255).astype(np.uint8)
    sr, _ = Upscaler.load(str(exp), backend="onnxruntime")(img)
    assert sr.shape[:2] == (shape[0] * 2, shape[1] * 2)
    assert sr.ndim == len(shape) and (len(shape) == 2 or sr.shape[2] == shape[2])


def test_bad_inputs(tiny_export, tmp_path):
    exp, ck = tiny_export
    up = Upscaler.load(str(exp), backend="onnxruntime")
    with pytest.raises(ImageError, match="8-bit"):
        up(np.zeros((40, 40, 3), np.uint16))
    with pytest.raises(ImageError, match="too small"):
        up(np.zeros((1, 5, 3), np.uint8))
    with pytest.raises(ConfigError, match="unknown backend 'coreml'"):
        Upscaler.load(str(exp), backend="coreml")
    with pytest.raises(ConfigError, match="export"):
        Upscaler.load(str(ck / "q.pt"), backend="onnxruntime")
    with pytest.raises(ModelNotFoundError):
        Upscaler.load(str(tmp_path / "nowhere"), backend="onnxruntime")
    with pytest.raises(ConfigError, match="static tile"):
        Upscaler.load(str(exp), backend="onnxruntime", tile=64)


def test_tampered_file_is_refused(tiny_export, tmp_path):
    exp, _ = tiny_export
    bad = tmp_path / "exp"
    shutil.copytree(exp, bad)
    p = bad / "sr_a4.onnx"
    p.write_bytes(p.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ConfigError, match="sha256"):
        Upscaler.load(str(bad), backend="onnxruntime", bits=4)(IMG)
    shutil.copy(exp / "sr_a4.onnx", p)
    (bad / "sr_a5.onnx").unlink()
    with pytest.raises(ModelNotFoundError, match="missing"):
        Upscaler.load(str(bad), backend="onnxruntime", bits=5)(IMG)


def test_cli_run_integer_backends(tiny_export, tmp_path):
    exp, _ = tiny_export
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f"im{i}.png"), IMG)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "granular_mobile.cli", "run", str(src), "-o", str(tmp_path / "out"),
                        "-m", str(exp), "--backend", "tflite", "--stats", str(tmp_path / "s.json")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["im0_x2.png", "im1_x2.png"]
    assert len(json.loads((tmp_path / "s.json").read_text())["images"]) == 2


def test_bitmap_marks_every_tile(tiny_export, tmp_path):
    from granular_mobile.runtime.bitmap import COLOURS, bitmap
    from granular_mobile.runtime.tiler import TilePlan

    exp, _ = tiny_export
    up = Upscaler.load(str(exp), backend="onnxruntime")
    img = np.full((70, 90, 3), 128, np.uint8)
    _, rep = up(img)
    plan = TilePlan(70, 90, 32, 32 - up.overlap, 1)
    bm = bitmap(img, plan, rep.tile_levels)
    assert bm.shape[0] > 70 and bm.shape[1] == 90  # legend below
    # the first tile's corner carries its bit level's tint
    want = (0.55 * 128 + 0.45 * np.array(COLOURS[rep.tile_bits[0]])).astype(np.uint8)
    assert np.abs(bm[2, 2].astype(int) - want).max() <= 1
    assert np.array_equal(bitmap(img, plan, rep.tile_bits)[:70], bm[:70])  # bits tint as their levels


def test_bitmap_tells_exit_levels_from_their_bit_level():
    """``a6k4`` and ``a6`` run the same bits: the map must still show which tile exited early."""
    from granular_mobile.runtime.bitmap import level_colour

    assert level_colour("a6") == level_colour(6) != level_colour("a6k4") != level_colour("a6k8") != level_colour("a6")
    assert level_colour("fp32") == level_colour(32) and level_colour("a6k12") not in (level_colour("a6k8"), level_colour("a6"))

    # the browser demo tints with the same rule
    if shutil.which("node") is None:
        pytest.skip("the browser demo's rule needs node (apt-get install nodejs)")
    names = ["a4", "a5", "a6", "a8", "a6k1", "a6k4", "a6k8", "a6k12", "fp32", "x"]
    code = ("import { levelColour } from './src/granular_mobile/web_page/src/colours.js';"
            f"console.log(JSON.stringify({json.dumps(names)}.map(levelColour)));")
    r = subprocess.run(["node", "--input-type=module", "-e", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [list(level_colour(n)) for n in names]


@pytest.mark.parametrize("backend", ["onnxruntime", "tflite"])
def test_tiles_on_several_workers_give_the_pixels_of_one_at_a_time(tiny_export, tiny_timed_export, backend):
    """``threads`` N runs N tiles at once, one thread each (a LiteRT interpreter per worker, one
    onnxruntime session shared): the same pixels and levels as one tile at a time, with the
    bit levels' controller and with the level gate's budget; thread counts may differ in one
    process (onnxruntime sessions have no process-wide pool any more)."""
    from test_routing import mixed_image

    img = mixed_image()
    for exp, kw in ((tiny_export[0], {}), (tiny_timed_export[0], {"budget": 0.8})):
        one = Upscaler(Upscaler.load(str(exp), backend=backend, threads=1).backend, overlap=8, **kw)
        two = Upscaler(Upscaler.load(str(exp), backend=backend, threads=2).backend, overlap=8, **kw)
        assert (one.workers, two.workers) == (1, 2)
        a, ra = one(img)
        b, rb = two(img)
        assert len(set(ra.tile_levels)) >= 2 and rb.tile_levels == ra.tile_levels and rb.workers == 2
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bits", [4, "auto"])
def test_workers_overlap_tiles_and_rows(tiny_export, monkeypatch, bits):
    """Two workers run two tiles at once, and the next row's tiles start before a row is
    stitched (an image of 2 rows x 3 tiles takes 3 tile-times on 2 workers, not 4); with the
    controller, the next row's levels are known by then."""
    import threading
    import time

    exp, _ = tiny_export
    up = Upscaler(Upscaler.load(str(exp), threads=2).backend, bits=bits, overlap=8)
    be, real = up.backend, up.backend.sr
    lock, active, most, spans = threading.Lock(), [0], [0], []

    def sr(tiles, level):
        t0 = time.perf_counter()
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.1)
        out = real(tiles, level)
        with lock:
            active[0] -= 1
            spans.append((t0, time.perf_counter()))
        return out

    monkeypatch.setattr(be, "sr", sr)
    t = be.tile
    img = (np.random.default_rng(0).random((t + 24, 2 * 24 + t, 3)) * 255).astype(np.uint8)  # 2 x 3 tiles
    done: list[int] = []
    _, rep = up(img, progress=lambda d, n: done.append(d))
    assert rep.tiles == 6 and done == [1, 2, 3, 4, 5, 6] and most[0] == 2
    spans.sort()  # the workers take the tiles in plan order: row 0's three, then row 1's
    assert spans[3][0] < spans[2][1], "row 1's first tile waited for row 0's last"


def test_warm_up_opens_every_graph_on_every_worker(tiny_timed_export, monkeypatch):
    """After ``warm_up`` an image opens no graph (LiteRT: an interpreter per graph and worker),
    so a level first picked midway through an image costs no interpreter there."""
    exp, _ = tiny_timed_export
    up = Upscaler(Upscaler.load(str(exp), backend="tflite", threads=2).backend, overlap=8, budget=0.8)
    be = up.backend
    made: list[str] = []
    real = be.litert.Interpreter

    def counting(*args, **kw):
        made.append(kw["model_path"])
        return real(*args, **kw)

    monkeypatch.setattr(be.litert, "Interpreter", counting)
    up.warm_up()
    assert len(made) == 2 * (len(be.levels) + 1)  # each worker: every level's graph and the controller
    n = len(made)
    from test_routing import mixed_image

    _, rep = up(mixed_image())
    assert len(set(rep.tile_levels)) >= 2 and len(made) == n
