"""``Upscaler``: tile -> controller -> per-level SR -> stitch. Pre/post-processing lives here, once.

    from granular_mobile.runtime import Upscaler
    up = Upscaler.load("default", backend="torch")
    sr, report = up(image_uint8_hwc)
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..defaults import DEFAULT_MERGE, DEFAULT_OVERLAP
from ..errors import ConfigError, ImageError
from .backends import Backend, create_backend, usable_cores
from .budget import allocate, check_budget
from .tiler import MERGES, BandStitcher, TilePlan, pad_to_tile


@dataclass
class Report:
    tiles: int = 0
    tiles_per_bit: dict[str, int] = field(default_factory=dict)
    fab: float | None = None
    #: seconds per stage, each call's own time summed (with ``workers`` > 1 the calls overlap, so
    #: the stages add up to more than the wall time)
    timings_s: dict[str, float] = field(default_factory=lambda: {"controller": 0.0, "sr": 0.0, "stitch": 0.0})
    #: the SR time of each level's tiles (they add up to timings_s["sr"]): what each level costs here
    sr_s_per_level: dict[str, float] = field(default_factory=dict)
    #: tiles the backend ran at once (one thread each)
    workers: int = 1
    backend: str = ""
    precision: str = ""
    bits_mode: str = ""
    tile: int = 0
    overlap: int = 0
    merge: str = ""
    tile_bits: list[int] = field(default_factory=list)
    #: each tile's level name (``a6``, ``a6k4``; ``fp32``), and the count per level
    tile_levels: list[str] = field(default_factory=list)
    tiles_per_level: dict[str, int] = field(default_factory=dict)
    #: the level gate's budget and the tiles' mean cost (relative to the full graph), if it ran,
    #: and the cost table allocated with (``onnxruntime@2``: measured there; ``default``)
    budget: float | None = None
    cost: float | None = None
    cost_table: str = ""
    plan: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["timings_s"] = {k: round(v, 4) for k, v in self.timings_s.items()}
        d["sr_s_per_level"] = {k: round(v, 4) for k, v in self.sr_s_per_level.items()}
        return d


class Upscaler:
    """``bits``: "auto" (the controller), a bit-width (its full-depth level on every tile) or a
    level name (``a6k4``). ``budget``: with a level gate (``ModelConfig.level_gate``), the
    tiles' mean time relative to the full graph (default: the model's); moves the operating
    point without re-export."""

    def __init__(self, backend: Backend, bits: str | int = "auto", precision: str = "int8", overlap: int | None = None,
                 merge: str = DEFAULT_MERGE, budget: float | None = None) -> None:
        # defaults.DEFAULT_OVERLAP says why this tiling; a tile below 4x the overlap gets a quarter
        overlap = min(DEFAULT_OVERLAP, backend.tile // 4) if overlap is None else overlap
        if merge not in MERGES:
            raise ConfigError(f"``merge`` '{merge}' is unknown; valid: {list(MERGES)}")
        if precision not in ("int8", "fp32"):
            raise ConfigError(f"precision '{precision}' is unknown; valid: ['int8', 'fp32']")
        if precision == "fp32" and not backend.has_fp:
            raise ConfigError("``precision`` fp32 needs the full-precision twin, which this model does not have")
        if precision == "int8" and not backend.bits:
            raise ConfigError("this model is full precision; use ``precision`` fp32")
        if precision == "fp32" and str(bits) != "auto":
            raise ConfigError(f"``bits`` {bits} picks an integer graph, and ``precision`` fp32 runs the full-precision "
                              "twin on every tile: give one of them")
        levels = getattr(backend, "levels", ())
        valid = ", ".join(["auto", *map(str, backend.bits), *(lv for lv in levels if lv not in {f"a{b}" for b in backend.bits})])
        if isinstance(bits, str) and bits in levels:
            pass
        elif bits != "auto":
            try:
                bits = int(bits)
            except ValueError:
                raise ConfigError(f"``bits`` '{bits}' is invalid; valid: {valid}") from None
            if bits not in backend.bits:
                raise ConfigError(f"``bits`` {bits} is not a bit level of this model; valid: {valid}")
        gate = getattr(backend, "level_gate", None)
        #: the gate's costs on this backend and thread count (the manifest's measured table);
        #: threads 0 (the backend's default) is taken as every usable core, which is what
        #: onnxruntime's default is without SMT (LiteRT's default is its own: give --threads)
        self.costs: tuple[float, ...] = ()
        self.cost_table = ""
        if gate is not None:
            self.costs, self.cost_table = gate.costs_for(backend.name, getattr(backend, "threads", 0) or usable_cores())
        if budget is not None:
            if gate is None:
                raise ConfigError("``budget`` needs a model with a level gate (gdq fit-gate --levels); this one picks "
                                  "bit levels with GBC + E2B")
            if bits != "auto" or precision == "fp32":
                raise ConfigError("``budget`` sets the controller's operating point: drop ``bits`` / ``precision`` fp32")
            budget = check_budget(budget, self.costs)
        elif gate is not None and bits == "auto" and precision == "int8":
            # a measured table may price the cheapest choice above the model's budget (fitted
            # on another runtime's costs): its cheapest level on every tile is the nearest point
            budget = max(gate.budget, min(self.costs))
        self.budget = budget
        if not 0 <= overlap < backend.tile // 2:
            raise ConfigError(f"``overlap`` {overlap} must be in 0..{backend.tile // 2 - 1} for tile {backend.tile}")
        self.backend, self.bits, self.precision, self.overlap, self.merge = backend, bits, precision, overlap, merge
        self.workers = max(1, getattr(backend, "workers", 1))
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="gdq-tile") if self.workers > 1 else None

    @classmethod
    def load(cls, model: str = "default", backend: str = "onnxruntime", threads: int = 0, tile: int | None = None,
             **kw) -> Upscaler:
        """``threads``: CPU threads (0: the backend's default). onnxruntime runs every session of
        a process on one pool, sized by the first onnxruntime backend: a later one asking for
        another size raises ConfigError."""
        return cls(create_backend(backend, model, threads=threads, tile=tile), **kw)

    def __call__(self, image: np.ndarray, progress: Callable[[int, int], None] | None = None,
                 levels: Sequence[str] | None = None) -> tuple[np.ndarray, Report]:
        """Upscale an 8-bit image: HxW (grey), HxWx2 (grey+alpha), HxWx3 (RGB) or HxWx4 (RGBA).
        Returns (SR uint8 of the same layout, Report). An image whose colour channels are equal
        everywhere is grey, and comes out grey (R = G = B). ``levels``: with a level gate, each
        tile's level allocated beforehand (``share_budget``) instead of the image's own budget."""
        img, rgb, grey, alpha = self._prepare(image)
        sr, rep = self._rgb(rgb, progress, levels)
        if grey:
            g = np.round(sr.astype(np.float32).mean(axis=2)).astype(np.uint8)  # R = G = B in, grey out
            sr = g if img.shape[2] in (1, 2) else np.repeat(g[..., None], 3, axis=2)
        if alpha is not None:
            import cv2

            h, w = img.shape[:2]
            s = self.backend.scale
            a = cv2.resize(np.ascontiguousarray(alpha), (w * s, h * s), interpolation=cv2.INTER_CUBIC)
            sr = np.concatenate([sr if sr.ndim == 3 else sr[..., None], a[..., None]], axis=2)
        return sr, rep

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray | None]:
        """(the image as HxWxC, the RGB the network sees, whether it is grey, its alpha or None)."""
        img = np.asarray(image)
        if img.dtype != np.uint8:
            raise ImageError(f"expected an 8-bit image (uint8), got {img.dtype}; convert it first")
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
            raise ImageError(f"expected HxW, HxWx2, HxWx3 or HxWx4, got shape {image.shape}")
        h, w = img.shape[:2]
        if min(h, w) < 2:
            raise ImageError(f"image of {w}x{h} pixels is too small to upscale (at least 2x2)")
        c = img.shape[2]
        alpha = img[..., c - 1] if c in (2, 4) else None
        colour = img[..., :1] if c in (1, 2) else img[..., :3]
        # a grey+alpha PNG decodes as RGBA with R = G = B: upscaled as colour, the network's
        # channels drift apart by up to 11 levels (colour fringes on a grey image)
        grey = colour.shape[2] == 1 or bool((colour[..., 0] == colour[..., 1]).all() and (colour[..., 1] == colour[..., 2]).all())
        rgb = np.repeat(colour[..., :1], 3, axis=2) if grey else colour
        return img, rgb, grey, alpha

    def scores(self, image: np.ndarray) -> np.ndarray:
        """The level gate's predicted gain of each choice for each of the image's tiles (tiles in
        plan order, one row each): what ``share_budget`` allocates with."""
        if self.budget is None:
            raise ConfigError("sharing a budget needs the level gate to choose (a model with one, bits auto, int8)")
        _, rgb, _, _ = self._prepare(image)
        t = self.backend.tile
        plan = TilePlan(rgb.shape[0], rgb.shape[1], t, t - self.overlap, self.backend.scale, self.merge)
        return self._gate_scores(pad_to_tile(rgb, t), plan)[0]

    def share_budget(self, scores: Sequence[np.ndarray]) -> list[list[str]]:
        """Each image's tile levels with the budget spent over all the images' tiles together
        (``scores``: each image's ``scores()``): one price for the batch, so an easy image takes
        less than the budget and a hard one more, their tiles' mean cost within it."""
        gate = self.backend.level_gate
        if gate is None or self.budget is None:
            raise ConfigError("sharing a budget needs the level gate to choose (a model with one, bits auto, int8)")
        if not scores:
            return []
        choice = allocate(np.concatenate(scores), self.costs, self.budget)
        out, i = [], 0
        for s in scores:
            out.append([gate.choices[c] for c in choice[i:i + len(s)]])
            i += len(s)
        return out

    def warm_up(self) -> None:
        """Open and run once every graph this upscaler may use, on every worker (sessions,
        LiteRT's interpreters per worker, packed weights), so that a first image is timed like
        the rest: a level the controller picks only on some tiles would otherwise pay it midway."""
        be, t = self.backend, self.backend.tile
        x = np.zeros((1, 3, t, t), np.float32)
        barrier = threading.Barrier(self.workers)

        def one(_: int) -> None:
            barrier.wait()  # one call per worker thread: none may take two while another idles
            if self.precision == "fp32":
                be.sr(x, None)
                return
            for lv in be.levels:
                be.sr(x, lv)
            if self.budget is not None:
                be.scores(x)
            elif self.bits == "auto":
                be.controller(x)

        if self._pool is None:
            one(0)
        else:
            list(self._pool.map(one, range(self.workers)))

    def _timed(self, fn: Callable[..., np.ndarray], *args: object) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        res = fn(*args)
        return res, time.perf_counter() - t0

    def _submit(self, fn: Callable[..., np.ndarray], *args: object) -> Future[tuple[np.ndarray, float]]:
        """``fn(*args)`` and its own time, on a worker (at once, on this thread, with one worker)."""
        if self._pool is not None:
            return self._pool.submit(self._timed, fn, *args)
        fut: Future[tuple[np.ndarray, float]] = Future()
        fut.set_result(self._timed(fn, *args))
        return fut

    def _level_of(self, bits: int) -> str:
        """The name of a bit-width's full-depth level (exports before levels name them ``a<bits>``)."""
        return f"a{bits}"

    def _gate_scores(self, src: np.ndarray, plan: TilePlan) -> tuple[np.ndarray, float]:
        """The gate's scores of every tile, and the calls' seconds: row by row on the workers,
        the next row queued before this one is collected (memory: two rows of tiles)."""
        t, step = self.backend.tile, self.backend.max_batch
        scores, secs = [], 0.0
        pending: deque[list[Future[tuple[np.ndarray, float]]]] = deque()
        for y in [*plan.ys, None]:
            if y is not None:
                tiles = np.stack([src[y:y + t, x:x + t] for x in plan.xs]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
                pending.append([self._submit(self.backend.scores, tiles[i:i + step]) for i in range(0, len(tiles), step)])
            while pending and (y is None or len(pending) > 1):
                for fut in pending.popleft():
                    sc, dt = fut.result()
                    scores.append(sc)
                    secs += dt
        return np.concatenate(scores), secs

    def _gate_levels(self, src: np.ndarray, plan: TilePlan) -> tuple[list[str], float, float]:
        """Every tile's level under the budget (runtime/budget.py), the tiles' mean cost, and
        the scoring calls' seconds."""
        gate = self.backend.level_gate
        assert gate is not None and self.budget is not None
        scores, secs = self._gate_scores(src, plan)
        choice = allocate(scores, self.costs, self.budget)
        return [gate.choices[c] for c in choice], float(np.asarray(self.costs)[choice].mean()), secs

    def _rgb(self, rgb: np.ndarray, progress: Callable[[int, int], None] | None,
             levels: Sequence[str] | None = None) -> tuple[np.ndarray, Report]:
        """Tile row by tile row: controller on the row's tiles, SR grouped by level, band
        stitching; the backend's ``workers`` run the tiles, up to three rows of them queued.
        Memory is bounded by those rows, plus the uint8 output. With a level gate the
        controller first scores every tile (the budget is the image's), then SR runs."""
        be = self.backend
        t = be.tile
        plan = TilePlan(rgb.shape[0], rgb.shape[1], t, t - self.overlap, be.scale, self.merge)
        rep = Report(backend=be.name, precision=self.precision, bits_mode=str(self.bits), tile=t, overlap=self.overlap,
                     merge=self.merge, budget=self.budget, cost_table=self.cost_table if self.budget is not None else "",
                     plan={"ys": plan.ys, "xs": plan.xs})
        n, ncol = len(plan), len(plan.xs)
        rep.tiles, rep.workers = n, self.workers
        src = pad_to_tile(rgb, t)
        out = np.empty((plan.height * be.scale, plan.width * be.scale, 3), np.uint8)
        st = BandStitcher(plan)
        all_levels: list[str] = []
        if levels is not None:
            gate = be.level_gate
            if self.budget is None or gate is None:
                raise ConfigError("levels given per tile need the level gate to choose (a model with one, bits auto)")
            bad = sorted(set(levels) - set(gate.choices))
            if len(levels) != n or bad:
                raise ConfigError(f"{len(levels)} tile levels for {n} tiles" if len(levels) != n else
                                  f"tile levels {bad} are not the level gate's choices {list(gate.choices)}")
            gated = list(levels)
            rep.cost = float(np.mean([self.costs[gate.choices.index(lv)] for lv in gated]))
        elif self.budget is not None:
            gated, rep.cost, secs = self._gate_levels(src, plan)
            rep.timings_s["controller"] += secs
        done, row0 = 0, 0
        # a row's tiles go to the workers, and the next row's are queued before this one is
        # stitched, so that no worker waits at a row's end (an image of 2 x 3 tiles on 2 workers)
        inflight: deque[tuple[int, list[str], list[tuple[str, list[int], Future[tuple[np.ndarray, float]]]]]] = deque()

        def finish(r: int, row: list[str], jobs: list[tuple[str, list[int], Future[tuple[np.ndarray, float]]]]) -> None:
            nonlocal done, row0
            srs: dict[int, np.ndarray] = {}
            for lv, chunk, fut in jobs:
                res, dt = fut.result()
                rep.timings_s["sr"] += dt
                rep.sr_s_per_level[lv] = rep.sr_s_per_level.get(lv, 0.0) + dt
                for k, i in enumerate(chunk):
                    srs[i] = res[k]
                done += len(chunk)
                if progress:
                    progress(done, n)
            t2 = time.perf_counter()
            for c in range(ncol):  # stitch in plan order: identical sums to a whole-image stitch
                st.add(r, c, srs[c].transpose(1, 2, 0))
            band = st.flush(r)
            out[row0:row0 + len(band)] = band
            row0 += len(band)
            rep.timings_s["stitch"] += time.perf_counter() - t2
            all_levels.extend(row)

        def ask(r: int) -> tuple[np.ndarray, Callable[[], tuple[list[str], float]]]:
            """Row r's tiles, and a call that waits for their levels (and the controller's
            seconds); the controller's tiles go to the workers now."""
            y = plan.ys[r]
            tiles = np.stack([src[y:y + t, x:x + t] for x in plan.xs]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
            if self.precision == "fp32":
                row = ["fp32"] * ncol
            elif self.budget is not None:
                row = gated[r * ncol:(r + 1) * ncol]
            elif self.bits == "auto":
                futs = [self._submit(lambda x: np.asarray(be.controller(x)[2]), tiles[i:i + be.max_batch])
                        for i in range(0, ncol, be.max_batch)]

                def wait() -> tuple[list[str], float]:
                    res = [f.result() for f in futs]
                    return [self._level_of(int(b)) for bits, _ in res for b in bits], sum(dt for _, dt in res)

                return tiles, wait
            else:
                row = [self.bits if isinstance(self.bits, str) else self._level_of(int(self.bits))] * ncol
            return tiles, lambda: (row, 0.0)

        nxt = ask(0)
        for r in range(len(plan.ys)):
            tiles, wait = nxt
            row, secs = wait()
            rep.timings_s["controller"] += secs
            if r + 1 < len(plan.ys):  # the next row's controller runs before this row's SR
                nxt = ask(r + 1)
            jobs = []
            for lv in sorted(set(row)):
                idx = [i for i, tl in enumerate(row) if tl == lv]
                for j in range(0, len(idx), be.max_batch):
                    chunk = idx[j:j + be.max_batch]
                    jobs.append((lv, chunk, self._submit(be.sr, tiles[chunk], None if lv == "fp32" else lv)))
            inflight.append((r, row, jobs))
            if len(inflight) > 1:
                finish(*inflight.popleft())
        while inflight:
            finish(*inflight.popleft())
        rep.tile_levels = all_levels
        rep.tiles_per_level = dict(sorted(Counter(all_levels).items()))
        bits_of = {**(getattr(be, "level_bits", None) or {f"a{b}": b for b in be.bits}), "fp32": 32}
        rep.tile_bits = [bits_of[lv] for lv in all_levels]
        if self.precision != "fp32":
            rep.tiles_per_bit = {str(b): c for b, c in sorted(Counter(rep.tile_bits).items())}
            rep.fab = float(np.mean(rep.tile_bits))
        return out, rep
