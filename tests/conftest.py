from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
# the same roots the package defaults to (granular_mobile.defaults), anchored at the checkout
BENCH = Path(os.environ.get("GDQ_BENCH_ROOT") or SHARED / "benchmark")
TRAIN = Path(os.environ.get("GDQ_DATA_ROOT") or SHARED / "train")

needs_data = pytest.mark.skipif(not BENCH.is_dir(), reason="../shared/datasets is not next to this checkout")

# tests are small; keep them off the other core where a training run may live
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A folder of 6 natural training images, 192 x 192, the same in every clone: each a 2 x 2
    mosaic of the natural-image tiles the package ships (``assets/calib_tiles.npz``). Random
    noise is no training data: a loss on it need not fall."""
    import cv2

    from granular_mobile.data.calibration import CALIB_TILES

    tiles = np.load(CALIB_TILES)["tiles"]  # (N, 96, 96, 3) RGB uint8
    d = tmp_path_factory.mktemp("tiny_data")
    for i in range(6):
        t = tiles[4 * i:4 * i + 4]
        img = np.concatenate([np.concatenate(t[:2], 1), np.concatenate(t[2:], 1)], 0)
        cv2.imwrite(str(d / f"im{i}.png"), np.ascontiguousarray(img[:, :, ::-1]))
    return d


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory) -> Path:
    """A benchmark root with one set 'Tiny' (HR + LR_bicubic/X2|X4), made with our MATLAB bicubic."""
    import cv2

    from granular_mobile.data.imresize import imresize_uint8

    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        hr = cv2.GaussianBlur((rng.random((96, 128, 3)) * 255).astype(np.uint8), (5, 5), 2)
        (root / "Tiny" / "HR").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "Tiny" / "HR" / f"{name}.png"), hr)
        for s in (2, 4):
            d = root / "Tiny" / "LR_bicubic" / f"X{s}"
            d.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(d / f"{name}.png"), imresize_uint8(hr, 1 / s))
    return root


@pytest.fixture(scope="session")
def verify_root(tmp_path_factory) -> Path:
    """What `gdq export --verify` reads: Set5 and Set14 (HR + LR x2), the real ones where they are."""
    if (BENCH / "Set5").is_dir():
        return BENCH
    import cv2

    from granular_mobile.data.imresize import imresize_uint8

    root = tmp_path_factory.mktemp("vbench")
    rng = np.random.default_rng(3)
    for s in ("Set5", "Set14"):
        for i in range(2):
            hr = cv2.GaussianBlur((rng.random((160, 160, 3)) * 255).astype(np.uint8), (7, 7), 3)
            for sub, img in (("HR", hr), ("LR_bicubic/X2", imresize_uint8(hr, 0.5))):
                (root / s / sub).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / s / sub / f"{i}.png"), img)
    return root


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """(export folder, checkpoint) of a tiny trained-shape srresnet_gdq x2, tile 32, onnx + tflite."""
    import torch

    from granular_mobile.checkpoint import save_model
    from granular_mobile.export import export
    from granular_mobile.export.exporter import calibration_tiles
    from granular_mobile.models import create_model

    torch.manual_seed(0)
    m = create_model("srresnet_gdq", n_blocks=2, n_feats=16).eval()
    with torch.no_grad():
        m.encoder.gbc.gate[0].weight.normal_(0, 1.0)
        m(calibration_tiles(32)[:8], 0)
    fp = create_model("srresnet", n_blocks=2, n_feats=16).eval()
    d = tmp_path_factory.mktemp("tiny_export")
    save_model(m, d / "q.pt")
    save_model(fp, d / "fp.pt")
    export(m, ["onnx", "tflite"], d / "exp", tile=32, fp_model=fp)
    return d / "exp", d


@pytest.fixture(scope="session")
def tiny_timed_export(tmp_path_factory):
    """(export folder, model) of a tiny int8 srresnet_gdq x2 (2 blocks, tile 32) with an exit level
    ``a6k1`` (its own copy, its weights moved off the shared ones) and a level gate over
    ``a6k1, a6, a8`` with random weights, so that an image's tiles take several levels: onnx + tflite."""
    d = tmp_path_factory.mktemp("tiny_timed_export")
    return make_timed_export(d / "exp")


def make_timed_export(out, n_blocks=2, n_feats=16, tile=32, targets=("onnx", "tflite")):
    """``tiny_timed_export``'s model at another size, exported to ``out``: (out, model)."""
    import dataclasses

    import torch

    from granular_mobile.config import LevelGateConfig, ModelConfig
    from granular_mobile.data.calibration import calibration_tiles
    from granular_mobile.export import export
    from granular_mobile.models import build_from_config

    torch.manual_seed(0)
    cfg = ModelConfig(n_blocks=n_blocks, n_feats=n_feats, numerics="int8", exits=((6, 1),),
                      level_gate=LevelGateConfig(("a6k1", "a6", "a8"), (0.6, 1.0, 1.1), 0.8))
    m = build_from_config(dataclasses.replace(cfg, exits=(), level_gate=None)).eval()
    x = calibration_tiles(tile)[:8]
    with torch.no_grad(), m.observing_grids():
        m(x, 0)
    m.init_grids(x)
    me = build_from_config(cfg).eval()
    me.load_state_dict(m.state_dict(), strict=False)
    me.level_nets["6k1"].load_state_dict(me.shared_state())
    with torch.no_grad():
        for p in me.level_nets["6k1"].tail.parameters():
            p.mul_(1.05)
        me.level_gate.weight.normal_(0, 0.5)
        me.level_gate.bias.normal_(0, 0.5)
    export(me, list(targets), out, tile=tile)
    return out, me


@pytest.fixture
def gdq_here(monkeypatch, capsys):
    """``gdq`` in this process (``cli.main``, what the script runs: the same exit codes and
    output; a subprocess costs about 4 s of imports per call)."""
    from types import SimpleNamespace

    from granular_mobile import cli

    monkeypatch.delenv("GDQ_DEBUG", raising=False)

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["gdq", *map(str, args)])
        rc = 0
        try:
            cli.main()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out.out, stderr=out.err)

    return run
