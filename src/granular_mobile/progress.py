"""rich progress bars and tables shared by the CLI commands."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def progress(*extra: str) -> Progress:
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn()]
    cols += [TextColumn(f"{e}") for e in extra]
    return Progress(*cols, console=console, transient=False)
