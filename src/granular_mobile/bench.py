"""``gdq bench``: latency per tile / per output megapixel and peak RSS, per backend, thread
count and precision, plus PyTorch full precision on the same images. Each configuration runs
in its own process (its own peak RSS, thread pools and warm-up); compare ratios from one run."""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .runtime.level_info import MeasuredCosts, cost_key
from .runtime.manifest import ExportFolder, Manifest
from .runtime.targets import backend_target

MODES = {"fp32": dict(precision="fp32"), "int8_static": dict(bits="8"), "gdq_dynamic": dict(bits="auto")}


def mode_options(mode: str) -> dict[str, Any]:
    """Upscaler options of a mode: one of MODES, or a level ("a6", "a6k4") run on every tile."""
    return MODES[mode] if mode in MODES else dict(bits=mode)


def run_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Worker: one backend/threads/mode over the images; returns timings (run in a subprocess)."""
    import numpy as np

    from .imageio import read_image
    from .runtime import Upscaler

    imgs = [read_image(p) for p in cfg["images"]]
    up = Upscaler.load(cfg["model"], backend=cfg["backend"], threads=cfg["threads"], **mode_options(cfg["mode"]))
    up.warm_up()
    times, tiles, mp = [], 0, 0.0
    stages = {"controller": 0.0, "sr": 0.0, "stitch": 0.0}
    for _ in range(cfg["repeat"]):
        for im in imgs:
            t0 = time.perf_counter()
            sr, rep = up(im)
            times.append(time.perf_counter() - t0)
            tiles += rep.tiles
            mp += sr.shape[0] * sr.shape[1] / 1e6
            for k in stages:
                stages[k] += rep.timings_s[k]
    total = float(np.sum(times))
    spec = backend_target(cfg["backend"])
    runtime = f"{spec.dist} {metadata.version(spec.dist)}" if spec else f"torch {metadata.version('torch')}"
    return {**{k: cfg[k] for k in ("backend", "threads", "mode")}, "runtime": runtime, "seconds": round(total, 3), "tiles": tiles,
            "ms_per_tile": round(1000 * total / tiles, 2), "s_per_output_mp": round(total / mp, 3),
            "stages_s": {k: round(v, 3) for k, v in stages.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def bench(model: str, backends: list[str], threads: list[int], images: list[Path], repeat: int = 1,
          torch_model: str | None = "default", log=print, rounds: int = 1, levels: tuple[str, ...] = (),
          only_levels: bool = False) -> dict[str, Any]:
    """Every configuration in its own process, ``rounds`` times, the rounds interleaved
    (config order reversed every other round) so that a noisy spell of a shared machine hits
    all configurations alike; a row reports the fastest round (the noise only adds time).
    ``levels``: level names of the export to time one by one (every tile at that level);
    ``only_levels``: those alone (not fp32, static int8 and dynamic)."""
    if rounds < 1 or repeat < 1:
        from .errors import ConfigError

        raise ConfigError(f"``rounds`` and ``repeat`` must be >= 1 (got {rounds}, {repeat})")
    modes = [*levels] if only_levels else [*MODES, *levels]
    configs = [(b, t, m) for b in backends for t in threads for m in modes]
    if torch_model:
        configs += [("torch", t, "fp32") for t in threads]
    runs: dict[tuple[str, int, str], list[dict[str, Any]]] = {c: [] for c in configs}
    for rnd in range(rounds):
        for be, th, mode in (configs if rnd % 2 == 0 else configs[::-1]):
            cfg = {"model": torch_model if be == "torch" else model, "backend": be, "threads": th, "mode": mode,
                   "images": [str(p) for p in images], "repeat": repeat}
            env = {**os.environ, "OMP_NUM_THREADS": str(th)}
            r = subprocess.run([sys.executable, "-m", "granular_mobile.bench", json.dumps(cfg)], capture_output=True,
                               text=True, env=env)
            if r.returncode != 0:
                from .errors import GdqError

                raise GdqError(f"bench worker failed for {be}/{th}/{mode}: {r.stderr.strip().splitlines()[-1:]}")
            row = json.loads(r.stdout.strip().splitlines()[-1])
            runs[(be, th, mode)].append(row)
            tag = f"round {rnd + 1}/{rounds} " if rounds > 1 else ""
            log(f"{tag}{be:12s} threads={th} {mode:12s} {row['ms_per_tile']:8.1f} ms/tile  {row['peak_rss_mb']:7.1f} MB")
    rows = []
    for c in configs:
        best = min(runs[c], key=lambda r: r["ms_per_tile"])
        rows.append({**best, "ms_per_tile_rounds": [r["ms_per_tile"] for r in runs[c]],
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[c])})
    return {"rows": rows, "ratios": ratios(rows), "ratios_round_median": ratios(rows, per_round=True),
            "images": [str(p) for p in images], "repeat": repeat, "rounds": rounds}


def ratios(rows: list[dict[str, Any]], per_round: bool = False) -> dict[str, float]:
    """The issue's ratios from each row's fastest round, or (``per_round``) the median over rounds
    of the ratio within a round: the two configurations of a ratio run back to back in every
    round, so a slow spell of the shared machine that spans both cancels out."""
    import numpy as np

    key = "ms_per_tile_rounds" if per_round else "ms_per_tile"
    t = {(r["backend"], r["threads"], r["mode"]): np.asarray(r[key], dtype=float) for r in rows}

    def ratio(a: tuple[str, int, str], b: tuple[str, int, str]) -> float:
        return round(float(np.median(t[a] / t[b])), 3)

    out: dict[str, float] = {}
    for (be, th, mode) in t:
        if mode != "gdq_dynamic":
            continue
        if (be, th, "int8_static") in t:
            out[f"{be}@{th}: dynamic / static int8"] = ratio((be, th, mode), (be, th, "int8_static"))
            if (be, th, "fp32") in t:
                out[f"{be}@{th}: static int8 / fp32 export"] = ratio((be, th, "int8_static"), (be, th, "fp32"))
        if ("torch", th, "fp32") in t:
            out[f"{be}@{th}: dynamic / PyTorch fp32"] = ratio((be, th, mode), ("torch", th, "fp32"))
        lv = [m for b, n, m in t if (b, n) == (be, th) and m not in MODES]
        for m in lv[1:]:  # each level's time per tile against the first (the lowest bits at full depth)
            out[f"{be}@{th}: {m} / {lv[0]}"] = ratio((be, th, m), (be, th, lv[0]))
    return out


def cost_tables(res: dict[str, Any], man: Manifest, command: str) -> dict[str, MeasuredCosts]:
    """The level gate's measured cost table per (backend, threads) of a ``bench(levels=...)``
    result: each choice's SR time per tile (the runtime's ``sr`` stage: without the
    controller and the stitching, which every level pays alike) relative to the full-depth
    graphs'. The full-depth graphs that run the same kernels have equal MACs, so their spread
    is noise: each costs 1.0, and their median is the reference of the others (an exit; a
    graph on onnxruntime's slower u8u8 convs), as ``gdq fit-gate --cost`` prices them."""
    import numpy as np

    gate = man.level_gate
    if gate is None:
        raise ConfigError("cost tables price the level gate's choices: this export has no level gate (gdq fit-gate --levels)")
    lvs = man.level_list()
    full = max(lv.blocks for lv in lvs)
    sr_ms: dict[tuple[str, int], dict[str, float]] = {}
    runtime: dict[tuple[str, int], str] = {}
    for r in res["rows"]:
        if r["backend"] == "torch":
            continue
        sr_ms.setdefault((r["backend"], r["threads"]), {})[r["mode"]] = 1000 * r["stages_s"]["sr"] / r["tiles"]
        runtime[(r["backend"], r["threads"])] = r.get("runtime", "")
    out: dict[str, MeasuredCosts] = {}
    for (be, th), ms in sr_ms.items():
        spec = backend_target(be)
        assert spec is not None
        u8 = man.targets[spec.name].u8u8_convs or {}
        plain = [lv.name for lv in lvs if lv.blocks == full and not u8.get(lv.bits)]
        missing = [n for n in (*plain, *gate.choices) if n not in ms]
        if missing:
            raise ConfigError(f"the bench did not time {missing} on {be} at {th} threads")
        ref = float(np.median([ms[n] for n in plain]))
        costs = tuple(1.0 if c in plain else round(ms[c] / ref, 4) for c in gate.choices)
        if any(b < a for a, b in zip(costs, costs[1:], strict=False)):
            raise ConfigError(f"on {be} at {th} threads the measured costs {dict(zip(gate.choices, costs, strict=True))} "
                              "are not cheapest first, as the gate's choices are: too noisy a run; measure again "
                              "with more ``rounds`` / ``repeat`` on a quiet machine")
        out[cost_key(be, th)] = MeasuredCosts(costs, runtime[(be, th)], command)
    return out


def cost_export(model: str, backends: list[str], threads: list[int]) -> ExportFolder:
    """The export whose manifest ``bench --costs`` writes the cost tables into, checked before
    anything is timed: one of the user's (not the package's), writable, with a level gate; the
    backends exported runtimes, the thread counts explicit."""
    from .runtime.backends import DEFAULT_EXPORT
    from .runtime.targets import TARGET_OF_BACKEND

    if model == "default" or Path(model).resolve() == DEFAULT_EXPORT.resolve():
        raise ConfigError("cost tables are written into the export's manifest: give ``model`` (an export "
                          "folder of yours; the package's own export is not rewritten)")
    if "torch" in backends:
        raise ConfigError(f"cost tables price exported graphs: give ``backends`` from {sorted(TARGET_OF_BACKEND)} (not torch)")
    folder = ExportFolder(model)
    if folder.manifest.level_gate is None:
        raise ConfigError("cost tables price the level gate's choices: this export has no level gate "
                          "(gdq fit-gate --levels)")
    if 0 in threads:
        raise ConfigError("cost tables: give ``threads`` of 1 or more (a table is looked up by its count)")
    if not os.access(folder.dir, os.W_OK):  # the manifest is replaced (written beside, then renamed)
        raise ConfigError(f"cost tables are written into {folder.dir / 'manifest.json'}, and {folder.dir} is not writable here")
    return folder


def cost_levels(man: Manifest) -> tuple[str, ...]:
    """The levels ``bench --costs`` times: the gate's choices and the full-depth graphs (the
    reference every cost is relative to)."""
    gate = man.level_gate
    full = max(lv.blocks for lv in man.level_list())
    return tuple(lv.name for lv in man.level_list() if lv.blocks == full or (gate and lv.name in gate.choices))


def write_cost_tables(res: dict[str, Any], folder: ExportFolder, command: str) -> tuple[dict[str, MeasuredCosts], Path]:
    """``cost_tables`` of a ``bench --costs`` result, merged into the export's manifest (a table
    of the same backend and thread count replaced); also recorded in ``res``. Returns the tables
    and the manifest's path."""
    man = folder.manifest
    tables = cost_tables(res, man, command)
    gate = man.level_gate
    assert gate is not None  # (cost_tables refuses an export without one)
    res["cost_tables"] = {k: v.to_dict() for k, v in tables.items()}
    res["cost_choices"] = list(gate.choices)
    path = man.replace(level_gate=dataclasses.replace(gate, measured={**gate.measured, **tables})).write(folder.dir)
    return tables, path


def markdown(res: dict[str, Any]) -> str:
    lines = ["| backend | threads | mode | ms / tile | s / output MP | peak RSS (MB) |", "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['backend']} | {r['threads']} | {r['mode']} | {r['ms_per_tile']} | {r['s_per_output_mp']} "
                     f"| {r['peak_rss_mb']} |")
    med = res.get("ratios_round_median", {})
    if not res["ratios"]:
        return "\n".join(lines)
    lines += ["", "| ratio | fastest rounds | median of per-round ratios |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {med.get(k, '')} |" for k, v in res["ratios"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(run_config(json.loads(sys.argv[1]))))
