"""The integer grids a model did not learn (``calibrate_program``), and the deployed program of
every level: what ``gdq export`` writes and ``gdq eval --numerics int8`` runs."""
from __future__ import annotations

import torch

from ..config import level_name
from .builder import Lowerable, build_program
from .executor import run_program
from .nodes import OUTPUT_Q, Conv, DepthToSpace, Node, Program, QParams, int8_sym


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
