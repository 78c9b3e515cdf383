"""Latency of the browser demo against native onnxruntime, on the bundled sample.

Each browser mode runs ``node web_demo/upscale_headless.mjs`` (headless Chromium,
onnxruntime-web WebAssembly, its own server, page cross-origin isolated) with ``--bench R``:
a warm-up creating and running every graph of the mode, then R timed runs, the fastest kept
(ms per tile = total time / tiles). The native side is ``gdq bench --backends onnxruntime``
right after, same threads. Compare the ratios, on a quiet machine; the JSON keeps every raw
figure.

  python bench/web_latency.py --threads 1,2 --bench 3 --json docs/bench_web.json

Needs chromium, node and ``npm ci --prefix web_demo``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "granular_mobile" / "assets" / "sample.png"
EXPORT = ROOT / "src" / "granular_mobile" / "assets" / "export"
#: (key, upscale_headless options): full precision, static levels, Granular-DQ
MODES = {
    "fp32": ["--precision", "fp32"],
    "bits8": ["--bits", "8"],
    "bits6": ["--bits", "6"],
    "bits4": ["--bits", "4"],
    "a6k8": ["--bits", "a6k8"],
    "a6k4": ["--bits", "a6k4"],
    "a6k2": ["--bits", "a6k2"],
    "auto": ["--bits", "auto"],
}
NATIVE_MODE = {"fp32": "fp32", "bits8": "int8_static", "auto": "gdq_dynamic"}


def browser(mode: str, threads: int, bench: int, model: Path, tmp: Path) -> dict:
    stats = tmp / f"{mode}_{threads}.json"
    cmd = ["node", str(ROOT / "web_demo" / "upscale_headless.mjs"), str(SAMPLE), str(tmp / "out.png"),
           "--model", str(model), "--threads", str(threads), "--bench", str(bench), "--stats", str(stats),
           *MODES[mode]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return json.loads(stats.read_text())


def native(threads: list[int], model: Path, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "bench.json"
        cmd = [sys.executable, "-m", "granular_mobile.cli", "bench", "-m", str(model), "--backends", "onnxruntime",
               "--threads", ",".join(map(str, threads)), "--rounds", str(rounds), "--torch-model", "", "--json", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--bench", type=int, default=3, help="timed browser runs per mode (after a warm-up)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"browser modes: {','.join(MODES)} (a level the export lacks fails)")
    ap.add_argument("--rounds", type=int, default=3, help="gdq bench rounds for the native side")
    ap.add_argument("--model", type=Path, default=EXPORT, help="export folder")
    ap.add_argument("--json", type=Path, help="write every figure here")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    modes = [m for m in a.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SystemExit(f"--modes {bad}: valid {list(MODES)}")
    res: dict = {}
    with tempfile.TemporaryDirectory() as d:
        for t in threads:
            for m in modes:
                s = browser(m, t, a.bench, a.model, Path(d))
                res[f"{t}_{m}"] = {k: s.get(k) for k in ("threads", "ep", "precision", "bits_mode", "tiles",
                                                          "tiles_per_bit", "tiles_per_level", "budget", "cost",
                                                          "ms_per_tile", "bench_runs_s", "timings_s",
                                                          "crossOriginIsolated", "chromium")}
                print(f"browser {t} thread(s) {m:6s} {s['ms_per_tile']:8.1f} ms / tile  {s.get('tiles_per_level')}",
                      flush=True)
    nat = native(threads, a.model, a.rounds)
    res["native_gdq_bench"] = nat
    rows = {(r["threads"], r["mode"]): r["ms_per_tile"] for r in nat["rows"]}
    print("| mode | threads | browser (ms / tile) | native (ms / tile) | browser / native |")
    for t in threads:
        for m in modes:
            b = res[f"{t}_{m}"]["ms_per_tile"]
            n = rows.get((t, NATIVE_MODE.get(m, "")))
            print(f"| {m} | {t} | {b} | {n if n is not None else ''} | {round(b / n, 1) if n else ''} |")
    res["command"] = "python bench/web_latency.py " + " ".join(sys.argv[1:])
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
