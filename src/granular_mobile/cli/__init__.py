"""``gdq``: the command line. Library errors (GdqError) become one line and exit code 1;
set GDQ_DEBUG=1 for the traceback. torch is imported only by the commands that need it.

One module per command group (``GROUPS``); ``app.py`` holds the Typer app and what the groups
share."""
from __future__ import annotations

import importlib
import inspect
import os
import sys
import warnings

from rich.text import Text

from ..errors import GdqError, GdqWarning
from ..progress import console
from .app import app, as_flags

#: the command groups in ``gdq -h``'s order: importing one registers its commands on ``app``
GROUPS = ("train", "gate", "evaluate", "export", "run")
for _group in GROUPS:
    importlib.import_module(f".{_group}", __name__)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, GdqWarning):
        console.print(Text.assemble(("warning:", "yellow"), f" {as_flags(str(message))}"))
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def _error(message: str) -> None:
    # a Text, not markup: the message is printed as it is ('granular-mobile[tflite]', 'a[1].png')
    console.print(Text.assemble(("error:", "red"), f" {as_flags(message)}"))


def _reflow(doc: str) -> str:
    """A command's help from its docstring: each prose paragraph on one line (the terminal wraps
    it; the docstring's own line breaks made ragged help), indented blocks (examples) as they are."""
    paras = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines = para.split("\n")
        if any(line.startswith(" ") for line in lines[1:]):  # "Examples:" and its indented lines
            paras.append(para)
        else:
            paras.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paras)


for _cmd in app.registered_commands:
    if _cmd.help is None and _cmd.callback is not None and _cmd.callback.__doc__:
        _cmd.help = _reflow(_cmd.callback.__doc__)


def main() -> None:
    """Entry point: one line and exit code 1 for library errors (GDQ_DEBUG=1: traceback).

    Typer's standalone mode already turns usage errors into a message and exit code 2.
    """
    from ..errors import EXTRA_OF, install_hint

    warnings.showwarning = _show_warning
    try:
        app()
    except GdqError as e:
        if os.environ.get("GDQ_DEBUG"):
            raise
        _error(str(e))
        sys.exit(1)
    except ModuleNotFoundError as e:
        # an optional dependency imported deep inside a command (the runtime-only install)
        if os.environ.get("GDQ_DEBUG") or (e.name or "").split(".")[0] not in EXTRA_OF:
            raise
        _error(install_hint(e.name or ""))
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("aborted")
        sys.exit(130)


if __name__ == "__main__":
    main()
