"""``run_program``: the program in torch, for calibration (no output rounding) and as the
integer-numerics reference the exported graphs are checked against (every rounding point)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .arith import f32, fake_quant, int32_bias, integer_add, requant_multiplier
from .nodes import Add, Affine, Conv, DepthToSpace, PRelu, Program, QParams, Relu, handler, node_inputs


@dataclass
class _Run:
    env: dict[str, torch.Tensor]
    grids: dict[str, QParams]
    emulate: bool
    dtype: torch.dtype

    def const(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(self.dtype)


def _conv(n: Conv, r: _Run) -> torch.Tensor:
    xin = r.env[n.inp]
    quant_in = n.in_q is not None and n.in_q.scale > 0 and (r.emulate or n.quantized_layer)
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
        if r.emulate and n.out_q is not None:
            # the output requantization of integer kernels (onnxruntime's MLAS and
            # XNNPack's fp32 requantization alike): float32(acc) times the float32
            # multiplier s_in * s_w / s_out, one rounding half to even
            m32 = torch.from_numpy(requant_multiplier(n)).view(1, -1, 1, 1)
            yi = torch.clamp(torch.round(acc.float() * m32), n.out_q.lo, n.out_q.hi)
            return (yi * f32(n.out_q.scale)).to(r.dtype)
        g = n.in_q.scale * np.asarray(n.w_scale, np.float64)
        return (acc * torch.from_numpy(g).view(1, -1, 1, 1)).to(r.dtype)
    if quant_in:
        assert n.in_q is not None  # (quant_in)
        xin = fake_quant(xin, n.in_q)
    w = r.const(n.weight.astype(np.float64) * (1.0 if n.w_scale is None else n.w_scale[:, None, None, None]))
    b = None if n.bias is None else r.const(np.asarray(n.bias, dtype=np.float64))
    return F.conv2d(xin, w, b, padding=n.pad, groups=n.groups)


def _prelu(n: PRelu, r: _Run) -> torch.Tensor:
    return F.prelu(r.env[n.inp], torch.tensor([n.slope], dtype=r.dtype))


def _relu(n: Relu, r: _Run) -> torch.Tensor:
    return F.relu(r.env[n.inp])


def _affine(n: Affine, r: _Run) -> torch.Tensor:
    return r.env[n.inp] * r.const(n.scale).view(1, -1, 1, 1) + r.const(n.shift).view(1, -1, 1, 1)


def _add(n: Add, r: _Run) -> torch.Tensor:
    qa, qb = r.grids.get(n.a), r.grids.get(n.b)
    if r.emulate and n.out_q is not None and qa is not None and qb is not None and n.a_mul > 0:
        return integer_add(r.env[n.a], qa, n.a_mul, r.env[n.b], qb, n.out_q).to(r.dtype)
    return r.env[n.a] * n.a_mul + r.env[n.b]


def _depth_to_space(n: DepthToSpace, r: _Run) -> torch.Tensor:
    return F.pixel_shuffle(r.env[n.inp], n.block)


#: node kind -> its torch computation (before the output rounding, which ``run_program`` applies)
EXECUTE: dict[type, Callable[[Any, _Run], torch.Tensor]] = {
    Conv: _conv, PRelu: _prelu, Relu: _relu, Affine: _affine, Add: _add, DepthToSpace: _depth_to_space,
}


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
    r = _Run({prog.input: x.to(dtype)}, {n.out: n.out_q for n in prog.nodes if n.out_q is not None}, emulate, dtype)
    last: dict[str, int] = {}
    for i, n in enumerate(prog.nodes):
        for t in node_inputs(n):
            last[t] = i
    keep = {prog.output}
    for i, n in enumerate(prog.nodes):
        y = handler(EXECUTE, n, "the torch executor")(n, r)
        if record is not None:
            record[n.out] = max(record.get(n.out, 0.0), float(y.abs().max()))
        if emulate and n.out_q is not None and not isinstance(n, DepthToSpace):
            y = fake_quant(y, n.out_q)
        r.env[n.out] = y
        if trace is not None:
            trace[n.out] = y
        for t in [t for t, j in last.items() if j == i and t not in keep]:
            r.env.pop(t, None)
    return r.env[prog.output].float()
