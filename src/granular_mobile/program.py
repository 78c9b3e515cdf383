"""The network at one static bit level, as a flat list of export nodes.

One architecture walk serves every target: the torch executor (calibration, and the
integer-numerics reference that ``--verify`` and ``gdq eval --numerics int8`` use), the ONNX
emitter and the TF emitter. The program fixes every rounding point, so the three agree:

- quantized block convs: the learned activation step alpha_k is the int8/uint8 scale with
  zero-point 0 and the k-bit range kept as an integer clamp; weights are the trained int8
  integers. A BatchNorm right after a conv folds into that conv's per-output-channel weight
  scale (w_alpha * gamma / sigma) and an int32 bias; the integers never change. A negative
  fold factor flips the sign of that channel's integers (the range [-127, 127] is symmetric).
- every integer conv writes int8 (the output requantization that integer kernels need); its
  scale is the step the model learned for it at this bit level (numerics "int8": the model
  trained with this rounding point), or, for a float-numerics model, max|y| / 127 over
  calibration tiles (nothing clipped on those tiles). The SR output is the exception: it is
  written on the 8-bit image grid (see OUTPUT_Q).
- the torch executor computes the integer arithmetic of onnxruntime's kernels exactly
  (float32 requantization multipliers, QLinearAdd's fused multiply-adds, round half to
  even): the ONNX graphs match it bit for bit. TFLite's integer graphs build PReLU so that
  it matches too (see export/tflite.py); XNNPack's int8 ADD rounds with 20-bit fixed-point
  multipliers, which differs by a step on rare inputs.
- layers the paper keeps in full precision (head, body-end conv, upsampler, tail) are either
  float convs (``fp_layers="float"``) or int8 with per-channel 7-bit weight PTQ (see
  quant.QMAX_FP) (``"int8"``, what NNAPI / NPUs need). In ``"int8"`` the whole graph is integer:
  every tensor (PReLU, BatchNorm, residual sums) is int8 with a learned or calibrated scale, a tensor
  that feeds only a k-bit conv is written directly at that conv's step and k-bit range, a
  BatchNorm between PReLU and conv is a depthwise 1x1 integer conv (one exact int8 weight
  per channel), and the input tile is exact on uint8 with scale 1/255. Both targets execute
  exactly these rounding points (TFLite needs int8 tensors everywhere anyway; the ONNX
  graph carries them as QDQ pairs that onnxruntime runs as QLinear* kernels).
- rgb_range is folded into the head weights and the tail weights/bias.
- PixelShuffle is DepthToSpace in CRD order (ONNX mode="CRD"); the TF emitter permutes the
  upsampler's output channels for TF's DCR order.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig, level_name
from .quant import act_range
from .quant.lsq import fp_layer_int_weight

FP_LAYER_MODES = ("int8", "float")


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

    @property
    def zero_point(self) -> int:
        """Zero-point when carried as uint8 (how onnxruntime runs every activation here): a
        signed range is the same values shifted by -lo."""
        return -self.lo if self.signed else 0

    @property
    def kbit(self) -> bool:
        """A range narrower than its 8-bit type (needs an integer clamp)."""
        return (self.lo, self.hi) not in ((-128, 127), (0, 255))


#: the SR output of an integer graph: the 8-bit image grid (uint8, step 1/255, [0, 1]). The
#: runtime clamps to [0, 1] and rounds to 8 bits anyway, so this rounding point costs nothing,
#: while a symmetric int8 grid over max|sr| would be a 2.2/255 step: one flip of it at a
#: rounding tie was the largest part of the export-vs-reference differences.
OUTPUT_Q = QParams(1.0 / 255.0, 0, 255, False)


def int8_sym(max_abs: float) -> QParams:
    return QParams(max(max_abs, 1e-8) / 127.0, -128, 127, True)


@dataclass
class Conv:
    name: str
    inp: str
    out: str
    weight: np.ndarray  # float32 (float conv) or int8 integers (integer conv), OIHW (O, I/groups, kh, kw)
    w_scale: np.ndarray | None  # (O,) float per-channel scale of the integers; None: float weights
    bias: np.ndarray | None  # (O,) float
    pad: int
    in_q: QParams | None = None  # integer input (None: float input)
    quantized_layer: bool = False  # one of the paper's quantized block convs
    out_q: QParams | None = None  # integer output (set by calibration)
    groups: int = 1

    @property
    def integer(self) -> bool:
        return self.in_q is not None


@dataclass
class PRelu:
    inp: str
    out: str
    slope: float
    out_q: QParams | None = None


@dataclass
class Affine:
    """Per-channel y = x * scale + shift (a BatchNorm that does not follow a conv; float graphs)."""

    inp: str
    out: str
    scale: np.ndarray
    shift: np.ndarray
    out_q: QParams | None = None


@dataclass
class Add:
    """out = a * a_mul + b."""

    a: str
    b: str
    out: str
    a_mul: float = 1.0
    out_q: QParams | None = None


@dataclass
class Relu:
    inp: str
    out: str
    out_q: QParams | None = None


@dataclass
class DepthToSpace:
    """A pure permutation: an integer input stays on its grid."""

    inp: str
    out: str
    block: int
    out_q: QParams | None = None  # always the input's (set by calibration)


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

    @property
    def full_integer(self) -> bool:
        return self.bits is not None and self.fp_layers == "int8"

    def producers(self) -> dict[str, Node]:
        return {n.out: n for n in self.nodes}

    def consumers(self) -> dict[str, list[Node]]:
        uses: dict[str, list[Node]] = {}
        for n in self.nodes:
            for t in node_inputs(n):
                uses.setdefault(t, []).append(n)
        return uses


def node_inputs(n: Node) -> tuple[str, ...]:
    return (n.a, n.b) if isinstance(n, Add) else (n.inp,)


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
        from .errors import ConfigError

        raise ConfigError(f"--fp-layers '{fp_layers}' is unknown; valid: {list(FP_LAYER_MODES)}")
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


# -- integer arithmetic shared by the emitters and the reference ---------------------------
def acc_scale(n: Conv) -> np.ndarray:
    """Per-channel step of an integer conv's int32 accumulator, s_in * s_w, in float32 as the
    graph stores it (the bias's DequantizeLinear scale)."""
    assert n.in_q is not None, f"{n.name} is not an integer conv"
    return (np.float32(n.in_q.scale) * np.asarray(n.w_scale, np.float32)).astype(np.float32)


def int32_bias(n: Conv) -> np.ndarray:
    """The int32 bias of an integer conv: bias / (s_in * s_w)."""
    bs = acc_scale(n).astype(np.float64)
    return np.clip(np.round(np.asarray(n.bias, np.float64) / bs), -(2**31), 2**31 - 1).astype(np.int32)


def requant_multiplier(n: Conv) -> np.ndarray:
    """Per-channel float32 (s_in * s_w) / s_out, evaluated in float32 as the runtimes do."""
    assert n.out_q is not None, f"{n.name} has no output grid"
    return (acc_scale(n) / np.float32(n.out_q.scale)).astype(np.float32)


# -- torch execution: calibration and integer-numerics reference ------------------------
def _fq(x: torch.Tensor, q: QParams) -> torch.Tensor:
    return torch.clamp(torch.round(x / q.scale), q.lo, q.hi) * q.scale


def _f32(v: float | np.floating) -> float:
    return float(np.float32(v))


def qlinear_add(ca: torch.Tensor, sa: torch.Tensor | float, a_mul: float, za: int, cb: torch.Tensor,
                sb: torch.Tensor | float, zb: int, sc: torch.Tensor | float, zc: int) -> torch.Tensor:
    """A quantized residual sum as onnxruntime's QLinearAdd computes it on uint8, from the integer
    codes ``ca``, ``cb`` (before their zero-points) and the scales (float64 values: floats, or
    tensors broadcastable to the codes, e.g. one per sample): c = rint(fma(a_u, sa/sc, fma(b_u,
    sb/sc, zc - (za sa/sc + zb sb/sc)))) in float32, clamped to uint8, returned minus zc. Each
    fused multiply-add is exact in float64 (8-bit integer times a float32) and rounded to float32
    once, as the hardware FMA does. The one definition the reference (``run_program``) and the
    integer forward (``models/integer_forward.py``) share."""
    sa, sb, sc = (torch.as_tensor(s, dtype=torch.float64, device=ca.device) for s in (sa, sb, sc))
    ra = (sa * a_mul).float() / sc.float()
    rb = sb.float() / sc.float()
    fixed = torch.tensor(float(zc), dtype=torch.float32, device=ca.device) - (ra.double() * za + rb.double() * zb).float()
    t = ((cb.double() + zb) * rb.double() + fixed.double()).float().double()
    t = ((ca.double() + za) * ra.double() + t).float()
    return torch.clamp(torch.round(t), 0, 255) - zc


def _integer_add(a: torch.Tensor, qa: QParams, a_mul: float, b: torch.Tensor, qb: QParams, qc: QParams) -> torch.Tensor:
    """``qlinear_add`` of two dequantized tensors on their grids, dequantized on ``qc``
    (zero-point -lo for signed grids, as onnxruntime carries them on uint8)."""
    ca, cb = torch.round(a.double() / qa.scale), torch.round(b.double() / qb.scale)
    c = qlinear_add(ca, qa.scale, a_mul, qa.zero_point, cb, qb.scale, qb.zero_point, qc.scale, qc.zero_point)
    return torch.clamp(c, qc.lo, qc.hi) * _f32(qc.scale)


@torch.no_grad()
def run_program(prog: Program, x: torch.Tensor, emulate: bool = True, record: dict[str, float] | None = None,
                dtype: torch.dtype = torch.float32, trace: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Execute ``prog`` on NCHW [0, 1] tiles.

    ``emulate``: apply every integer rounding point of the program (conv inputs, and the int8
    outputs set by calibration) as the exported graphs do; False applies only the k-bit
    inputs of the quantized convs (what calibration measures). ``record``: updated with
    max|t| of every tensor. Tensors are dropped after their last use, so memory stays at a
    few activations. ``trace``: filled with every tensor (debugging a target tensor by tensor).
    """
    env: dict[str, torch.Tensor] = {prog.input: x.to(dtype)}
    grids = {n.out: n.out_q for n in prog.nodes if n.out_q is not None}
    last: dict[str, int] = {}
    for i, n in enumerate(prog.nodes):
        for t in node_inputs(n):
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
            quant_in = n.in_q is not None and n.in_q.scale > 0 and (emulate or n.quantized_layer)
            if quant_in and n.w_scale is not None:
                assert n.in_q is not None  # (quant_in)
                # integer conv, computed as integer kernels do: integer inputs times integer
                # weights (exact in float32: the partial sums stay far below 2^24), plus the
                # int32 bias, times the per-channel scale in float64
                xi = torch.clamp(torch.round(xin / n.in_q.scale), n.in_q.lo, n.in_q.hi)
                acc = F.conv2d(xi.float(), torch.from_numpy(n.weight.astype(np.float32)), padding=n.pad,
                               groups=n.groups).double()
                if n.bias is not None:
                    acc = acc + torch.from_numpy(int32_bias(n)).double().view(1, -1, 1, 1)
                if emulate and n.out_q is not None:
                    # the output requantization of integer kernels (onnxruntime's MLAS and
                    # XNNPack's fp32 requantization alike): float32(acc) times the float32
                    # multiplier s_in * s_w / s_out, one rounding half to even
                    m32 = torch.from_numpy(requant_multiplier(n)).view(1, -1, 1, 1)
                    yi = torch.clamp(torch.round(acc.float() * m32), n.out_q.lo, n.out_q.hi)
                    y = (yi * _f32(n.out_q.scale)).to(dtype)
                else:
                    g = n.in_q.scale * np.asarray(n.w_scale, np.float64)
                    y = (acc * torch.from_numpy(g).view(1, -1, 1, 1)).to(dtype)
            else:
                if quant_in:
                    assert n.in_q is not None  # (quant_in)
                    xin = _fq(xin, n.in_q)
                w = const(n.weight.astype(np.float64) * (1.0 if n.w_scale is None else n.w_scale[:, None, None, None]))
                b = None if n.bias is None else const(np.asarray(n.bias, dtype=np.float64))
                y = F.conv2d(xin, w, b, padding=n.pad, groups=n.groups)
        elif isinstance(n, PRelu):
            y = F.prelu(env[n.inp], torch.tensor([n.slope], dtype=dtype))
        elif isinstance(n, Relu):
            y = F.relu(env[n.inp])
        elif isinstance(n, Affine):
            y = env[n.inp] * const(n.scale).view(1, -1, 1, 1) + const(n.shift).view(1, -1, 1, 1)
        elif isinstance(n, Add):
            qa, qb = grids.get(n.a), grids.get(n.b)
            if emulate and n.out_q is not None and qa is not None and qb is not None and n.a_mul > 0:
                y = _integer_add(env[n.a], qa, n.a_mul, env[n.b], qb, n.out_q).to(dtype)
            else:
                y = env[n.a] * n.a_mul + env[n.b]
        elif isinstance(n, DepthToSpace):
            y = F.pixel_shuffle(env[n.inp], n.block)
        else:  # pragma: no cover
            raise TypeError(n)
        rec(n.out, y)
        if emulate and n.out_q is not None and not isinstance(n, DepthToSpace):
            y = _fq(y, n.out_q)
        env[n.out] = y
        if trace is not None:
            trace[n.out] = y
        for t in [t for t, j in last.items() if j == i and t not in keep]:
            env.pop(t, None)
    return env[prog.output].float()


def calibrate_program(prog: Program, tiles: torch.Tensor | None, batch: int = 4) -> Program:
    """Set the integer grids that are not learned: int8 outputs (max|x| / 127 over ``tiles``
    (N, 3, T, T) [0, 1], measured without output requantization, so no calibration value is
    clipped) and the inputs of int8 full-precision layers (their producer's grid).

    Integer conv outputs always get an int8 grid; in a full-integer program every other
    tensor does too, and a tensor whose only consumer is a k-bit conv is written directly at
    that conv's step and k-bit range (one rounding instead of two). Grids a model learned
    (numerics "int8": set by ``build_program``) are kept; when every grid is learned, no
    ``tiles`` are needed.
    """
    uses = prog.consumers()
    prod = prog.producers()

    def rule(n: Node) -> QParams | None:
        u = uses.get(n.out, [])
        if n.out == prog.output or (len(u) == 1 and isinstance(u[0], DepthToSpace) and u[0].out == prog.output):
            return OUTPUT_Q
        if prog.full_integer and len(u) == 1 and isinstance(u[0], Conv) and u[0].quantized_layer:
            return u[0].in_q
        return None

    needs = [n for n in prog.nodes if not isinstance(n, DepthToSpace) and n.out_q is None and rule(n) is None
             and (prog.full_integer or (isinstance(n, Conv) and n.integer))]
    ranges: dict[str, float] = {}
    if needs:
        if tiles is None:
            raise ValueError(f"tensor '{needs[0].out}' has no learned grid and no calibration tiles were given")
        for i in range(0, len(tiles), batch):
            run_program(prog, tiles[i:i + batch], emulate=False, record=ranges)
    prog.ranges = ranges
    for n in prog.nodes:
        if isinstance(n, DepthToSpace):
            n.out_q = getattr(prod.get(n.inp), "out_q", None)
            continue
        if not (prog.full_integer or (isinstance(n, Conv) and n.integer)):
            continue
        r = rule(n)
        if r is not None:
            n.out_q = r
        elif n.out_q is None:
            n.out_q = int8_sym(ranges[n.out])
    for n in prog.convs:
        if n.in_q is not None and n.in_q.scale == 0.0:  # int8 full-precision layer: its producer's grid
            p = prod.get(n.inp)
            pq = getattr(p, "out_q", None)
            n.in_q = pq if pq is not None else int8_sym(ranges.get(n.inp, 1.0))
    return prog


def deployed_programs(model: Lowerable, tiles: torch.Tensor | None, fp_layers: str = "int8") -> dict[int, Program]:
    """The program of every bit level with all its grids (learned, or calibrated on ``tiles``):
    what ``gdq export`` writes, and what ``gdq eval --numerics int8`` runs in PyTorch."""
    return {b: calibrate_program(build_program(model, b, fp_layers), tiles) for b in model.bits}


def deployed_level_programs(model: Lowerable, tiles: torch.Tensor | None, fp_layers: str = "int8") -> dict[str, Program]:
    """The program of every level (``ModelConfig.levels``: the bit levels, then the exit levels),
    by level name (``a6``, ``a6k4``): what ``gdq export`` writes, one graph each."""
    cfg = model.cfg
    return {level_name(b, k, cfg.n_blocks): calibrate_program(build_program(model, b, fp_layers, blocks=k), tiles)
            for b, k in cfg.levels}
