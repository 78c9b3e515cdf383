"""PSNR against measured whole-image time, as an SVG, from ``bench/whole_image.py --data`` JSONs.

Each JSON is one panel (a set and a runtime): x is each setting's whole-image time relative to
the JSON's first setting (the median over rounds of the ratio within a round), y its PSNR.
Settings named ``budget ...`` are the level gate at that budget (joined by a line), ``static
...`` one level on every tile (squares), anything else a reference point (a star).

    python bench/plot_time_psnr.py docs/time_psnr_set14_onnx.json docs/time_psnr_bsd100_onnx.json \\
        -o docs/time_psnr.svg
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 420, 300, 58, 14, 34, 44


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / n
    mag = 10 ** int(f"{step:e}".split("e")[1])
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= step), default=step)
    first = (lo // step + 1) * step
    return [round(first + i * step, 6) for i in range(n + 1) if first + i * step <= hi]


def panel(d: dict, x0: float, title: str) -> list[str]:
    rows = d["settings"]
    ref = next(iter(rows))
    key = f"time_vs_{ref}"
    pts = [(n, r[key], r["psnr"]) for n, r in rows.items() if r.get("psnr") is not None]
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    xlo, xhi = 0.0, max(1.05, max(xs) * 1.05)
    ylo, yhi = min(ys) - 0.03, max(ys) + 0.03
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def sx(x: float) -> float:
        return x0 + PAD_L + (x - xlo) / (xhi - xlo) * pw

    def sy(y: float) -> float:
        return PAD_T + (1 - (y - ylo) / (yhi - ylo)) * ph

    out = [f'<text x="{x0 + PAD_L + pw / 2}" y="18" text-anchor="middle" font-weight="bold">{title}</text>',
           f'<rect x="{x0 + PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>']
    for t in _ticks(xlo, xhi):
        out.append(f'<line x1="{sx(t):.1f}" y1="{PAD_T + ph}" x2="{sx(t):.1f}" y2="{PAD_T + ph + 4}" stroke="#888"/>'
                   f'<text x="{sx(t):.1f}" y="{PAD_T + ph + 16}" text-anchor="middle">{t:g}</text>')
    for t in _ticks(ylo, yhi):
        out.append(f'<line x1="{x0 + PAD_L - 4}" y1="{sy(t):.1f}" x2="{x0 + PAD_L}" y2="{sy(t):.1f}" stroke="#888"/>'
                   f'<text x="{x0 + PAD_L - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.2f}</text>')
    out.append(f'<text x="{x0 + PAD_L + pw / 2}" y="{H - 8}" text-anchor="middle">whole-image time vs {ref}</text>')
    out.append(f'<text transform="translate({x0 + 14},{PAD_T + ph / 2}) rotate(-90)" text-anchor="middle">'
               f'PSNR (dB, Y)</text>')
    gate = sorted((p for p in pts if p[0].startswith("budget")), key=lambda p: p[1])
    if len(gate) > 1:
        out.append('<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="'
                   + " ".join(f"{sx(x):.1f},{sy(y):.1f}" for _, x, y in gate) + '"/>')
    for n, x, y in pts:
        if n.startswith("budget"):
            shape = f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="#d62728"/>'
        elif n.startswith("static"):
            shape = f'<rect x="{sx(x) - 4:.1f}" y="{sy(y) - 4:.1f}" width="8" height="8" fill="#1f77b4"/>'
        else:
            shape = (f'<path d="M{sx(x):.1f},{sy(y) - 6:.1f} l2,4 4,0 -3,3 1,5 -4,-3 -4,3 1,-5 -3,-3 4,0 z" '
                     f'fill="#2ca02c"/>')
        out.append(shape + f'<text x="{sx(x) + 6:.1f}" y="{sy(y) - 6:.1f}" font-size="10">{n}</text>')
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    a = ap.parse_args()
    body = []
    for i, p in enumerate(a.json):
        d = json.loads(p.read_text())
        title = f"{d['images'].split(' ')[0]}, {d['backend']}, {d['threads']} thread{'s' if d['threads'] > 1 else ''}"
        body += panel(d, i * W, title)
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(a.json)}" height="{H}" '
           f'font-family="sans-serif" font-size="11">' + "".join(body) + "</svg>\n")
    a.out.write_text(svg)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
