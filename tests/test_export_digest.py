"""Refactorings keep exports byte-identical: the ONNX graphs of a small fixed model must hash to
the digests in ``tests/golden/export_digest.json``.

The model is built so that no float computation that depends on the CPU or the thread count
decides a byte: seeded weights, every quantizer step and int8 grid set to fixed values (no
calibration, no data-dependent initialisation), and the integer weights computed in float64.
A change that is meant to change the graphs updates the digests on purpose:

    python tests/test_export_digest.py --update
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import torch

GOLDEN = Path(__file__).resolve().parent / "golden" / "export_digest.json"


def fixed_model():
    from granular_mobile.models import build_from_config, create_model

    torch.manual_seed(0)
    m = create_model("srresnet_gdq", n_blocks=2, n_feats=16)
    m = build_from_config(dataclasses.replace(m.cfg, numerics="int8")).eval()
    with torch.no_grad():
        for i, mod in enumerate(m.modules()):
            if hasattr(mod, "wq"):
                mod.wq.alpha.fill_(2.0**-9)
                mod.aq.alpha.copy_(torch.tensor([0.25, 0.125, 0.0625, 0.015625]))
                mod.aq.signed.fill_(float(i % 2))
            if hasattr(mod, "initialized"):
                mod.initialized.fill_(1)
        for k, g in enumerate(m.grid_modules()):
            g.alpha.copy_(torch.tensor([2.0**-5, 2.0**-6, 2.0**-6, 2.0**-7]) * (1 + k % 3))
        m.encoder.gbc.gate[0].weight.normal_(0, 1.0)
    return m


def digests(out: Path) -> dict[str, str]:
    from granular_mobile.export import export

    export(fixed_model(), ["onnx"], out, tile=32)
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(out.glob("*.onnx"))}


def test_onnx_export_is_byte_identical(tmp_path):
    assert GOLDEN.is_file(), "run: python tests/test_export_digest.py --update"
    assert digests(tmp_path) == json.loads(GOLDEN.read_text())


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    import tempfile

    GOLDEN.write_text(json.dumps(digests(Path(tempfile.mkdtemp())), indent=2) + "\n")
    print(f"wrote {GOLDEN}")
