"""Where an integer TFLite graph leaves the reference: prefix graphs, node by node.

    python experiments/tflite_prefix.py --bits 5 --nodes 6,26,31,46,66,81 [--model CKPT] [--tiles 4]
    python experiments/tflite_prefix.py --bits 5 --list          # the program's nodes

For each node k, the export program of that bit level cut after k is converted like ``gdq
export --target tflite`` does it and run under LiteRT on Set14 LR crops (the tile's top-left
corner of the first images); its output is compared with the reference's trace
(``run_program``) in steps of the node's output grid: the share of values that differ and the
largest difference. A diagnostic for one machine's LiteRT build, not a test.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from granular_mobile.checkpoint import DEFAULT_MODEL, load_model  # noqa: E402
from granular_mobile.defaults import DEFAULT_TILE, bench_root  # noqa: E402
from granular_mobile.export.exporter import calibration_tiles  # noqa: E402
from granular_mobile.imageio import list_images, read_rgb  # noqa: E402
from granular_mobile.ir import Program, deployed_programs, run_program  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--nodes", default="", help="comma-separated node indices (see --list)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE)
    ap.add_argument("--tiles", type=int, default=4)
    ap.add_argument("--data", default=str(Path(bench_root()) / "Set14" / "LR_bicubic" / "X2"))
    args = ap.parse_args()

    m = load_model(args.model).eval()
    prog = deployed_programs(m, calibration_tiles(args.tile))[args.bits]
    if args.list or not args.nodes:
        for i, n in enumerate(prog.nodes):
            print(i, type(n).__name__, n.out, getattr(n, "out_q", None))
        return
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from granular_mobile.export import tflite as T

    t = args.tile
    x = np.stack([read_rgb(p)[:t, :t].astype(np.float32) / 255 for p in list_images(Path(args.data))[:args.tiles]])
    trace: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        run_program(prog, torch.from_numpy(x.transpose(0, 3, 1, 2)), trace=trace)
    for k in (int(v) for v in args.nodes.split(",")):
        n = prog.nodes[k]
        sub = Program(nodes=prog.nodes[:k + 1], input=prog.input, output=n.out)
        data = T._convert(tf, [T._concrete(tf, T._TFProgram(tf, sub, True), t, "y")], True)
        it = Interpreter(model_content=data)
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        ys = []
        for j in range(len(x)):
            it.set_tensor(inp["index"], x[j:j + 1])
            it.invoke()
            ys.append(it.get_tensor(out["index"]).copy())
        y = np.concatenate(ys)
        if y.dtype != np.float32:  # an integer output: dequantize with its own parameters
            sc, zp = out["quantization"]
            y = (y.astype(np.float32) - zp) * sc
        ref = trace[n.out].numpy().transpose(0, 2, 3, 1)
        q = getattr(n, "out_q", None)
        d = np.round((y - ref) / (q.scale if q is not None else 1.0))
        print(f"{k:3d} {type(n).__name__:8s} {n.out:16s} differ {100 * np.mean(d != 0):8.4f} %  "
              f"max {int(np.abs(d).max())} steps", flush=True)


if __name__ == "__main__":
    main()
