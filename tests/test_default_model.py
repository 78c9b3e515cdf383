"""The shipped default model: loads, runs out of the box, and matches its model card."""
import json
import os
import subprocess
import sys

import pytest

from conftest import BENCH, ROOT, needs_data
from granular_mobile.checkpoint import DEFAULT_FILES, load_model

ASSETS = ROOT / "src" / "granular_mobile" / "assets"


def test_files_and_configs():
    q, fp = load_model("default"), load_model("default", fp=True)
    assert q.cfg.name == "srresnet_gdq" and fp.cfg.name == "srresnet" and q.cfg.scale == fp.cfg.scale == 2
    assert q.cfg.e2b.calibrated and q.cfg.e2b.tile == 96
    for p in DEFAULT_FILES.values():
        # "a weights file of a few MB": the Granular-DQ file holds the shared network, the 8-bit
        # level's own and the exit levels' up to their exits (packing leaves out the rest)
        assert p.stat().st_size < 10e6
    assert q.cfg.level_gate is not None and set(q.cfg.level_names) >= {"a6k2", "a6k4", "a6k8"}
    man = json.loads((ASSETS / "export" / "manifest.json").read_text())
    assert man["e2b"]["thresholds"] == list(q.cfg.e2b.thresholds)
    # the controller's choices travel in the manifest (the runtimes map the gate's choice by them)
    assert man["e2b"]["gbc_bits"] == list(q.cfg.quant.gbc_bits) and man["e2b"]["e2b_bits"] == list(q.cfg.quant.e2b_bits)
    assert man["level_gate"]["choices"] == list(q.cfg.level_gate.choices)
    assert man["level_gate"]["budget"] == q.cfg.level_gate.budget
    assert (ASSETS / "MODEL_CARD.md").is_file()


def test_quick_start_run_without_torch(tmp_path):
    """README quick start command 1 (after install): default backend onnxruntime, no torch."""
    argv = [str(ASSETS / "sample.png"), str(tmp_path / "o.png"), str(tmp_path / "s.json")]
    code = (f"import sys, runpy; sys.argv = ['gdq', 'run', {argv[0]!r}, '-o', {argv[1]!r}, '--stats', {argv[2]!r}];\n"
            "try:\n    runpy.run_module('granular_mobile.cli', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["backend"] == "onnxruntime" and s["tiles"] == 6 and 4 <= s["fab"] <= 8
    # the sample's tiles take several levels within the default budget (the first run shows the choice)
    assert len(s["tiles_per_level"]) >= 2 and s["cost"] <= s["budget"] + 1e-9, s


@pytest.mark.slow
@needs_data
def test_set5_matches_model_card():
    from granular_mobile.eval import benchmark_pairs, evaluate_dataset

    # what `gdq eval` reports by default: the deployed integer numerics
    r = evaluate_dataset(load_model("default"), benchmark_pairs(BENCH, "Set5", 2), "Set5", 2, numerics="int8")
    card = json.loads((ROOT / "docs" / "eval_default.json").read_text())
    assert card["numerics"] == "int8"
    want = next(x for x in card["results"] if x["dataset"] == "Set5" and x["model"] == "srresnet_gdq int8")
    assert r.psnr == pytest.approx(want["psnr"], abs=0.01) and r.fab == pytest.approx(want["fab"], abs=1e-3)


@pytest.mark.slow
def test_forward_is_the_shipped_graphs_integer_program():
    """The shipped model's PyTorch forward is its exported integer program, bit for bit, at every
    level, on bundled calibration tiles (real image content: sums as large as deployment's)."""
    import torch

    from granular_mobile.data.calibration import calibration_tiles
    from granular_mobile.ir import deployed_level_programs, deployed_programs, run_program

    m = load_model("default")
    x = calibration_tiles(m.cfg.e2b.tile)[[0, 9, 18]]
    progs = deployed_programs(m, None)
    with torch.no_grad():
        for lv, b in enumerate(m.bits):
            assert torch.equal(m(x, lv), run_program(progs[b], x)), b
        for name, p in deployed_level_programs(m, None).items():  # the exit levels too
            assert torch.equal(m(x, m.cfg.level_by_name(name)), run_program(p, x)), name


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "tflite"])
def test_cli_run_on_the_sample_computes_the_models_pixels(tmp_path, backend):
    """`gdq run` through the CLI on a real image: its PNG is the library's output for that
    backend, and the model's own (PyTorch, deployed numerics, same tiling and budget): bit for
    bit on onnxruntime, >= 45 dB on LiteRT; each tile at the level the model gives it."""
    import cv2
    import numpy as np

    from granular_mobile.imageio import read_image
    from granular_mobile.runtime import Upscaler
    from granular_mobile.runtime.backends.torch import TorchBackend

    out, stats = tmp_path / "o.png", tmp_path / "s.json"
    r = subprocess.run([sys.executable, "-m", "granular_mobile.cli", "run", str(ASSETS / "sample.png"), "-o", str(out),
                        "--backend", backend, "--stats", str(stats), "--threads", "1"],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    got = cv2.cvtColor(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    img = read_image(ASSETS / "sample.png")

    # the CLI ran one tile at a time; here every core runs one (the pixels must not move)
    up = Upscaler.load("default", backend=backend, threads=0)
    lib, rep = up(img)
    np.testing.assert_array_equal(got, lib)
    m = load_model("default")
    ref, ref_rep = Upscaler(TorchBackend.from_models(m, tile=up.backend.tile, numerics="int8"), overlap=up.overlap)(img)
    s = json.loads(stats.read_text())
    assert s["tiles_per_level"] == rep.tiles_per_level == ref_rep.tiles_per_level
    assert rep.tile_levels == ref_rep.tile_levels and len(set(rep.tile_levels)) >= 2
    if backend == "onnxruntime":
        np.testing.assert_array_equal(got, ref)
    else:
        mse = np.mean((got.astype(np.float64) - ref) ** 2)
        assert mse == 0 or 10 * np.log10(255**2 / mse) >= 45.0
