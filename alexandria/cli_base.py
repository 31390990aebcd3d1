"""What both command lines (`alex`, `qex`) share: library errors become one `Error: ...` line, exit code 1."""

from __future__ import annotations

from typing import Any

import click

from .errors import AlexandriaError


class ErrorsAsMessages(click.Group):
    """A click group that prints AlexandriaError as `Error: ...` on stderr and exits 1 (usage errors stay 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AlexandriaError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
