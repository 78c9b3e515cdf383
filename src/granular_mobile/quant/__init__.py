"""Quantizers (LSQ-style, with ranges that integer kernels execute exactly)."""
from .lsq import (
    QMAX_FP,
    ActQuantizer,
    GridQuantizer,
    QConv2d,
    WeightQuantizer,
    act_range,
    fake_quant_fp_weight,
    fake_quant_image,
    fp_layer_int_weight,
    lsq_quantize,
)

__all__ = [
    "QMAX_FP",
    "ActQuantizer",
    "GridQuantizer",
    "QConv2d",
    "WeightQuantizer",
    "act_range",
    "fake_quant_fp_weight",
    "fake_quant_image",
    "fp_layer_int_weight",
    "lsq_quantize",
]
