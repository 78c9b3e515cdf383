"""Export targets and their options: one table (runtime/targets.py + export/exporter.py), and an
option no chosen target takes is refused in one line instead of being ignored."""
from __future__ import annotations

import pytest

from granular_mobile.errors import ConfigError
from granular_mobile.export.exporter import OPTIONS, TARGETS, check_targets
from granular_mobile.runtime.backends import BACKENDS
from granular_mobile.runtime.targets import TARGET_OF_BACKEND, TARGET_SPECS, backend_target


def test_every_target_has_a_writer_and_a_backend():
    assert set(TARGETS) == set(TARGET_SPECS)
    for name, t in TARGETS.items():
        assert t.spec.name == name and t.spec.backend in BACKENDS and TARGET_OF_BACKEND[t.spec.backend] == name
        assert set(t.options) <= set(OPTIONS)
    assert backend_target("torch") is None and backend_target("onnxruntime").name == "onnx"


def test_single_file_without_tflite_is_refused():
    with pytest.raises(ConfigError) as e:
        check_targets(["onnx"], {"single_file": True})
    msg = str(e.value)
    assert "``single_file`` is an option of the tflite target" in msg and "\n" not in msg


def test_options_go_with_the_targets_that_take_them():
    assert check_targets(["onnx", "tflite"], {"single_file": True}) == ["onnx", "tflite"]
    assert check_targets(["onnx"], {"single_file": False}) == ["onnx"]  # not given
    with pytest.raises(ConfigError, match="unknown export target 'coreml'; valid: \\['onnx', 'tflite'\\]"):
        check_targets(["coreml"])
    with pytest.raises(ConfigError, match="export option 'fast' is unknown"):
        check_targets(["onnx"], {"fast": True})


def test_export_refuses_single_file_before_any_work(tmp_path):
    from granular_mobile.export import export

    with pytest.raises(ConfigError, match="``single_file``"):
        export("does-not-exist.pt", ["onnx"], tmp_path / "e", single_file=True)
    assert not (tmp_path / "e").exists()


def test_cli_refuses_single_file_with_onnx(tmp_path, gdq_here):
    r = gdq_here("export", "-o", tmp_path / "e", "--target", "onnx", "--single-file")
    assert r.returncode == 1 and "--single-file is an option of the tflite target" in r.stdout + r.stderr
    assert not (tmp_path / "e").exists()


def test_verify_without_benchmark_data_fails_before_any_file(tmp_path):
    """--verify needs Set5 / Set14: without them, one line naming --verify-data, and nothing written
    (it used to write every graph and the manifest, then fail naming --root)."""
    from typer.testing import CliRunner

    from granular_mobile.cli import app
    from granular_mobile.cli.app import as_flags
    from granular_mobile.errors import DataError
    from granular_mobile.export import export
    from granular_mobile.models import create_model

    m = create_model("srresnet_gdq", n_blocks=1, n_feats=8).eval()
    with pytest.raises(DataError, match="``verify`` needs Set5 and Set14 under .*``verify_root``"):
        export(m, ["onnx"], tmp_path / "out", tile=16, verify=True, verify_root=tmp_path / "nothing")
    assert not (tmp_path / "out").exists()
    r = CliRunner().invoke(app, ["export", "-o", str(tmp_path / "cli"), "--target", "onnx", "--verify",
                                 "--verify-data", str(tmp_path / "nothing")])
    assert r.exit_code != 0 and not (tmp_path / "cli").exists()
    assert "point --verify-data or GDQ_BENCH_ROOT" in as_flags(str(r.exception))  # as gdq prints it


def test_exporting_one_target_keeps_the_other(tmp_path):
    """`gdq export --target onnx` into a folder holding a tflite export of the same model adds
    onnx and keeps tflite (the re-export hints name one target); another model, or a graph
    changed on disk since, replaces it."""
    import torch

    from granular_mobile.export import export
    from granular_mobile.models import create_model
    from granular_mobile.runtime.backends import create_backend
    from granular_mobile.runtime.manifest import ExportFolder

    torch.manual_seed(0)
    m = create_model("srresnet_gdq", n_blocks=1, n_feats=8).eval()
    out = tmp_path / "exp"
    export(m, ["tflite"], out, tile=16)
    man = export(m, ["onnx"], out, tile=16)
    assert set(man.targets) == {"onnx", "tflite"}
    assert set(ExportFolder(out).manifest.targets) == {"onnx", "tflite"}
    for be in ("onnxruntime", "tflite"):
        assert create_backend(be, str(out)).bits == (4, 5, 6, 8)
    # a graph of the kept target changed on disk: not kept
    (out / "sr_a4.tflite").write_bytes((out / "sr_a4.tflite").read_bytes() + b"x")
    assert set(export(m, ["onnx"], out, tile=16).targets) == {"onnx"}
    # another model: replaced, not merged
    export(m, ["tflite"], out, tile=16)
    torch.manual_seed(1)
    other = create_model("srresnet_gdq", n_blocks=2, n_feats=8).eval()
    assert set(export(other, ["onnx"], out, tile=16).targets) == {"onnx"}


@pytest.mark.slow
def test_tflite_export_is_quiet(tiny_export, tmp_path):
    """gdq export --target tflite prints what it wrote, not TensorFlow's internals (~50 C++ INFO /
    WARNING lines, absl deprecations, converter statistics warnings per export before)."""
    import os
    import subprocess
    import sys

    _, ck = tiny_export
    r = subprocess.run([sys.executable, "-m", "granular_mobile.cli", "export", "-m", str(ck / "q.pt"), "-o",
                        str(tmp_path / "exp"), "--target", "tflite", "--tile", "16"], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    noise = [ln for ln in r.stderr.splitlines() if ln.startswith(("I0000", "W0000", "WARNING:absl")) or "UserWarning" in ln]
    assert noise == [], noise[:5]
    assert "tflite: wrote" in r.stderr
