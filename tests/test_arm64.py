"""The ARM64 check (``gdq verify --arch arm64``): the shipped graphs on the aarch64 builds of
onnxruntime and LiteRT under QEMU user-mode emulation. CI sets up the arm64 root
(``verify/arm64_setup.sh``, called by ``.ci/run``); elsewhere the emulated test skips and
says why. The CI subset: the controller and sr_a4 per runtime on 2 tiles (about a minute);
all graphs: ``gdq verify --arch arm64 -o <export> --graphs all --tiles 6``."""
import json
import shutil

import numpy as np
import pytest

from conftest import ROOT
from granular_mobile.errors import ConfigError
from granular_mobile.verify.arm64 import (
    SUBSET_GRAPHS,
    arm64_ok,
    arm64_unavailable,
    compare,
    run_worker,
    select_graphs,
    tile_subset,
)

SHIPPED = ROOT / "src" / "granular_mobile" / "assets" / "export"
_why = arm64_unavailable()
needs_arm64 = pytest.mark.skipif(_why is not None, reason=f"ARM64 check not set up: {_why}")


def test_graph_selection_and_tiles():
    man = json.loads((SHIPPED / "manifest.json").read_text())
    sub = select_graphs(man, ["onnx", "tflite"], "subset")
    assert [g["graph"] for g in sub] == list(SUBSET_GRAPHS) * 2
    assert {g["file"] for g in sub} == {"controller.onnx", "sr_a4.onnx", "controller.tflite", "sr_a4.tflite"}
    every = select_graphs(man, ["tflite"], "all")
    assert [g["graph"] for g in every] == ["controller", "4", "5", "6", "8", "a6k2", "a6k4", "a6k8", "fp32"]
    with pytest.raises(ConfigError, match="graph '7'"):
        select_graphs(man, ["onnx"], "controller,7")
    x, idx = tile_subset(man["tile"], 6)
    assert x.shape == (6, 3, 96, 96) and x.dtype == np.float32 and idx[0] == 0 and idx[-1] == 23
    with pytest.raises(ConfigError, match="``tiles``"):
        tile_subset(96, 0)


def test_exit_levels_and_the_gates_scores_reach_the_worker(tiny_timed_export):
    """A gated export: "all" takes the exit graphs by name, and the worker returns the
    controller's level-gate scores as the runtime reads them."""
    from granular_mobile.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from granular_mobile.runtime.backends.tflite import TFLiteBackend

    exp, _ = tiny_timed_export
    man = json.loads((exp / "manifest.json").read_text())
    every = select_graphs(man, ["onnx", "tflite"], "all")
    assert [g["graph"] for g in every] == ["controller", "4", "5", "6", "8", "a6k1"] * 2
    x = np.random.default_rng(0).random((3, 3, man["tile"], man["tile"]), dtype=np.float32)
    out, _ = run_worker(exp, every, x, "host")
    for t, be in (("onnx", OnnxRuntimeBackend(exp, 1)), ("tflite", TFLiteBackend(exp, 1))):
        assert np.array_equal(out[f"{t}_controller_scores"], be.scores(x)), t
        assert np.array_equal(out[f"{t}_a6k1"], be.sr(x, "a6k1")), t


def test_compare_counts_8bit_steps():
    a = np.full((1, 3, 4, 4), 100 / 255, np.float32)
    b = a.copy()
    b[0, 0, 0, 0] += 3 / 255
    r = compare(a, b)
    assert r["identical"] == pytest.approx(47 / 48, abs=1e-4) and r["max_abs_255"] == 3
    assert compare(a, a)["psnr_db"] == 999.0


def test_host_worker_is_the_host_runtime(tmp_path):
    """The worker (the script the ARM side runs) on the host gives what the runtime backends give."""
    from granular_mobile.runtime.backends.tflite import TFLiteBackend

    man = json.loads((SHIPPED / "manifest.json").read_text())
    x, _ = tile_subset(man["tile"], 1)
    gl = select_graphs(man, ["tflite"], "controller,4")
    out, info = run_worker(SHIPPED, gl, x, "host")
    be = TFLiteBackend(SHIPPED, 1)
    assert np.array_equal(out["tflite_4"], be.sr(x, 4))
    assert np.array_equal(out["tflite_controller"], be.controller(x)[2])
    assert info["tiles"] == 1 and info["ai_edge_litert"]


@pytest.mark.slow
@needs_arm64
def test_arm64_subset_on_shipped_export(tmp_path):
    """CI subset: the controller picks the same level on ARM64 as on x86 and sr_a4 is >= 45 dB
    to the integer reference on both runtimes; the figures land in the manifest beside x86's."""
    from granular_mobile.verify.arm64 import arm64_parity

    exp = tmp_path / "export"
    shutil.copytree(SHIPPED, exp)
    before = json.loads((exp / "manifest.json").read_text())
    res = arm64_parity(exp, graphs="subset", tiles=2)
    assert set(res) == {"onnx", "tflite"}
    for t, e in res.items():
        assert e["controller_agreement_x86"] == 1.0, t
        if before.get("level_gate"):  # the level each tile gets at the gate's budget, as on x86
            assert e["gate_agreement_x86"] == 1.0 and e["gate_agreement"] == 1.0, (t, e)
        assert "asimddp" in e["arm_features"]  # the emulated CPU has the dot product kernels' ISA
        v = e["sr"]["4"]
        assert v["psnr_db"] >= 45.0, (t, v)
        assert v["vs_x86"]["psnr_db"] >= 45.0, (t, v)
    assert arm64_ok(res)
    after = json.loads((exp / "manifest.json").read_text())
    for t in ("onnx", "tflite"):  # additive: the x86 figures are untouched
        assert after["parity"][t]["arm64"]["sr"]["4"]["psnr_db"] == res[t]["sr"]["4"]["psnr_db"]
        x86 = {k: v for k, v in before["parity"][t].items() if k != "arm64"}
        assert {k: v for k, v in after["parity"][t].items() if k != "arm64"} == x86


