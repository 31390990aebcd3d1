"""What every command line shares (`alex`, and a plug-in's own, mounted under it or run alone): library
errors become one `Error: ...` line, exit code 1, and one console prints."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import click

from .errors import AlexandriaError

if TYPE_CHECKING:
    from rich.console import Console

    from .rebuild import ProgressFactory


class _Console:
    """The commands' one rich `Console`, made on first use: rich is not imported before a command prints,
    so `alex --help` starts at once."""

    def __init__(self) -> None:
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            # Piped output is not cut to 80 columns: ids and queries stay whole for copying. markup=False and
            # emoji=False: what users logged (tags, keys, corrupt log bytes) is printed as it is, never as rich
            # markup nor ":fire:" as an emoji (which also spares every table the search for emoji codes).
            width = None if sys.stdout.isatty() else 200
            self._console = Console(highlight=False, markup=False, emoji=False, width=width)
        return getattr(self._console, name)


console: Console = cast("Console", _Console())


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
    """One progress bar on stderr for a long command, in bytes (`unit="bytes"`: done of the total, rate, time
    left) or in counted items (any other unit, e.g. "runs"). It appears only once the work has begun (rich is
    imported only then), so a command refused at once leaves just its `Error:` line, and work that never
    begins (a read with nothing much to fold) costs nothing."""
    bar: Any = None

    def begin(total: int) -> Callable[[int], None]:
        nonlocal bar
        if bar is not None:  # work of a second stage (a rebuild, then what was logged meanwhile): the bar again
            bar.reset(bar.task_ids[0], total=total)
            return lambda n: bar.advance(bar.task_ids[0], n)
        from rich.console import Console
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
        task = bar.add_task(description, total=total)
        bar.start()
        return lambda n: bar.advance(task, n)

    try:
        yield begin
    finally:
        if bar is not None and bar.live.is_started:
            bar.stop()
