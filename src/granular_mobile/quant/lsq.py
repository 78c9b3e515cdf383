"""LSQ quantizers whose ranges match integer kernels.

Numerics (docs/METHOD.md, "Decisions of this project"):
- weights: symmetric int8, zero-point 0, integer range [-127, 127] (narrow range, so the
  int8 kernels of ONNX Runtime and TFLite represent them exactly), one step per tensor;
- activations: a k-bit range placed inside int8/uint8 with zero-point 0:
  signed [-2^(k-1), 2^(k-1) - 1] or unsigned [0, 2^k - 1]. Export writes int8/uint8
  tensors with scale = step and the k-bit range as an integer clamp.
Rounding is round-half-to-even (torch.round), which is what QuantizeLinear does.
"""
from __future__ import annotations

import math
from typing import TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F


def act_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of a k-bit activation."""
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _grad_scale(x: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    # forward: x; backward: gradient times `scale` (LSQ step-size gradient scaling)
    return (x - x * scale).detach() + x * scale


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return (torch.round(x) - x).detach() + x


#: clamp bounds: both numbers or both tensors (torch.clamp has no overload for a mix)
_Bound = TypeVar("_Bound", float, torch.Tensor)


def lsq_quantize(
    x: torch.Tensor, step: torch.Tensor, qn: _Bound, qp: _Bound, grad_scale: float = 1.0
) -> torch.Tensor:
    """round(clamp(x / step, qn, qp)) * step with straight-through rounding and LSQ gradients.

    ``step``, ``qn`` and ``qp`` may be per-sample tensors broadcastable to ``x``.
    """
    s = _grad_scale(step, grad_scale) if grad_scale != 1.0 else step
    q = torch.clamp(x / s, qn, qp)
    return _round_ste(q) * s


class WeightQuantizer(nn.Module):
    """8-bit symmetric per-tensor weight quantizer (integer range [-127, 127])."""

    qp: int = 127
    initialized: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        self.register_buffer("initialized", torch.zeros(1))

    @torch.no_grad()
    def init_from(self, w: torch.Tensor) -> None:
        # max-abs init keeps every weight representable; LSQ then learns to clip
        self.alpha.copy_(w.abs().max().clamp_min(1e-8) / self.qp)
        self.initialized.fill_(1)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.initialized.item() == 0:
            self.init_from(w)
        g = 1.0 / math.sqrt(w.numel() * self.qp)
        return lsq_quantize(w, self.alpha, -self.qp, self.qp, g)

    def integer_weight(self, w: torch.Tensor) -> torch.Tensor:
        """The int8 values the export writes (exactly what forward multiplies by alpha)."""
        return torch.clamp(torch.round(w / self.alpha), -self.qp, self.qp)


class ActQuantizer(nn.Module):
    """One activation quantizer per bit level, each with its own learnable step.

    Signedness is decided on the first batch (as in the reference code): signed when that
    batch had negative values. Steps are initialised to 2 * mean|x| / sqrt(Qp) (LSQ).
    """

    signed: torch.Tensor
    initialized: torch.Tensor

    def __init__(self, bits: tuple[int, ...]) -> None:
        super().__init__()
        self.bits = tuple(bits)
        self.alpha = nn.Parameter(torch.ones(len(self.bits)))
        self.register_buffer("signed", torch.ones(1))
        self.register_buffer("initialized", torch.zeros(1))
        self._ranges_cache: dict[tuple[bool, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def is_signed(self) -> bool:
        return bool(self.signed.item() > 0.5)

    def ranges(self, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(qn, qp) per bit level, float tensors of shape (len(bits),)."""
        key = (self.is_signed, device or self.alpha.device)
        if key not in self._ranges_cache:
            r = [act_range(b, key[0]) for b in self.bits]
            self._ranges_cache[key] = (
                torch.tensor([a for a, _ in r], dtype=torch.float32, device=key[1]),
                torch.tensor([b for _, b in r], dtype=torch.float32, device=key[1]),
            )
        return self._ranges_cache[key]

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        self.signed.fill_(1.0 if bool((x < 0).any()) else 0.0)
        _, qp = self.ranges(x.device)
        mean_abs = x.abs().mean().clamp_min(1e-6)
        self.alpha.copy_(2 * mean_abs / qp.sqrt())
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor, bit_index: torch.Tensor, mix: torch.Tensor | None = None) -> torch.Tensor:
        """Quantize each sample at its own bit level.

        bit_index: (N,) long, index into ``bits``. mix: optional (N, len(bits)) one-hot
        with straight-through gradients (training): the output equals the selected
        quantization and ``mix`` receives d(out)/d(mix_b) = Q_b(x), which is how the
        controller gate learns.
        """
        if self.initialized.item() == 0:
            self.init_from(x)
        qn_all, qp_all = self.ranges(x.device)
        shape = (-1,) + (1,) * (x.dim() - 1)
        step = self.alpha[bit_index].view(shape)
        qn = qn_all[bit_index].view(shape)
        qp = qp_all[bit_index].view(shape)
        # each sample's step gets gradient only from that sample; scale as LSQ does per quantizer
        g = 1.0 / math.sqrt(x[0].numel() * max(x.shape[0], 1) * float(qp_all.max()))
        out = lsq_quantize(x, step, qn, qp, g)
        if mix is not None and mix.requires_grad:
            out = _MixTap.apply(out, mix, x, self.alpha.detach(), qn_all, qp_all)
        return out


