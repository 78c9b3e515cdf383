"""Import SRResNet checkpoints of the Granular-DQ reference implementation (docs/METHOD.md).

Reference inputs are RGB on 0..255, which ``rgb_range = 255`` reproduces exactly; its gate
had no GroupNorm (``gbc_groupnorm = False``). Its activation quantizers quant_act1..4 are
the 4, 6, 8 and 5-bit levels, in that order.
"""
from __future__ import annotations

import re
from typing import Any

import torch

from .config import E2BConfig, ModelConfig, QuantConfig
from .errors import CheckpointError
from .models import GDQNet, build_from_config

#: quant_actK -> activation bit-width
REF_ACT_BITS = {1: 4, 2: 6, 3: 8, 4: 5}
#: the reference code's percentile -> entropy table, the entries its default ratios use
REF_TABLE = {0.5: 2.8009, 0.9: 3.1828}
IGNORED = re.compile(r"^(sub_mean|add_mean)\.|\.channel_threshold$|\.act_q\.")


def _sd(obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError("not a state dict (expected a dict of tensors, or a dict with 'state_dict')")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def convert_reference(obj: Any, e2b_thresholds: tuple[float, float] | None = None) -> tuple[GDQNet, list[str]]:
    """Reference state dict (or checkpoint dict) -> (our model, notes for the user)."""
    ref = _sd(obj)
    notes: list[str] = []
    if "head.0.weight" not in ref or "encoder.gate.0.weight" not in ref:
        raise CheckpointError("not a Granular-DQ reference SRResNet checkpoint (no head.0.weight / encoder.gate.0.weight)")
    n_feats = int(ref["head.0.weight"].shape[0])
    n_blocks = len({int(m.group(1)) for k in ref if (m := re.match(r"body\.(\d+)\.conv1\.weight$", k))})
    scale = 4 if "tail.0.3.weight" in ref else 2
    q1, q2 = (float(ref[f"encoder.second_divide_bit.fine_grain_ratito{i}"].flatten()[0]) for i in (1, 2))
    q = (round(q1, 6), round(q2, 6))
    if e2b_thresholds is None:
        if not all(v in REF_TABLE for v in q):
            raise CheckpointError(
                f"E2B ratios {list(q)} are not in the reference table {sorted(REF_TABLE)}: import with "
                "``data`` FOLDER to calibrate the thresholds on your training images")
        e2b_thresholds = (REF_TABLE[q[0]], REF_TABLE[q[1]])
        notes.append(f"E2B thresholds from the reference table: {e2b_thresholds} (run `gdq calibrate` for your tile size)")
    cfg = ModelConfig(arch="srresnet", scale=scale, n_blocks=n_blocks, n_feats=n_feats, quantized=True, rgb_range=255.0,
                      gbc_groupnorm=False, quant=QuantConfig(),
                      e2b=E2BConfig(quantiles=q, thresholds=e2b_thresholds, calibrated=False))
    model = build_from_config(cfg)
    bits = cfg.quant.bits
    sd = model.state_dict()
    new: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for k, v in ref.items():
        if IGNORED.search(k):
            used.add(k)
            if k.endswith("channel_threshold") and float(v.abs().max()) > 0:
                notes.append(f"{k} is non-zero but the reference never uses it; ignored")
            continue
        m = re.match(r"(body\.\d+\.conv[12])\.(alpha|init_state|quant_act(\d)\.(alpha|init_state|signed))$", k)
        if m:
            conv = m.group(1)
            if m.group(2) == "alpha":
                new[f"{conv}.wq.alpha"] = v.reshape(1).float()
            elif m.group(2) == "init_state":
                new[f"{conv}.wq.initialized"] = torch.ones(1)
            else:
                level, field = int(m.group(3)), m.group(4)
                if field == "alpha":
                    a = new.setdefault(f"{conv}.aq.alpha", torch.zeros(len(bits)))
                    a[bits.index(REF_ACT_BITS[level])] = float(v.flatten()[0])
                elif field == "signed":
                    key = f"{conv}.aq.signed"
                    if key in new and float(new[key]) != float(v.flatten()[0]):
                        notes.append(f"{conv}: quant_act signedness differs between levels; using quant_act1's")
                    new.setdefault(key, v.reshape(1).float())
                else:
                    new[f"{conv}.aq.initialized"] = torch.ones(1)
            used.add(k)
            continue
        if k.startswith("encoder.gate."):
            new[k.replace("encoder.gate.", "encoder.gbc.gate.")] = v
            used.add(k)
            continue
        if k.startswith("encoder.second_divide_bit."):
            used.add(k)
            continue
        if k in sd:
            new[k] = v
            used.add(k)
    unused = sorted(set(ref) - used)
    missing = sorted(set(sd) - set(new))
    if unused or missing:
        raise CheckpointError(f"reference checkpoint does not map onto srresnet_gdq x{scale}: unused {unused[:5]}, missing {missing[:5]}")
    for k, v in new.items():
        if tuple(v.shape) != tuple(sd[k].shape):
            raise CheckpointError(f"{k}: shape {tuple(v.shape)} in the checkpoint, {tuple(sd[k].shape)} expected")
    for k, v in new.items():
        if k.endswith("aq.alpha") and (v <= 0).any():
            raise CheckpointError(f"{k}: non-positive activation step {v.tolist()}")
    model.load_state_dict(new)
    model.eval()
    notes.append("weights use the integer range [-127, 127] (the reference allowed -128; weights there are clipped)")
    return model, notes