def test_unavailable_root_and_old_qemu_are_refused(tmp_path):
    fake = tmp_path / "root"
    assert "no arm64 root" in arm64_unavailable(fake)
    (fake / "usr" / "bin").mkdir(parents=True)
    (fake / "usr" / "bin" / "qemu-aarch64-static").write_bytes(b"")
    (fake / ".gdq-arm64-ready").write_text('{"pins": "", "qemu": "7.2.22"}')
    assert arm64_unavailable(fake) is None
    man = json.loads((SHIPPED / "manifest.json").read_text())
    x, _ = tile_subset(man["tile"], 1)
    with pytest.raises(ConfigError, match="needs QEMU >= 8"):  # 7.2 miscomputes XNNPack's SVE kernels
        run_worker(SHIPPED, select_graphs(man, ["tflite"], "4"), x, "arm64", cpu="max", root=fake)
    with pytest.raises(ConfigError, match="unknown ``cpu``"):
        run_worker(SHIPPED, select_graphs(man, ["tflite"], "4"), x, "arm64", cpu="cortex-x9", root=fake)


def test_bad_model_fails_before_the_emulated_run(tmp_path, monkeypatch):
    """-m / --fp load before the emulation starts (minutes per graph): a typo fails at once."""
    import granular_mobile.verify.arm64 as arm64
    from granular_mobile.errors import GdqError

    monkeypatch.setattr(arm64, "arm64_unavailable", lambda root=None: None)

    def no_run(*a, **k):
        raise AssertionError("the emulated run started before the models were loaded")

    monkeypatch.setattr(arm64, "run_worker", no_run)
    with pytest.raises(GdqError, match="nowhere.pt"):
        arm64.arm64_parity(SHIPPED, ["onnx"], "4", 1, model=str(tmp_path / "nowhere.pt"), write=False)
    with pytest.raises(GdqError, match="twin.pt"):
        arm64.arm64_parity(SHIPPED, ["onnx"], "4", 1, fp=str(tmp_path / "twin.pt"), write=False)
    from granular_mobile.checkpoint import resolve_model_path

    # a checkpoint given by path has no twin found for it: the fp32 graph needs --fp, said first
    with pytest.raises(ConfigError, match="give ``fp``"):
        arm64.arm64_parity(SHIPPED, ["onnx"], "fp32", 1, model=str(resolve_model_path("default")), write=False)


def test_setup_ships_with_the_package_and_builds_with_the_installed_runtimes(tmp_path, monkeypatch):
    """The setup script is package data beside the module (an installed package has it); out of
    a checkout it needs the runtimes' versions, which ``setup_root`` takes from the install."""
    import os
    import subprocess
    from importlib import metadata
    from pathlib import Path

    import granular_mobile.verify.arm64 as arm64

    pytest.importorskip("ai_edge_litert", reason="LiteRT is the [tflite] extra")
    assert arm64.SETUP_SCRIPT.is_file() and arm64.SETUP_SCRIPT.parent == Path(arm64.__file__).resolve().parent
    # as installed: no pyproject.toml three folders up, no versions given -> stops before any work
    lone = tmp_path / "site" / "granular_mobile" / "verify" / "arm64_setup.sh"
    lone.parent.mkdir(parents=True)
    shutil.copy(arm64.SETUP_SCRIPT, lone)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GDQ_ARM64_")}
    r = subprocess.run(["bash", str(lone)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "GDQ_ARM64_ORT" in r.stderr, (r.returncode, r.stderr)
    # setup_root runs the script with the installed versions
    got = tmp_path / "got"
    fake = tmp_path / "fake_setup.sh"
    fake.write_text(f'echo "$GDQ_ARM64_ORT $GDQ_ARM64_LITERT" > "{got}"\n')
    monkeypatch.setattr(arm64, "SETUP_SCRIPT", fake)
    for var in ("GDQ_ARM64_ORT", "GDQ_ARM64_LITERT"):
        monkeypatch.delenv(var, raising=False)
    arm64.setup_root()
    assert got.read_text().split() == [metadata.version("onnxruntime"), metadata.version("ai-edge-litert")]
    fake.write_text("exit 3\n")
    with pytest.raises(ConfigError, match="exit 3"):
        arm64.setup_root()


def test_gdq_verify_setup_alone_needs_no_torch(tmp_path, monkeypatch, gdq_here):
    """`gdq verify --arch arm64 --setup` runs the setup script and stops, without the [export]
    extra (the runtimes suffice); without -o and --setup it says what it needs."""
    import granular_mobile.cli.export as cli_export
    import granular_mobile.verify.arm64 as arm64

    pytest.importorskip("ai_edge_litert", reason="LiteRT is the [tflite] extra")
    ran = tmp_path / "ran"
    fake = tmp_path / "fake_setup.sh"
    fake.write_text(f'touch "{ran}"\n')
    monkeypatch.setattr(arm64, "SETUP_SCRIPT", fake)

    def no_torch(extra):
        raise AssertionError(f"--setup asked for the [{extra}] extra")

    monkeypatch.setattr(cli_export, "_need", no_torch)
    r = gdq_here("verify", "--arch", "arm64", "--setup")
    assert r.returncode == 0 and ran.is_file(), r.stderr
    r = gdq_here("verify", "--arch", "arm64")
    assert r.returncode == 1 and "needs -o EXPORT" in r.stderr
