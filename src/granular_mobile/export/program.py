"""The network at one static bit level, as a flat list of export nodes.

One architecture walk serves every target: the torch emulator (calibration of the int8
requantization ranges, and the integer-numerics reference), the ONNX emitter and the TF
emitter. Numerics decided here:

- quantized block convs: the learned activation step alpha_k is the int8/uint8 scale with
  zero-point 0 and the k-bit range kept as an integer clamp; weights are the trained int8
  integers. A BatchNorm right after a conv folds into that conv's per-output-channel weight
  scale (w_alpha * gamma / sigma) and an int32 bias; the integers never change. A negative
  fold factor flips the sign of that channel's integers (the range [-127, 127] is symmetric).
- every integer conv writes int8 (the output requantization that integer kernels need); its
  scale is max|y| / 127 over calibration tiles, so nothing is clipped on those tiles.
- layers the paper keeps in full precision (head, body-end conv, upsampler, tail) are either
  float convs (``fp_layers="float"``) or int8 with per-channel 7-bit weight PTQ (see
  QMAX_FP) and calibrated input scales (``"int8"``, what NNAPI / NPUs need). The input tile is
  exact on uint8 with scale 1/255.
- rgb_range is folded into the head weights and the tail weights/bias.
- PixelShuffle is DepthToSpace in CRD order (ONNX mode="CRD"); the TF emitter permutes the
  upsampler's output channels for TF's DCR order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import GDQNet
from ..quant import act_range

FP_LAYER_MODES = ("int8", "float")
#: weight range of the int8 full-precision layers (PTQ): 7 bits. Their activations use the
#: full 8-bit range, and onnxruntime's x86 u8s8 kernels saturate int16 pair sums with 8-bit
#: weights there (measured: 41 dB vs the integer reference, 60+ dB at 7 bits), the reason
#: onnxruntime's own quantizer has ``reduce_range``. The trained block convs keep [-127, 127].
QMAX_FP = 63


@dataclass
class QParams:
    """Integer activation: q = clamp(round(x / scale), lo, hi), stored as int8 or uint8."""

    scale: float
    lo: int
    hi: int
    signed: bool

    @property
    def dtype(self) -> str:
        return "int8" if self.signed else "uint8"


@dataclass
class Conv:
    name: str
    inp: str
    out: str
    weight: np.ndarray  # float32 (float conv) or int8 integers (integer conv), OIHW
    w_scale: np.ndarray | None  # (O,) float per-channel scale of the integers; None: float weights
    bias: np.ndarray | None  # (O,) float
    pad: int
    in_q: QParams | None = None  # integer input (None: float input)
    quantized_layer: bool = False  # one of the paper's quantized block convs
    out_scale: float | None = None  # int8 output requantization scale (set by calibration)

    @property
    def integer(self) -> bool:
        return self.in_q is not None


@dataclass
class PRelu:
    inp: str
    out: str
    slope: float


@dataclass
class Affine:
    """Per-channel y = x * scale + shift (a BatchNorm that does not follow a conv)."""

    inp: str
    out: str
    scale: np.ndarray
    shift: np.ndarray


@dataclass
class Add:
    """out = a * a_mul + b."""

    a: str
    b: str
    out: str
    a_mul: float = 1.0


@dataclass
class Relu:
    inp: str
    out: str


@dataclass
class DepthToSpace:
    inp: str
    out: str
    block: int


Node = Conv | PRelu | Affine | Add | Relu | DepthToSpace


@dataclass
class Program:
    nodes: list[Node]
    input: str = "lr"
    output: str = "sr"
    bits: int | None = None  # None: full-precision twin
    fp_layers: str = "float"
    ranges: dict[str, float] = field(default_factory=dict)  # tensor -> max|x| on calibration tiles

    @property
    def convs(self) -> list[Conv]:
        return [n for n in self.nodes if isinstance(n, Conv)]


def _bn_fold(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double()
    t = (bn.bias.detach().double() - bn.running_mean.double() * s)
    return s.numpy(), t.numpy()


def _ptq_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 ([-QMAX_FP, QMAX_FP]) of a float weight."""
    s = np.abs(w).reshape(w.shape[0], -1).max(1)
    s = np.where(s > 0, s / QMAX_FP, 1.0)
    q = np.clip(np.round(w / s[:, None, None, None]), -QMAX_FP, QMAX_FP)
    return q.astype(np.int8), s


