"""Render the result tables of the README, the model card and docs/ from the JSON files that hold them.

    python scripts/render_docs.py            # rewrite every table in place
    python scripts/render_docs.py --check    # exit 1, naming each table that differs from its JSON

A rendered table sits between two markers in a Markdown file:

    <!-- table: KIND FILE [OPTION=VALUE ...] -->
    ...generated, never edited by hand...
    <!-- /table -->

KIND is one of ``RENDERERS`` below; FILE (relative to the repository root) is the JSON the
command that measured the figures wrote (each JSON names that command). A figure is changed by
re-running that command, then this script; ``tests/test_docs.py`` fails when a table and its
JSON disagree.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: the Markdown files whose tables are rendered
DOCS = ("README.md", "src/granular_mobile/assets/MODEL_CARD.md", "docs/*.md")
MARK = re.compile(r"(?P<head><!-- table: (?P<kind>[\w-]+) (?P<file>\S+)(?P<opts>(?: [\w-]+=\S+)*) -->\n)(?P<body>.*?)<!-- /table -->",
                  re.S)


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join("" if c is None else str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    return "\n".join([_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]) + "\n"


def _f(x: Any, nd: int = 3) -> str:
    return "" if x is None else f"{x:.{nd}f}"


MODEL_LABELS = {"bicubic": "bicubic", "srresnet": "full-precision twin (PyTorch)", "edsr": "full-precision twin (PyTorch)"}


def _levels(d: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (d or {}).items())


def render_eval(data: dict[str, Any], opts: dict[str, str]) -> str:
    """``gdq eval --json``: PSNR (and the deployed model's mean cost or FAB) per set and model."""
    sets = list(dict.fromkeys(r["dataset"] for r in data["results"]))
    models = list(dict.fromkeys(r["model"] for r in data["results"]))
    rows = []
    for m in models:
        label = MODEL_LABELS.get(m, f"{m.removesuffix(' int8')}, deployed (integer graphs)")
        cells: list[Any] = [label]
        for s in sets:
            r = next((x for x in data["results"] if x["dataset"] == s and x["model"] == m), None)
            if r is None:
                cells.append("")
            elif r.get("cost") is not None:
                cells.append(f"{_f(r['psnr'])} (cost {_f(r['cost'], 2)})")
            elif r.get("fab") is not None:
                cells.append(f"{_f(r['psnr'])} (FAB {_f(r['fab'], 2)})")
            else:
                cells.append(_f(r["psnr"]))
        rows.append(cells)
    return _table([f"PSNR (dB), x{data['scale']}, Y channel", *sets], rows)


def render_whole_image(data: dict[str, Any], opts: dict[str, str]) -> str:
    """``bench/whole_image.py --json``: time against the first setting, PSNR, levels."""
    settings = data["settings"]
    base = next(iter(settings))
    psnr = any(v.get("psnr") is not None for v in settings.values())
    head = ["setting", f"time vs {base}", "seconds (median)"] + (["PSNR (dB)"] if psnr else []) + ["mean cost", "tiles per level"]
    rows = []
    for name, v in settings.items():
        rows.append([name, _f(v[f"time_vs_{base}"]), _f(v["seconds_median"], 1)] + ([_f(v.get("psnr"))] if psnr else [])
                    + [_f(v.get("mean_cost"), 3), _levels(v.get("tiles_per_level"))])
    return _table(head, rows)


def render_parity(data: dict[str, Any], opts: dict[str, str]) -> str:
    """``manifest.json`` parity (``gdq export --verify``): PSNR of each graph against the reference."""
    par = data["parity"]
    graphs = list(dict.fromkeys(g for t in par.values() for g in t["sr"]))
    rows = []
    for t, e in par.items():
        extra = f", level gate {e['gate_agreement']:.0%}" if "gate_agreement" in e else ""
        rows.append([f"{t} (controller {e['controller_agreement']:.0%}{extra})",
                     *(f"{e['sr'][g]['psnr_db']} ({e['sr'][g]['worst_tile_psnr_db']})" if g in e["sr"] else "" for g in graphs)])
    return _table([f"graph: dB mean (worst of {next(iter(par.values()))['tiles']} tiles)", *graphs], rows)


def render_arm64(data: dict[str, Any], opts: dict[str, str]) -> str:
    """``manifest.json`` parity.<target>.arm64 (``gdq verify --arch arm64``)."""
    rows = []
    graphs = list(dict.fromkeys(g for e in data["parity"].values() for g in (e.get("arm64") or {}).get("sr", {})))
    for t, e in data["parity"].items():
        a = e.get("arm64")
        if a is None:
            continue
        gate = f", level gate {a['gate_agreement_x86']:.0%}" if "gate_agreement_x86" in a else ""
        ctrl = f"controller as x86 {a['controller_agreement_x86']:.0%}" if "controller_agreement_x86" in a else "no controller run"
        rows.append([f"{t} vs reference ({ctrl}{gate})",
                     *(f"{a['sr'][g]['psnr_db']} ({a['sr'][g]['worst_tile_psnr_db']})" if g in a["sr"] else "" for g in graphs)])
        rows.append([f"{t} vs x86 (identical 8-bit values)",
                     *(f"{a['sr'][g]['vs_x86']['psnr_db']} ({a['sr'][g]['vs_x86']['identical']:.1%})" if g in a["sr"] else ""
                       for g in graphs)])
    return _table(["ARM64 (QEMU, 1 thread): dB mean (worst tile)", *graphs], rows)


def render_files(data: dict[str, Any], opts: dict[str, str]) -> str:
    """``manifest.json`` files: bytes of each graph."""
    return _table(["file", "bytes"], [[f"`{k}`", f"{v['bytes']:,}"] for k, v in data["files"].items()])


def render_bench(data: dict[str, Any], opts: dict[str, str]) -> str:
    """``gdq bench --json``: ms per tile (fastest round) and peak RSS per backend, threads and mode."""
    return _table(["backend", "threads", "mode", "ms / tile", "rounds (ms / tile)", "peak RSS (MB)"],
                  [[r["backend"], r["threads"], r["mode"], r["ms_per_tile"], ", ".join(f"{x:.0f}" for x in r["ms_per_tile_rounds"]),
                    r["peak_rss_mb"]] for r in data["rows"]])


def render_costs(data: dict[str, Any], opts: dict[str, str]) -> str:
    """``gdq bench --costs --json``: each gate choice's cost (SR time per tile relative to the
    full-depth graphs) and its SR ms per tile, per backend and thread count (option
    ``choices=a,b,..``: the gate's choices, for a JSON that does not name them)."""
    sr = {(r["backend"], r["threads"], r["mode"]): 1000 * r["stages_s"]["sr"] / r["tiles"] for r in data["rows"]}
    choices = data.get("cost_choices") or opts["choices"].split(",")
    rows = []
    for key, t in data["cost_tables"].items():
        be, _, th = key.partition("@")
        rows.append([be, th, *(f"{c:.3f} ({sr[(be, int(th), n)]:.0f} ms)" for c, n in zip(t["costs"], choices, strict=True)),
                     t["runtime"]])
    return _table(["backend", "threads", *(f"{n}: cost (SR ms / tile)" for n in choices), "runtime"], rows)


def render_gate_fit(data: dict[str, Any], opts: dict[str, str]) -> str:
    """``gdq fit-gate --json``: the gate cross-validated over the training images against the
    best static mix of its choices and the oracle, per budget."""
    rows = [[c["budget"], _f(c["cost"]), _f(c["psnr"]), _f(c["static_mix_psnr"]), _f(c["oracle_psnr"]),
             f"{c['psnr'] - c['static_mix_psnr']:+.3f}", f"{c['oracle_psnr'] - c['static_mix_psnr']:+.3f}"] for c in data["cv"]]
    return _table(["budget", "mean cost", "gate (CV)", "best static mix", "oracle", "gate - mix", "oracle - mix"], rows)


WEB_MODES = {"fp32": ("full precision (fp32)", "fp32"), "bits8": ("a8 on every tile", "int8_static"),
             "bits6": ("a6 on every tile", None), "bits4": ("a4 on every tile", None),
             "a6k8": ("a6k8 on every tile", None), "a6k4": ("a6k4 on every tile", None),
             "a6k2": ("a6k2 on every tile", None),
             "auto": ("level gate at the default budget", "gdq_dynamic")}


def render_web_latency(data: dict[str, Any], opts: dict[str, str]) -> str:
    """``bench/web_latency.py --json``: the browser's ms per tile against native onnxruntime's."""
    threads = sorted({v["threads"] for k, v in data.items() if isinstance(v, dict) and "ms_per_tile" in v})
    native = {(r["threads"], r["mode"]): r["ms_per_tile"] for r in data.get("native_gdq_bench", {}).get("rows", [])}
    head = ["mode (bundled sample, 6 tiles)"]
    for t in threads:
        head += [f"browser, {t} thread{'s' if t > 1 else ''} (ms / tile)", "native", "browser / native"]
    rows = []
    for m, (label, nat_mode) in WEB_MODES.items():
        cells: list[Any] = [label]
        if not any(f"{t}_{m}" in data for t in threads):
            continue
        for t in threads:
            b = data.get(f"{t}_{m}", {}).get("ms_per_tile")
            n = native.get((t, nat_mode)) if nat_mode else None
            cells += [b, n, f"{b / n:.1f}" if b and n else ""]
        lv = data.get(f"{threads[0]}_{m}", {}).get("tiles_per_level")
        if m == "auto" and lv:
            cells[0] = f"{label} ({_levels(lv)})"
        rows.append(cells)
    return _table(head, rows)


RENDERERS: dict[str, Callable[[dict[str, Any], dict[str, str]], str]] = {
    "eval": render_eval, "whole-image": render_whole_image, "parity": render_parity, "arm64": render_arm64,
    "files": render_files, "bench": render_bench, "web-latency": render_web_latency, "costs": render_costs,
    "gate-fit": render_gate_fit,
}


def render_text(text: str, root: Path, where: str) -> tuple[str, list[str]]:
    """``text`` with every table re-rendered, and the tables that changed."""
    changed: list[str] = []

    def sub(m: re.Match[str]) -> str:
        kind, file = m["kind"], m["file"]
        if kind not in RENDERERS:
            raise SystemExit(f"{where}: unknown table kind '{kind}'; valid: {sorted(RENDERERS)}")
        path = root / file
        if not path.is_file():
            raise SystemExit(f"{where}: table '{kind}' reads {file}, which does not exist")
        opts = dict(o.split("=", 1) for o in m["opts"].split())
        body = RENDERERS[kind](json.loads(path.read_text()), opts)
        if body != m["body"]:
            changed.append(f"{where}: {kind} {file}")
        return m["head"] + body + "<!-- /table -->"

    opened, closed = text.count("<!-- table:"), text.count("<!-- /table -->")
    found = MARK.findall(text)
    # a marker the pattern does not read, or a missing end, would otherwise swallow the prose up
    # to the next table's end (or leave a table unchecked)
    if not opened == closed == len(found) or any("<!-- table:" in m[-1] for m in found):
        raise SystemExit(f"{where}: {opened} '<!-- table: KIND FILE -->' markers, {closed} '<!-- /table -->', "
                         f"{len(found)} well-formed pairs: fix the markers")
    return MARK.sub(sub, text), changed


def doc_files(root: Path) -> list[Path]:
    return sorted({p for pat in DOCS for p in root.glob(pat)})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs from its JSON")
    ap.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    a = ap.parse_args(argv)
    stale: list[str] = []
    for p in doc_files(a.root):
        text = p.read_text()
        new, changed = render_text(text, a.root, str(p.relative_to(a.root)))
        stale += changed
        if changed and not a.check:
            p.write_text(new)
    for s in stale:
        print(("stale: " if a.check else "rendered: ") + s)
    return 1 if a.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
