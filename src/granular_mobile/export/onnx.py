"""ONNX target: QDQ graphs that onnxruntime's CPU provider runs with integer kernels.

Every rounding point of the program is one QuantizeLinear -> (Clip) -> DequantizeLinear:
per integer conv, DQ(input) -> Conv(DQ(int8 W, per-channel scale), DQ(int32 bias)) ->
Q(output) -> DQ, which onnxruntime fuses into QLinearConv. A k-bit range is an integer Clip
between Q and DQ: a float Clip before QuantizeLinear blocks the fusion, and 4-bit ONNX types
are not executed as integers by onnxruntime (docs/EXPORT.md). In full-integer graphs the
PReLU (LeakyRelu), residual Add and DepthToSpace also sit between QDQ pairs, so they run as
QLinearLeakyRelu / QLinearAdd / int8 DepthToSpace and the graph stays integer between convs.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import require
from ..ir import Add, Affine, Conv, DepthToSpace, Node, PRelu, Program, QParams, Relu, acc_scale, handler, int32_bias
from .channel_pairs import order_for_u8s8, pair_sums_fit

OPSET = 21


class _G:
    def __init__(self) -> None:
        onnx = require("onnx", "export")
        self.onnx, self.h, self.nph = onnx, onnx.helper, onnx.numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self._n = 0

    def const(self, name: str, arr: np.ndarray | np.generic) -> str:
        self._n += 1
        nm = f"{name}__c{self._n}"
        self.inits.append(self.nph.from_array(np.asarray(arr), nm))
        return nm

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        self._n += 1
        out = out or f"{op.lower()}__{self._n}"
        self.nodes.append(self.h.make_node(op, inputs, [out], name=f"{op}_{self._n}", **attrs))
        return out


def _int_type(q: QParams) -> tuple[type, int, int, int]:
    """(numpy type, zero-point, lo, hi) that carry ``q`` in ONNX.

    Every activation travels as uint8; a signed range is the same values with zero-point -lo.
    Measured with onnxruntime 1.32: it fuses Q -> Clip(uint8) -> DQ -> Conv into QLinearConv but
    not with an int8 Clip, and it fused the residual adds into QLinearAdd only once the
    tensors were uint8.
    """
    return np.uint8, q.zero_point, q.lo + q.zero_point, q.hi + q.zero_point


def _convsym_pad(out_channels: int, in_channels: int) -> int:
    """Zero filters to add so that onnxruntime (1.32, x86) runs a conv with int8 weights in its
    indirect symmetric kernels (MlasConvSym: >= 16 output channels, a multiple of 8; input
    channels a multiple of 4) instead of im2col + GEMM. The x2 tail at low resolution has 12
    output channels and 6400 values per im2col row: measured 36.6 ms of the 8-bit graph's
    ~200 ms on one thread."""
    if in_channels % 4:
        return 0
    target = max(16, -(-out_channels // 8) * 8)
    return target - out_channels


class _Emitter:
    """Tracks which float tensors are DequantizeLinear outputs, and of which integer tensor, so
    each rounding point of the program is one Q -> (Clip) -> DQ and consumers reuse it."""

    def __init__(self, g: _G) -> None:
        self.g = g
        self.qt: dict[str, tuple[str, str, str, QParams]] = {}  # dq tensor -> (q tensor, scale, zp, params)
        self.u8u8: list[str] = []  # convs written with uint8 weights (onnxruntime's u8u8 kernels)

    def quant(self, x: str, q: QParams, out: str, hint: str) -> str:
        g = self.g
        it, zp, lo, hi = _int_type(q)
        s = g.const(hint + "_s", np.float32(q.scale))
        z = g.const(hint + "_zp", it(zp))
        xq = g.node("QuantizeLinear", [x, s, z])
        info = np.iinfo(it)
        # A requantization (DQ -> Q onto another grid) always gets the integer Clip, even a
        # no-op one: without it onnxruntime's DoubleQDQPairsRemover folds Q1 -> DQ1 -> Q2 -> DQ2
        # into one rounding of the float value, which neither the reference nor TFLite (int8
        # tensors: two roundings) do (measured: 46 % of the first 8-bit block conv's outputs
        # differed from the reference by up to 4 steps).
        if lo > info.min or hi < info.max or x in self.qt:
            xq = g.node("Clip", [xq, g.const(hint + "_lo", it(lo)), g.const(hint + "_hi", it(hi))])
        g.node("DequantizeLinear", [xq, s, z], out)
        self.qt[out] = (xq, s, z, q)
        return out

    def on_grid(self, x: str, q: QParams) -> bool:
        return x in self.qt and self.qt[x][3] is q

    def conv(self, n: Conv) -> str:
        g = self.g
        x = n.inp
        attrs = dict(pads=[n.pad] * 4, kernel_shape=list(n.weight.shape[2:]), group=n.groups)
        if n.in_q is None:  # float conv
            ins = [x, g.const(n.name + "_w", n.weight.astype(np.float32))]
            if n.bias is not None:
                ins.append(g.const(n.name + "_b", n.bias.astype(np.float32)))
            y = g.node("Conv", ins, None if n.out_q else n.out, **attrs)
        else:
            q = n.in_q
            assert q is not None and n.w_scale is not None  # (n.integer)
            xd = x if self.on_grid(x, q) else self.quant(x, q, f"{n.name}_xq", n.name + "_x")
            ws = n.w_scale.astype(np.float32)
            _, _, _, xhi = _int_type(q)
            if n.groups == 1 and not pair_sums_fit(n.weight, xhi):
                # onnxruntime's x86 u8s8 kernels (AVX2 without VNNI) add products in int16 pairs
                # with saturation (channel_pairs.py reorders channels so this is rare); with
                # uint8 weights (zero-point 128, the same integers) it takes the u8u8 kernels,
                # which do not saturate (measured on 8 tiles against a float64 reference: 44.7 ->
                # 53.0 dB at 8 bits before the reordering) but run about 1.6x slower
                wq, wzp = (n.weight.astype(np.int16) + 128).astype(np.uint8), np.full(len(ws), 128, np.uint8)
                self.u8u8.append(n.name)
            else:
                wq, wzp = n.weight.astype(np.int8), np.zeros(len(ws), np.int8)
            bq, bs = (int32_bias(n), acc_scale(n)) if n.bias is not None else (None, None)
            o = len(ws)
            extra = _convsym_pad(o, n.weight.shape[1]) if wq.dtype == np.int8 and n.groups == 1 and n.out_q else 0
            if extra:
                # zero filters up to what onnxruntime's indirect symmetric conv accepts; sliced off below
                wq = np.concatenate([wq, np.zeros((extra, *wq.shape[1:]), wq.dtype)])
                # (scales copied from the first channel: with 1.0, onnxruntime left the tiny EDSR's
                # tail a float Conv; its QDQ fusion checks bias scale = input scale * weight scale)
                ws, wzp = np.concatenate([ws, np.full(extra, ws[0], np.float32)]), np.zeros(o + extra, np.int8)
                if bq is not None:
                    assert bs is not None  # (set with bq)
                    bq, bs = np.concatenate([bq, np.zeros(extra, bq.dtype)]), np.concatenate([bs, np.full(extra, bs[0], bs.dtype)])
            wd = g.node("DequantizeLinear", [g.const(n.name + "_wq", wq), g.const(n.name + "_ws", ws),
                                             g.const(n.name + "_wzp", wzp)], axis=0)
            ins = [xd, wd]
            if bq is not None:
                assert bs is not None  # (set with bq)
                ins.append(g.node("DequantizeLinear", [g.const(n.name + "_bq", bq), g.const(n.name + "_bs", bs),
                                                       g.const(n.name + "_bzp", np.zeros(len(bs), np.int32))], axis=0))
            y = g.node("Conv", ins, None if n.out_q else n.out, **attrs)
            if extra:
                assert n.out_q is not None  # (extra needs an output grid)
                yq = self.quant(y, n.out_q, n.name + "_padded", n.name + "_y")
                return g.node("Slice", [yq, g.const(n.name + "_s0", np.array([0], np.int64)),
                                        g.const(n.name + "_s1", np.array([o], np.int64)),
                                        g.const(n.name + "_sa", np.array([1], np.int64))], n.out)
        return self.quant(y, n.out_q, n.out, n.name + "_y") if n.out_q else y

    def _out(self, n: Node, y: str) -> str:
        """Write ``y`` onto ``n``'s output grid (a Q -> DQ pair named ``n.out``), if it has one."""
        return self.quant(y, n.out_q, n.out, n.out) if n.out_q is not None else y

    @staticmethod
    def _name(n: Node) -> str | None:
        """The name of the op's own output: ``n.out``, unless a Q -> DQ pair follows it."""
        return None if n.out_q is not None else n.out

    def prelu(self, n: PRelu) -> str:
        g = self.g
        # one slope: LeakyRelu, which onnxruntime runs as QLinearLeakyRelu between QDQ pairs
        y = (g.node("LeakyRelu", [n.inp], self._name(n), alpha=float(n.slope)) if n.out_q is not None
             else g.node("PRelu", [n.inp, g.const("slope", np.array([n.slope], np.float32))], self._name(n)))
        return self._out(n, y)

    def relu(self, n: Relu) -> str:
        return self._out(n, self.g.node("Relu", [n.inp], self._name(n)))

    def affine(self, n: Affine) -> str:
        g = self.g
        m = g.node("Mul", [n.inp, g.const("bn_s", n.scale.astype(np.float32).reshape(1, -1, 1, 1))])
        return self._out(n, g.node("Add", [m, g.const("bn_t", n.shift.astype(np.float32).reshape(1, -1, 1, 1))],
                                   self._name(n)))

    def add(self, n: Add) -> str:
        g = self.g
        a = n.a
        if n.a_mul != 1.0:
            if n.a in self.qt and n.a_mul > 0:
                # the shortcut factor rides on the dequantization scale: exact, and the Add
                # keeps DQ inputs so onnxruntime fuses it into QLinearAdd
                xq, s, z, q = self.qt[n.a]
                a = g.node("DequantizeLinear", [xq, g.const("res_s", np.float32(q.scale * n.a_mul)), z])
            else:
                a = g.node("Mul", [n.a, g.const("res_s", np.array([n.a_mul], np.float32))])
        return self._out(n, g.node("Add", [a, n.b], self._name(n)))

    def depth_to_space(self, n: DepthToSpace) -> str:
        # a permutation keeps the grid; the Q/DQ pair after it (exact) lets onnxruntime run
        # it on the integer tensor and fuse what follows
        return self._out(n, self.g.node("DepthToSpace", [n.inp], self._name(n), blocksize=n.block, mode="CRD"))

    #: node kind -> the method that emits it (and its output's Q -> DQ pair)
    EMIT: dict[type, Callable[[Any, Any], str]] = {
        Conv: conv, PRelu: prelu, Relu: relu, Affine: affine, Add: add, DepthToSpace: depth_to_space,
    }

    def node(self, n: Node) -> str:
        return handler(self.EMIT, n, "the ONNX emitter")(self, n)


