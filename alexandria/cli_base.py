"""What every command line shares (`alex`, and a plug-in's own, mounted under it or run alone): library
errors become one `Error: ...` line, exit code 1, and one console prints."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from .errors import AlexandriaError

if TYPE_CHECKING:
    from .rebuild import ProgressFactory

# Piped output is not cut to 80 columns: ids and queries stay whole for copying.
# markup=False: what users logged (tags, keys, corrupt log bytes) is printed as it is, never as rich markup.
console = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 200)


class ErrorsAsMessages(click.Group):
    """A click group that prints AlexandriaError as `Error: ...` on stderr and exits 1 (usage errors stay 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AlexandriaError as exc:
            click.echo(f"Error: {exc}", err=True)
            if exc.pointer:
                click.echo(exc.pointer, err=True)
            ctx.exit(1)


@contextmanager
def progress_bar(description: str, *, unit: str = "bytes") -> Iterator[ProgressFactory]:
    """One progress bar on stderr for a long command, in bytes (`unit="bytes"`) or in counted items (any
    other unit, e.g. "runs"). It appears only once the work has begun, so a command refused at once leaves
    just its `Error:` line."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    amount = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(),)
    columns = ("[progress.description]{task.description}", BarColumn(), *amount, TimeRemainingColumn())
    bar = Progress(*columns, console=Console(stderr=True))
    task = bar.add_task(description, total=None)

    def begin(total: int) -> Callable[[int], None]:
        bar.start()
        bar.update(task, total=total)
        return lambda n: bar.advance(task, n)

    try:
        yield begin
    finally:
        if bar.live.is_started:
            bar.stop()
