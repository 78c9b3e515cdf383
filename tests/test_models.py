import pytest
import torch

from granular_mobile.checkpoint import init_from_fp, load_model, save_model
from granular_mobile.errors import ModelNotFoundError
from granular_mobile.models import build_from_config, create_model, list_models, twin_config


@pytest.mark.parametrize("name", sorted(list_models()))
@pytest.mark.parametrize("scale", [2, 4])
def test_shapes(name, scale):
    m = create_model(name, scale=scale, n_blocks=2, n_feats=8).eval()
    with torch.no_grad():
        y = m(torch.rand(2, 3, 20, 28))
    assert y.shape == (2, 3, 20 * scale, 28 * scale)
    if m.cfg.quantized:
        assert m.n_quant_convs() == 4  # 2 convs per block
        for b in m.bits:
            with torch.no_grad():
                assert m(torch.rand(1, 3, 16, 16), m.cfg.quant.index(b)).shape[-1] == 16 * scale


@pytest.mark.parametrize("arch", ["srresnet", "edsr"])
def test_full_size_quantizes_32_convs(arch):
    assert create_model(arch + "_gdq").n_quant_convs() == 32


@pytest.mark.parametrize("arch", ["srresnet", "edsr"])
def test_fp_checkpoint_initialises_quantized(arch, tmp_path):
    fp = create_model(arch, n_blocks=2, n_feats=8)
    q = build_from_config(twin_config(fp.cfg, quantized=True))
    init_from_fp(q, fp.state_dict())
    for k, v in fp.state_dict().items():
        assert torch.equal(q.state_dict()[k], v)
    save_model(q, tmp_path / "q.pt")
    back = load_model(str(tmp_path / "q.pt"))
    assert back.cfg == q.cfg


def test_unknown_model():
    with pytest.raises(ModelNotFoundError, match="registered"):
        create_model("vdsr")


def test_pack_keeps_quantized_integers_exact(tmp_path):
    from granular_mobile.checkpoint import pack_model

    torch.manual_seed(0)
    q = create_model("srresnet_gdq", n_blocks=2, n_feats=16).eval()
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        q(x, 0)
        for conv in (q.body[0].conv1, q.body[1].conv2):  # realistic weight scales
            conv.weight.mul_(3.7)
    ints = {n: m.wq.integer_weight(m.weight).clone() for n, m in q.named_modules() if getattr(m, "quantized", False)}
    pack_model(q, tmp_path / "p.pt")
    back = load_model(str(tmp_path / "p.pt"))
    for n, m in back.named_modules():
        if getattr(m, "quantized", False):
            assert torch.equal(m.wq.integer_weight(m.weight), ints[n]), n
    assert (tmp_path / "p.pt").stat().st_size < 0.6 * sum(p.numel() * 4 for p in q.parameters()) + 100_000


@pytest.mark.parametrize("arch", ["srresnet", "edsr"])
def test_macs_and_bitops_at_every_numerics(arch):
    """BitOPs count the same convs whatever the numerics (the integer forward does not call the
    conv modules, which count_macs hooks)."""
    import dataclasses

    from granular_mobile.metrics import bitops
    from granular_mobile.models.base import count_macs

    fl = create_model(f"{arch}_gdq", scale=2, n_blocks=2, n_feats=16).eval()
    i8 = build_from_config(dataclasses.replace(fl.cfg, numerics="int8")).eval()
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        fl(x, 0)
        i8.load_state_dict(fl.state_dict(), strict=False)
        for m in i8.modules():
            if hasattr(m, "initialized"):
                m.initialized.fill_(1)
        i8.init_grids(x)
        assert i8(x, 0).shape == (2, 3, 48, 48)  # a usable int8 model: its forward is the integer one
    rows_fl, rows_i8 = count_macs(fl, 24, 24), count_macs(i8, 24, 24)
    assert rows_fl == rows_i8
    assert sum(1 for _, _, q in rows_i8 if q) == 2 * 2 and all(m > 0 for _, m, _ in rows_i8)
    assert bitops([(m, q) for _, m, q in rows_i8], [4]) > 0
    macs_fp = count_macs(build_from_config(twin_config(fl.cfg, quantized=False)), 24, 24)
    assert [m for _, m, _ in macs_fp] == [m for _, m, _ in rows_i8]
