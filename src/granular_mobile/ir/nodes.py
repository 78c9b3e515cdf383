"""The program's node kinds and the program itself (plain data: numpy arrays and numbers)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np


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


#: every node kind; each backend's handler table has one entry per kind (tests/test_ir.py)
NODE_KINDS: tuple[type, ...] = (Conv, PRelu, Affine, Add, Relu, DepthToSpace)

H = TypeVar("H")


def handler(table: Mapping[type, H], n: Node, backend: str) -> H:
    """The entry of a backend's handler table for ``n``'s kind."""
    try:
        return table[type(n)]
    except KeyError:
        raise TypeError(f"{backend} has no handler for {type(n).__name__} nodes") from None
