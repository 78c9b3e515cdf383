"""rich progress bars and tables shared by the CLI commands."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# markup off: user strings (file names like 'a[1].png', install hints like
# granular-mobile[tflite]) are printed as they are, never read as rich tags; soft_wrap (stderr): a
# message stays one line however narrow the terminal
#: progress, logs, warnings and errors
console = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
#: listings and results (gdq models, tables, one line per output): what a pipe gets
out = Console(markup=False, highlight=False)


def progress(*extra: str, transient: bool = False) -> Progress:
    """``extra``: rich-markup column templates. A task description is markup to rich: pass user
    strings through ``rich.markup.escape``. ``transient``: the bar goes when done (and a
    non-terminal gets none), for commands that list their results after it."""
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn()]
    cols += [TextColumn(f"{e}") for e in extra]
    return Progress(*cols, console=console, transient=transient, disable=transient and not console.is_terminal)
