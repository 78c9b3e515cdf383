"""The Android demo's pure-Java core reproduces the Python runtime's golden vectors."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from granular_mobile.runtime import golden

CORE = ROOT / "android_demo" / "core"
GOLDEN = CORE / "src" / "test" / "resources" / "golden"


def test_golden_vectors_are_current(tmp_path):
    """The committed golden files equal what the Python runtime writes now."""
    golden.write(tmp_path)
    for name in ("tiling.json", "colours.json", "controller.json"):
        assert (GOLDEN / name).is_file(), f"missing {name}: run python -m granular_mobile.runtime.golden {GOLDEN}"
    # tiling is numpy float32 arithmetic: identical everywhere
    for name in ("tiling.json", "colours.json"):
        assert json.loads((tmp_path / name).read_text()) == json.loads((GOLDEN / name).read_text()), name
    # the controller vectors come from onnxruntime, whose float kernels may round differently
    # on another CPU: values within tolerance, decisions exact
    new, old = (json.loads((d / "controller.json").read_text()) for d in (tmp_path, GOLDEN))
    assert new["bits"] == old["bits"] and new["thresholds"] == old["thresholds"]
    np.testing.assert_allclose(new["logits"], old["logits"], atol=1e-4)
    np.testing.assert_allclose(new["entropy"], old["entropy"], atol=1e-5)
    assert new.get("levels") == old.get("levels")  # the level gate's allocation, if the export has one
    if "scores" in new:
        np.testing.assert_allclose(new["scores"], old["scores"], atol=1e-4)


@pytest.mark.skipif(shutil.which("javac") is None or not Path("/usr/share/java/junit4.jar").is_file(),
                    reason="needs a JDK and JUnit 4 (apt-get install openjdk-17-jdk-headless junit4)")
def test_java_core_unit_tests():
    r = subprocess.run(["bash", str(CORE / "run_tests.sh")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "OK (10 tests)" in r.stdout
