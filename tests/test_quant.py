import pytest
import torch

from granular_mobile.quant import ActQuantizer, QConv2d, WeightQuantizer, act_range


@pytest.mark.parametrize("bits", [4, 5, 6, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_activation_on_integer_grid(bits, signed):
    torch.manual_seed(0)
    q = ActQuantizer((4, 5, 6, 8))
    x = torch.randn(4, 8, 6, 6) * 3
    q.init_from(x if signed else x.abs())
    assert q.is_signed == signed
    bi = torch.full((4,), (4, 5, 6, 8).index(bits))
    y = q(x, bi)
    step = q.alpha[(4, 5, 6, 8).index(bits)]
    k = y / step
    assert torch.allclose(k, k.round(), atol=1e-4)
    lo, hi = act_range(bits, signed)
    assert k.min() >= lo - 1e-4 and k.max() <= hi + 1e-4
    # k-bit ranges sit inside int8 / uint8 with zero-point 0 (integer kernels execute them)
    assert (-128 <= lo and hi <= 127) if signed else (0 <= lo and hi <= 255)
    assert len(torch.unique(k.round())) <= 2**bits


def test_per_sample_bits_and_gradients():
    q = ActQuantizer((4, 8))
    x = (torch.randn(2, 3, 5, 5) * 2).requires_grad_()
    q.init_from(x.detach())
    y = q(x, torch.tensor([0, 1]))
    assert len(torch.unique((y[0] / q.alpha[0]).round())) <= 16
    assert len(torch.unique((y[1] / q.alpha[1]).round())) > 16
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # straight-through
    assert q.alpha.grad is not None and (q.alpha.grad != 0).all()  # both steps learn


def test_weight_quantizer_int8_symmetric():
    wq = WeightQuantizer()
    w = torch.randn(16, 8, 3, 3, requires_grad=True)
    out = wq(w)
    k = wq.integer_weight(w.detach())
    assert torch.allclose(out.detach(), k * wq.alpha.detach(), atol=1e-7)
    assert k.abs().max() <= 127 and torch.equal(k, k.round())
    out.sum().backward()
    assert w.grad is not None and wq.alpha.grad is not None


def test_mix_routes_gradient_to_gate():
    conv = QConv2d(4, 4, 3, padding=1, bias=False, bits=(4, 8))
    x = torch.randn(3, 4, 8, 8)
    conv(x, torch.zeros(3, dtype=torch.long))  # init quantizers
    logits = torch.zeros(3, 2, requires_grad=True)
    soft = logits.softmax(1)
    hard = torch.nn.functional.one_hot(soft.argmax(1), 2).float()
    mix = hard - soft.detach() + soft  # straight-through one-hot
    y = conv(x, mix.argmax(1), mix)
    assert torch.allclose(y, conv(x, mix.argmax(1)), atol=1e-6)  # forward unchanged
    (y ** 2).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
