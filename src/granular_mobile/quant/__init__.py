"""Quantizers (LSQ-style, with ranges that integer kernels execute exactly)."""
from .lsq import ActQuantizer, QConv2d, WeightQuantizer, act_range, lsq_quantize

__all__ = ["ActQuantizer", "QConv2d", "WeightQuantizer", "act_range", "lsq_quantize"]
