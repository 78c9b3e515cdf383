"""Model families come from one registry: a new one is one file plus its registration, and an
unregistered architecture fails with a one-line error."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from granular_mobile.checkpoint import save_model
from granular_mobile.data.calibration import calibration_tiles
from granular_mobile.errors import ConfigError
from granular_mobile.ir import deployed_programs, run_program
from granular_mobile.models import FAMILIES, build_from_config, create_model, list_models, register_family
from toy_family import ToyNet


@pytest.fixture(autouse=True)
def toynet():
    register_family("toynet", "ToyNet: one residual block, full precision", "ToyNet Granular-DQ: two quantized convs")(
        ToyNet)
    yield
    FAMILIES.pop("toynet")


def test_registry_is_the_list():
    from granular_mobile.models.family import BUILTIN

    assert {"srresnet", "edsr", "toynet"} <= set(FAMILIES)
    assert {"toynet", "toynet_gdq"} <= set(list_models())
    # the package's families: each described once (BUILTIN), registered by the module it names
    for name, info in BUILTIN.items():
        assert FAMILIES[name].cls.__module__ == info.module
        assert list_models()[name] == info.description and list_models()[name + "_gdq"] == info.gdq_description
    with pytest.raises(ValueError, match="needs a description"):
        register_family("nodesc")(ToyNet)


@pytest.mark.parametrize("numerics", ["float", "int8"])
def test_a_new_family_exports_and_runs(tmp_path, numerics):
    import dataclasses

    from granular_mobile.export import export
    from granular_mobile.runtime.backends.onnxruntime import OnnxRuntimeBackend

    torch.manual_seed(0)
    m = create_model("toynet_gdq", n_blocks=1, n_feats=8).eval()
    if numerics == "int8":
        q = build_from_config(dataclasses.replace(m.cfg, numerics="int8")).eval()
        q.load_state_dict(m.state_dict(), strict=False)
        m = q
    x = calibration_tiles(16)[:4]
    with torch.no_grad(), m.observing_grids():
        m(x, 0)
    m.init_grids(x)
    man = export(m, ["onnx"], tmp_path / "exp", tile=16)
    assert man.model.config["arch"] == "toynet"
    be = OnnxRuntimeBackend(tmp_path / "exp")
    progs = deployed_programs(m, calibration_tiles(16))  # what the export calibrates on
    for b in m.bits:
        got = be.sr(x.numpy(), b)
        ref = run_program(progs[b], x).numpy()
        assert np.array_equal(got, ref), b


def test_unregistered_architecture_fails_in_one_line(tmp_path, gdq_here):
    m = create_model("srresnet_gdq", n_blocks=1, n_feats=8)
    ck = tmp_path / "m.pt"
    save_model(m, ck)
    obj = torch.load(ck, weights_only=False)
    obj["model"]["arch"] = "vdsr"
    torch.save(obj, ck)
    with pytest.raises(ConfigError, match="'vdsr' is not a registered model family; registered: .*srresnet"):
        from granular_mobile.checkpoint import load_model

        load_model(str(ck))
    r = gdq_here("export", "-m", ck, "-o", tmp_path / "e")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "vdsr" in r.stderr and "registered" in r.stderr
    assert not (tmp_path / "e" / "manifest.json").exists()
