"""The integer program: the network at one static level, as a flat list of export nodes.

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

The package: ``nodes`` (the node kinds and ``Program``), ``builder`` (what a model
family lowers itself into, ``build_program``), ``arith`` (the integer arithmetic the emitters
and the reference share), ``executor`` (``run_program``: calibration and the integer-numerics
reference), ``grids`` (``calibrate_program``, the deployed programs). Every backend
dispatches on node kind through one handler table (``NODE_KINDS`` lists the kinds; a test
checks that each table covers every kind): ``executor.EXECUTE``, the ONNX emitter's, the TF
emitter's and the channel reordering's.
"""
from __future__ import annotations

from .arith import acc_scale, int32_bias, qlinear_add, requant_multiplier
from .builder import FP_LAYER_MODES, Lowerable, ProgramBuilder, bn_fold, bn_fold_t, build_program, signed_channels
from .executor import EXECUTE, run_program
from .grids import calibrate_program, deployed_level_programs, deployed_programs
from .nodes import (
    NODE_KINDS,
    OUTPUT_Q,
    Add,
    Affine,
    Conv,
    DepthToSpace,
    Node,
    PRelu,
    Program,
    QParams,
    Relu,
    handler,
    int8_sym,
    node_inputs,
)

__all__ = [
    "EXECUTE", "FP_LAYER_MODES", "NODE_KINDS", "OUTPUT_Q", "Add", "Affine", "Conv", "DepthToSpace", "Lowerable", "Node",
    "PRelu", "Program", "ProgramBuilder", "QParams", "Relu", "acc_scale", "bn_fold", "bn_fold_t", "build_program",
    "calibrate_program", "deployed_level_programs", "deployed_programs", "handler", "int32_bias", "int8_sym",
    "node_inputs", "qlinear_add", "requant_multiplier", "run_program", "signed_channels",
]
