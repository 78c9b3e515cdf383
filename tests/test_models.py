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
