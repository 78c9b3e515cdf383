"""Reading an export folder's manifest.json and checking its files (no torch)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelNotFoundError

SCHEMA_VERSION = 1


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Manifest:
    def __init__(self, folder: str | Path) -> None:
        self.dir = Path(folder)
        p = self.dir / "manifest.json"
        if not p.is_file():
            raise ModelNotFoundError(f"'{self.dir}' has no manifest.json (make one with `gdq export -o {self.dir}`)")
        try:
            self.data: dict[str, Any] = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"'{p}' is not valid JSON: {e}") from e
        if self.data.get("schema_version") != SCHEMA_VERSION:
            raise ConfigError(f"'{p}': schema_version {self.data.get('schema_version')} is not supported (expected {SCHEMA_VERSION})")
        self._checked: set[str] = set()

    @property
    def scale(self) -> int:
        return int(self.data["scale"])

    @property
    def tile(self) -> int:
        return int(self.data["tile"])

    @property
    def bits(self) -> tuple[int, ...]:
        return tuple(int(b) for b in self.data["bits"])

    def target(self, name: str) -> dict[str, Any]:
        t = self.data["targets"].get(name)
        if t is None:
            raise ModelNotFoundError(f"'{self.dir}' has no {name} export (targets: {sorted(self.data['targets'])}); "
                                     f"run `gdq export --target {name} -o {self.dir}`")
        return t

    def file(self, name: str) -> Path:
        """Path of an artifact, after checking it exists and matches its sha256."""
        p = self.dir / name
        if not p.is_file():
            raise ModelNotFoundError(f"model file '{p}' is missing (re-run gdq export)")
        if name not in self._checked:
            want = self.data.get("files", {}).get(name, {}).get("sha256")
            if want is None:
                raise ConfigError(f"'{name}' is not listed in {self.dir / 'manifest.json'}")
            if sha256(p) != want:
                raise ConfigError(f"'{p}' does not match the sha256 in manifest.json (modified or corrupt file; re-export)")
            self._checked.add(name)
        return p

    @property
    def model_id(self) -> str:
        return hashlib.sha256(json.dumps(self.data.get("files", {}), sort_keys=True).encode()).hexdigest()[:16]
