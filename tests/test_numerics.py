"""One numerics for training and export: a Granular-DQ model trained with numerics "int8"
computes, at a bit level, what its exported integer program computes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from granular_mobile.config import ModelConfig
from granular_mobile.data.calibration import calibration_tiles
from granular_mobile.ir import DepthToSpace, build_program, deployed_programs, run_program
from granular_mobile.models import build_from_config, list_models
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
    """Every bit level: the PyTorch forward (what training optimises) is the integer program
    (what the exported graphs compute, bit for bit on onnxruntime), value for value."""
    m, x = int8_model(arch, scale)
    progs = deployed_programs(m, None)  # no calibration: every grid is learned
    with torch.no_grad():
        for lv, b in enumerate(m.bits):
            y = m(x, lv)
            r = run_program(progs[b], x)
            assert torch.equal(y, r), (arch, scale, b, float((y - r).abs().max()))
            # the SR output is on the 8-bit image grid
            assert torch.allclose(y * 255, torch.round(y * 255), atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_training_forward_is_exact_per_sample_level(arch):
    """A batch of tiles at different levels, in training mode with gradients on (how the
    trainer runs it): each tile's output is its level's integer program, and the straight-
    through surrogate carries gradients to the weights and the k-bit steps."""
    m, x = int8_model(arch)
    progs = deployed_programs(m, None)
    m.train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()  # the trainer freezes BatchNorm statistics
    levels = torch.tensor([3, 0, 2, 1, 0, 3, 1, 2])
    y = m(x, levels)
    for i, lv in enumerate(levels.tolist()):
        assert torch.equal(y[i:i + 1].detach(), run_program(progs[m.bits[lv]], x[i:i + 1])), (arch, i, lv)
    y.square().mean().backward()
    convs = [mod for mod in m.modules() if getattr(mod, "quantized", False)]
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)
    assert all(c.aq.alpha.grad is not None and c.aq.alpha.grad.abs().sum() > 0 for c in convs)
    assert m.head[0].weight.grad is not None and m.head[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_a_level_with_weights_of_its_own_runs_and_exports_them(arch):
    """``level_weights``: a level's own copy starts as the shared network (the same outputs at
    every level); once it differs, the tiles at that level (alone or in a batch of mixed levels,
    with gradients) are its program's, the other levels' are unchanged, and the gradients reach
    the copy only from its own tiles."""
    import dataclasses

    m, x = int8_model(arch)
    mw = build_from_config(dataclasses.replace(m.cfg, level_weights=(8,))).eval()
    missing, unexpected = mw.load_state_dict(m.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("level_nets.8.") for k in missing)
    own = mw.level_nets["8"]
    assert not hasattr(own, "encoder")  # one controller
    own.load_state_dict(mw.shared_state())
    levels = torch.tensor([3, 0, 2, 1, 0, 3, 1, 2])
    with torch.no_grad():
        assert torch.equal(mw(x, levels), m(x, levels))
        for conv in (mod for mod in own.modules() if getattr(mod, "quantized", False)):
            conv.weight.mul_(1.3)
    before, progs = deployed_programs(m, None), deployed_programs(mw, None)

    def same(p, q) -> bool:
        return len(p.nodes) == len(q.nodes) and all(
            type(a) is type(b) and all(np.array_equal(np.asarray(a.__dict__[k]), np.asarray(b.__dict__[k]))
                                       if isinstance(a.__dict__[k], np.ndarray) else a.__dict__[k] == b.__dict__[k]
                                       for k in a.__dict__) for a, b in zip(p.nodes, q.nodes, strict=True))

    assert all(same(progs[b], before[b]) for b in (4, 5, 6)) and not same(progs[8], before[8])
    with torch.no_grad():
        assert not torch.equal(run_program(progs[8], x), run_program(before[8], x))
        assert torch.equal(mw(x, 3), run_program(progs[8], x))
    mw.train()
    for mod in mw.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
    y = mw(x, levels)
    for i, lv in enumerate(levels.tolist()):
        assert torch.equal(y[i:i + 1].detach(), run_program(progs[mw.bits[lv]], x[i:i + 1])), (arch, i, lv)
    y[levels != 3].square().mean().backward()
    assert all(p.grad is None or not p.grad.any() for p in own.parameters())
    assert mw.head[0].weight.grad is not None and mw.head[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_an_exit_level_runs_its_copy_at_its_depth(arch):
    """``exits``: a level (bits, blocks) runs its own copy through the first ``blocks`` residual
    blocks, then the body end, upsampler and tail; its forward is its program's (fewer convs),
    alone and in a batch of mixed levels, and its tiles' gradients reach only the copy."""
    import dataclasses

    from granular_mobile.ir import calibrate_program

    m, x = int8_model(arch)
    me = build_from_config(dataclasses.replace(m.cfg, exits=((6, 1),))).eval()
    missing, unexpected = me.load_state_dict(m.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("level_nets.6k1.") for k in missing)
    me.level_nets["6k1"].load_state_dict(me.shared_state())
    assert me.cfg.levels == ((4, 2), (5, 2), (6, 2), (8, 2), (6, 1)) and me.cfg.level_index(6, 1) == 4
    full = deployed_programs(me, None)[6]
    exit_prog = calibrate_program(build_program(me, 6, "int8", blocks=1), None)
    # the second block's convs are gone, nothing else (the tail and upsampler are the same)
    dropped = {c.name for c in full.convs} - {c.name for c in exit_prog.convs}
    assert dropped and all(n.startswith("b1_") for n in dropped) and len(exit_prog.convs) < len(full.convs)
    with torch.no_grad():
        y = me(x, 4)
        assert torch.equal(y, run_program(exit_prog, x))
        assert not torch.equal(y, me(x, 2)), "the exit level computed the full depth"
        assert torch.equal(me(x, 2), m(x, 2))  # the bit levels are the shared network's
    levels = torch.tensor([4, 0, 2, 4, 3, 1, 4, 2])
    me.train()
    for mod in me.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
    y = me(x, levels)
    for i, lv in enumerate(levels.tolist()):
        want = run_program(exit_prog if lv == 4 else deployed_programs(me, None)[me.bits[lv]], x[i:i + 1])
        assert torch.equal(y[i:i + 1].detach(), want), (arch, i, lv)
    y[levels == 4].square().mean().backward()
    own = me.level_nets["6k1"]
    assert own.tail[1].weight.grad is not None and own.tail[1].weight.grad.abs().sum() > 0
    assert own.body[0].conv1.weight.grad.abs().sum() > 0
    assert own.body[1].conv1.weight.grad is None, "a block after the exit got a gradient"
    assert all(p.grad is None or not p.grad.any() for n, p in me.named_parameters() if not n.startswith("level_nets."))


