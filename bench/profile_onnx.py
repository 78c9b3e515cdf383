"""Per-operator time of one exported ONNX graph under onnxruntime's profiler.

    python bench/profile_onnx.py src/granular_mobile/assets/export/sr_a4.onnx [--threads 1] [--runs 4]

Prints milliseconds per run for each operator type and, for QLinearConv / Conv, per output
channel count (where a graph spends its convolution time). A one-machine diagnostic: compare
graphs with each other in one run, not with numbers from another machine.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile

import numpy as np
import onnxruntime as ort


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=4)
    args = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "gdq_profile")
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in inp.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    sess.run(None, {inp.name: x})  # warm-up, not profiled separately: excluded below by count
    for _ in range(args.runs):
        sess.run(None, {inp.name: x})
    events = json.load(open(sess.end_profiling()))
    by_op: collections.Counter[str] = collections.Counter()
    by_conv: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        op = e["args"]["op_name"]
        by_op[op] += e["dur"]
        if op in ("QLinearConv", "Conv"):
            shapes = e["args"].get("input_type_shape") or []
            # the weight's scale (QLinearConv) or the weight itself (Conv) gives the output channels
            w = shapes[4] if op == "QLinearConv" and len(shapes) > 4 else (shapes[1] if len(shapes) > 1 else {})
            dims = next(iter(w.values()), []) if isinstance(w, dict) else []
            by_conv[f"{op} out={dims[0] if dims else '?'}"] += e["dur"]
    n = args.runs + 1
    total = sum(by_op.values())
    print(f"{args.model}: {total / n / 1000:.1f} ms per run ({args.threads} thread(s), {n} runs)")
    for op, t in by_op.most_common():
        print(f"  {op:22s} {t / n / 1000:8.1f} ms  {100 * t / total:5.1f}%")
    for k, t in by_conv.most_common():
        print(f"  {k:22s} {t / n / 1000:8.1f} ms")


if __name__ == "__main__":
    main()
