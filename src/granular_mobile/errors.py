"""Typed exceptions. The library raises these; only ``cli.main`` turns them into one line.

A message names a parameter as the library takes it, between double backticks (``budget``,
``fp_layers``); the CLI shows it as its flag (--budget, --fp-layers: ``cli.app.as_flags``)."""
from __future__ import annotations

import re

#: a parameter named in a message: ``name``
PARAMETER = re.compile(r"``([a-z][a-z0-9_]*)``")


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


class OutputError(GdqError):
    """An output path cannot be written (bad extension, a folder, not writable, exists without --force)."""


class ExportError(GdqError):
    """An export cannot be written as its readers expect (e.g. a converter changed its naming)."""


class DependencyError(GdqError, ImportError):
    """An optional dependency (torch, onnx, tensorflow, ...) is missing."""


class GdqWarning(UserWarning):
    """Something was adjusted rather than refused (e.g. a thread count clamped to the cores);
    the CLI prints it as one ``warning:`` line."""


#: the extra that installs each optional top-level module (the hint a missing import gets)
EXTRA_OF = {"torch": "torch", "onnx": "export", "onnxsim": "export", "tensorflow": "export",
            "ai_edge_litert": "tflite", "onnxruntime": "runtime"}


def install_hint(module: str) -> str:
    """The one-line message for a missing optional module, naming the extra that installs it."""
    top = module.split(".")[0]
    extra = EXTRA_OF.get(top)
    # onnxruntime is a base dependency: the package itself reinstalls it
    pkg = "granular-mobile" if extra in (None, "runtime") else f"granular-mobile[{extra}]"
    return f"'{top}' is needed for this command but is not installed: pip install '{pkg}'"


def require(module: str, extra: str):
    """Import an optional dependency or raise a DependencyError saying which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        pkg = "granular-mobile" if extra == "runtime" else f"granular-mobile[{extra}]"
        raise DependencyError(f"'{module}' is needed for this command but is not installed: pip install '{pkg}' ({e})") from e
