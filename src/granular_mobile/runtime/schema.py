"""Typed reading of a JSON object (the manifest's sections): a missing or mistyped field is a
ConfigError that names it and the file."""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError


class Reader:
    """Typed access to a JSON object; a missing or mistyped field is a ConfigError naming it."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: '{where}' must be an object, got {type(data).__name__}")
        self.data, self.where, self.source = data, where, source

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., optional: bool = False) -> Any:
        if key not in self.data:
            if default is not ...:
                return default
            raise ConfigError(f"{self.source}: '{self._path(key)}' is missing (re-export with gdq export)")
        v = self.data[key]
        if v is None and optional:
            return None
        # bool is an int in Python, and JSON numbers may come as int or float
        if not isinstance(v, kind) or (isinstance(v, bool) and bool not in as_tuple(kind)):
            raise ConfigError(f"{self.source}: '{self._path(key)}' = {v!r} is not {kind_name(kind)}")
        return v

    def sub(self, key: str) -> Reader:
        return Reader(self.get(key, dict), self._path(key), self.source)

    def ints(self, key: str) -> tuple[int, ...]:
        return tuple(int(x) for x in self._numbers(key, int))

    def floats(self, key: str) -> tuple[float, ...]:
        return tuple(float(x) for x in self._numbers(key, (int, float)))

    def _numbers(self, key: str, kind: type | tuple[type, ...]) -> list[Any]:
        v = self.get(key, list)
        if not all(isinstance(x, kind) and not isinstance(x, bool) for x in v):
            raise ConfigError(f"{self.source}: '{self._path(key)}' = {v!r} must be a list of {kind_name(kind)}")
        return v


def as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list", dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in as_tuple(kind))
