"""Upscale files: what ``gdq run`` does, as one library call.

    from granular_mobile.runtime import upscale_files
    result = upscale_files(["photos/"], "out/", stats="stats.json")
    print(result.summary())          # {'done': 12, 'failed': 0, 'skipped': 0}

Everything that can fail before the work fails before it (``Batch(...)``): the inputs, the
output paths, extensions and permissions, existing files without ``force``, two inputs writing
one output or an output replacing an input not read yet, and the model and its options. In a
batch (several inputs, or an output folder) an input that cannot be read or upscaled is
recorded in ``failed`` and the others go on; with one input to one file, its error is raised.
"""
from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import MAX_OUTPUT_MP
from ..errors import ConfigError, GdqError, ImageError, OutputError
from ..imageio import IMAGE_EXTS, check_folder, check_output, list_images, read_image, write_bytes_atomic, write_rgb
from .upscaler import Upscaler


def expand_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], int]:
    """The input images (files, folders, globs), in order, each once; and how many repeats were
    dropped (an image named twice, e.g. by a folder and a glob)."""
    files: list[Path] = []
    for item in inputs:
        s, p = str(item), Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise ImageError(f"folder '{s}' has no images ({', '.join(IMAGE_EXTS)})")
            files += found
        elif p.is_file():
            files.append(p)
        elif any(c in s for c in "*?["):
            found = sorted(Path(g) for g in glob.glob(s) if Path(g).suffix.lower() in IMAGE_EXTS)
            if not found:
                raise ImageError(f"input '{s}' does not exist, and as a pattern it matches no image")
            files += found
        else:
            raise ImageError(f"input '{s}' does not exist")
    seen: set[Path] = set()
    unique = []
    for f in files:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique, len(files) - len(unique)


def check_clashes(writes: Sequence[tuple[str, Path]]) -> None:
    """Two writers of one path: the later would silently replace the earlier's file."""
    seen: dict[Path, str] = {}
    for who, p in writes:
        k = p.resolve()
        if k in seen:
            raise OutputError(f"{seen[k]} and {who} would both be '{p}'; rename one, or give them separate outputs")
        seen[k] = who


def check_size(img: np.ndarray, up: Upscaler, path: Path, large: bool) -> None:
    """One line before any tile runs on an input too large to run unasked: its tiles and memory."""
    from .tiler import TilePlan

    h, w = img.shape[:2]
    s, t = up.backend.scale, up.backend.tile
    mp = h * w * s * s / 1e6
    if large or mp <= MAX_OUTPUT_MP:
        return
    tiles = len(TilePlan(h, w, t, t - up.overlap, s, up.merge))
    raise ImageError(f"'{path}' is {w}x{h}: its x{s} output is {w * s}x{h * s} ({mp:.0f} MP, {3 * mp / 1e3:.1f} GB as RGB) "
                     f"from {tiles} tiles; pass ``large`` to run it, or downscale or crop it")