def program_to_onnx(prog: Program, tile: int, batch: int | str = "N", name: str = "sr",
                    report: dict[str, list[str]] | None = None):
    """ONNX ModelProto of a program: input 'lr' (N, 3, T, T) float [0, 1] -> 'sr' (N, 3, T*s, T*s).
    ``report`` (optional) receives "u8u8_convs": the convs left on the u8u8 kernels."""
    g = _G()
    em = _Emitter(g)
    prog, _ = order_for_u8s8(prog)
    for n in prog.nodes:
        em.node(n)
    if report is not None:
        report["u8u8_convs"] = em.u8u8
    h = g.h
    onnx = g.onnx
    scale = _scale_of(prog)
    inp = h.make_tensor_value_info("lr", onnx.TensorProto.FLOAT, [batch, 3, tile, tile])
    out = h.make_tensor_value_info("sr", onnx.TensorProto.FLOAT, [batch, 3, tile * scale, tile * scale])
    graph = h.make_graph(g.nodes, name, [inp], [out], g.inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="granular-mobile")
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def _scale_of(prog: Program) -> int:
    return 2 ** sum(1 for n in prog.nodes if isinstance(n, DepthToSpace))


def save_onnx(model, path: Path, simplify: bool = True) -> Path:
    onnx = require("onnx", "export")
    if simplify:
        onnxsim = require("onnxsim", "export")
        # constant folding would turn DequantizeLinear(int8 weights) into float weights and
        # undo the QDQ pattern onnxruntime fuses into integer kernels
        simp, ok = onnxsim.simplify(model, skip_constant_folding=True)
        if ok:
            model = simp
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def controller_to_onnx(spec, tile: int, batch: int | str = "N"):
    """Controller graph: 'lr' (N, 3, T, T) -> 'logits' (N, 3), 'entropy' (N,), 'bits' (N,) int32."""
    from .controller import GREY

    g = _G()
    h_ = g.h
    c = spec.channels
    ins = ["lr", g.const("head_w", spec.head_w)] + ([g.const("head_b", spec.head_b)] if spec.head_b is not None else [])
    z = g.node("Conv", ins, pads=[spec.pad] * 4, kernel_shape=list(spec.head_w.shape[2:]))
    zs = [z]
    for _ in range(2):
        zs.append(g.node("AveragePool", [zs[-1]], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1))
    axes_hw = g.const("axes_hw", np.array([2, 3], np.int64))
    feats = []
    for depth, zz in enumerate(zs):
        m = g.node("ReduceMean", [zz, axes_hw], keepdims=0)
        if spec.groups:
            shp = g.const("gshape", np.array([0, spec.groups, c // spec.groups], np.int64))
            flat = g.const("fshape", np.array([0, c], np.int64))
            ax2 = g.const("ax2", np.array([2], np.int64))
            sq = g.node("ReduceMean", [g.node("Mul", [zz, zz]), axes_hw], keepdims=0)
            mr = g.node("Reshape", [m, shp])
            mg = g.node("ReduceMean", [mr, ax2], keepdims=1)
            vg = g.node("Sub", [g.node("ReduceMean", [g.node("Reshape", [sq, shp]), ax2], keepdims=1), g.node("Mul", [mg, mg])])
            sd = g.node("Sqrt", [g.node("Add", [vg, g.const("eps", np.array(spec.gn_eps, np.float32))])])
            nrm = g.node("Reshape", [g.node("Div", [g.node("Sub", [mr, mg]), sd]), flat])
            m = g.node("Add", [g.node("Mul", [nrm, g.const("gamma", spec.gn_gamma[depth])]), g.const("beta", spec.gn_beta[depth])])
        feats.append(m)
    feat = g.node("Concat", feats, axis=1)
    g.node("Gemm", [feat, g.const("gate_w", spec.gate_w), g.const("gate_b", spec.gate_b)], "logits", transB=1)
    # entropy: Gaussian kernel density of the grey levels over `bins` centres
    grey = g.node("Conv", ["lr", g.const("grey_w", np.array(GREY, np.float32).reshape(1, 3, 1, 1))])
    px = g.node("Reshape", [grey, g.const("pshape", np.array([0, -1, 1], np.int64))])
    d = g.node("Div", [g.node("Sub", [px, g.const("centres", np.linspace(0, 1, spec.bins).astype(np.float32))]),
                       g.const("sigma", np.array(spec.sigma, np.float32))])
    e = g.node("Exp", [g.node("Mul", [g.node("Mul", [d, d]), g.const("mhalf", np.array(-0.5, np.float32))])])
    dens = g.node("ReduceMean", [e, g.const("ax1", np.array([1], np.int64))], keepdims=0)
    p = g.node("Div", [dens, g.node("ReduceSum", [dens, g.const("ax1b", np.array([1], np.int64))], keepdims=1)])
    lp = g.node("Log", [g.node("Max", [p, g.const("tiny", np.array(1e-12, np.float32))])])
    negent = g.node("ReduceSum", [g.node("Mul", [p, lp]), g.const("ax1c", np.array([1], np.int64))], keepdims=0)
    g.node("Neg", [negent], "entropy")
    # final bits: argmax, E2B level, table look-up
    choice = g.node("ArgMax", ["logits"], axis=1, keepdims=0)
    t1, t2 = spec.thresholds
    lvl = g.node("Add", [g.node("Cast", [g.node("Greater", ["entropy", g.const("t1", np.array(t1, np.float32))])], to=7),
                         g.node("Cast", [g.node("Greater", ["entropy", g.const("t2", np.array(t2, np.float32))])], to=7)])
    via_e2b = g.node("Gather", [g.const("e2b_bits", np.array(spec.e2b_bits, np.int32)), lvl])
    via_gbc = g.node("Gather", [g.const("gbc_bits", np.array(spec.gbc_bits, np.int32)), choice])
    is8 = g.node("Equal", [choice, g.const("two", np.array(2, np.int64))])
    g.node("Where", [is8, via_e2b, via_gbc], "bits")
    outs = [h_.make_tensor_value_info("logits", g.onnx.TensorProto.FLOAT, [batch, 3]),
            h_.make_tensor_value_info("entropy", g.onnx.TensorProto.FLOAT, [batch]),
            h_.make_tensor_value_info("bits", g.onnx.TensorProto.INT32, [batch])]
    if spec.level_w is not None:  # the level gate (ModelConfig.level_gate): a linear map of [features, entropy]
        ent2 = g.node("Unsqueeze", ["entropy", g.const("ax1d", np.array([1], np.int64))])
        g.node("Gemm", [g.node("Concat", [feat, ent2], axis=1), g.const("level_w", spec.level_w),
                        g.const("level_b", spec.level_b)], "scores", transB=1)
        outs.append(h_.make_tensor_value_info("scores", g.onnx.TensorProto.FLOAT, [batch, len(spec.level_b)]))
    onnx, h = g.onnx, g.h
    model = h.make_model(
        h.make_graph(g.nodes, "controller", [h.make_tensor_value_info("lr", onnx.TensorProto.FLOAT, [batch, 3, tile, tile])],
                     outs, g.inits),
        opset_imports=[h.make_opsetid("", OPSET)], producer_name="granular-mobile")
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model