class _MixTap(torch.autograd.Function):
    """Identity on the quantized activation that routes gradients to the bit mix.

    Forward the activation is the selected level's quantization (the mix is one-hot);
    backward, d loss / d mix[n, b] = <grad[n], Q_b(x[n])>. Q_b is recomputed here rather
    than stored for every level, which keeps training memory at one activation copy.
    """

    @staticmethod
    def forward(ctx, out, mix, x, alpha, qn, qp):
        ctx.save_for_backward(x, alpha, qn, qp)
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        x, alpha, qn, qp = ctx.saved_tensors
        gm = []
        for b in range(alpha.numel()):
            qb = torch.round(torch.clamp(x / alpha[b], qn[b], qp[b])) * alpha[b]
            gm.append((grad * qb).flatten(1).sum(1))
        return grad, torch.stack(gm, 1), None, None, None, None


class QConv2d(nn.Conv2d):
    """Conv2d with an 8-bit weight quantizer and a per-bit-level activation quantizer.

    With ``quantized=False`` it is a plain conv with the same parameter names, so a
    full-precision checkpoint initialises the quantized model.
    """

    def __init__(self, *args, bits: tuple[int, ...] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.quantized = bits is not None
        if bits is not None:
            self.wq = WeightQuantizer()
            self.aq = ActQuantizer(bits)

    def forward(self, x: torch.Tensor, bit_index: torch.Tensor | None = None, mix: torch.Tensor | None = None) -> torch.Tensor:
        if not self.quantized or bit_index is None:
            return super().forward(x)
        xq = self.aq(x, bit_index, mix)
        wq = self.wq(self.weight)
        return F.conv2d(xq, wq, self.bias, self.stride, self.padding, self.dilation, self.groups)


class GridQuantizer(nn.Module):
    """An int8 tensor of the full-integer graph (between convs: conv outputs, PReLU/BatchNorm
    outputs, residual sums): q = clamp(round(x / step), -128, 127) with one learned step per
    bit level (LSQ gradients), zero-point 0.

    The export writes exactly these steps as the tensors' scales (``granular_mobile.ir``), so
    the network trained is the one deployed. Steps start at max|x| / 127 over calibration tiles
    (``GDQNet.init_grids``), the scale post-training calibration would give; LSQ then learns to
    clip outliers where a finer step pays.
    """

    qn: int = -128
    qp: int = 127
    initialized: torch.Tensor

    def __init__(self, n_levels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(n_levels))
        self.register_buffer("initialized", torch.zeros(1))
        self.observed: torch.Tensor | None = None  # max|x| per level while observing (init)

    def step(self, level: int) -> float:
        return float(self.alpha.detach()[level])

    def forward(self, x: torch.Tensor, bit_index: torch.Tensor) -> torch.Tensor:
        if self.observed is not None:
            # observing for initialisation: record, do not round
            for lv in bit_index.unique().tolist():
                m = x[bit_index == lv].detach().abs().max().float()
                self.observed[lv] = torch.maximum(self.observed[lv], m.to(self.observed))
            return x
        if self.initialized.item() == 0:
            from ..errors import ConfigError

            raise ConfigError("an int8 grid was used before its steps were set (GDQNet.init_grids)")
        shape = (-1,) + (1,) * (x.dim() - 1)
        step = self.alpha[bit_index].view(shape)
        g = 1.0 / math.sqrt(x[0].numel() * max(x.shape[0], 1) * self.qp)
        return lsq_quantize(x, step, self.qn, self.qp, g)


def fake_quant_image(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit image grid (step 1/255, [0, 1]) with straight-through rounding: the SR output
    of an integer graph (``OUTPUT_Q`` in the export), and exact for images read as uint8."""
    return _round_ste(torch.clamp(x, 0.0, 1.0) * 255.0) / 255.0


#: weight range of the int8 layers the paper keeps in full precision (head, body end,
#: upsampler, tail): 7 bits, symmetric, per output channel. Their activations use the full
#: 8-bit range, and onnxruntime's x86 u8s8 kernels saturate int16 pair sums with 8-bit weights
#: there (measured: 41 dB vs the integer reference, 60+ dB at 7 bits), the reason onnxruntime's
#: own quantizer has ``reduce_range``. The trained block convs keep [-127, 127].
QMAX_FP = 63


def fp_layer_int_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The int8 weights of a full-precision layer and their per-output-channel step, both
    float64: step max|w| / QMAX_FP (1 for an all-zero channel), integers round(w / step).

    The one definition that training (``fake_quant_fp_weight``) and the export program use.
    Computed in float64 from the stored weights: float32 arithmetic rounds some of the exact
    ties of half-precision checkpoint weights the other way. A per-channel factor (a folded
    BatchNorm, rgb_range) multiplies the step and leaves the integers unchanged."""
    wd = w.detach().double()
    s = wd.abs().flatten(1).amax(1)
    s = torch.where(s > 0, s / QMAX_FP, torch.ones_like(s))
    q = torch.clamp(torch.round(wd / s.view(-1, *([1] * (w.dim() - 1)))), -QMAX_FP, QMAX_FP)
    return q, s


def fake_quant_fp_weight(w: torch.Tensor) -> torch.Tensor:
    """The int8 weights of a full-precision layer as the full-integer export writes them, with
    a straight-through gradient (the step follows the weights; it is not learned)."""
    q, s = fp_layer_int_weight(w)
    wq = (q * s.view(-1, *([1] * (w.dim() - 1)))).to(w.dtype)
    return w + (wq - w).detach()
