"""Render `gdq eval --json` files as one markdown table (used for the model card / README).

    python experiments/eval_table.py docs/eval_default_f4.5.json docs/session1_eval_f4.0.json
"""
from __future__ import annotations

import json
import sys


def main(paths: list[str]) -> str:
    rows = []
    for p in paths:
        d = json.load(open(p))
        tag = p.rsplit("_", 1)[-1].removesuffix(".json")
        for r in d["results"]:
            name = r["model"] + (f" ({tag})" if r["model"].endswith("_gdq") else "")
            tiles = "/".join(str(r["tiles_per_bit"].get(str(b), 0)) for b in (4, 5, 6, 8)) if r["tiles_per_bit"] else ""
            rows.append((r["dataset"], name, r["psnr"], r["ssim"], r["fab"], r["bitops_g"], tiles))
    seen, out = set(), ["| set | model | PSNR (dB) | SSIM | FAB | GBitOPs / image | tiles 4/5/6/8 |", "|---|---|---|---|---|---|---|"]
    for ds in ("Set5", "Set14", "BSD100"):
        for r in rows:
            if r[0] == ds and (r[0], r[1]) not in seen:
                seen.add((r[0], r[1]))
                fab = "" if r[4] is None else f"{r[4]:.3f}"
                bops = "" if r[5] is None else f"{r[5]:.0f}"
                out.append(f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.4f} | {fab} | {bops} | {r[6]} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