class _Builder:
    def __init__(self, fp_layers: str) -> None:
        self.nodes: list[Node] = []
        self.fp_layers = fp_layers
        self._n = 0

    def t(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def fp_conv(self, name: str, inp: str, conv: nn.Conv2d, w_mul: np.ndarray | float = 1.0,
                b_add: np.ndarray | None = None, b_mul: float = 1.0, in_q: QParams | None = None) -> str:
        """A full-precision layer: float conv, or int8 PTQ (per-channel) when fp_layers == int8."""
        w = conv.weight.detach().double().numpy() * (np.asarray(w_mul).reshape(-1, 1, 1, 1) if np.ndim(w_mul) else w_mul)
        b = conv.bias.detach().double().numpy() * b_mul if conv.bias is not None else None
        if b_add is not None:
            b = b_add if b is None else b + b_add
        out = self.t(name)
        if self.fp_layers == "int8":
            q, s = _ptq_weight(w)
            self.nodes.append(Conv(name, inp, out, q, s.astype(np.float64), b, conv.padding[0],
                                   in_q=in_q or QParams(0.0, -128, 127, True)))
        else:
            self.nodes.append(Conv(name, inp, out, w.astype(np.float32), None, b, conv.padding[0]))
        return out

    def q_conv(self, name: str, inp: str, conv, bit_index: int, bn: nn.BatchNorm2d | None = None) -> str:
        """One of the paper's quantized convs, at the given bit level, BN folded in exactly."""
        k = conv.aq.bits[bit_index]
        lo, hi = act_range(k, conv.aq.is_signed)
        in_q = QParams(float(conv.aq.alpha.detach()[bit_index]), lo, hi, conv.aq.is_signed)
        wint = conv.wq.integer_weight(conv.weight.detach()).detach().double().numpy()
        ws = np.full(wint.shape[0], float(conv.wq.alpha.detach()), dtype=np.float64)
        b = conv.bias.detach().double().numpy() if conv.bias is not None else None
        if bn is not None:
            s, t = _bn_fold(bn)
            ws = ws * s
            b = t if b is None else b * s + t
        neg = ws < 0
        wint[neg] = -wint[neg]
        ws = np.abs(ws)
        out = self.t(name)
        self.nodes.append(Conv(name, inp, out, wint.astype(np.int8), ws, b, conv.padding[0], in_q=in_q,
                               quantized_layer=True))
        return out


def build_program(model: GDQNet, bits: int | None, fp_layers: str = "float") -> Program:
    """The model at a static bit level (``None``: a full-precision model, all float)."""
    if fp_layers not in FP_LAYER_MODES:
        from ..errors import ConfigError

        raise ConfigError(f"--fp-layers '{fp_layers}' is unknown; valid: {list(FP_LAYER_MODES)}")
    cfg = model.cfg
    if bits is not None and not cfg.quantized:
        raise ValueError("bits given for a full-precision model")
    bi = cfg.quant.index(bits) if bits is not None else None
    mode = fp_layers if bits is not None else "float"
    b = _Builder(mode)
    rr = cfg.rgb_range
    x = "lr"
    # head (rgb_range folded into the weights: conv(x * r) = conv_{W r}(x) for bias-free convs,
    # and conv_{W r, b}(x) when there is a bias)
    z1 = b.fp_conv("head", x, model.head[0], w_mul=rr, in_q=QParams(1.0 / 255.0, 0, 255, False))
    h = z1
    if len(model.head) > 1:
        h = b.t("head_act")
        b.nodes.append(PRelu(z1, h, float(model.head[1].weight.detach())))
    r = h
    nb = cfg.n_blocks
    for i, blk in enumerate(model.body[:nb]):
        if cfg.arch == "srresnet":
            c1 = b.q_conv(f"b{i}_conv1", r, blk.conv1, bi) if bi is not None else b.fp_conv(f"b{i}_conv1", r, blk.conv1)
            a = b.t(f"b{i}_act")
            b.nodes.append(PRelu(c1, a, float(blk.act.weight.detach())))
            s, t = _bn_fold(blk.bn1)
            n1 = b.t(f"b{i}_bn1")
            b.nodes.append(Affine(a, n1, s, t))
            if bi is not None:
                c2 = b.q_conv(f"b{i}_conv2", n1, blk.conv2, bi, bn=blk.bn2)
            else:
                s2, t2 = _bn_fold(blk.bn2)
                c2 = b.fp_conv(f"b{i}_conv2", n1, blk.conv2, w_mul=s2, b_add=t2)
            o = b.t(f"b{i}_out")
            b.nodes.append(Add(r, c2, o, float(blk.learnable_shortcut.detach())))
        else:
            c1 = b.q_conv(f"b{i}_conv1", r, blk.conv1, bi) if bi is not None else b.fp_conv(f"b{i}_conv1", r, blk.conv1)
            a = b.t(f"b{i}_relu")
            b.nodes.append(Relu(c1, a))
            c2 = b.q_conv(f"b{i}_conv2", a, blk.conv2, bi) if bi is not None else b.fp_conv(f"b{i}_conv2", a, blk.conv2)
            o = b.t(f"b{i}_out")
            b.nodes.append(Add(r, c2, o))
        r = o
    if cfg.arch == "srresnet":
        s, t = _bn_fold(model.body[nb + 1])
        e = b.fp_conv("body_end", r, model.body[nb], w_mul=s, b_add=t)
    else:
        e = b.fp_conv("body_end", r, model.body[nb])
    r = b.t("body_out")
    b.nodes.append(Add(e, h, r))
    ups = list(model.tail[0])
    j = 0
    while j < len(ups):
        c = b.fp_conv(f"up{j}", r, ups[j])
        d = b.t(f"up{j}_d2s")
        b.nodes.append(DepthToSpace(c, d, 2))
        r = d
        j += 2
        if j < len(ups) and isinstance(ups[j], nn.PReLU):
            p = b.t(f"up{j}_act")
            b.nodes.append(PRelu(r, p, float(ups[j].weight.detach())))
            r = p
            j += 1
    out = b.fp_conv("tail", r, model.tail[1], w_mul=1.0 / rr, b_mul=1.0 / rr)
    # rename the final tensor to the graph output
    last = b.nodes[-1]
    assert isinstance(last, Conv) and last.out == out
    last.out = "sr"
    return Program(b.nodes, bits=bits, fp_layers=mode)


# -- torch execution: calibration and integer-numerics emulation -------------------------
def _fq(x: torch.Tensor, q: QParams) -> torch.Tensor:
    return torch.clamp(torch.round(x / q.scale), q.lo, q.hi) * q.scale


@torch.no_grad()
def run_program(prog: Program, x: torch.Tensor, emulate: bool = True, record: dict[str, float] | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Execute ``prog`` on NCHW [0, 1] tiles.

    ``emulate``: apply the integer numerics (input quantization of integer convs, int8 output
    requantization) as the exported graphs do; False skips the output requantization (what
    calibration measures). ``record``: updated with max|t| of every tensor. Tensors are
    dropped after their last use, so memory stays at a few activations.
    """
    env: dict[str, torch.Tensor] = {prog.input: x.to(dtype)}
    last: dict[str, int] = {}
    for i, n in enumerate(prog.nodes):
        for t in ((n.a, n.b) if isinstance(n, Add) else (n.inp,)):
            last[t] = i
    keep = {prog.output}

    def rec(name: str, v: torch.Tensor) -> None:
        if record is not None:
            record[name] = max(record.get(name, 0.0), float(v.abs().max()))

    def const(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(dtype)

    for i, n in enumerate(prog.nodes):
        if isinstance(n, Conv):
            xin = env[n.inp]
            if n.in_q is not None and n.in_q.scale > 0:  # scale 0: not calibrated yet, run float
                xin = _fq(xin, n.in_q)
            w = const(n.weight.astype(np.float64) * (1.0 if n.w_scale is None else n.w_scale[:, None, None, None]))
            b = None
            if n.bias is not None:
                bias = np.asarray(n.bias, dtype=np.float64)
                if n.in_q is not None and n.in_q.scale > 0 and n.w_scale is not None:
                    # int32 bias on the accumulator grid (scale = x_scale * w_scale), as kernels store it
                    g = n.in_q.scale * n.w_scale
                    bias = np.round(bias / g) * g
                b = const(bias)
            y = F.conv2d(xin, w, b, padding=n.pad)
            rec(n.out, y)
            if emulate and n.out_scale is not None:
                y = torch.clamp(torch.round(y / n.out_scale), -128, 127) * n.out_scale
            env[n.out] = y
        elif isinstance(n, PRelu):
            env[n.out] = F.prelu(env[n.inp], torch.tensor([n.slope], dtype=dtype))
        elif isinstance(n, Relu):
            env[n.out] = F.relu(env[n.inp])
        elif isinstance(n, Affine):
            env[n.out] = env[n.inp] * const(n.scale).view(1, -1, 1, 1) + const(n.shift).view(1, -1, 1, 1)
        elif isinstance(n, Add):
            env[n.out] = env[n.a] * n.a_mul + env[n.b]
        elif isinstance(n, DepthToSpace):
            env[n.out] = F.pixel_shuffle(env[n.inp], n.block)
        if not isinstance(n, Conv):
            rec(n.out, env[n.out])
        for t in [t for t, j in last.items() if j == i and t not in keep]:
            env.pop(t, None)
    return env[prog.output].float()


def calibrate_program(prog: Program, tiles: torch.Tensor, batch: int = 4) -> Program:
    """Set int8 input scales of int8 full-precision layers and output scales of every integer conv.

    Ranges are the max |x| over ``tiles`` (N, 3, T, T) [0, 1] of the execution without
    output requantization, so no calibration value is clipped.
    """
    ranges: dict[str, float] = {}
    for i in range(0, len(tiles), batch):
        run_program(prog, tiles[i:i + batch], emulate=False, record=ranges)
    prog.ranges = ranges
    for n in prog.convs:
        if n.in_q is not None and n.in_q.scale == 0.0:  # int8 full-precision layer: calibrated input
            n.in_q.scale = max(ranges.get(n.inp, 1.0), 1e-8) / 127.0
        if n.integer:
            n.out_scale = max(ranges[n.out], 1e-8) / 127.0
    return prog
