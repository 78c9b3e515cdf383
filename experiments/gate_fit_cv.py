"""Can a controller that reads the LR tile learn which tiles gain from more bits? Fit one to
measured per-tile gains on training images and score it on held-out training images.

For each training image (tiles every ``step`` pixels, deployed integer numerics) this measures
every tile's squared error at every bit level (as ``tile_allocation.py`` does on a benchmark)
and the GBC gate's input features. A ridge regression on those features predicts each tile's
gain (its image's PSNR change against all tiles at the lowest level); 5-fold
cross-validation over images scores the allocation the prediction makes, against the best
static mix at the same average bits (``metrics.best_static_mix``), for two choice sets:

- ``gate``: what the deployed controller can express: the GBC gate's three choices (the
  model's, e.g. 4 bits, 6 bits, or E2B's entropy level -> 4/5/8 bits; or ``--choices``, as
  ``gdq fit-gate`` fits them), a linear gate (the regression's form) and the calibration's bias
  shift ``t * (0, 1, 2)`` setting the FAB;
- ``free``: any level per tile, the price of a bit setting the FAB (a controller with one
  output per level).

The oracle rows use the measured gains themselves (an upper bound that also exploits chance).
``--image-context``: the fitted controllers also read the features' mean over the tile's image
(a PSNR averaged over images values a tile by its share of its own image's error).

    python experiments/gate_fit_cv.py --images 60 --json gate_fit_cv.json
    python experiments/gate_fit_cv.py --cache runs/tiles.npz --image-context --json ctx.json
    python experiments/gate_fit_cv.py -m <model before gdq fit-gate> --cache <its --cache> --choices 4,5,6
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from granular_mobile.checkpoint import load_model
from granular_mobile.defaults import train_folders
from granular_mobile.imageio import list_images, read_rgb
from granular_mobile.metrics import best_static_mix
from granular_mobile.progress import progress
from granular_mobile.train.gate_fit import (
    GateFitConfig,
    TileGains,
    choice_levels,
    image_weights,
    measure_tile_gains,
    ridge_fit,
)

FABS = (4.25, 4.4, 4.5, 5.0)


def analyse(d: dict[str, np.ndarray], model_name: str, ridges: list[float], image_context: bool = False,
            choices: tuple[int, int, int] | None = None) -> dict:
    m = load_model(model_name)
    bits = list(m.bits)
    feat, se, img = d["feat"], d["se"], d["img"]
    # the fitted controllers' inputs: the gate's features, and with image_context also their
    # mean over the tile's image (a controller that sees the whole image before choosing)
    fit = np.hstack([feat, np.stack([feat[img == j].mean(0) for j in img])]) if image_context else feat
    n, images = len(feat), np.unique(img)
    # a tile's gain in its image's PSNR (dB) at each level against the lowest, to first order
    gain = (se[:, [0]] - se) * image_weights(img, se[:, 0])[:, None]
    rows = np.arange(n)

    def score(levels: np.ndarray) -> tuple[float, float]:
        g = gain[rows, levels]
        return float(np.mean([g[img == j].sum() for j in images])), float(np.array(bits, float)[levels].mean())

    hull = [(f, p) for p, f in (score(np.full(n, i)) for i in range(len(bits)))]

    def vs_mix(levels_at: list[np.ndarray]) -> dict[str, float]:
        """Best allocation of a sweep closest to each FAB, in dB over the static mix there."""
        pts = [score(a) for a in levels_at]
        out = {}
        for f in FABS:
            p, fab = min(pts, key=lambda q: abs(q[1] - f))
            out[f"{f:.2f}"] = p - best_static_mix(hull, fab)
        return out

    # the gate's choices: level index of each choice per tile (choice 2 follows E2B's entropy level)
    q = GateFitConfig(choices).quant(m.cfg.quant) if choices else m.cfg.quant
    choice = np.searchsorted(bits, choice_levels(q, m, d["ent"]))
    target_gate = gain[rows[:, None], choice][:, 1:] - gain[rows, choice[:, 0]][:, None]
    target_free = gain[:, 1:]

    def gate_sweep(pred: np.ndarray) -> list[np.ndarray]:
        lg = np.hstack([np.zeros((n, 1)), pred / (pred.std() + 1e-12)])
        ts = np.concatenate([-np.geomspace(1e-4, 1e3, 600), [0.0], np.geomspace(1e-4, 1e3, 600)])
        return [choice[rows, np.argmax(lg + t * np.array([0.0, 1.0, 2.0]), 1)] for t in ts]

    def free_sweep(pred: np.ndarray) -> list[np.ndarray]:
        p = np.hstack([np.zeros((n, 1)), pred])
        cost = np.array(bits, float) - bits[0]
        return [np.argmax(p - lam * cost, 1) for lam in np.geomspace(1e-5, 1e3, 1200) * pred.std()]

    xs = (fit - fit.mean(0)) / (fit.std(0) + 1e-9)
    x = np.hstack([xs, np.ones((n, 1))])
    folds = img % 5

    def cv(y: np.ndarray, ridge: float) -> np.ndarray:
        pred = np.zeros_like(y)
        for k in range(5):
            tr, te = folds != k, folds == k
            pred[te] = x[te] @ ridge_fit(xs[tr], y[tr], ridge)
        return pred

    with torch.no_grad():
        trained = m.encoder.gbc.gate(torch.from_numpy(feat).float()).numpy()
    return {
        "model": model_name, "gate_choices": {"gbc_bits": list(q.gbc_bits), "e2b_bits": list(q.e2b_bits)},
        "images": len(images), "tiles": n, "image_context": image_context,
        "static": {str(b): score(np.full(n, i))[0] for i, b in enumerate(bits)},
        "gate": {
            **({"trained_gate": vs_mix(gate_sweep(trained[:, 1:] - trained[:, :1]))} if q == m.cfg.quant else {}),
            **{f"ridge_{r:g}": vs_mix(gate_sweep(cv(target_gate, r))) for r in ridges},
            "oracle": vs_mix(gate_sweep(target_gate)),
        },
        "free": {
            **{f"ridge_{r:g}": vs_mix(free_sweep(cv(target_free, r))) for r in ridges},
            "oracle": vs_mix(free_sweep(target_free)),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--folder", type=Path, default=Path(train_folders()[-1]), help="training images (default: BSD200)")
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--ridges", default="10,100,1000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, help="an .npz of the measurements: read if it exists, else written")
    ap.add_argument("--choices", default="", help="the gate's choices to fit (as gdq fit-gate --choices; "
                    "default: the model's, and its trained gate is scored too)")
    ap.add_argument("--image-context", action="store_true",
                    help="the fitted controllers also read the mean of the features over the tile's image")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.cache and a.cache.is_file():
        g = TileGains.load(a.cache)
    else:
        m = load_model(a.model)
        files = list_images(a.folder)[:a.images]
        with progress() as pb:
            task = pb.add_task("measure", total=len(files))
            g = measure_tile_gains(m, [read_rgb(f) for f in files], m.bits, advance=lambda: pb.advance(task))
        if a.cache:
            g.save(a.cache)
    bits = load_model(a.model).bits
    if tuple(g.levels) != tuple(bits):
        raise SystemExit(f"the measurements' levels {list(g.levels)} are not the model's bit set {list(bits)}")
    # (the folds here are image index % 5, gdq fit-gate's the image's rank % 5: same idea, other splits)
    d = {"feat": g.feat, "ent": g.entropy, "se": g.se, "img": g.img}
    choices = tuple(int(c) for c in a.choices.split(",")) if a.choices else None
    out = analyse(d, a.model, [float(r) for r in a.ridges.split(",")], a.image_context, choices)  # type: ignore[arg-type]
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
