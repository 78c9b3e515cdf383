"""manifest.json as one typed schema: what the exporter writes is what the runtime reads,
older manifests still load, and a broken one fails in one line naming the field."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from granular_mobile.errors import ConfigError
from granular_mobile.runtime.backends import DEFAULT_EXPORT
from granular_mobile.runtime.manifest import (
    CONTROLLER_OUTPUTS,
    GRAPH_IO,
    SCHEMA_VERSION,
    E2BInfo,
    ExportFolder,
    FileEntry,
    Manifest,
    ModelInfo,
    TargetEntry,
)


def _manifest(**changes) -> Manifest:
    m = Manifest(
        model=ModelInfo("srresnet_gdq", "<in-memory>", {"arch": "srresnet", "scale": 2}), scale=2, tile=32,
        bits=(4, 5, 6, 8), fp_layers="int8",
        e2b=E2BInfo((2.8, 3.2), (0.5, 0.9), 32, (4, 6, 8), (4, 5, 8)), io=GRAPH_IO,
        targets={"onnx": TargetEntry("NCHW", "dynamic", "controller.onnx", {4: "sr_a4.onnx", 8: "sr_a8.onnx"},
                                     None, 1.5, {k: k for k in CONTROLLER_OUTPUTS},
                                     u8u8_convs={4: (), 8: ("b0_conv2",)})},
        versions={"granular_mobile": "0.1.0"}, files={"controller.onnx": FileEntry("ab" * 32, 10)})
    return m.replace(**changes)


def test_round_trip_is_exact():
    m = _manifest(parity={"onnx": {"tiles": 4}}, export_seconds=3.0)
    text = m.to_json()
    back = Manifest.from_json(text)
    assert back == m and back.to_json() == text
    d = json.loads(text)
    assert d["schema_version"] == SCHEMA_VERSION and d["targets"]["onnx"]["sr"] == {"4": "sr_a4.onnx", "8": "sr_a8.onnx"}
    assert d["targets"]["onnx"]["u8u8_convs"] == {"4": [], "8": ["b0_conv2"]}


def test_shipped_manifest_loads_and_writes_back_byte_identical():
    text = (DEFAULT_EXPORT / "manifest.json").read_text()
    m = Manifest.from_json(text)
    assert m.to_json() == text
    assert m.targets["tflite"].controller_outputs == {"logits": "Identity_2", "entropy": "Identity_1", "bits": "Identity",
                                                      "scores": "Identity_3"}


def test_manifest_without_controller_outputs_still_loads(tmp_path):
    """Exports written before the manifest named the controller's outputs: the names their
    writers gave (role names in ONNX, the converter's Identity, Identity_1, ... in TFLite)."""
    d = json.loads((DEFAULT_EXPORT / "manifest.json").read_text())
    for t in d["targets"].values():
        del t["controller_outputs"]
    m = Manifest.from_dict(d)
    assert m.targets["onnx"].controller_outputs == {"logits": "logits", "entropy": "entropy", "bits": "bits"}
    assert m.targets["tflite"].controller_outputs["bits"] == "Identity"


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.pop("tile"), "'tile' is missing"),
    (lambda d: d.update(scale="2"), "'scale' = '2' is not an integer"),
    (lambda d: d["targets"]["onnx"].pop("controller"), "'targets.onnx.controller' is missing"),
    (lambda d: d["e2b"].update(thresholds=[1.0]), "'e2b.thresholds' = [1.0] must have 2 entries"),
    (lambda d: d.update(schema_version=2), "schema_version 2 is not supported (expected 1)"),
    (lambda d: d["targets"]["onnx"].update(layout="NWHC"), "layout 'NWHC' is unknown; valid: ['NCHW', 'NHWC']"),
])
def test_a_broken_manifest_names_the_field(edit, needle):
    d = json.loads(_manifest().to_json())
    edit(d)
    with pytest.raises(ConfigError) as e:
        Manifest.from_dict(d, "exp/manifest.json")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_writer_and_reader_share_the_schema(tiny_export):
    """The exporter's manifest.json (tests/conftest.py's tiny export) reads back into the same
    Manifest, and names the controller outputs the backends then look up by name."""
    exp, _ = tiny_export
    text = (exp / "manifest.json").read_text()
    m = ExportFolder(exp).manifest
    assert m.to_json() == text
    for name, t in m.targets.items():
        assert set(t.controller_outputs) == set(CONTROLLER_OUTPUTS), name
        for f in t.files():
            assert f in m.files
    assert m.targets["onnx"].controller_outputs == {k: k for k in CONTROLLER_OUTPUTS}
    assert m.targets["tflite"].controller_outputs == {"logits": "Identity_2", "entropy": "Identity_1", "bits": "Identity"}


def test_tflite_backend_reads_controller_outputs_by_name(tiny_export, tmp_path):
    """The TFLite backend takes each output by the name the manifest gives (it agrees with
    onnxruntime), and a wrong name fails instead of being guessed around."""
    pytest.importorskip("ai_edge_litert")
    from granular_mobile.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from granular_mobile.runtime.backends.tflite import TFLiteBackend

    exp, _ = tiny_export
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    lo, eo, bo = OnnxRuntimeBackend(exp).controller(x)
    lt, et, bt = TFLiteBackend(exp).controller(x)
    np.testing.assert_array_equal(bo, bt)
    np.testing.assert_allclose(lo, lt, atol=1e-4)
    np.testing.assert_allclose(eo, et, atol=1e-4)
    bad = tmp_path / "exp"
    shutil.copytree(exp, bad)
    d = json.loads((bad / "manifest.json").read_text())
    d["targets"]["tflite"]["controller_outputs"]["bits"] = "Identity_7"
    (bad / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(KeyError):
        TFLiteBackend(Path(bad)).controller(x[:1])
