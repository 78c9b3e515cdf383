"""``gdq verify --arch arm64``: the exported graphs on the ARM64 kernels a phone runs.

Phones run the aarch64 builds of onnxruntime (MLAS) and LiteRT (XNNPack), which take other
code paths than on x86. This module runs the aarch64 wheels of the pinned runtimes under
QEMU user-mode emulation, in an arm64 Debian userland made from Debian packages
(``arm64_setup.sh``, shipped beside this module, cached under ``~/.cache/granular-mobile/arm64``), on a few of
the bundled calibration tiles, and compares every output with

- the integer reference (``run_program``: what onnxruntime's integer kernels compute), and
- the same runtime on this (x86) machine, run by the same worker script.

The ARM side (``arm64_worker.py``) is torch-free: it loads the graphs, runs the tiles (saved
as .npy here) and writes the outputs as .npy; the figures are computed here. Timing under
emulation means nothing; only numerics are reported.

The emulated process runs in a chroot of the arm64 root (its /sys and /proc are files the
root provides, not the host's: with the host's /sys visible, onnxruntime's CPU detection
crashed under QEMU). The root provides one CPU of a chosen model (``CPUS``): QEMU emulates
that model's instructions and ``/proc/cpuinfo`` describes it, so that onnxruntime's and
XNNPack's CPU detection (cpuinfo) succeed and choose the kernels they choose on that CPU.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, install_hint

WORKER = Path(__file__).resolve().parent / "arm64_worker.py"
SETUP_SCRIPT = Path(__file__).resolve().parent / "arm64_setup.sh"
SETUP_COMMAND = "gdq verify --arch arm64 --setup"
READY = ".gdq-arm64-ready"  # written by arm64_setup.sh into the root when it is complete
SUBSET_GRAPHS = ("controller", "4")  # what CI runs: the controller and one integer graph per runtime
SUBSET_TILES = 2

_FEATURES_V82 = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
#: CPU models: QEMU's -cpu and the /proc/cpuinfo the root shows (one core; cpuinfo reads the
#: core's MIDR (implementer/part) from there and the ISA from the auxiliary vector QEMU sets)
CPUS: dict[str, dict[str, str]] = {
    # the ARMv8.2 big core of most phones from 2019 on (dot product, fp16; no i8mm)
    "cortex-a76": {"qemu": "cortex-a76", "features": _FEATURES_V82 + " ssbs", "part": "0xd0b", "variant": "0x4"},
    # the little core of the same phones (dot product, fp16)
    "cortex-a55": {"qemu": "cortex-a55", "features": _FEATURES_V82, "part": "0xd05", "variant": "0x2"},
    # QEMU's "max" (ARMv9: SVE2 at the 128-bit vector length of phone cores, i8mm, bf16), shown as a
    # Cortex-A710 (the ARMv9 big core of 2022 phones). Needs QEMU >= 8: bookworm's 7.2 miscomputes
    # XNNPack's SVE kernels (sr_a4.tflite 9 dB from x86; 10.0: identical to x86). QEMU >= 8
    # answers /proc/cpuinfo itself.
    "max": {"qemu": "max,sve-default-vector-length=16", "part": "0xd47", "variant": "0x2", "min_qemu": "8",
            "features": _FEATURES_V82 + " jscvt fcma sha3 sm3 sm4 sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs "
                        "sb dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svebf16 "
                        "i8mm bf16"},
}
DEFAULT_CPU = "cortex-a76"


def arm64_cache() -> Path:
    return Path(os.environ.get("GDQ_ARM64_CACHE", "~/.cache/granular-mobile/arm64")).expanduser()


def arm64_root() -> Path:
    return arm64_cache() / "root"


def setup_root(log: Callable[[str], None] = lambda s: None) -> None:
    """Build the arm64 root (``arm64_setup.sh``; idempotent) with the aarch64 wheels of the
    runtimes installed here, so that both sides run the same versions."""
    from importlib import metadata

    env = dict(os.environ)
    for var, dist, module in (("GDQ_ARM64_ORT", "onnxruntime", "onnxruntime"),
                              ("GDQ_ARM64_LITERT", "ai-edge-litert", "ai_edge_litert")):
        try:
            env.setdefault(var, metadata.version(dist))
        except metadata.PackageNotFoundError:
            raise ConfigError(install_hint(module)) from None
    if not shutil.which("bash"):
        raise ConfigError("the arm64 setup is a bash script: bash is not on PATH")
    log(f"building the arm64 root in {arm64_root()} (onnxruntime {env['GDQ_ARM64_ORT']}, "
        f"ai-edge-litert {env['GDQ_ARM64_LITERT']}; once, about two minutes)")
    r = subprocess.run(["bash", str(SETUP_SCRIPT)], env=env)
    if r.returncode:
        raise ConfigError(f"the arm64 setup failed (exit {r.returncode}): see its output above")


def arm64_unavailable(root: Path | None = None) -> str | None:
    """Why the ARM64 check cannot run here (None: it can)."""
    root = root or arm64_root()
    if not (root / READY).is_file():
        return f"no arm64 root at {root} (run `{SETUP_COMMAND}`; GDQ_ARM64_CACHE moves it)"
    if not (root / "usr/bin/qemu-aarch64-static").is_file():
        return f"{root} has no usr/bin/qemu-aarch64-static (rerun `{SETUP_COMMAND}`)"
    if os.geteuid() != 0 and not shutil.which("unshare"):
        return "entering the arm64 root needs root (chroot) or unshare (user namespaces)"
    return None


def root_info(root: Path | None = None) -> dict[str, Any]:
    return json.loads(((root or arm64_root()) / READY).read_text())


def _enter(root: Path) -> list[str]:
    """The command prefix that runs a program inside ``root`` (a chroot: no host /sys, /proc)."""
    if os.geteuid() == 0:
        return ["chroot", str(root)]
    return ["unshare", "--map-root-user", f"--root={root}"]


def _job(d: Path, export_dir: Path, graphs: list[dict[str, str]], tiles: np.ndarray) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for f in {g["file"] for g in graphs}:
        shutil.copy2(export_dir / f, d / f)
    shutil.copy2(WORKER, d / WORKER.name)
    np.save(d / "tiles.npy", np.ascontiguousarray(tiles, np.float32))
    (d / "job.json").write_text(json.dumps({"tiles": "tiles.npy", "threads": 1, "graphs": graphs}))


def _collect(d: Path, graphs: list[dict[str, str]]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    out = {g["out"]: np.load(d / f"{g['out']}.npy") for g in graphs}
    out.update({f"{g['out']}_scores": np.load(d / f"{g['out']}_scores.npy") for g in graphs if g.get("scores")})
    return out, json.loads((d / "info.json").read_text())


def run_worker(export_dir: Path, graphs: list[dict[str, str]], tiles: np.ndarray, arch: str, cpu: str = DEFAULT_CPU,
               root: Path | None = None, log: Callable[[str], None] = lambda s: None) -> tuple[dict[str, np.ndarray], dict]:
    """Run ``graphs`` on ``tiles`` with the runtimes of ``arch`` ("arm64": emulated; "host": this machine)."""
    if arch == "host":
        with tempfile.TemporaryDirectory(prefix="gdq-host-") as t:
            d = Path(t)
            _job(d, export_dir, graphs, tiles)
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            r = subprocess.run([sys.executable, str(d / WORKER.name), str(d)], capture_output=True, text=True, env=env)
            if r.returncode:
                raise ConfigError(f"the host runtimes failed on the graphs:\n{r.stderr[-3000:]}")
            return _collect(d, graphs)
    root = root or arm64_root()
    why = arm64_unavailable(root)
    if why:
        raise ConfigError(why)
    if cpu not in CPUS:
        raise ConfigError(f"unknown ``cpu`` '{cpu}'; valid: {sorted(CPUS)}")
    c = CPUS[cpu]
    qv = str(root_info(root).get("qemu", "0"))
    if int(qv.split(".")[0] or 0) < int(c.get("min_qemu", "0")):
        raise ConfigError(f"``cpu`` {cpu} needs QEMU >= {c['min_qemu']} (the arm64 root has {qv}, which miscomputes "
                          f"SVE): rebuild it with `GDQ_ARM64_QEMU=trixie {SETUP_COMMAND}`")
    # one emulated core of the chosen model: what cpuinfo (onnxruntime, XNNPack) reads
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(
        f"processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: {c['features']}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {c['variant']}\nCPU part\t: {c['part']}\nCPU revision\t: 0\n\n")
    cpu_dir = root / "sys" / "devices" / "system" / "cpu"
    (cpu_dir / "cpu0").mkdir(parents=True, exist_ok=True)
    for f in ("possible", "present", "online"):
        (cpu_dir / f).write_text("0\n")
    (root / "tmp").mkdir(exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="gdq-arm64-", dir=root / "tmp"))
    try:
        _job(d, export_dir, graphs, tiles)
        inside = "/tmp/" + d.name
        cmd = _enter(root) + ["/usr/bin/qemu-aarch64-static", "-cpu", c["qemu"], "/usr/bin/python3.11",
                              f"{inside}/{WORKER.name}", inside]
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
        log(f"arm64 ({cpu}, QEMU user mode): {len(graphs)} graphs x {len(tiles)} tiles")
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode:
            raise ConfigError(f"the arm64 runtimes failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
        return _collect(d, graphs)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def select_graphs(manifest: dict[str, Any], targets: list[str], which: str) -> list[dict[str, str]]:
    """Worker graph list. ``which``: "all", "subset" (SUBSET_GRAPHS) or a list like "controller,4,fp32"."""
    names = {"all": None, "subset": list(SUBSET_GRAPHS)}.get(which)
    if names is None and which != "all":
        names = [s.strip() for s in which.split(",") if s.strip()]
    out = []
    for t in targets:
        e = manifest["targets"].get(t)
        if e is None:
            raise ConfigError(f"the export has no '{t}' target (has: {sorted(manifest['targets'])})")
        # full-depth levels by their bits (as the parity entries name them), exit levels by name
        exits = {n: f for n, f in (e.get("levels") or {}).items() if f not in e["sr"].values()}
        avail = {"controller": e["controller"], **e["sr"], **exits, **({"fp32": e["fp32"]} if e.get("fp32") else {})}
        for n in (names or list(avail)):
            if n not in avail:
                raise ConfigError(f"graph '{n}' is not in the {t} export; valid: {list(avail)}")
            g = {"runtime": t, "file": avail[n], "kind": "controller" if n == "controller" else "sr",
                 "graph": n, "out": f"{t}_{n}"}
            if n == "controller" and (e.get("controller_outputs") or {}).get("scores"):
                g["scores"] = e["controller_outputs"]["scores"]  # a level gate's scores
            out.append(g)
    return out


def _u8(a: np.ndarray) -> np.ndarray:
    return np.round(np.clip(a, 0, 1) * 255).astype(np.int16)


def compare(a: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """The verify figures plus the share of identical 8-bit output values and the largest 8-bit step."""
    from .parity import _cmp

    r = _cmp(a, ref)
    d = np.abs(_u8(a) - _u8(ref))
    r["identical"] = round(float((d == 0).mean()), 4)
    r["max_abs_255"] = int(d.max())
    return r


def tile_subset(tile: int, n: int) -> tuple[np.ndarray, list[int]]:
    """``n`` of the 24 bundled calibration tiles, spread evenly: (n, 3, T, T) float32 [0, 1]."""
    from ..data.calibration import calibration_tiles

    allt = calibration_tiles(tile).numpy()
    if not 1 <= n <= len(allt):
        raise ConfigError(f"``tiles`` {n} must be 1..{len(allt)}")
    idx = np.linspace(0, len(allt) - 1, n).round().astype(int).tolist()
    return allt[idx], idx


def _models(manifest: dict[str, Any], model: str | None, fp: str | None):
    from ..checkpoint import load_model

    src = model or manifest["model"].get("source")
    if src in (None, "<in-memory>"):
        raise ConfigError("the manifest does not name a checkpoint file: give ``model`` (and ``fp``)")
    m = load_model(src).eval()
    if fp is not None:
        fpm = load_model(fp).eval()
    elif src == "default":
        fpm = load_model("default", fp=True).eval()
    else:
        fpm = None
    return m, fpm


def _levels_of(scores: np.ndarray, gate: dict[str, Any]) -> np.ndarray:
    """Each tile's choice at the gate's budget, the tiles as one image (the runtime's allocation)."""
    from ..runtime.budget import allocate

    return allocate(scores, gate["costs"], gate["budget"])


def _references(m: Any, fpm: Any, manifest: dict[str, Any], wanted: set[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """What each graph in ``wanted`` should give on tiles ``x``: the integer program of each level
    (the export's rounding points), the full-precision twin, the controller's bits and (with a
    level gate) the levels its scores give, the tiles as one image."""
    import torch

    from ..data.calibration import calibration_tiles
    from ..ir import deployed_level_programs, run_program

    refs: dict[str, np.ndarray] = {}
    with torch.no_grad():
        xt = torch.from_numpy(x)
        levels = [g for g in wanted if g not in ("controller", "fp32")]
        if levels:
            progs = deployed_level_programs(m, calibration_tiles(manifest["tile"]), manifest.get("fp_layers", "int8"))
            for name in levels:
                refs[name] = run_program(progs[f"a{name}" if name.isdigit() else name], xt).numpy()
        if fpm is not None and "fp32" in wanted:
            refs["fp32"] = fpm(xt).numpy()
        if "controller" in wanted:
            refs["controller"] = np.asarray(m.bits)[m.controller(xt).bit_index.numpy()]
        gate = manifest.get("level_gate")
        if gate and "controller" in wanted:  # the levels the gate's scores give, the tiles as one image
            refs["gate"] = _levels_of(m.level_scores(xt).numpy(), gate)
    return refs


def arm64_parity(export_dir: str | Path, targets: list[str] | None = None, graphs: str = "subset",
                 tiles: int = SUBSET_TILES, cpu: str = DEFAULT_CPU, model: str | None = None, fp: str | None = None,
                 root: Path | None = None, write: bool = True,
                 log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """ARM64 parity of an export; returns {target: arm64 entry} and (``write``) adds it to the
    manifest as ``parity[target]["arm64"]`` (the x86 figures beside it are left as they are)."""
    export_dir = Path(export_dir)
    man_path = export_dir / "manifest.json"
    if not man_path.is_file():
        raise ConfigError(f"no manifest.json in {export_dir}")
    manifest = json.loads(man_path.read_text())
    targets = targets or sorted(manifest["targets"])
    gl = select_graphs(manifest, targets, graphs)
    x, idx = tile_subset(manifest["tile"], tiles)
    why = arm64_unavailable(root)
    if why:
        raise ConfigError(why)
    # the references' models load before the emulated run (minutes), so that a bad -m / --fp
    # fails at once
    m, fpm = _models(manifest, model, fp)
    wanted = {g["graph"] for g in gl}
    if "fp32" in wanted and fpm is None:
        raise ConfigError("the fp32 graph needs the full-precision twin: give ``fp``")

    arm, info = run_worker(export_dir, gl, x, "arm64", cpu, root, log)
    host, host_info = run_worker(export_dir, gl, x, "host")

    refs = _references(m, fpm, manifest, wanted, x)
    gate = manifest.get("level_gate")

    rinfo = root_info(root)
    res: dict[str, Any] = {}
    for t in targets:
        ver = info.get("onnxruntime" if t == "onnx" else "ai_edge_litert", "?")
        e: dict[str, Any] = {
            "runtime": f"{'onnxruntime' if t == 'onnx' else 'ai-edge-litert'} {ver} (aarch64 wheel, 1 thread)",
            "emulation": f"QEMU {rinfo.get('qemu', '?')} user mode, -cpu {CPUS[cpu]['qemu']}",
            "cpu": cpu, "arm_features": info.get("arm_features", []),
            "tiles": len(x), "tile_source": f"bundled calibration tiles {idx}",
            "graphs": graphs, "sr": {},
        }
        for g in (g for g in gl if g["runtime"] == t):
            a, h = arm[g["out"]], host[g["out"]]
            if g["kind"] == "controller":
                ref = refs["controller"]
                e["controller_agreement"] = round(float((a == ref).mean()), 4)
                e["controller_agreement_x86"] = round(float((a == h).mean()), 4)
                e["controller_bits"] = a.tolist()
                if "scores" in g and gate:
                    sa, sh = arm[g["out"] + "_scores"], host[g["out"] + "_scores"]
                    e["gate_agreement"] = round(float((_levels_of(sa, gate) == refs["gate"]).mean()), 4)
                    e["gate_agreement_x86"] = round(float((_levels_of(sa, gate) == _levels_of(sh, gate)).mean()), 4)
                    e["gate_scores_max_abs_diff_x86"] = round(float(np.abs(sa - sh).max()), 5)
                continue
            v: dict[str, Any] = dict(compare(a, refs[g["graph"]]))
            v["vs_x86"] = compare(a, h)
            v["x86_psnr_db"] = compare(h, refs[g["graph"]])["psnr_db"]
            e["sr"][g["graph"]] = v
        res[t] = e
        log(f"{t} arm64: " + (f"controller agrees with the reference on {e['controller_agreement']:.0%}, with x86 on "
                              f"{e['controller_agreement_x86']:.0%}; " if "controller_agreement" in e else "") +
            ", ".join(f"{k}: {v['psnr_db']} dB ({v['vs_x86']['identical']:.1%} identical to x86)" for k, v in e["sr"].items()))
    if write:
        manifest = json.loads(man_path.read_text())
        par = manifest.setdefault("parity", {})
        for t, e in res.items():
            par.setdefault(t, {})["arm64"] = e
        man_path.write_text(json.dumps(manifest, indent=2))
    return res


def arm64_ok(res: dict[str, Any], min_psnr: float = 45.0) -> bool:
    """The bar: every integer graph >= ``min_psnr`` to the reference, the controller as on x86."""
    for e in res.values():
        if e.get("controller_agreement_x86", 1.0) < 1.0 or e.get("gate_agreement_x86", 1.0) < 1.0:
            return False
        if any(v["psnr_db"] < min_psnr for k, v in e["sr"].items() if k != "fp32"):
            return False
    return True
