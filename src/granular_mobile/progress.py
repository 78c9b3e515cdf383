"""rich progress bars and tables shared by the CLI commands."""
from __future__ import annotations

import os
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# markup off: user strings (file names like 'a[1].png', install hints like
# granular-mobile[tflite]) are printed as they are, never read as rich tags; soft_wrap (stderr): a
# message stays one line however narrow the terminal
#: progress, logs, warnings and errors
console = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
#: listings and results (gdq models, tables, one line per output): what a pipe gets
out = Console(markup=False, highlight=False)

#: seconds between the plain progress lines written where stderr is not a terminal
#: ($GDQ_PROGRESS_INTERVAL overrides it)
LINE_INTERVAL_S = 10.0


class LineProgress(Progress):
    """A rich progress bar on a terminal; elsewhere (a pipe, a log file, nohup, CI) a plain line
    per task every ``interval`` seconds, so a long run is never silent, and one at the end of a
    run that wrote any (a short run stays as quiet as before: its stderr is its warnings)."""

    def __init__(self, *columns: Any, interval: float = LINE_INTERVAL_S, **kw: Any) -> None:
        self._lines = not kw["console"].is_terminal
        if self._lines:
            kw["disable"] = True  # no live display: the lines below instead
        super().__init__(*columns, **kw)
        self._interval, self._last, self._written = interval, time.monotonic(), ""

    def _line(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._lines or (not force and now - self._last < self._interval) or (force and not self._written):
            return
        lines = []
        for task in self.tasks:
            parts = [c.render(task) for c in self.columns if not isinstance(c, BarColumn)]  # type: ignore[union-attr]
            text = (p.plain if hasattr(p, "plain") else str(p) for p in parts)
            lines.append(" ".join(t.strip() for t in text if t.strip()))
        if force and "\n".join(lines) == self._written:
            return  # the last lines already say it
        self._last, self._written = now, "\n".join(lines)
        for line in lines:
            self.console.print(line)

    def update(self, *args: Any, **kw: Any) -> None:
        super().update(*args, **kw)
        self._line()

    def advance(self, *args: Any, **kw: Any) -> None:
        super().advance(*args, **kw)
        self._line()

    def stop(self) -> None:
        self._line(force=True)
        super().stop()


def progress(*extra: str, transient: bool = False, interval: float | None = None) -> Progress:
    """``extra``: rich-markup column templates. A task description is markup to rich: pass user
    strings through ``rich.markup.escape``. ``transient``: the bar goes when done, for commands
    that list their results after it. Where stderr is not a terminal, plain lines every
    ``interval`` seconds instead of the bar (``LineProgress``)."""
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn()]
    cols += [TextColumn(f"{e}") for e in extra]
    if interval is None:
        try:  # a typo here must not stop a long run
            interval = float(os.environ.get("GDQ_PROGRESS_INTERVAL") or LINE_INTERVAL_S)
        except ValueError:
            interval = LINE_INTERVAL_S
    return LineProgress(*cols, console=console, transient=transient, interval=interval)
