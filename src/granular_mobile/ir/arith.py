"""The integer arithmetic the emitters and the reference share: accumulator scales, int32
biases, requantization multipliers and onnxruntime's QLinearAdd."""
from __future__ import annotations

import numpy as np
import torch

from .nodes import Conv, QParams


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


def fake_quant(x: torch.Tensor, q: QParams) -> torch.Tensor:
    return torch.clamp(torch.round(x / q.scale), q.lo, q.hi) * q.scale


def f32(v: float | np.floating) -> float:
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


def integer_add(a: torch.Tensor, qa: QParams, a_mul: float, b: torch.Tensor, qb: QParams, qc: QParams) -> torch.Tensor:
    """``qlinear_add`` of two dequantized tensors on their grids, dequantized on ``qc``
    (zero-point -lo for signed grids, as onnxruntime carries them on uint8)."""
    ca, cb = torch.round(a.double() / qa.scale), torch.round(b.double() / qb.scale)
    c = qlinear_add(ca, qa.scale, a_mul, qa.zero_point, cb, qb.scale, qb.zero_point, qc.scale, qc.zero_point)
    return torch.clamp(c, qc.lo, qc.hi) * f32(qc.scale)