@dataclass
class BatchResult:
    """Per input done: its report (``Report.to_dict()`` without the per-tile lists) with
    ``input``, ``output`` and ``model``; per input failed: ``input`` and ``error``."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    repeats: int = 0
    multi: bool = False
    #: inputs not reached (an interrupted run)
    not_reached: int = 0
    #: the budget was spent over the batch (``share_budget``)
    shared: bool = False

    def summary(self) -> dict[str, int]:
        return {"done": len(self.reports), "failed": len(self.failed), "skipped": self.repeats + self.not_reached}

    def mean_cost(self) -> float | None:
        """The done inputs' tiles' mean cost (relative to the full graph), with a level gate."""
        done = [(r["cost"], r["tiles"]) for r in self.reports if r.get("cost") is not None]
        return sum(c * n for c, n in done) / sum(n for _, n in done) if done else None

    def stats(self) -> dict[str, Any]:
        """What ``--stats`` holds: one input's report, or a batch's reports, failures and summary."""
        if not self.multi:
            return self.reports[0] if self.reports else {}
        summary: dict[str, Any] = dict(self.summary())
        if self.shared:
            summary.update(budget_shared=True, mean_cost=self.mean_cost())
        return {"images": self.reports, "failed": self.failed, "summary": summary}


class Batch:
    """Inputs (files, folders, globs) to ``out`` (a file for one input; a folder, written as
    ``NAME_x{scale}.png``, for several, an existing folder or a string ending in ``/``), checked
    and with the model loaded; ``run()`` does the work. ``upscaler``: options of
    ``Upscaler.load`` (model, backend, threads, tile, bits, budget, ...). ``share_budget``:
    with a level gate, the budget is spent over all the inputs' tiles together
    (``Upscaler.share_budget``): every input is scored first, then upscaled."""

    def __init__(self, inputs: Sequence[str | Path], out: str | Path, *, force: bool = False,
                 stats: str | Path | None = None, bitmap: str | Path | None = None, large: bool = False,
                 share_budget: bool = False, **upscaler: Any) -> None:
        self.files, repeats = expand_inputs(inputs)
        out_s, out_p = str(out), Path(out)
        ends_sep = out_s.endswith(("/", os.sep))
        self.multi = len(self.files) > 1 or out_p.is_dir() or ends_sep
        n = len(self.files)
        if n > 1 and out_p.exists() and not out_p.is_dir():
            raise OutputError(f"{n} inputs need an output folder, and '{out_p}' is a file")
        if n > 1 and not out_p.exists() and not ends_sep and out_p.suffix.lower() in IMAGE_EXTS:
            raise OutputError(f"{n} inputs need an output folder, and '{out_p}' names an image file; "
                              f"give a folder (end it with / for a folder of that name)")
        if bitmap and n > 1:
            raise OutputError("``bitmap`` takes one input image")
        self.stats_path = Path(stats) if stats else None
        self.bitmap_path = Path(bitmap) if bitmap else None
        # outputs first (no model needed): an error here costs nothing
        if self.multi:
            check_folder(out_p, "output folder")
        else:
            check_output(out_p, "output", force)
        if self.stats_path:
            check_output(self.stats_path, "``stats``", force, image=False)
        if self.bitmap_path:
            check_output(self.bitmap_path, "``bitmap``", force)
        self.upscaler = Upscaler.load(**upscaler)
        scale = self.upscaler.backend.scale
        self.targets = [out_p / f"{f.stem}_x{scale}.png" for f in self.files] if self.multi else [out_p]
        if self.multi:
            existing = [t for t in self.targets if t.exists()]
            if existing and not force:
                raise OutputError(f"output '{existing[0]}' exists ({len(existing)} of {len(self.targets)} do); "
                                  "use ``force`` to overwrite")
            for t in existing:
                if t.is_dir():
                    raise OutputError(f"output '{t}' is a folder; move it or choose another output folder")
        # a batch reads its inputs one by one: an output must not replace an input not read yet
        check_clashes(([(f"the input '{f}'", f) for f in self.files] if self.multi else [])
                      + [(f"the output of '{f}'", t) for f, t in zip(self.files, self.targets, strict=True)]
                      + [(o, p) for o, p in (("``stats``", self.stats_path), ("``bitmap``", self.bitmap_path)) if p])
        self.large, self.repeats = large, repeats
        if share_budget and self.upscaler.budget is None:
            raise ConfigError("``share_budget`` spends a level gate's budget over the inputs: this model or these "
                              "options (``bits``, ``precision`` fp32) have none")
        self.share_budget = share_budget
        #: what ``run()`` did (so far, if it was interrupted)
        self.result = BatchResult(repeats=repeats, multi=self.multi)

    def run(self, on_start: Callable[[Path], None] | None = None,
            progress: Callable[[int, int], None] | None = None,
            on_done: Callable[[dict[str, Any]], None] | None = None,
            on_failed: Callable[[Path, GdqError], None] | None = None) -> BatchResult:
        """Upscale every input in order, writing each output as it is done (atomically), then
        ``--stats``. ``on_start(input)``, ``progress(tiles done, tiles)``, ``on_done(report)``
        and ``on_failed(input, error)`` report as it goes. Interrupted (KeyboardInterrupt),
        ``result`` counts what was not reached, and the interrupt goes on up."""
        up = self.upscaler
        res = self.result = BatchResult(repeats=self.repeats, multi=self.multi, shared=self.share_budget)
        shared: dict[Path, list[str]] = {}
        scoring_s: dict[Path, float] = {}

        def failed(f: Path, e: GdqError) -> None:
            if not self.multi:
                raise e
            res.failed.append({"input": str(f), "error": str(e)})
            if on_failed:
                on_failed(f, e)

        try:
            if self.share_budget:  # every input's scores first (the controller: ~2 % of the SR time)
                scores: dict[Path, np.ndarray] = {}
                for f in self.files:
                    try:
                        img = read_image(f)
                        check_size(img, up, f, self.large)
                        t0 = time.perf_counter()
                        scores[f] = up.scores(img)
                        scoring_s[f] = time.perf_counter() - t0
                    except GdqError as e:
                        failed(f, e)
                shared = dict(zip(scores, up.share_budget(list(scores.values())), strict=True))
            for f, target in zip(self.files, self.targets, strict=True):
                if self.share_budget and f not in shared:
                    continue  # failed while scoring
                try:
                    img = read_image(f)
                    check_size(img, up, f, self.large)
                    if on_start:
                        on_start(f)
                    sr, rep = up(img, progress=progress, levels=shared.get(f))
                    write_rgb(target, sr)
                    if self.bitmap_path:
                        from .bitmap import bitmap
                        from .tiler import TilePlan

                        plan = TilePlan(img.shape[0], img.shape[1], up.backend.tile, up.backend.tile - up.overlap, 1,
                                        up.merge)
                        write_rgb(self.bitmap_path, bitmap(img, plan, rep.tile_levels or rep.tile_bits))
                except GdqError as e:
                    failed(f, e)
                    continue
                d = rep.to_dict()
                d.update(input=str(f), output=str(target), model=up.backend.model_id)
                if f in scoring_s:  # the controller ran in the scoring pass
                    d["timings_s"]["controller"] = round(d["timings_s"]["controller"] + scoring_s[f], 4)
                d.pop("tile_bits")
                d.pop("tile_levels")
                res.reports.append(d)
                if on_done:
                    on_done(d)
            if self.stats_path:
                write_bytes_atomic(self.stats_path, json.dumps(res.stats(), indent=2).encode())
        except KeyboardInterrupt:
            res.not_reached = len(self.files) - len(res.reports) - len(res.failed)
            raise
        return res


def upscale_files(inputs: Sequence[str | Path], out: str | Path, **options: Any) -> BatchResult:
    """``Batch(inputs, out, **options).run()``: every input upscaled to ``out``; options are
    ``Batch``'s (force, stats, bitmap, large) and ``Upscaler.load``'s (model, backend, ...)."""
    return Batch(inputs, out, **options).run()


__all__ = ["MAX_OUTPUT_MP", "Batch", "BatchResult", "check_clashes", "check_size", "expand_inputs", "upscale_files"]
