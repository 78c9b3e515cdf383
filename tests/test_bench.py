"""gdq bench on a tiny export (numbers are not asserted: this machine is noisy; the table's
shape and the ratios' presence are)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest


@pytest.mark.slow
def test_bench_tiny(tiny_export, tmp_path):
    exp, ck = tiny_export
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "a.png"), (np.random.default_rng(0).random((64, 80, 3)) * 255).astype(np.uint8))
    j = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "-m", "granular_mobile.cli", "bench", "-m", str(exp), "--backends",
                        "onnxruntime,tflite", "--threads", "1", "--rounds", "2", "--images", str(imgs), "--torch-model", str(ck / "fp.pt"),
                        "--json", str(j)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(j.read_text())
    modes = {(x["backend"], x["mode"]) for x in res["rows"]}
    assert modes == {(b, m) for b in ("onnxruntime", "tflite") for m in ("fp32", "int8_static", "gdq_dynamic")} | {("torch", "fp32")}
    assert all(x["ms_per_tile"] > 0 and x["peak_rss_mb"] > 0 for x in res["rows"])
    # two interleaved rounds per configuration; the row keeps the faster
    assert all(len(x["ms_per_tile_rounds"]) == 2 and x["ms_per_tile"] == min(x["ms_per_tile_rounds"]) for x in res["rows"])
    assert "onnxruntime@1: dynamic / PyTorch fp32" in res["ratios"]
    assert set(res["ratios_round_median"]) == set(res["ratios"])
    assert "| backend | threads |" in r.stdout and "median of per-round ratios" in r.stdout


def test_round_median_ratio_pairs_rounds():
    from granular_mobile.bench import ratios

    def row(mode, rounds):
        return {"backend": "onnxruntime", "threads": 1, "mode": mode, "ms_per_tile": min(rounds), "ms_per_tile_rounds": rounds}

    # one noisy round (1: dynamic slowed alone) moves the fastest-round ratio (110 / 100), not the
    # median of the per-round ratios (1.2, 1.0, 1.0)
    rows = [row("int8_static", [100.0, 200.0, 110.0]), row("gdq_dynamic", [120.0, 200.0, 110.0])]
    assert ratios(rows)["onnxruntime@1: dynamic / static int8"] == 1.1
    assert ratios(rows, per_round=True)["onnxruntime@1: dynamic / static int8"] == 1.0


def test_bench_rejects_zero_rounds(tiny_export, gdq_here):
    exp, _ = tiny_export
    r = gdq_here("bench", "-m", exp, "--rounds", "0")
    assert r.returncode == 1 and "--rounds" in r.stderr and "Traceback" not in r.stderr


def test_bench_times_each_level(tiny_export, tmp_path):
    """--levels: one static mode per level of the export (every tile at that level), with each
    level's time per tile against the lowest one's."""
    exp, _ = tiny_export
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "a.png"), (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8))
    j = tmp_path / "b.json"
    r = subprocess.run([sys.executable, "-m", "granular_mobile.cli", "bench", "-m", str(exp), "--backends", "onnxruntime",
                        "--threads", "1", "--rounds", "1", "--images", str(imgs), "--torch-model", "", "--levels",
                        "--json", str(j)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(j.read_text())
    modes = {x["mode"] for x in res["rows"]}
    assert modes == {"fp32", "int8_static", "gdq_dynamic", "a4", "a5", "a6", "a8"}
    assert {k for k in res["ratios"] if " / a4" in k} == {f"onnxruntime@1: a{b} / a4" for b in (5, 6, 8)}
    assert all(v > 0 for k, v in res["ratios"].items() if " / a4" in k)
