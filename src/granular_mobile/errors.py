"""Typed exceptions. The library raises these; only ``cli.main`` turns them into one line."""
from __future__ import annotations


class GdqError(Exception):
    """Base class of every error granular-mobile raises on purpose."""


class ConfigError(GdqError, ValueError):
    """A configuration value is invalid; the message names it and the valid choices."""


class ModelNotFoundError(GdqError, LookupError):
    """A model name or file does not exist."""


class CheckpointError(GdqError):
    """A checkpoint cannot be read or does not fit the model."""


class DataError(GdqError):
    """A data folder or image cannot be used."""


class ImageError(DataError):
    """An input image is unreadable, empty, or of an unsupported kind."""


class DependencyError(GdqError, ImportError):
    """An optional dependency (torch, onnx, tensorflow, ...) is missing."""


def require(module: str, extra: str):
    """Import an optional dependency or raise a DependencyError saying which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DependencyError(
            f"'{module}' is needed for this command but is not installed: "
            f"pip install 'granular-mobile[{extra}]' ({e})"
        ) from e
