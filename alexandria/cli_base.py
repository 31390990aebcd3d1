"""What every command line shares (`alex`, and a plug-in's own, mounted under it or run alone): library
errors become one `Error: ...` line, exit code 1, and one console prints."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console

from .errors import AlexandriaError

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
            ctx.exit(1)
