"""Whole-image time of runtime settings against each other, interleaved in one process.

Each setting is an ``Upscaler`` (one backend, one thread count) with its options; every round
runs each setting once over every image (the order reversed every other round), and a setting
reports its median round and its ratio to the first setting within each round (median over
rounds), so a slow spell of the shared machine hits all settings alike.

    python bench/whole_image.py --data Set14 --setting before:overlap=16,merge=blend --setting now: \\
        --threads 1 --rounds 3 --json docs/whole_image_tiling_set14.json

``--mosaic N`` builds the images instead: one photo of about N megapixels (LR) from the HR
images of a benchmark set laid side by side (natural content, reproducible from the set).

With ``--data`` each setting's outputs are also scored against the set's HR images (PSNR on Y,
shave = scale, as ``gdq eval``; the first round's outputs): PSNR against measured whole-image
time, one point per setting (``bench/plot_time_psnr.py`` draws them).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def mosaic(root: str, dataset: str, megapixels: float) -> np.ndarray:
    """About ``megapixels`` of LR image, 4:3, from the set's HR images side by side."""
    from granular_mobile.imageio import read_image

    paths = sorted((Path(root) / dataset / "HR").glob("*.png"))
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    canvas = np.zeros((h, w, 3), np.uint8)
    y = x = row_h = 0
    i = 0
    while y < h:
        im = read_image(paths[i % len(paths)])
        i += 1
        if im.ndim == 2 or im.shape[2] != 3:
            continue
        ih, iw = im.shape[:2]
        ch, cw = min(ih, h - y), min(iw, w - x)
        canvas[y:y + ch, x:x + cw] = im[:ch, :cw]
        row_h = max(row_h, ch)
        x += cw
        if x >= w:
            x, y, row_h = 0, y + row_h, 0
    return canvas


def parse_setting(text: str) -> tuple[str, dict[str, object]]:
    name, _, opts = text.partition(":")
    kw: dict[str, object] = {}
    for item in filter(None, opts.split(",")):
        k, _, v = item.partition("=")
        try:
            kw[k] = int(v) if v.lstrip("-").isdigit() else float(v)
        except ValueError:
            kw[k] = v
    return name, kw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="export folder or 'default'")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--setting", action="append", required=True,
                    help="NAME:key=value,... Upscaler options (overlap, merge, bits, budget), model=EXPORT "
                         "(default: --model) and share=1 (the budget over all the images, Upscaler.share_budget); "
                         "the first is the reference")
    ap.add_argument("--images", type=Path, default=None, help="folder of images")
    ap.add_argument("--data", default=None, help="instead of --images: a benchmark set's LR images (x2)")
    ap.add_argument("--mosaic", type=float, default=0.0, help="instead of --images: one photo of this many LR megapixels")
    ap.add_argument("--root", default=None, help="benchmark root for --mosaic")
    ap.add_argument("--set", default="BSD100", help="benchmark set for --mosaic")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    hrs: list[np.ndarray] = []

    from granular_mobile.defaults import bench_root
    from granular_mobile.imageio import list_images, read_image
    from granular_mobile.metrics import psnr_y
    from granular_mobile.runtime import Upscaler

    if a.mosaic:
        imgs = [mosaic(a.root or bench_root(), a.set, a.mosaic)]
        what = f"{imgs[0].shape[1]}x{imgs[0].shape[0]} mosaic of {a.set} HR images"
    elif a.data:
        from granular_mobile.eval import benchmark_pairs

        pairs = benchmark_pairs(a.root or bench_root(), a.data, 2)
        imgs = [lr for _, lr, _ in pairs]
        hrs = [hr for _, _, hr in pairs]
        what = f"{a.data} LR images (x2)"
    else:
        if a.images is None:
            ap.error("give --images, --data or --mosaic")
        imgs = [read_image(p) for p in list_images(a.images)]
        what = str(a.images)
    settings = [parse_setting(s) for s in a.setting]
    backends: dict[str, object] = {}
    ups = {}
    shared_budget = set()
    for name, kw in settings:
        opts = dict(kw)
        model = str(opts.pop("model", a.model))
        if opts.pop("share", 0):
            shared_budget.add(name)
        if model not in backends:  # one backend per model, shared by its settings
            backends[model] = Upscaler.load(model, backend=a.backend, threads=a.threads).backend
        ups[name] = Upscaler(backends[model], **opts)  # type: ignore[arg-type]
    backend = next(iter(ups.values())).backend
    names = list(ups)
    for up in ups.values():
        up.warm_up()
    times: dict[str, list[float]] = {n: [] for n in names}
    tiles: dict[str, int] = {}
    levels: dict[str, dict[str, int]] = {}
    psnr: dict[str, float] = {}
    cost: dict[str, float | None] = {}
    for r in range(a.rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            count = 0
            per_level: dict[str, int] = {}
            costs = []
            scores = []
            # share=1: the budget spent over all the images' tiles (the scores first, timed too)
            given = ups[n].share_budget([ups[n].scores(im) for im in imgs]) if n in shared_budget else None
            for k, im in enumerate(imgs):
                sr, rep = ups[n](im, levels=given[k] if given else None)
                if hrs and r == 0:
                    t1 = time.perf_counter()
                    scores.append(psnr_y(sr, hrs[k], backend.scale))
                    t0 += time.perf_counter() - t1  # scoring is not the setting's time
                count += rep.tiles
                for k, v in rep.tiles_per_level.items():
                    per_level[k] = per_level.get(k, 0) + v
                if rep.cost is not None:
                    costs.append(rep.cost * rep.tiles)
            times[n].append(time.perf_counter() - t0)
            tiles[n], levels[n] = count, dict(sorted(per_level.items()))
            cost[n] = round(sum(costs) / count, 4) if costs else None
            if scores:
                psnr[n] = round(float(np.mean(scores)), 4)
            print(f"round {r + 1}/{a.rounds} {n:12s} {times[n][-1]:8.2f} s  ({count} tiles)", flush=True)
    ref = names[0]
    rows = {}
    for n in names:
        ratio = float(np.median(np.asarray(times[n]) / np.asarray(times[ref])))
        rows[n] = {"options": dict(settings)[n], "seconds_median": round(float(np.median(times[n])), 3),
                   "seconds_rounds": [round(t, 3) for t in times[n]], "tiles": tiles[n],
                   "tiles_per_level": levels[n], "mean_cost": cost[n], "psnr": psnr.get(n),
                   f"time_vs_{ref}": round(ratio, 3)}
        print(f"{n:12s} median {rows[n]['seconds_median']:8.2f} s  x{ratio:.3f} of {ref}  ({tiles[n]} tiles)")
    out = {"command": "python bench/whole_image.py " + " ".join(
        f"--{k} {v}" if not isinstance(v, list) else " ".join(f"--{k} {x}" for x in v)
        for k, v in vars(a).items() if k != "json" and v not in (None, 0.0)),
        "images": what, "megapixels_lr": round(sum(i.shape[0] * i.shape[1] for i in imgs) / 1e6, 2),
        "backend": a.backend, "threads": a.threads, "settings": rows}
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
