"""Import of the reference implementation's SRResNet checkpoint (names from docs/METHOD.md)."""

import pytest
import torch
import torch.nn.functional as F

from granular_mobile.errors import CheckpointError
from granular_mobile.reference import convert_reference

ACT_BITS = {1: 4, 2: 6, 3: 8, 4: 5}
ACT_STEP = {1: 24.0, 2: 6.0, 3: 1.5, 4: 12.0}  # steps for inputs on 0..255


def reference_state_dict(scale: int = 2, n: int = 64, blocks: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, k=1.0: torch.randn(*s, generator=g) * k  # noqa: E731
    sd = {
        "sub_mean.weight": torch.eye(3).view(3, 3, 1, 1), "sub_mean.bias": torch.zeros(3),
        "add_mean.weight": torch.eye(3).view(3, 3, 1, 1), "add_mean.bias": torch.zeros(3),
        "encoder.gate.0.weight": r(3, 3 * n, k=0.01), "encoder.gate.0.bias": r(3, k=0.1),
        "encoder.second_divide_bit.fine_grain_ratito1": torch.tensor([[0.5]]),
        "encoder.second_divide_bit.fine_grain_ratito2": torch.tensor([[0.9]]),
        "head.0.weight": r(n, 3, 9, 9, k=0.02), "head.1.weight": torch.tensor([0.2]),
    }
    for b in range(blocks):
        p = f"body.{b}."
        for c in ("conv1", "conv2"):
            w = r(n, n, 3, 3, k=0.03)
            sd[p + c + ".weight"] = w
            sd[p + c + ".alpha"] = (w.abs().max() / 127 * 0.9).view(1)
            sd[p + c + ".init_state"] = torch.ones(1)
            sd[p + c + ".channel_threshold"] = torch.zeros(1, n, 1, 1)
            for k in (1, 2, 3, 4):
                sd[p + c + f".quant_act{k}.alpha"] = torch.tensor([ACT_STEP[k]])
                sd[p + c + f".quant_act{k}.init_state"] = torch.ones(1)
                sd[p + c + f".quant_act{k}.signed"] = torch.ones(1)
        for bn in ("bn1", "bn2"):
            sd[p + bn + ".weight"] = 1 + r(n, k=0.1)
            sd[p + bn + ".bias"] = r(n, k=0.1)
            sd[p + bn + ".running_mean"] = r(n, k=0.5)
            sd[p + bn + ".running_var"] = 1 + r(n, k=0.1).abs()
            sd[p + bn + ".num_batches_tracked"] = torch.tensor(100)
        sd[p + "act.weight"] = torch.tensor([0.25])
        for f in ("alpha", "init_state", "signed"):
            sd[p + "act_q." + f] = torch.ones(1)
        sd[p + "learnable_shortcut"] = torch.tensor([0.9])
    sd[f"body.{blocks}.weight"] = r(n, n, 3, 3, k=0.03)
    for f, v in (("weight", 1 + r(n, k=0.1)), ("bias", r(n, k=0.1)), ("running_mean", r(n, k=0.1)),
                 ("running_var", 1 + r(n, k=0.1).abs()), ("num_batches_tracked", torch.tensor(100))):
        sd[f"body.{blocks + 1}.{f}"] = v
    ups = [(0, 2)] if scale == 2 else [(0, 2), (3, 5)]
    for c, a in ups:
        sd[f"tail.0.{c}.weight"] = r(4 * n, n, 3, 3, k=0.03)
        sd[f"tail.0.{a}.weight"] = torch.tensor([0.2])
    sd["tail.1.weight"] = r(3, n, 9, 9, k=0.01)
    return sd


def reference_forward(sd: dict, x255: torch.Tensor, level: int, blocks: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent functional forward of the reference SRResNet at quant_act<level> (inputs 0..255)."""
    def q_act(x, k):
        a = sd[k + ".alpha"]
        bits = ACT_BITS[int(k[-1])]
        return torch.round(torch.clamp(x / a, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)) * a

    def q_w(p):
        a = sd[p + ".alpha"]
        return torch.round(torch.clamp(sd[p + ".weight"] / a, -127, 127)) * a

    def bn(x, p):
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False)

    z1 = F.conv2d(x255, sd["head.0.weight"], padding=4)
    feats = torch.cat([z1.mean((2, 3)), F.avg_pool2d(z1, 2).mean((2, 3)), F.avg_pool2d(F.avg_pool2d(z1, 2), 2).mean((2, 3))], 1)
    logits = F.linear(feats, sd["encoder.gate.0.weight"], sd["encoder.gate.0.bias"])
    h = F.prelu(z1, sd["head.1.weight"])
    x = h
    for b in range(blocks):
        p = f"body.{b}."
        r = F.conv2d(q_act(x, p + f"conv1.quant_act{level}"), q_w(p + "conv1"), padding=1)
        r = bn(F.prelu(r, sd[p + "act.weight"]), p + "bn1")
        r = bn(F.conv2d(q_act(r, p + f"conv2.quant_act{level}"), q_w(p + "conv2"), padding=1), p + "bn2")
        x = x * sd[p + "learnable_shortcut"] + r
    x = bn(F.conv2d(x, sd[f"body.{blocks}.weight"], padding=1), f"body.{blocks + 1}") + h
    c = 0
    while f"tail.0.{c}.weight" in sd:
        x = F.prelu(F.pixel_shuffle(F.conv2d(x, sd[f"tail.0.{c}.weight"], padding=1), 2), sd[f"tail.0.{c + 2}.weight"])
        c += 3
    return F.conv2d(x, sd["tail.1.weight"], padding=4), logits


def test_state_dict_has_771_entries():
    assert len(reference_state_dict()) == 771


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_import_matches_reference_forward(level):
    sd = reference_state_dict(blocks=16)
    model, notes = convert_reference({"state_dict": sd})
    assert model.cfg.rgb_range == 255 and model.cfg.scale == 2 and model.cfg.n_blocks == 16
    assert model.cfg.e2b.thresholds == (2.8009, 3.1828)
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, ref_logits = reference_forward(sd, x * 255, level)
        ours = model(x, model.cfg.quant.index(ACT_BITS[level])) * 255
        logits = model.controller(x).logits
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-3 * ref.abs().max())
    assert torch.allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)


def test_import_x4_and_cli(tmp_path, gdq_here):
    sd = reference_state_dict(scale=4, n=16, blocks=2)
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ref.pt")
    out = tmp_path / "ours.pt"
    res = gdq_here("import-reference", tmp_path / "ref.pt", "-o", out)
    assert res.returncode == 0, res.stderr
    from granular_mobile.checkpoint import load_model

    m = load_model(str(out))
    assert m.cfg.scale == 4 and m.cfg.n_feats == 16 and m.cfg.n_blocks == 2
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        ref, _ = reference_forward(sd, x * 255, 3, blocks=2)
        assert torch.allclose(m(x, m.cfg.quant.index(8)) * 255, ref, rtol=1e-4, atol=1e-3 * ref.abs().max())


def test_bad_reference_checkpoints():
    with pytest.raises(CheckpointError, match="not a Granular-DQ reference"):
        convert_reference({"foo": torch.zeros(1)})
    sd = reference_state_dict(n=8, blocks=1)
    sd["encoder.second_divide_bit.fine_grain_ratito1"] = torch.tensor([0.3])
    with pytest.raises(CheckpointError, match="``data``"):
        convert_reference(sd)
    sd = reference_state_dict(n=8, blocks=1)
    del sd["body.0.bn1.weight"]
    with pytest.raises(CheckpointError, match="missing"):
        convert_reference(sd)
