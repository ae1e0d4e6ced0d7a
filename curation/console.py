"""Terminal output shared by the commands: count tables and progress bars on stderr."""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)


def print_counts(stage: str, rows_in: int, rows_out: int, rejected: Counter | dict) -> None:
    """The closing summary of a stage: rows in = kept + rejected, rejects by reason."""
    table = Table(title=f"{stage}: {rows_in} in = {rows_out} kept + {sum(rejected.values())} rejected")
    table.add_column("reason")
    table.add_column("rows", justify="right")
    for reason, n in sorted(rejected.items(), key=lambda kv: -kv[1]):
        table.add_row(reason, str(n))
    console.print(table)


@contextmanager
def progress_bar(description: str, total: int | None):
    """A progress bar that yields ``advance(n)``; silent when stderr is not a terminal."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
