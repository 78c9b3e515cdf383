"""TFLite target: full-integer int8 graphs built from the trained parameters (no re-calibration).

A tf.function per graph, built node by node from the export program, with fake-quant nodes
carrying OUR scales; TFLiteConverter turns them into int8 tensors with exactly those scales:
- k-bit activation: fake_quant to an int8 range of step alpha that starts at the k-bit
  minimum (saturation clamps below), then a minimum with the k-bit maximum (TF cannot
  convert 4-bit activation fake-quant; the upper clamp becomes an int8 MINIMUM);
- weights: the trained integers times their per-channel scale, fake-quantized per channel
  with narrow range [-127, 127], which represents them exactly;
- every other tensor (conv outputs, PReLU, BN, residual adds) int8 with a range from
  calibration (max |x|, symmetric).
BN1 (a per-channel affine between PReLU and conv2) is a 1x1 depthwise conv whose per-channel
weight is exactly representable (one value per channel). Single-slope PReLU is LEAKY_RELU in
the float graph; in the integer graphs it is max(x, slope * x) on the output grid (two 1x1
depthwise requantizations, or one when the output keeps the input's grid, and an integer
MAXIMUM), because the int8 LEAKY_RELU kernel's 8-bit multipliers do not round like the
reference (see ``prelu`` below).
DepthToSpace: TF uses DCR channel order, PyTorch's PixelShuffle CRD, so the preceding conv's
output channels are permuted.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ExportError, require
from ..ir import Add, Affine, Conv, DepthToSpace, Node, PRelu, Program, QParams, Relu, handler
from ..runtime.manifest import CONTROLLER_OUTPUTS, SCORES
from .controller import GREY, ControllerSpec


def _crd_to_dcr(c_out: int, r: int) -> np.ndarray:
    """perm such that w_dcr = w_crd[perm]: DCR channel (i*r + j)*C + c takes CRD channel c*r*r + i*r + j."""
    c = c_out // (r * r)
    return np.array([ci * r * r + k for k in range(r * r) for ci in range(c)])


class _TFProgram:
    """The TF ops of a program on an NHWC [0, 1] input: call it inside a ``tf.function``.

    Every integer tensor gets one fake-quant with the program's scale (``out_q``). The
    converter keeps only the first of two consecutive fake-quants on a tensor (measured: a
    second range is silently dropped), which is why the program writes a tensor that feeds
    only a k-bit conv directly at that conv's step; a tensor that also feeds elsewhere (the
    residual stream into conv1) is requantized by a 1x1 depthwise identity (weight 1, exact
    in int8) whose output carries the k-bit step.
    """

    def __init__(self, tf: Any, prog: Program, quantized: bool) -> None:
        self.tf, self.prog, self.quantized = tf, prog, quantized
        self.d2s_before = {n.inp: n.block for n in prog.nodes if isinstance(n, DepthToSpace)}
        self.env: dict[str, Any] = {}
        self.grid: dict[str, QParams] = {}  # tensor -> the grid it is on

    def fq(self, x: Any, lo: float, hi: float, narrow: bool = False) -> Any:
        return self.tf.quantization.fake_quant_with_min_max_args(x, min=lo, max=hi, num_bits=8, narrow_range=narrow)

    def to_grid(self, x: Any, q: QParams) -> Any:
        """Fake-quant x to q's 8-bit type; a k-bit range [lo, hi] adds one integer clamp.

        The int8 tensor of a k-bit grid gets the zero point that puts lo at -128, so int8
        saturation is the lower clamp and an int8 MINIMUM the upper one: LiteRT runs int8
        MINIMUM/MAXIMUM outside XNNPack, and a MAXIMUM per k-bit tensor cost the 4-bit graph
        ~12 % against the 8-bit one (one-off probe, 1 thread; the integers are identical)."""
        if not q.kbit:
            return self.fq(x, *_type_range(q))
        lo, hi = q.lo * q.scale, (q.lo + 255) * q.scale
        # MINIMUM needs one scale on operands and output: the bound gets it too
        bound = self.fq(self.tf.constant(q.hi * q.scale, self.tf.float32), lo, hi)
        return self.fq(self.tf.minimum(self.fq(x, lo, hi), bound), lo, hi)

    def scale_dw(self, x: Any, w: float) -> Any:
        """x * w as a 1x1 depthwise conv: the weight is the integer 127 with scale |w| / 127 per
        tensor, and the conv requantizes in float32 with one rounding, as the reference does."""
        tf = self.tf
        k = self.fq(tf.fill((1, 1, x.shape[-1], 1), np.float32(w)), -abs(w), abs(w), narrow=True)
        return tf.nn.depthwise_conv2d(x, k, strides=[1, 1, 1, 1], padding="VALID")

    def requant(self, x: Any, q: QParams) -> Any:
        return self.to_grid(self.scale_dw(x, 1.0), q)

    def _out(self, n: Node, y: Any) -> None:
        """``n``'s output, onto its grid in an integer graph."""
        if self.quantized and n.out_q is not None:
            y = self.to_grid(y, n.out_q)
            self.grid[n.out] = n.out_q
        self.env[n.out] = y

    def _prelu_int(self, x: Any, q_in: QParams, slope: float, q_out: QParams) -> Any:
        """PReLU of an integer tensor onto q_out as max(x, slope * x) (min for slope > 1); a
        negative slope too (for x < 0, slope * x > 0 > x), which trained models do have.

        LiteRT's int8 LEAKY_RELU (XNNPack) rounds its two multipliers s_in / s_out and
        slope * s_in / s_out to 8 fractional bits and rounds half up: measured against the
        float requantization of the reference, 1 % of the outputs of a PReLU were off by one
        step, and the flips grew through the following convs to 25 % of the residual stream
        and below 45 dB at the output. Rounding is monotone, so max(rint(a), rint(b)) =
        rint(max(a, b)): both branches requantized by a depthwise conv (float32 multiplier,
        one rounding) and an integer MAXIMUM of two tensors on one grid give the reference's
        integers exactly; when q_out is the input's grid the identity branch is x itself.
        """
        lo, hi = _type_range(q_out)
        same = q_in.scale == q_out.scale and q_in.signed == q_out.signed
        pos = x if same else self.fq(self.scale_dw(x, 1.0), lo, hi)
        neg = self.fq(self.scale_dw(x, slope), lo, hi)
        return self.tf.maximum(pos, neg) if slope <= 1.0 else self.tf.minimum(pos, neg)

    def conv(self, n: Conv) -> None:
        tf = self.tf
        x = self.env[n.inp]
        w = n.weight.astype(np.float64)
        if n.w_scale is not None:
            w = w * n.w_scale[:, None, None, None]
        if n.groups > 1:
            # depthwise 1x1 (a BatchNorm): a dense conv with a diagonal weight, because
            # per-channel fake-quant on depthwise weights crashed the interpreter (measured)
            w = np.diag(w.reshape(-1)).reshape(w.shape[0], w.shape[0], 1, 1)
        b = None if n.bias is None else np.asarray(n.bias, np.float64)
        scale = n.w_scale
        if n.out in self.d2s_before:
            perm = _crd_to_dcr(w.shape[0], self.d2s_before[n.out])
            w, b = w[perm], None if b is None else b[perm]
            scale = None if scale is None else scale[perm]
        wt = tf.constant(w.transpose(2, 3, 1, 0).astype(np.float32))  # OIHW -> HWIO
        if self.quantized and n.in_q is not None:
            if self.grid.get(n.inp) is not n.in_q:
                x = self.requant(x, n.in_q)
            assert scale is not None  # an integer conv has per-channel weight scales
            s = tf.constant((127.0 * np.maximum(scale, 1e-12)).astype(np.float32))
            wt = tf.quantization.fake_quant_with_min_max_vars_per_channel(wt, min=-s, max=s, num_bits=8, narrow_range=True)
        y = tf.nn.conv2d(x, wt, strides=1, padding="SAME" if n.pad else "VALID")
        if b is not None:
            y = tf.nn.bias_add(y, tf.constant(b.astype(np.float32)))
        self._out(n, y)

    def prelu(self, n: PRelu) -> None:
        qi = self.grid.get(n.inp)
        if self.quantized and qi is not None and n.out_q is not None:
            y = self._prelu_int(self.env[n.inp], qi, n.slope, n.out_q)
        else:
            y = self.tf.nn.leaky_relu(self.env[n.inp], alpha=n.slope)
        self._out(n, y)

    def relu(self, n: Relu) -> None:
        qi = self.grid.get(n.inp)
        if self.quantized and qi is not None and n.out_q is not None and qi.scale != n.out_q.scale:
            # a fused RELU on a depthwise requantization: one float32 rounding, where the
            # int8 RELU kernel rescales in fixed point (measured 54 dB at 4 bits on a tiny EDSR)
            y = self.tf.nn.relu(self.scale_dw(self.env[n.inp], 1.0))
        else:
            y = self.tf.nn.relu(self.env[n.inp])
        self._out(n, y)

    def affine(self, n: Affine) -> None:
        self._out(n, self.env[n.inp] * n.scale.astype(np.float32) + n.shift.astype(np.float32))

    def add(self, n: Add) -> None:
        a = self.env[n.a]
        if n.a_mul != 1.0:
            a = a * np.float32(n.a_mul)
            qa = self.grid.get(n.a)
            if self.quantized and qa is not None:  # exact: the same integers on a scaled grid
                a = self.fq(a, -128.0 * qa.scale * abs(n.a_mul), 127.0 * qa.scale * abs(n.a_mul))
        self._out(n, a + self.env[n.b])

    def depth_to_space(self, n: DepthToSpace) -> None:
        # a permutation: the input's integers on the input's grid, no fake-quant of its own
        self.env[n.out] = self.tf.nn.depth_to_space(self.env[n.inp], n.block)
        if n.out_q is not None:
            self.grid[n.out] = n.out_q

    #: node kind -> the method that builds its ops
    EMIT: dict[type, Callable[[Any, Any], None]] = {
        Conv: conv, PRelu: prelu, Relu: relu, Affine: affine, Add: add, DepthToSpace: depth_to_space,
    }

    def __call__(self, x: Any) -> Any:
        prog = self.prog
        self.env, self.grid = {prog.input: self.fq(x, 0.0, 1.0) if self.quantized else x}, {}
        head = next(c for c in prog.convs if c.inp == prog.input)
        if self.quantized and head.in_q is not None:
            self.grid[prog.input] = head.in_q  # uint8, scale 1/255: what fq(x, 0, 1) gives
        for n in prog.nodes:
            handler(self.EMIT, n, "the TFLite emitter")(self, n)
        return self.env[prog.output]