def test_exits_config_is_validated():
    import json

    from granular_mobile.config import from_dict, level_name, to_dict
    from granular_mobile.errors import ConfigError

    with pytest.raises(ConfigError, match=r"exits: 7 is not a bit level.*valid: \[4, 5, 6, 8\]"):
        ModelConfig(numerics="int8", exits=((7, 4),))
    with pytest.raises(ConfigError, match=r"exits: 16 blocks must be in 1..15"):
        ModelConfig(numerics="int8", exits=((6, 16),))
    with pytest.raises(ConfigError, match="need numerics 'int8'"):
        ModelConfig(numerics="float", exits=((6, 4),))
    with pytest.raises(ConfigError, match="sorted and distinct"):
        ModelConfig(numerics="int8", exits=((6, 8), (6, 4)))
    cfg = ModelConfig(numerics="int8", exits=((6, 4), (6, 8)))
    assert cfg.levels[-2:] == ((6, 4), (6, 8)) and cfg.level_index(6, 8) == 5 and cfg.level_index(5) == 1
    with pytest.raises(ConfigError, match=r"level a6k2 is not a level of this model; valid: a4, a5, a6, a8, a6k4, a6k8"):
        cfg.level_index(6, 2)
    assert level_name(6, 16, 16) == "a6" and level_name(6, 4, 16) == "a6k4"
    assert from_dict(ModelConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg  # travels in checkpoints


def test_level_weights_config_is_validated():
    from granular_mobile.errors import ConfigError

    with pytest.raises(ConfigError, match=r"7 is not a bit level.*valid: \[4, 5, 6, 8\]"):
        ModelConfig(numerics="int8", level_weights=(7,))
    with pytest.raises(ConfigError, match="needs numerics 'int8'"):
        ModelConfig(numerics="float", level_weights=(8,))
    with pytest.raises(ConfigError, match="strictly increasing"):
        ModelConfig(numerics="int8", level_weights=(8, 6))


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
    from granular_mobile.ir import ProgramBuilder

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
        from granular_mobile.ir import calibrate_program

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


def test_packing_drops_only_the_blocks_an_exit_never_runs(tmp_path):
    """A packed file leaves out an exit copy's blocks after its exit (a third of a shipped
    model's file), loads without them and computes every level as before."""
    import dataclasses

    from granular_mobile.checkpoint import load_model, pack_model
    from granular_mobile.errors import CheckpointError

    m, x = int8_model("srresnet")
    me = build_from_config(dataclasses.replace(m.cfg, exits=((6, 1),))).eval()
    me.load_state_dict(m.state_dict(), strict=False)
    me.level_nets["6k1"].load_state_dict(me.shared_state())
    pack_model(me, tmp_path / "p.pt")
    keys = set(torch.load(tmp_path / "p.pt", map_location="cpu", weights_only=False)["state_dict"])
    assert not any(k.startswith("level_nets.6k1.body.1.") for k in keys)
    assert any(k.startswith("level_nets.6k1.body.0.") for k in keys) and any(k.startswith("body.1.") for k in keys)
    back = load_model(str(tmp_path / "p.pt"))
    with torch.no_grad():
        for lv in range(len(me.cfg.levels)):
            # the random tiny model has float weights off every grid: fp16 moves an output by a code at most
            assert (back(x, lv) - me(x, lv)).abs().max() <= 1 / 255 + 1e-6, lv
    # only those blocks may be missing
    obj = torch.load(tmp_path / "p.pt", map_location="cpu", weights_only=False)
    del obj["state_dict"]["level_nets.6k1.body.0.conv1.weight"]
    torch.save(obj, tmp_path / "q.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_model(str(tmp_path / "q.pt"))


def test_grid_rounding_has_lsq_gradients():
    """The integer forward's grid node (exact codes) gives the gradients of LSQ's
    round(clamp(x / s)) * s: straight-through inside the range, the step's LSQ gradient."""
    from granular_mobile.models.integer_forward import _GridRound
    from granular_mobile.quant.lsq import lsq_quantize

    torch.manual_seed(0)
    x = (torch.randn(3, 4, 5, 5) * 40).requires_grad_()
    step = torch.tensor([0.5, 0.25, 1.0]).view(-1, 1, 1, 1).requires_grad_()
    w = torch.randn(3, 4, 5, 5)
    ref = lsq_quantize(x, step, -128, 127, 0.3)
    (ref * w).sum().backward()
    gx, gs = x.grad.clone(), step.grad.clone()
    x.grad, step.grad = None, None
    codes = torch.clamp(torch.round(x.detach() / step.detach()), -128, 127)
    out = _GridRound.apply(x, step, codes, -128.0, 127.0, 0.3)
    assert torch.equal(out.detach(), ref.detach())
    assert bool((x.detach() / step.detach()).abs().max() > 128)  # some values are clipped
    (out * w).sum().backward()
    assert torch.allclose(x.grad, gx) and torch.allclose(step.grad, gs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_float_surrogate_is_the_same_numerics(arch):
    """``exact_integer = False`` (what experiments/rounding_cost.py ablates) runs every rounding point
    as float fake quantization: the same points and steps, so it stays close to the exact
    integer values; it is not them (it lacks the int32 bias rounding, and float32 and integer
    arithmetic differ at rounding ties)."""
    m, x = int8_model(arch)
    with torch.no_grad():
        exact = m(x, 0)
        m.exact_integer = False
        sur = m(x, 0)
    assert psnr(exact, sur) > 45 and not torch.equal(exact, sur), psnr(exact, sur)
    assert torch.allclose(sur * 255, torch.round(sur * 255), atol=1e-3)  # the output grid applies


@pytest.mark.parametrize("arch", ARCHS)
def test_exact_forward_gradients_are_the_surrogates(arch):
    """The exact forward's hand-written backward passes (k-bit inputs with the gate's mix,
    grid rounding) give the gradients of the float surrogate's autograd chain. The two
    differ only where their values do (the int32 biases, rare rounding ties), so each group of parameters'
    gradient points the same way; the int8 grids' step gradients are sums of signed rounding
    errors, small and the most sensitive to those ties."""
    m, x = int8_model(arch)
    m.train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
    grads = {}
    for exact in (True, False):
        m.exact_integer = exact
        m.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # the same Gumbel draw: the same bit levels and mix
        sr, ctrl = m(x, return_ctrl=True)
        (sr.square().mean() + ctrl.expected_bits.mean() * 1e-3).backward()
        grads[exact] = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys()
    groups = {"gate": (lambda n: n.startswith("encoder."), 0.999),
              "weights": (lambda n: n.endswith("weight") and not n.startswith("encoder."), 0.999),
              "k-bit steps": (lambda n: n.endswith("aq.alpha"), 0.999),
              "weight steps": (lambda n: n.endswith("wq.alpha"), 0.999),
              "int8 grid steps": (lambda n: "grids." in n, 0.8)}
    for group, (pick, bound) in groups.items():
        names = [n for n in grads[True] if pick(n)]
        assert names, group
        a, b = (torch.cat([grads[e][n].flatten() for n in names]).double() for e in (True, False))
        cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        assert cos > bound and a.norm() > 0, (group, cos)


def test_kbit_input_has_the_gradients_of_lsq_and_the_mix_tap():
    """The k-bit input node equals ActQuantizer(x) / step (step held constant after the
    quantizer) in value and in every gradient (x, the steps, the gate's mix) when the codes agree."""
    from granular_mobile.models.integer_forward import _KbitInput
    from granular_mobile.quant import ActQuantizer

    torch.manual_seed(0)
    aq = ActQuantizer((4, 5, 6, 8))
    x0 = torch.randn(4, 3, 5, 5) * 2
    aq.init_from(x0)
    bi = torch.tensor([0, 3, 1, 2])
    w = torch.randn(4, 3, 5, 5)
    results = []
    for fused in (False, True):
        x = x0.clone().requires_grad_()
        mix = torch.nn.functional.one_hot(bi, 4).float().requires_grad_()
        aq.alpha.grad = None
        step = aq.alpha[bi].view(-1, 1, 1, 1)
        if fused:
            qn, qp = aq.ranges()
            g = 1.0 / (x[0].numel() * x.shape[0] * float(qp.max())) ** 0.5
            c = _KbitInput.apply(x, step, None, qn[bi].view(-1, 1, 1, 1), qp[bi].view(-1, 1, 1, 1), g, mix,
                                 aq.alpha.detach(), qn, qp)
        else:
            c = aq(x, bi, mix) / step.detach()
        (c * step.detach() * w).sum().backward()  # the conv output multiplies the (detached) step back
        results.append((c.detach(), x.grad, aq.alpha.grad, mix.grad))
    (c0, gx0, ga0, gm0), (c1, gx1, ga1, gm1) = results
    assert torch.equal(c1, torch.round(c0)) and torch.allclose(c0, c1, atol=1e-5)
    assert torch.allclose(gx0, gx1, atol=1e-5) and torch.allclose(gm0, gm1, atol=1e-4)
    # float32 cancellation between the step terms leaves ~1e-6
    assert torch.allclose(ga0, ga1, rtol=1e-3, atol=1e-5), (ga0 - ga1)


@pytest.mark.parametrize("signed", [False, True])
def test_step_gradients_survive_float32_at_training_size(signed):
    """At the trainer's size (batch 16, 64 channels, 32 x 32) LSQ's step gradient is scaled by
    g ~ 5e-5: the exact forward must form it without float32 cancellation (the steps are
    detached after their LSQ nodes). Reference: the LSQ chain of QConv2d in float64."""
    from granular_mobile.models.integer_forward import IntegerForward, Val
    from granular_mobile.quant import QConv2d

    torch.manual_seed(0)
    conv = QConv2d(64, 64, 3, padding=1, bits=(4, 5, 6, 8))
    x0 = torch.randn(16, 64, 32, 32)
    x0 = x0 if signed else x0.relu()
    step_in = 0.02
    x0 = torch.round(x0 / step_in) * step_in  # the input is on an int8 grid, as in the network
    conv.aq.init_from(x0)
    conv.wq.init_from(conv.weight.detach())
    r = torch.randn(16, 64, 32, 32)
    for lv in (0, 3):
        bi = torch.full((16,), lv)
        ref = QConv2d(64, 64, 3, padding=1, bits=(4, 5, 6, 8))
        ref.load_state_dict(conv.state_dict())
        ref = ref.double()
        (ref(x0.double(), bi) * r.double()).sum().backward()
        conv.zero_grad()
        b = IntegerForward(x0[:, :3], bi, None)
        out = b.block_conv("c", Val(x0, torch.full((16, 1, 1, 1), step_in), torch.round(x0 / step_in)), conv, 0)
        (out.v * r).sum().backward()
        ga, ga_ref = conv.aq.alpha.grad[lv].double(), ref.aq.alpha.grad[lv]
        gw, gw_ref = conv.wq.alpha.grad.double(), ref.wq.alpha.grad
        assert abs(ga - ga_ref) <= 2e-2 * abs(ga_ref), (lv, float(ga), float(ga_ref))
        assert abs(gw - gw_ref) <= 2e-3 * abs(gw_ref), (lv, float(gw), float(gw_ref))


def test_a_pending_tensor_has_one_consumer():
    """A tensor written on its consumer's grid (no grid of its own) can feed only that consumer;
    the input tile, exact on uint8, can feed any number of nodes."""
    from granular_mobile.models.integer_forward import IntegerForward, Val

    x = torch.rand(1, 3, 8, 8)
    b = IntegerForward(x, torch.zeros(1, dtype=torch.long), None)
    b._take_pending(b.input, "head")
    b._take_pending(b.input, "skip")
    pending = Val(x, u=lambda s: x / s)
    b._take_pending(pending, "conv2")
    with pytest.raises(ValueError, match="more than one node"):
        b._take_pending(pending, "other")
