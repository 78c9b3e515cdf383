"""One numerics for training and export: a Granular-DQ model trained with numerics "int8"
computes, at a bit level, what its exported integer program computes."""
from __future__ import annotations

import pytest
import torch

from granular_mobile.config import ModelConfig
from granular_mobile.data.calibration import calibration_tiles
from granular_mobile.models import build_from_config, list_models
from granular_mobile.program import DepthToSpace, build_program, deployed_programs, run_program
from granular_mobile.quant import GridQuantizer, fake_quant_fp_weight, fp_layer_int_weight

TILE = 24
ARCHS = sorted({n.removesuffix("_gdq") for n in list_models()})


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * torch.log10(torch.tensor(1.0 / mse)).item()


def int8_model(arch: str, scale: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    m = build_from_config(ModelConfig(arch=arch, scale=scale, n_blocks=2, n_feats=16, numerics="int8")).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(-1.2, 1.2)
    x = calibration_tiles(TILE)[:8]
    with torch.no_grad(), m.observing_grids():
        m(x, 0)  # k-bit quantizer signedness and steps
    m.init_grids(x)
    return m, x


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("arch", ARCHS)
def test_forward_is_the_exported_program(arch, scale):
    """Every bit level: the PyTorch forward (what training optimises) and the integer program
    (what the exported graphs compute, bit for bit on onnxruntime) agree. They differ only
    where float32 and integer arithmetic put a value on the two sides of a rounding tie."""
    m, x = int8_model(arch, scale)
    progs = deployed_programs(m, None)  # no calibration: every grid is learned
    with torch.no_grad():
        for lv, b in enumerate(m.bits):
            y = m(x, lv)
            r = run_program(progs[b], x)
            assert psnr(y, r) > 55, (arch, scale, b, psnr(y, r))
            # the SR output is on the 8-bit image grid in both
            assert torch.allclose(y * 255, torch.round(y * 255), atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_program_scales_are_the_learned_steps(arch):
    m, _ = int8_model(arch)
    with torch.no_grad():
        for g in m.grid_modules():  # move every step so a stale calibration would show
            g.alpha.mul_(torch.linspace(0.5, 0.8, len(m.bits)))
    for lv, b in enumerate(m.bits):
        prog = deployed_programs(m, None)[b]
        learned = {round(g.step(lv), 12) for g in m.grid_modules()}
        kbit_inputs = {round(n.in_q.scale, 12) for n in prog.convs if n.quantized_layer}
        scales = {round(n.out_q.scale, 12) for n in prog.nodes if n.out_q is not None and n.out not in ("sr", "sr_lr")
                  and (n.out_q.lo, n.out_q.hi) == (-128, 127)} - kbit_inputs
        assert scales <= learned and len(scales) >= len(learned) - 1, (b, scales - learned)
    # an int8 program writes no tensor without a grid
    for n in deployed_programs(m, None)[4].nodes:
        assert isinstance(n, DepthToSpace) or n.out_q is not None, n


def test_fp_layer_integers_are_shared_and_fold_factors_leave_them():
    torch.manual_seed(1)
    w = torch.randn(8, 4, 3, 3).half().float()  # half-precision checkpoint weights have exact ties
    q, s = fp_layer_int_weight(w)
    assert torch.equal(fake_quant_fp_weight(w).double(), (q * s.view(-1, 1, 1, 1)).float().double())
    assert q.abs().max() <= 63
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
    conv.weight.data.copy_(w)
    bn = torch.nn.BatchNorm2d(8).eval()
    bn.weight.data.uniform_(-2, 2)
    from granular_mobile.program import ProgramBuilder

    b = ProgramBuilder("int8", 0)
    b.fp_conv("c", "lr", conv, bn=bn)
    n = b.nodes[0]
    sign = torch.sign(bn.weight.detach()).view(-1, 1, 1, 1).double()
    assert torch.equal(torch.from_numpy(n.weight.astype("float64")), q * sign)


def test_float_numerics_model_has_no_grids_and_calibrates():
    torch.manual_seed(0)
    m = build_from_config(ModelConfig(n_blocks=2, n_feats=16)).eval()
    with torch.no_grad():
        m(calibration_tiles(TILE)[:4], 0)
    assert not m.grid_modules()
    with pytest.raises(ValueError, match="no learned grid"):
        from granular_mobile.program import calibrate_program

        calibrate_program(build_program(m, 4, "int8"), None)
    progs = deployed_programs(m, calibration_tiles(TILE)[:4])
    assert all(n.out_q is not None for n in progs[8].nodes)


def test_int8_training_gradients_reach_every_grid():
    m, x = int8_model("srresnet")
    m.train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
    sr = m(x[:4], torch.tensor([0, 1, 2, 3]))
    sr.mean().backward()
    for name, mod in m.named_modules():
        if isinstance(mod, GridQuantizer):
            assert mod.alpha.grad is not None and mod.alpha.grad.abs().sum() > 0, name


def test_numerics_config_is_validated():
    from granular_mobile.errors import ConfigError

    with pytest.raises(ConfigError, match="valid: \\['float', 'int8'\\]"):
        ModelConfig(numerics="int4")
    with pytest.raises(ConfigError, match="quantized"):
        ModelConfig(quantized=False, numerics="int8")


@pytest.mark.parametrize("arch", ARCHS)
def test_packing_keeps_every_integer(arch, tmp_path):
    """The shipped (fp16) file computes the same integers as the trained model: quantized and
    full-precision layers' weights are snapped onto their grids before the fp16 cast."""
    import numpy as np

    from granular_mobile.checkpoint import load_model, pack_model

    m, x = int8_model(arch)
    with torch.no_grad():
        for mod in m.modules():  # weights off any fp16 grid
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.mul_(1.0 + 1e-3 * torch.rand_like(mod.weight))
    before = deployed_programs(m, None)
    pack_model(m, tmp_path / "p.pt")
    after = deployed_programs(load_model(str(tmp_path / "p.pt")), None)
    for b in m.bits:
        for c0, c1 in zip(before[b].convs, after[b].convs, strict=True):
            assert np.array_equal(c0.weight, c1.weight), (b, c0.name)
        assert [n.out_q for n in before[b].nodes] == [n.out_q for n in after[b].nodes]
