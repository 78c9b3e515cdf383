"""Common part of the backends that run exported graphs (manifest, sha256 checks, file choice)."""
from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from ..manifest import ExportFolder
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
        self.model_id = self.m.model_id
        self.threads = threads
        # every graph now, not on first use: a level the controller picks only on some tiles
        # would otherwise pass unchecked, or fail midway through a large image
        for fname in self.files():
            self.m.file(fname)

    def files(self) -> list[str]:
        """The target's graphs: the controller, one per bit level, and the fp32 twin if any."""
        return self.t.files()

    def graph_file(self, bits: int | None) -> str:
        """The SR graph for a bit-width (None: the full-precision twin)."""
        if bits is None:
            if self.t.fp32 is None:
                raise ConfigError("this export has no full-precision graph (sr_fp32); --precision fp32 is unavailable")
            return self.t.fp32
        fname = self.t.sr.get(bits)
        if fname is None:
            raise ConfigError(f"no graph for {bits} bits; valid: {list(self.bits)}")
        return fname
