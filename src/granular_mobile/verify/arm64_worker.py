"""Run exported graphs on saved tiles and write their outputs: the ARM64 side of ``gdq verify --arch arm64``.

Self-contained on purpose: numpy, onnxruntime and ai_edge_litert only (no torch, no package
import), so the same file runs under QEMU in the arm64 root (``arm64_setup.sh``) and
on the host (x86), where ``verify/arm64.py`` starts it in a subprocess for the x86 outputs.

    python arm64_worker.py JOB_DIR

``JOB_DIR/job.json``: {"tiles": "tiles.npy", "threads": 1,
                       "graphs": [{"runtime": "onnx" | "tflite", "file": "sr_a4.onnx",
                                   "kind": "controller" | "sr", "out": "onnx_sr_a4",
                                   "scores": output name of a level gate's scores (controller, optional)}, ...]}
``tiles.npy``: (N, 3, T, T) float32 on [0, 1] (NCHW; the TFLite graphs get NHWC, batch 1).
Writes ``<out>.npy`` per graph (SR: (N, 3, sT, sT) float32 NCHW; controller: ``<out>.npy``
bits (N,) int64, ``<out>_entropy.npy`` and, with "scores", ``<out>_scores.npy``), then ``info.json`` (platform, versions, the CPU
features the process saw). Timing under emulation means nothing; it is not recorded.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (os.environ.get("GDQ_ARM64_SITE"), "/opt/gdq-site"):
    if p and Path(p).is_dir() and platform.machine() in ("aarch64", "arm64"):
        sys.path.insert(0, p)

import numpy as np  # noqa: E402


def _hwcaps() -> dict[str, int]:
    """AT_HWCAP / AT_HWCAP2 (Linux; what onnxruntime's MLAS falls back to when cpuinfo fails)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        return {"hwcap": int(libc.getauxval(16)), "hwcap2": int(libc.getauxval(26))}
    except Exception:  # noqa: BLE001
        return {}


def _arm_features(caps: dict[str, int]) -> list[str]:
    if platform.machine() not in ("aarch64", "arm64") or not caps:
        return []
    bits = {"asimd": (0, 1), "fphp": (0, 9), "asimdhp": (0, 10), "asimddp": (0, 20), "sve": (0, 22),
            "i8mm": (1, 13), "bf16": (1, 14), "sve2": (1, 1)}
    words = (caps["hwcap"], caps["hwcap2"])
    return [k for k, (w, b) in bits.items() if words[w] >> b & 1]


def run_onnx(path: Path, tiles: np.ndarray, kind: str, threads: int, scores: str | None = None) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    outs = [s.run(None, {"lr": np.ascontiguousarray(t[None], np.float32)}) for t in tiles]  # tile by tile, as the runtime
    if kind == "controller":
        res = [np.concatenate([o[2] for o in outs]).astype(np.int64), np.concatenate([o[1] for o in outs])]
        if scores:
            k = [o.name for o in s.get_outputs()].index(scores)
            res.append(np.concatenate([o[k] for o in outs]))
        return res
    return [np.concatenate([o[0] for o in outs])]


def run_tflite(path: Path, tiles: np.ndarray, kind: str, threads: int, scores: str | None = None) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    outs = it.get_output_details()
    res = []
    for t in np.ascontiguousarray(tiles.transpose(0, 2, 3, 1), np.float32):
        it.set_tensor(inp["index"], t[None])
        it.invoke()
        res.append([it.get_tensor(o["index"])[0] for o in outs])
    if kind == "controller":  # output names carry a signature prefix: match by dtype / rank
        bits = [int(next(v for v in r if v.dtype.kind in "iu")) for r in res]
        ent = [float(next(v for v in r if v.dtype.kind == "f" and v.ndim == 0)) for r in res]
        arrs: list[np.ndarray] = [np.asarray(bits, np.int64), np.asarray(ent, np.float32)]
        if scores:  # the exact name, as the runtime reads it (tflite backend)
            k = [o["name"] for o in outs].index(scores)
            arrs.append(np.stack([r[k] for r in res]))
        return arrs
    return [np.stack([r[0] for r in res]).transpose(0, 3, 1, 2)]


def main(job_dir: str) -> None:
    d = Path(job_dir)
    job = json.loads((d / "job.json").read_text())
    tiles = np.load(d / job["tiles"])
    threads = int(job.get("threads", 1))
    caps = _hwcaps()
    info: dict = {"machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
                  "hwcaps": caps, "arm_features": _arm_features(caps), "tiles": int(len(tiles)), "graphs": []}
    for g in job["graphs"]:
        run = run_onnx if g["runtime"] == "onnx" else run_tflite
        arrs = run(d / g["file"], tiles, g["kind"], threads, g.get("scores"))
        for suffix, a in zip(("", "_entropy", "_scores"), arrs, strict=False):
            np.save(d / f"{g['out']}{suffix}.npy", a)
        info["graphs"].append(g["out"])
        print(f"done {g['out']}", flush=True)
    for mod in ("onnxruntime", "ai_edge_litert"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    (d / "info.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
