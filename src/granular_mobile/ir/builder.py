"""What a model family lowers itself into (``ProgramBuilder``), and ``build_program``."""
from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn

from ..config import ModelConfig
from ..quant import act_range
from ..quant.lsq import fp_layer_int_weight
from .nodes import Add, Affine, Conv, DepthToSpace, Node, PRelu, Program, QParams, Relu

FP_LAYER_MODES = ("int8", "float")


def bn_fold_t(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A BatchNorm (running statistics) as y = x * s + t: (s, t) in float64 on its device."""
    # the models' BatchNorms track running statistics (None only with track_running_stats=False)
    assert bn.running_var is not None and bn.running_mean is not None
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
    t = bn.bias.detach().double() - bn.running_mean.double() * s
    return s, t


def bn_fold(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    s, t = bn_fold_t(bn)
    return s.cpu().numpy(), t.cpu().numpy()


def signed_channels(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A per-output-channel multiplier ``s`` of integer weights (a folded BatchNorm, rgb_range)
    as the graphs store it: the sign that multiplies each channel's integers (the range
    [-127, 127] is symmetric; 0 zeroes a channel whose multiplier is 0, e.g. BatchNorm gamma 0)
    and the positive per-channel scale (1 for a zero channel: any scale would do)."""
    return np.sign(s), np.where(s == 0, 1.0, np.abs(s))


class ProgramBuilder:
    """What a model family's ``lower`` writes its network into, at one bit level.

    ``grid``: the learned int8 grid (``quant.GridQuantizer``) of a node's output in a model
    trained with the integer numerics; its step at this bit level becomes the tensor's scale.
    Without one (float numerics), ``calibrate_program`` measures the scale after training."""

    input = "lr"
    #: the input tile: exact on uint8 with step 1/255
    image_q = QParams(1.0 / 255.0, 0, 255, False)

    def __init__(self, fp_layers: str, bit_index: int | None, blocks: int | None = None) -> None:
        self.nodes: list[Node] = []
        self.fp_layers = fp_layers
        self.bit_index = bit_index
        #: residual blocks to run (an exit level, ``ModelConfig.exits``); None: all of them
        self.blocks = blocks
        self._n = 0

    def t(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def _grid(self, grid) -> QParams | None:
        """The learned grid at this level, in a full-integer program (else calibrated later)."""
        if grid is None or self.bit_index is None or self.fp_layers != "int8":
            return None
        return QParams(grid.step(self.bit_index), grid.qn, grid.qp, True)

    def fp_conv(self, name: str, inp: str, conv: nn.Conv2d, w_mul: np.ndarray | float = 1.0,
                b_add: np.ndarray | None = None, b_mul: float = 1.0, in_q: QParams | None = None,
                bn: nn.BatchNorm2d | None = None, grid=None) -> str:
        """A full-precision layer (``bn``: a BatchNorm right after it, folded in): float conv,
        or int8 PTQ (per-channel) when fp_layers == int8."""
        if bn is not None:
            w_mul, b_add = bn_fold(bn)
        mul = np.broadcast_to(np.asarray(w_mul, np.float64), (conv.weight.shape[0],))
        b = conv.bias.detach().double().numpy() * b_mul if conv.bias is not None else None
        if b_add is not None:
            b = b_add if b is None else b + b_add
        out = self.t(name)
        if self.fp_layers == "int8":
            # the integers training used (quant.fp_layer_int_weight); the multiplier goes into
            # the per-channel scale, a negative one flips that channel's integers
            qt, st = fp_layer_int_weight(conv.weight)
            sign, scale = signed_channels(st.numpy() * mul)
            q = qt.numpy() * sign.reshape(-1, 1, 1, 1)
            self.nodes.append(Conv(name, inp, out, q.astype(np.int8), scale, b, int(conv.padding[0]),
                                   in_q=in_q or QParams(0.0, -128, 127, True), out_q=self._grid(grid)))
        else:
            w = conv.weight.detach().double().numpy() * mul.reshape(-1, 1, 1, 1)
            self.nodes.append(Conv(name, inp, out, w.astype(np.float32), None, b, int(conv.padding[0])))
        return out

    def output_conv(self, name: str, inp: str, conv: nn.Conv2d, w_mul: float = 1.0, b_mul: float = 1.0) -> None:
        """The last conv: its output is the graph's ``sr`` (on the 8-bit image grid when integer)."""
        self.fp_conv(name, inp, conv, w_mul=w_mul, b_mul=b_mul)
        last = self.nodes[-1]
        assert isinstance(last, Conv)
        last.out = "sr"

    def batchnorm(self, name: str, inp: str, bn: nn.BatchNorm2d) -> str:
        """A BatchNorm after a nonlinearity: float per-channel affine, or (full integer) a
        depthwise 1x1 conv whose int8 weight +-127 with scale |s|/127 is exactly s."""
        s, t = bn_fold(bn)
        out = self.t(name)
        if self.fp_layers != "int8":
            self.nodes.append(Affine(inp, out, s, t))
            return out
        sign, scale = signed_channels(s / 127.0)
        w = (sign * 127).astype(np.int8).reshape(-1, 1, 1, 1)
        self.nodes.append(Conv(name, inp, out, w, scale, t, 0, in_q=QParams(0.0, -128, 127, True), groups=len(s)))
        return out

    def q_conv(self, name: str, inp: str, conv, bit_index: int, bn: nn.BatchNorm2d | None = None, grid=None) -> str:
        """One of the paper's quantized convs, at the given bit level, BN folded in exactly."""
        k = conv.aq.bits[bit_index]
        lo, hi = act_range(k, conv.aq.is_signed)
        in_q = QParams(float(conv.aq.alpha.detach()[bit_index]), lo, hi, conv.aq.is_signed)
        wint = conv.wq.integer_weight(conv.weight.detach()).detach().double().numpy()
        ws = np.full(wint.shape[0], float(conv.wq.alpha.detach()), dtype=np.float64)
        b = conv.bias.detach().double().numpy() if conv.bias is not None else None
        if bn is not None:
            s, t = bn_fold(bn)
            ws = ws * s
            b = t if b is None else b * s + t
        sign, scale = signed_channels(ws)
        wint = wint * sign.reshape(-1, 1, 1, 1)
        out = self.t(name)
        self.nodes.append(Conv(name, inp, out, wint.astype(np.int8), scale, b, conv.padding[0], in_q=in_q,
                               quantized_layer=True, out_q=self._grid(grid)))
        return out

    def block_conv(self, name: str, inp: str, conv, bit_index: int | None, bn: nn.BatchNorm2d | None = None,
                   grid=None) -> str:
        """A conv the paper quantizes: ``q_conv`` at a bit level, a float conv in the
        full-precision program (``bit_index`` None)."""
        if bit_index is None:
            return self.fp_conv(name, inp, conv, bn=bn)
        return self.q_conv(name, inp, conv, bit_index, bn=bn, grid=grid)

    def prelu(self, name: str, inp: str, act: nn.PReLU, grid=None) -> str:
        out = self.t(name)
        self.nodes.append(PRelu(inp, out, float(act.weight.detach()), out_q=self._grid(grid)))
        return out

    def relu(self, name: str, inp: str, grid=None) -> str:
        out = self.t(name)
        self.nodes.append(Relu(inp, out, out_q=self._grid(grid)))
        return out

    def add(self, name: str, a: str, b: str, a_mul: float | torch.Tensor = 1.0, grid=None) -> str:
        """a * a_mul + b (``a_mul`` a float, or a learned one-element parameter)."""
        out = self.t(name)
        am = float(a_mul.detach()) if isinstance(a_mul, torch.Tensor) else float(a_mul)
        self.nodes.append(Add(a, b, out, am, out_q=self._grid(grid)))
        return out

    def depth_to_space(self, name: str, inp: str, block: int) -> str:
        out = self.t(name)
        self.nodes.append(DepthToSpace(inp, out, block))
        return out


class Lowerable(Protocol):
    """A network that writes itself into a program (every ``models.GDQNet`` family)."""

    cfg: ModelConfig

    @property
    def bits(self) -> tuple[int, ...]: ...

    def lower(self, b: ProgramBuilder, bit_index: int | None) -> None: ...

    def net_for(self, level: int | None) -> Lowerable: ...


def build_program(model: Lowerable, bits: int | None, fp_layers: str = "float", blocks: int | None = None) -> Program:
    """The model at a static bit level (``None``: a full-precision model, all float), as its
    family lowers it (``GDQNet.lower``); ``blocks``: an exit level's depth (``ModelConfig.exits``;
    None: every block)."""
    if fp_layers not in FP_LAYER_MODES:
        from ..errors import ConfigError

        raise ConfigError(f"``fp_layers`` '{fp_layers}' is unknown; valid: {list(FP_LAYER_MODES)}")
    cfg = model.cfg
    if bits is not None and not cfg.quantized:
        raise ValueError("bits given for a full-precision model")
    bi = cfg.quant.index(bits) if bits is not None else None
    mode = fp_layers if bits is not None else "float"
    depth = None if blocks is None or blocks == cfg.n_blocks else blocks
    b = ProgramBuilder(mode, bi, depth)
    # a level with weights of its own lowers its own copy
    model.net_for(None if bits is None else cfg.level_index(bits, depth)).lower(b, bi)
    if not b.nodes or b.nodes[-1].out != "sr":
        raise ValueError(f"{type(model).__name__}.lower did not end with output_conv")
    return Program(_tail_at_lr(b.nodes), bits=bits, fp_layers=mode)


def _tail_at_lr(nodes: list[Node]) -> list[Node]:
    """Move the last DepthToSpace after the tail conv: conv_k(d2s_r(x)) = d2s_r(conv'(x)), where
    conv' runs at the lower resolution with r*r times the input and output channels and a
    kernel of ceil-ish k/r taps (each HR output phase reads its own subset of the k x k taps;
    the missing taps are zeros). The same products are summed, so integer accumulators are
    identical; the gain is speed: a conv with 3 output channels at HR resolution wastes most of
    a GEMM kernel's width (onnxruntime's QLinearConv spent a third of the 4-bit graph's time
    in it), 12 output channels fill it. An elementwise PReLU in between commutes with the
    permutation."""
    tail = nodes[-1]
    i = len(nodes) - 2
    before_tail = nodes[i]
    act = before_tail if isinstance(before_tail, PRelu) else None
    d2s = nodes[i - 1] if act is not None else nodes[i]
    if not (isinstance(tail, Conv) and isinstance(d2s, DepthToSpace) and tail.groups == 1
            and tail.inp == (act.out if act else d2s.out) and (act is None or act.inp == d2s.out)):
        return nodes
    r, k, pad = d2s.block, tail.weight.shape[2], tail.pad
    lo, hi = -((pad + r - 1) // r), (r - 1 + k - 1 - pad) // r
    if k != tail.weight.shape[3] or 2 * pad + 1 != k or lo != -hi:
        return nodes
    o, c = tail.weight.shape[:2]
    kl = hi - lo + 1
    w = np.zeros((o * r * r, c * r * r, kl, kl), dtype=tail.weight.dtype)
    for a in range(r):
        for bb in range(r):
            for u in range(k):
                da, pa = divmod(a + u - pad, r)
                for v in range(k):
                    db, pb = divmod(bb + v - pad, r)
                    # output channel oo*r*r + a*r + bb reads input channel cc*r*r + pa*r + pb (CRD)
                    w[a * r + bb::r * r, pa * r + pb::r * r, da - lo, db - lo] = tail.weight[:, :, u, v]
    rep = lambda v: None if v is None else np.repeat(np.asarray(v), r * r)  # noqa: E731
    lr_out = "sr_lr"
    conv = Conv(tail.name, act.out if act else d2s.inp, lr_out, w, rep(tail.w_scale), rep(tail.bias), hi,
                in_q=tail.in_q, quantized_layer=tail.quantized_layer)
    head = nodes[:i - 1] if act is not None else nodes[:i]
    mid = [dataclasses.replace(act, inp=d2s.inp)] if act is not None else []
    return head + mid + [conv, DepthToSpace(lr_out, tail.out, r)]

