"""Common part of the backends that run exported graphs (manifest, sha256 checks, file choice)."""
from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from ..manifest import SCORES, ExportFolder
from ..targets import TARGET_OF_BACKEND


class ExportedBackend:
    name = ""
    max_batch = 1

    def __init__(self, export_dir: str | Path, threads: int = 0) -> None:
        self.m = ExportFolder(export_dir)
        self.target = TARGET_OF_BACKEND[self.name]  # the manifest entry of the graphs this backend runs
        self.t = self.m.target(self.target)
        self.scale, self.tile, self.bits = self.m.scale, self.m.tile, self.m.bits
        self.has_fp = bool(self.t.fp32)
        man = self.m.manifest
        self.levels = tuple(lv.name for lv in man.level_list())
        self.level_bits = {lv.name: lv.bits for lv in man.level_list()}
        #: the time-aware controller, if the export has one (its graph then outputs "scores")
        self.level_gate = man.level_gate
        if self.level_gate is not None and SCORES not in self.t.controller_outputs:
            raise ConfigError(f"'{export_dir}' has a level gate, but its {self.target} controller graph has no "
                              f"'{SCORES}' output; re-export")
        self.model_id = self.m.model_id
        self.threads = threads
        #: tiles run at once, each on one thread: a graph's small late convs (body end,
        #: upsampler, tail) gain little from a second thread, and tiles are independent
        #: (docs/TIME.md, "Threads: a tile per core", has the measurement)
        self.workers = max(1, threads)
        # every graph now, not on first use: a level the controller picks only on some tiles
        # would otherwise pass unchecked, or fail midway through a large image
        for fname in self.files():
            self.m.file(fname)

    def files(self) -> list[str]:
        """The target's graphs: the controller, one per level, and the fp32 twin if any."""
        return self.t.files()

    def graph_file(self, level: int | str | None) -> str:
        """The SR graph of a level: its name (``a6k4``), a bit-width (its full-depth level), or
        None (the full-precision twin)."""
        if level is None:
            if self.t.fp32 is None:
                raise ConfigError("this export has no full-precision graph (sr_fp32); ``precision`` fp32 is unavailable")
            return self.t.fp32
        if isinstance(level, str):
            fname = self.t.level_files().get(level)
            if fname is None:
                raise ConfigError(f"no graph for level '{level}'; valid: {list(self.levels)}")
            return fname
        fname = self.t.sr.get(level)
        if fname is None:
            raise ConfigError(f"no graph for {level} bits; valid: {list(self.bits)}")
        return fname