def _type_range(q) -> tuple[float, float]:
    return (-128.0 * q.scale, 127.0 * q.scale) if q.signed else (0.0, 255.0 * q.scale)


def _tf_controller(tf, spec: ControllerSpec):
    c = spec.channels

    def run(x):
        z = tf.nn.conv2d(x, tf.constant(spec.head_w.transpose(2, 3, 1, 0)), strides=1, padding="SAME")
        if spec.head_b is not None:
            z = tf.nn.bias_add(z, tf.constant(spec.head_b))
        zs = [z]
        for _ in range(2):
            zs.append(tf.nn.avg_pool2d(zs[-1], 2, 2, padding="VALID"))
        feats = []
        for d, zz in enumerate(zs):
            m = tf.reduce_mean(zz, axis=[1, 2])
            if spec.groups:
                g = spec.groups
                sq = tf.reduce_mean(zz * zz, axis=[1, 2])
                mr = tf.reshape(m, (-1, g, c // g))
                mg = tf.reduce_mean(mr, axis=2, keepdims=True)
                vg = tf.reduce_mean(tf.reshape(sq, (-1, g, c // g)), axis=2, keepdims=True) - mg * mg
                m = tf.reshape((mr - mg) / tf.sqrt(vg + spec.gn_eps), (-1, c)) * spec.gn_gamma[d] + spec.gn_beta[d]
            feats.append(m)
        logits = tf.matmul(tf.concat(feats, 1), tf.constant(spec.gate_w.T)) + spec.gate_b
        grey = tf.reduce_sum(x * tf.constant(np.array(GREY, np.float32)), axis=3)
        px = tf.reshape(grey, (-1, grey.shape[1] * grey.shape[2], 1))
        dd = (px - tf.constant(np.linspace(0, 1, spec.bins).astype(np.float32))) / spec.sigma
        dens = tf.reduce_mean(tf.exp(-0.5 * dd * dd), axis=1)
        p = dens / tf.reduce_sum(dens, axis=1, keepdims=True)
        ent = -tf.reduce_sum(p * tf.math.log(tf.maximum(p, 1e-12)), axis=1)
        choice = tf.argmax(logits, axis=1, output_type=tf.int32)
        lvl = tf.cast(ent > spec.thresholds[0], tf.int32) + tf.cast(ent > spec.thresholds[1], tf.int32)
        bits = tf.where(tf.equal(choice, 2), tf.gather(tf.constant(spec.e2b_bits, tf.int32), lvl),
                        tf.gather(tf.constant(spec.gbc_bits, tf.int32), choice))
        out = {"logits": logits, "entropy": ent, "bits": bits}
        if spec.level_w is not None:
            out["scores"] = tf.matmul(tf.concat([tf.concat(feats, 1), ent[:, None]], 1), tf.constant(spec.level_w.T)) + spec.level_b
        return out

    return run


def _concrete(tf, fn, tile: int, out_name: str | None):
    spec = tf.TensorSpec([1, tile, tile, 3], tf.float32, name="lr")

    @tf.function(input_signature=[spec])
    def f(lr):
        y = fn(lr)
        return y if isinstance(y, dict) else {out_name: y}

    return f.get_concrete_function()


def _output_names(fn, model: bytes) -> dict[str, str]:
    """Role -> output tensor name of a converted function that returns a dict: the converter
    names the outputs after the function's output tensors (Identity, Identity_1, ...), not after
    the dict's keys; read here, where the mapping is known, and written to the manifest so that
    a runtime looks outputs up by name."""
    names = {k: v.name.split(":")[0] for k, v in fn.structured_outputs.items() if k in (*CONTROLLER_OUTPUTS, SCORES)}
    litert = require("ai_edge_litert.interpreter", "tflite")
    got = {d["name"] for d in litert.Interpreter(model_content=model).get_output_details()}
    if set(names.values()) != got:
        raise ExportError(f"the converted controller's outputs {sorted(got)} are not its function's "
                          f"{sorted(names.values())}: this TensorFlow names outputs differently")
    return names


def _convert(tf, funcs: list, quantized: bool) -> bytes:
    conv = tf.lite.TFLiteConverter.from_concrete_functions(funcs, None)
    if quantized:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    return conv.convert()


def _convert_signatures(tf, fns: dict[str, Any], quantized: bool) -> bytes:
    """One .tflite with one signature per function (through a SavedModel: the concrete-function
    converter takes a single function)."""
    import tempfile

    mod = tf.Module()
    for k, f in fns.items():
        setattr(mod, k, f)
    with tempfile.TemporaryDirectory() as d:
        tf.saved_model.save(mod, d, signatures=fns)
        conv = tf.lite.TFLiteConverter.from_saved_model(d, signature_keys=list(fns))
        if quantized:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        return conv.convert()


def _tensorflow() -> Any:
    """TensorFlow, quiet: its C++ INFO/WARNING lines (CPU features, grappler sessions, ignored
    converter flags, op counts) and the converter's Python deprecation and statistics warnings
    are about its internals, ~50 lines per export; errors still print. The C++ level takes
    effect only if TensorFlow is not imported yet (the environment variable is read at load)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = require("tensorflow", "export")
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to quiet
        pass
    warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
    return tf


def write_tflite(out: Path, progs: dict[str, Program], fp: Program | None, ctrl: ControllerSpec, tile: int,
                 single_file: bool = False) -> dict[str, Any]:
    tf = _tensorflow()
    for prog in progs.values():
        if prog.fp_layers != "int8":
            raise ConfigError("the TFLite export is full-integer: it needs programs with fp_layers 'int8' (float layers inside an int8 "
                              "TFLite graph would run through float fallbacks, and NNAPI needs full integer)")
    files: dict[str, Any] = {"sr": {}, "batch": 1}
    ctrl_fn = _concrete(tf, _tf_controller(tf, ctrl), tile, None)
    p = out / "controller.tflite"
    data = _convert(tf, [ctrl_fn], quantized=False)
    p.write_bytes(data)
    files["controller"] = p
    files["controller_outputs"] = _output_names(ctrl_fn, data)
    sr_fns = {}
    for lv, prog in progs.items():
        fn = _concrete(tf, _TFProgram(tf, prog, quantized=True), tile, "sr")
        sr_fns[lv] = fn
        p = out / f"sr_{lv}.tflite"
        p.write_bytes(_convert(tf, [fn], quantized=True))
        files["sr"][lv] = p
    if fp is not None:
        p = out / "sr_fp32.tflite"
        p.write_bytes(_convert(tf, [_concrete(tf, _TFProgram(tf, fp, quantized=False), tile, "sr")], quantized=False))
        files["fp32"] = p
    if single_file:
        # one file, one signature per integer graph; identical weights (the int8 integers of the
        # quantized convs and the full-precision layers) are stored once by the converter
        # (the float controller rides along; the converter's weight-only quantization of its
        # head conv is checked by --verify through the controller agreement)
        data = _convert_signatures(tf, {"controller": ctrl_fn, **{f"sr_{lv}": fn for lv, fn in sr_fns.items()}},
                                   quantized=True)
        p = out / "granular_dq.tflite"
        p.write_bytes(data)
        separate = sum(Path(files["sr"][lv]).stat().st_size for lv in progs) + Path(files["controller"]).stat().st_size
        files["single_file"] = p
        files["signatures"] = ["controller"] + [f"sr_{lv}" for lv in progs]
        files["size_saved_bytes"] = separate - len(data)
    return files
