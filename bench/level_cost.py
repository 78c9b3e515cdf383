"""Measured cost of candidate levels: ms per tile of each (bits, blocks) integer graph on
onnxruntime or LiteRT (XNNPack), beside its MACs, all in one interleaved run (ratios are what
to compare).

A level's time does not depend on its trained weights (the same integer kernels run whatever
the values), so the candidates are lowered from one model at several depths (``--blocks``)
and bit levels (``--bits``): this is how the exit levels' depths are chosen before training.

    python bench/level_cost.py -m default --bits 4,6,8 --blocks 2,4,6,8,12,16 --threads 1 \
        --json docs/level_cost_onnx.json
    python bench/level_cost.py --backend tflite ... --json docs/level_cost_tflite.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--bits", default="6", help="bit levels (comma-separated)")
    ap.add_argument("--blocks", default="2,4,8,16", help="depths (residual blocks run; the model's n_blocks: full)")
    ap.add_argument("--tile", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; a level reports its median")
    ap.add_argument("--runs", type=int, default=10, help="runs of each graph per round")
    ap.add_argument("--backend", choices=("onnxruntime", "tflite"), default="onnxruntime")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()

    from granular_mobile.checkpoint import load_model
    from granular_mobile.config import level_name
    from granular_mobile.data.calibration import calibration_tiles
    from granular_mobile.export.onnx import program_to_onnx, save_onnx
    from granular_mobile.ir import build_program, calibrate_program
    from granular_mobile.models import count_macs

    model = load_model(a.model).eval()
    nb = model.cfg.n_blocks
    bits = [int(b) for b in a.bits.split(",")]
    depths = [int(k) for k in a.blocks.split(",")]
    tiles = calibration_tiles(a.tile)
    x = tiles[:1].numpy()
    runners: dict[str, Callable[[], object]] = {}
    info: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as d:
        for b in bits:
            for k in depths:
                name = level_name(b, k, nb)
                # the shared network lowered at depth k (an exit level's graph has this shape)
                prog = calibrate_program(build_program(_AtDepth(model, k), b, "int8"), tiles[:8])
                report: dict[str, list[str]] = {}
                path: Path | None = None
                if a.backend == "onnxruntime":
                    path = save_onnx(program_to_onnx(prog, a.tile, batch=1, report=report), Path(d) / f"{name}.onnx")
                runners[name] = _runner(a.backend, prog, path, a.tile, a.threads, x)
                macs = sum(m for _, m, _ in count_macs(model, a.tile, a.tile, blocks=k))
                info[name] = {"bits": b, "blocks": k, "macs_g": round(macs / 1e9, 3)}
                if a.backend == "onnxruntime":
                    info[name]["u8u8_convs"] = len(report.get("u8u8_convs", []))
        for run in runners.values():  # warm-up
            run()
        times: dict[str, list[float]] = {n: [] for n in runners}
        names = list(runners)
        for r in range(a.rounds):
            for n in names if r % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                for _ in range(a.runs):
                    runners[n]()
                times[n].append((time.perf_counter() - t0) / a.runs * 1000)
    ref = max(info, key=lambda n: (info[n]["blocks"], -info[n]["bits"]))
    for n in names:
        info[n]["ms_per_tile"] = round(float(np.median(times[n])), 2)
        info[n]["ms_rounds"] = [round(t, 2) for t in times[n]]
    for n in names:
        info[n]["time_vs_" + ref] = round(info[n]["ms_per_tile"] / info[ref]["ms_per_tile"], 3)
        info[n]["macs_vs_" + ref] = round(info[n]["macs_g"] / info[ref]["macs_g"], 3)
        print(f"{n:8s} {info[n]['ms_per_tile']:7.2f} ms/tile  x{info[n]['time_vs_' + ref]:.3f} time  "
              f"x{info[n]['macs_vs_' + ref]:.3f} MACs  ({info[n]['macs_g']} GMAC, u8u8 convs {info[n].get('u8u8_convs', '-')})")
    out = {"command": "python bench/level_cost.py " + " ".join(f"--{k} {v}" for k, v in vars(a).items() if k != "json"),
           "runtime": _version(a.backend), "threads": a.threads, "tile": a.tile, "levels": info}
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {a.json}")


def _runner(backend: str, prog, onnx_path: Path | None, tile: int, threads: int, x: np.ndarray) -> Callable[[], object]:
    """A call that runs one tile through the level's graph on ``backend``."""
    if backend == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, {"lr": x})
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from granular_mobile.export.tflite import _concrete, _convert, _TFProgram

    data = _convert(tf, [_concrete(tf, _TFProgram(tf, prog, quantized=True), tile, "sr")], quantized=True)
    it = Interpreter(model_content=data, num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))

    def run() -> object:
        it.set_tensor(inp, nhwc)
        it.invoke()
        return None

    return run


def _version(backend: str) -> str:
    from importlib.metadata import version

    return f"onnxruntime {version('onnxruntime')}" if backend == "onnxruntime" else f"ai-edge-litert {version('ai-edge-litert')}"


class _AtDepth(torch.nn.Module):
    """The model lowered at depth ``k`` (its shared network, whatever levels it has)."""

    def __init__(self, model, k: int) -> None:
        super().__init__()
        self.m, self.k = model, k
        self.cfg = model.cfg

    @property
    def bits(self):
        return self.m.bits

    def net_for(self, level):
        return self

    def lower(self, b, bit_index):
        b.blocks = None if self.k == self.cfg.n_blocks else self.k
        self.m.net_for(bit_index).lower(b, bit_index)


if __name__ == "__main__":
    main()
