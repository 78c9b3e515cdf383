"""The forward of a model trained with the integer numerics (``numerics = "int8"``) at a bit level:
its family's ``lower`` (the structure the export writes) run eagerly in torch.

There is one description of where each rounding point is: a family's ``lower``. The export
builds its program from it (``ir.ProgramBuilder``); training and ``model(x)`` run it
through ``IntegerForward``, which computes every tensor's value with the integer arithmetic
of the exported kernels (``ir.run_program``, which onnxruntime matches bit for bit):
integer codes times integer weights accumulated exactly, the int32 bias on the accumulator
grid s_in * s_w, one float32 requantization multiplier per channel, QLinearAdd's fused
multiply-adds for residual sums, round half to even. Gradients come from the float surrogate
of each node (LSQ steps, straight-through rounding) through autograd nodes whose forward
returns the integer value untouched (``_Exact``, ``_KbitInput``, ``_GridRound``).

Exact in float32 as long as a conv's partial sums of integer products stay below 2^24, the
assumption ``run_program`` makes too (and the eager tail runs at HR, the program's at LR, so
their summation orders differ). The worst cases exceed it (EDSR's conv2 on unsigned 8-bit
codes: 576 x 255 x 127 = 1.9e7; the 9x9 tail: 5184 x 128 x 63 = 4.2e7); real sums stay far
below: the forward equals the program bit for bit on the shipped model's calibration tiles
and Set14 images (``tests/test_default_model.py``, ``experiments/export_vs_trained.py``) and on
small models of every family (``tests/test_numerics.py``).

A tensor whose grid is its consumer's (a BatchNorm or ReLU feeding only a k-bit conv) stays
"pending" until that conv rounds it onto its k-bit input grid, as the program's calibration
rule writes it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..ir import OUTPUT_Q, ProgramBuilder, QParams, bn_fold_t, qlinear_add, signed_channels
from ..quant import GridQuantizer, fake_quant_fp_weight, fake_quant_image, fp_layer_int_weight

#: the image grid's step in float32, as the graphs store it
_IMG = float(np.float32(OUTPUT_Q.scale))


class _KbitInput(torch.autograd.Function):
    """The integer input codes of a k-bit conv (value exact), with the gradients of
    ``ActQuantizer(x) / step`` for a step held constant after the rounding (the conv output
    multiplies the codes by the detached step): LSQ on the surrogate ``x`` (straight-through inside the range,
    the step's gradient scaled by ``g``) and, with a bit mix, the gate's gradient
    d loss / d mix[n, b] = <d loss / d xq[n], Q_b(x[n])> (``quant.lsq._MixTap``). One node
    instead of LSQ's chain of elementwise ops plus the exact codes beside it.

    ``codes``: the exact integers when the input is pending (its rounding is this conv's);
    None: the input is on a grid, and its codes here are clamp(round(x / step)), the program's."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, step: torch.Tensor, codes: torch.Tensor | None, lo: torch.Tensor,
                hi: torch.Tensor, g: float, mix: torch.Tensor | None, alpha: torch.Tensor, qn: torch.Tensor,
                qp: torch.Tensor) -> torch.Tensor:
        u = x.detach() / step.detach()
        if codes is None:
            codes = torch.minimum(torch.maximum(torch.round(u), lo), hi)
        inside = (u >= lo) & (u <= hi)
        tap = mix is not None and mix.requires_grad
        ctx.save_for_backward(u, inside, codes, step.detach(), x.detach() if tap else None, alpha, qn, qp)
        ctx.g = g
        return codes

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, inside, codes, step, x, alpha, qn, qp = ctx.saved_tensors
        g_xq = grad / step
        g_x = g_xq * inside if ctx.needs_input_grad[0] else None
        g_step = None
        if ctx.needs_input_grad[1]:
            # LSQ's step gradient alone: the conv output multiplies the codes by a detached
            # step, so the step's other two terms (dividing xq by it, multiplying back), which
            # cancel exactly, are never formed; in float32 their difference would drown the
            # g-scaled LSQ term (g ~ 5e-5 at batch 16 x 64 ch x 32 x 32)
            d = torch.where(inside, codes - u, codes) * ctx.g
            g_step = (g_xq * d).sum(dim=(1, 2, 3), keepdim=True)
        g_mix = None
        if x is not None and ctx.needs_input_grad[6]:
            gm = []
            for b in range(alpha.numel()):
                qb = torch.round(torch.clamp(x / alpha[b], qn[b], qp[b])) * alpha[b]
                gm.append((g_xq * qb).flatten(1).sum(1))
            g_mix = torch.stack(gm, 1)
        return g_x, g_step, None, None, None, None, g_mix, None, None, None


class _Exact(torch.autograd.Function):
    """Forward: ``exact`` (bit for bit); backward: the gradient goes to ``surrogate``."""

    @staticmethod
    def forward(ctx, exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
        return exact.view_as(exact)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, grad


class _GridRound(torch.autograd.Function):
    """codes * step, with the gradients of LSQ's round(clamp(sur / step)) * step (straight-through
    inside the range, the step's gradient scaled by ``g``); ``codes`` are the exact integers.
    One node instead of LSQ's chain of elementwise ops: the integer forward's hot path."""

    @staticmethod
    def forward(ctx, sur: torch.Tensor, step: torch.Tensor, codes: torch.Tensor, qn: float, qp: float,
                g: float) -> torch.Tensor:
        u = sur.detach() / step.detach()
        inside = (u >= qn) & (u <= qp)
        ctx.save_for_backward(u, inside, codes)
        ctx.g = g
        ctx.step_shape = step.shape
        return codes * step.detach()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        u, inside, codes = ctx.saved_tensors
        g_sur = grad * inside
        g_step = None
        if ctx.needs_input_grad[1]:
            d = torch.where(inside, codes - u, codes)
            g_step = (grad * d).sum(dim=tuple(range(1, grad.dim())), keepdim=True) * ctx.g
            g_step = g_step.sum_to_size(ctx.step_shape)
        return g_sur, g_step, None, None, None, None


def _ste(exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``exact`` in value (bit for bit), the gradient of ``surrogate`` (same shape)."""
    if not surrogate.requires_grad:
        return exact
    return _Exact.apply(exact.detach(), surrogate)


@dataclass
class Val:
    """A tensor of the eager program. On a grid: ``v`` is codes * step exactly and ``codes`` the
    integers; pending: ``v`` is the float value and ``u(step)`` the exact pre-rounding value in
    units of a consumer's step."""

    v: torch.Tensor
    step: torch.Tensor | float | None = None
    codes: torch.Tensor | None = None
    u: Callable[[torch.Tensor | float], torch.Tensor] | None = None
    consumed: bool = False


class IntegerForward:
    """Implements the ``ProgramBuilder`` calls of a family's ``lower`` on tensors (a bit level
    per sample). ``exact=False``: the float surrogate alone, every rounding point as LSQ fake
    quantization in float (the grid modules' own forward: they round, or record max|x| per
    level while observing, ``GDQNet.init_grids``); the k-bit conv inputs and 7-bit weights
    apply as usual."""

    image_q = ProgramBuilder.image_q

    def __init__(self, x: torch.Tensor, bit_index: torch.Tensor, mix: torch.Tensor | None,
                 exact: bool = True, blocks: int | None = None) -> None:
        self.bit_index = bit_index
        self.blocks = blocks  # as ProgramBuilder.blocks
        self.mix = mix
        self.observe = not exact
        inp = x.float()
        self.input = Val(inp, u=lambda s: inp / s)
        self.output: torch.Tensor | None = None

    # -- helpers ------------------------------------------------------------------------
    def _shape(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(-1, 1, 1, 1)

    def _take_pending(self, a: Val, name: str) -> None:
        """A pending tensor is rounded onto its consumer's grid: it can have only one consumer
        (the program's calibration rule; with several it would need a grid of its own). The
        input tile is exact on its uint8 grid and may feed any number of nodes."""
        if a.u is not None and a is not self.input:
            if a.consumed:
                raise ValueError(f"{name}: a tensor without its own grid feeds more than one node; give it a grid")
            a.consumed = True

    def _in_codes(self, a: Val, step: torch.Tensor | float, lo: int | torch.Tensor, hi: int | torch.Tensor) -> torch.Tensor:
        """The integer input of a conv on the grid ``step`` (no gradient; bounds per sample or not)."""
        with torch.no_grad():
            u = a.u(step) if a.u is not None else a.v / step
            return torch.clamp(torch.round(u), torch.as_tensor(lo).to(u), torch.as_tensor(hi).to(u))

    def _on_grid(self, grid: GridQuantizer, sur: torch.Tensor, u_exact: Callable[[torch.Tensor], torch.Tensor]) -> Val:
        """Round onto a learned int8 grid: exact codes from ``u_exact(step)``, LSQ gradients from
        the float surrogate ``sur``."""
        if self.observe:
            return Val(grid(sur, self.bit_index))
        if grid.initialized.item() == 0:
            from ..errors import ConfigError

            raise ConfigError("an int8 grid was used before its steps were set (GDQNet.init_grids)")
        step = self._shape(grid.alpha[self.bit_index])
        with torch.no_grad():
            codes = torch.clamp(torch.round(u_exact(step.detach())), grid.qn, grid.qp)
        g = 1.0 / np.sqrt(sur[0].numel() * max(sur.shape[0], 1) * grid.qp)
        return Val(_GridRound.apply(sur, step, codes, float(grid.qn), float(grid.qp), float(g)), step.detach(), codes)

    def _grid_or_pending(self, grid: GridQuantizer | None, sur: torch.Tensor,
                         u_exact: Callable[[torch.Tensor | float], torch.Tensor]) -> Val:
        if grid is not None:
            return self._on_grid(grid, sur, u_exact)
        return Val(sur, u=None if self.observe else u_exact)

    def _needs_grid(self, a: Val, what: str) -> None:
        if not self.observe and a.codes is None:
            raise ValueError(f"{what}: its input has no int8 grid (give its producer a learned grid)")

    # -- nodes ----------------------------------------------------------------------------
    def fp_conv(self, name: str, inp: Val, conv: nn.Conv2d, w_mul: np.ndarray | float = 1.0,
                b_add: np.ndarray | None = None, b_mul: float = 1.0, in_q: QParams | None = None,
                bn: nn.BatchNorm2d | None = None, grid: GridQuantizer | None = None, _image_out: bool = False) -> Val:
        """A layer the paper keeps in full precision: int8 input, per-channel 7-bit weights."""
        c_out = conv.weight.shape[0]
        dev = conv.weight.device
        if bn is not None:
            w_mul, b_add = (v.cpu().numpy() for v in bn_fold_t(bn))
        mul = np.broadcast_to(np.asarray(w_mul, np.float64), (c_out,))
        mul_t = torch.from_numpy(mul.copy()).to(dev)

        def float_out(y: torch.Tensor) -> torch.Tensor:
            # the surrogate's tail: the per-channel multiplier, BatchNorm or bias, as the family wrote it
            if bn is not None:
                return bn(y + conv.bias.view(1, -1, 1, 1) if conv.bias is not None else y)
            y = y * mul_t.float().view(1, -1, 1, 1)
            if conv.bias is not None:
                y = y + conv.bias.view(1, -1, 1, 1) * b_mul
            if b_add is not None:
                y = y + torch.from_numpy(np.asarray(b_add, np.float32)).to(y).view(1, -1, 1, 1)
            return y

        if self.observe:
            xin = fake_quant_image(inp.v) if in_q is not None else inp.v
            y = float_out(F.conv2d(xin, fake_quant_fp_weight(conv.weight), None, 1, conv.padding))
            return Val(fake_quant_image(y) if _image_out else grid(y, self.bit_index) if grid is not None else y)
        q, s = fp_layer_int_weight(conv.weight)
        self._take_pending(inp, name)
        if in_q is not None:  # the input tile, exact on uint8
            c_in = self._in_codes(inp, in_q.scale, in_q.lo, in_q.hi)
            step_f32 = torch.tensor(float(np.float32(in_q.scale)), device=c_in.device)
        else:
            self._needs_grid(inp, name)
            assert inp.codes is not None and isinstance(inp.step, torch.Tensor)
            c_in = _ste(inp.codes, inp.v / inp.step)
            step_f32 = inp.step
        sf = s.float().to(dev)
        wc = _ste(q.float().to(dev), conv.weight / sf.view(-1, 1, 1, 1))
        acc = self._exact_acc(F.conv2d(c_in, wc, None, 1, conv.padding))
        sur = float_out(acc * (step_f32 * sf.view(1, -1, 1, 1)))
        # the program's integer conv (ProgramBuilder.fp_conv): integers times sign(s * mul),
        # per-channel scale |s * mul|
        sign, w_scale = (torch.from_numpy(v).float().to(dev).view(1, -1, 1, 1)
                         for v in signed_channels(s.cpu().numpy() * mul))
        acc_step = step_f32 * w_scale
        bias = None
        if conv.bias is not None:
            bias = conv.bias.detach().double() * b_mul
        if b_add is not None:
            ba = torch.from_numpy(np.asarray(b_add, np.float64)).to(acc.device)
            bias = ba if bias is None else bias + ba
        accp = self._acc_with_bias(acc.detach() * sign, acc_step, bias)

        def u(step: torch.Tensor | float) -> torch.Tensor:
            return accp.float() * (acc_step / step)

        if _image_out:
            with torch.no_grad():
                codes_out = torch.clamp(torch.round(u(torch.tensor(np.float32(OUTPUT_Q.scale)).to(acc_step))),
                                        OUTPUT_Q.lo, OUTPUT_Q.hi)
            return Val(_ste(codes_out * _IMG, fake_quant_image(sur)), _IMG, codes_out)
        return self._grid_or_pending(grid, sur, u)

    @staticmethod
    def _exact_acc(acc: torch.Tensor) -> torch.Tensor:
        """The conv of integer codes and integer weights. On CPU the float32 sums are exact (every
        partial sum an integer below 2^24); GPU kernels may take Winograd / FFT paths that are
        not, so there the accumulator is rounded back to its integers."""
        if acc.device.type == "cpu":
            return acc
        return _ste(torch.round(acc.detach()), acc)

    @staticmethod
    def _acc_with_bias(acc: torch.Tensor, acc_step: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """float32(int32 accumulator + the bias rounded onto its grid), as the kernels convert it."""
        with torch.no_grad():
            if bias is None:
                return acc
            bi = torch.clamp(torch.round(bias.view(1, -1, 1, 1) / acc_step.double()), -(2**31), 2**31 - 1)
            if bool((bi.abs() < 2**24).all()):
                # both exact in float32, and one float32 addition rounds their sum once, as the
                # float64 sum converted to float32 does
                return acc + bi.float()
            return (acc.double() + bi).float()

    def output_conv(self, name: str, inp: Val, conv: nn.Conv2d, w_mul: float = 1.0, b_mul: float = 1.0) -> None:
        self.output = self.fp_conv(name, inp, conv, w_mul=w_mul, b_mul=b_mul, _image_out=True).v

    def block_conv(self, name: str, inp: Val, conv, bit_index: int | None, bn: nn.BatchNorm2d | None = None,
                   grid: GridQuantizer | None = None) -> Val:
        """One of the paper's quantized convs at each sample's bit level, BN folded exactly."""
        if self.observe:
            xq = conv.aq(inp.v, self.bit_index, self.mix)  # k-bit input: LSQ and the gate's gradient
            y = F.conv2d(xq, conv.wq(conv.weight), conv.bias, 1, conv.padding)
            y = bn(y) if bn is not None else y
            return Val(grid(y, self.bit_index) if grid is not None else y)
        aq = conv.aq
        if aq.initialized.item() == 0:
            aq.init_from(inp.v.detach())
        alpha = self._shape(aq.alpha[self.bit_index])
        qn_all, qp_all = aq.ranges(inp.v.device)
        lo, hi = self._shape(qn_all[self.bit_index]), self._shape(qp_all[self.bit_index])
        self._take_pending(inp, name)
        codes = self._in_codes(inp, alpha.detach(), lo, hi) if inp.u is not None else None
        g = 1.0 / np.sqrt(inp.v[0].numel() * max(inp.v.shape[0], 1) * float(qp_all.max()))
        c_in = _KbitInput.apply(inp.v, alpha, codes, lo, hi, float(g), self.mix, aq.alpha.detach(), qn_all, qp_all)
        wq = conv.wq(conv.weight)
        walpha = conv.wq.alpha.detach()
        wint = conv.wq.integer_weight(conv.weight.detach())
        # the steps are detached after their LSQ nodes (ActQuantizer through _KbitInput,
        # WeightQuantizer here): what reaches them is LSQ's gradient, free of float32 cancellation
        wc = _ste(wint, wq / walpha)
        acc = self._exact_acc(F.conv2d(c_in, wc, None, 1, conv.padding))
        y = acc * (alpha.detach() * walpha)
        if conv.bias is not None:
            y = y + conv.bias.view(1, -1, 1, 1)
        sur = bn(y) if bn is not None else y
        ws = torch.full((wint.shape[0],), float(walpha), dtype=torch.float64, device=acc.device)
        bias = conv.bias.detach().double() if conv.bias is not None else None
        if bn is not None:
            s, t = bn_fold_t(bn)
            ws = ws * s
            bias = t if bias is None else bias * s + t
        # as ProgramBuilder.q_conv: integers times sign(ws), per-channel scale |ws|
        sign_np, scale_np = signed_channels(ws.cpu().numpy())
        acc_step = alpha.detach() * torch.from_numpy(scale_np).float().to(acc.device).view(1, -1, 1, 1)
        acc_d = acc.detach()
        if bool((sign_np <= 0).any()):
            acc_d = acc_d * torch.from_numpy(sign_np).float().to(acc.device).view(1, -1, 1, 1)
        accp = self._acc_with_bias(acc_d, acc_step, bias)
        return self._grid_or_pending(grid, sur, lambda step: accp.float() * (acc_step / step))

    def batchnorm(self, name: str, inp: Val, bn: nn.BatchNorm2d) -> Val:
        """A BatchNorm after a nonlinearity: a depthwise integer conv with weight +-127 and scale
        |s| / 127 (exactly s), its int32 bias, written onto its consumer's grid."""
        if self.observe:
            return Val(bn(inp.v))
        self._needs_grid(inp, name)
        assert inp.codes is not None and isinstance(inp.step, torch.Tensor)
        s, t = (v.cpu().numpy() for v in bn_fold_t(bn))
        sign, scale = signed_channels(s / 127.0)  # as ProgramBuilder.batchnorm: weight +-127
        w = torch.from_numpy(sign * 127).float().to(inp.v.device)
        acc_step = inp.step * torch.from_numpy(scale).float().to(inp.v.device).view(1, -1, 1, 1)
        acc = inp.codes * w.view(1, -1, 1, 1)
        accp = self._acc_with_bias(acc, acc_step, torch.from_numpy(t).to(inp.v.device))
        return Val(bn(inp.v), u=lambda step: accp.float() * (acc_step / step))

    def _elementwise(self, name: str, inp: Val, fn: Callable[[torch.Tensor], torch.Tensor],
                     grid: GridQuantizer | None) -> Val:
        if self.observe:
            y = fn(inp.v)
            return Val(grid(y, self.bit_index) if grid is not None else y)
        self._needs_grid(inp, name)
        with torch.no_grad():
            y_exact = fn(inp.v.detach())
        return self._grid_or_pending(grid, fn(inp.v), lambda step: y_exact / step)

    def prelu(self, name: str, inp: Val, act: nn.PReLU, grid: GridQuantizer | None = None) -> Val:
        return self._elementwise(name, inp, act, grid)

    def relu(self, name: str, inp: Val, grid: GridQuantizer | None = None) -> Val:
        return self._elementwise(name, inp, F.relu, grid)

    def add(self, name: str, a: Val, b: Val, a_mul: float | torch.Tensor = 1.0, grid: GridQuantizer | None = None) -> Val:
        """a * a_mul + b; with both inputs and the output on grids and a_mul > 0, as onnxruntime's
        QLinearAdd computes it (``ir.qlinear_add``)."""
        sur = a.v * a_mul + b.v
        if self.observe or grid is None:
            if grid is None and not self.observe:
                raise ValueError(f"{name}: a residual sum needs a learned int8 grid")
            return Val(grid(sur, self.bit_index) if grid is not None else sur)
        self._needs_grid(a, name)
        self._needs_grid(b, name)
        am = float(a_mul.detach()) if isinstance(a_mul, torch.Tensor) else float(a_mul)
        assert isinstance(a.step, torch.Tensor) and isinstance(b.step, torch.Tensor)
        sa, sb = a.step, b.step

        ca, cb = a.codes, b.codes
        assert ca is not None and cb is not None
        # int8 grids travel as uint8 with zero-point 128 (-GridQuantizer.qn); the clamp of
        # _on_grid is the int8 range
        z = -GridQuantizer.qn

        def u(sc: torch.Tensor) -> torch.Tensor:
            if not am > 0:
                return (a.v.detach() * am + b.v.detach()) / sc
            return qlinear_add(ca, sa, am, z, cb, sb, z, sc, z)

        return self._on_grid(grid, sur, u)

    def depth_to_space(self, name: str, inp: Val, block: int) -> Val:
        if inp.u is not None:
            raise ValueError(f"{name}: DepthToSpace of a tensor without its own grid")
        return Val(F.pixel_shuffle(inp.v, block), inp.step,
                   None if inp.codes is None else F.pixel_shuffle(inp.codes, block))

