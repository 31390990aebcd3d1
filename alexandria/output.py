"""How every read command prints: a table for people, CSV or JSON for scripts, chosen by one `--format`.

A command hands `emit` its data three ways: `columns` and `rows` (what CSV writes), a `document` (what
JSON writes; the rows as objects when it has none) and `table` (the rich rendering people read). So
each command decides only what its data is, never how a format is spelled:

- CSV: a header line, then one line per row, ending in "\\n" (never "\\r\\n", so `tail -n +2 | xargs`
  gets clean values); None is an empty cell; an object or list cell is its JSON text.
- JSON: one document (`json.load` reads it whole); NaN and infinities, which JSON lacks, are the
  strings "nan", "inf" and "-inf"; anything else JSON has no type for (a datetime) is its text.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import click

from .cli_base import console

FORMATS = ("table", "csv", "json")


def format_option(csv_help: str, json_help: str) -> Callable[[Any], Any]:
    """The `--format table|csv|json` option, its help saying what this command's CSV and JSON hold."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help=f"Output format. csv: {csv_help} json: {json_help}",
    )


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float, at any depth, spelled "nan", "inf" or "-inf"."""
    from .values import float_text, map_nonfinite  # here: values loads msgspec, which `--help` never needs

    return map_nonfinite(value, float_text)


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(json_safe(value), default=str)
    return value


def emit(
    fmt: str,
    *,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    table: Callable[[], None],
    document: Any = None,
) -> None:
    """Print a command's output in `fmt`: `table()`, `columns` and `rows` as CSV, or `document` as JSON
    (by default the rows as objects keyed by the columns). `rows` is only read for CSV and default JSON."""
    if fmt == "json":
        if document is None:
            document = [dict(zip(columns, row, strict=True)) for row in rows]
        click.echo(json.dumps(json_safe(document), default=str))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)
    else:
        table()


def note(fmt: str, text: str) -> None:
    """A remark beside the data (skipped log lines): on stdout with the table, on stderr with CSV or JSON
    so that what a script reads stays one clean table or document."""
    if fmt == "table":
        console.print(text, style="yellow")
    else:
        click.echo(text, err=True)


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], *, no_wrap: Collection[str] = ()
) -> None:
    """A table of text cells as rich's `Table` prints it by default (title in italics, header in bold, heavy
    head, the same characters), drawn line by line when it fits the console's width: a thousand runs in a few
    ms, where rich's `Table` measures and wraps every cell (1.5 s for `alex runs` of 1,000 runs). A table wider
    than the console, or a cell of more than one line, is rich's `Table`, which wraps cells to fit."""
    from rich.cells import cell_len
    from rich.text import Text

    widths = [cell_len(c) for c in columns]
    for row in rows:
        for i, cell in enumerate(row):
            n = cell_len(cell)
            if n > widths[i]:
                widths[i] = n
    total = sum(widths) + 3 * len(widths) + 1
    if total > console.width or any("\n" in cell or "\r" in cell for row in rows for cell in row):
        from rich.table import Table

        table = Table(title=title)
        for c in columns:
            table.add_column(c, no_wrap=c in no_wrap)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return

    def line(cells: Sequence[str], sep: str) -> str:
        return sep + sep.join(f" {c}{' ' * (w - cell_len(c))} " for c, w in zip(cells, widths, strict=True)) + sep

    excess = total - cell_len(title)
    text = Text(no_wrap=True, end="")
    text.append(" " * (excess // 2) + title + " " * (excess - excess // 2), style="italic")
    text.append("\n┏" + "┳".join("━" * (w + 2) for w in widths) + "┓\n┃")
    for c, w in zip(columns, widths, strict=True):
        text.append(f" {c}{' ' * (w - cell_len(c))} ", style="bold")
        text.append("┃")
    text.append("\n┡" + "╇".join("━" * (w + 2) for w in widths) + "┩\n")
    text.append("".join(line(row, "│") + "\n" for row in rows))
    text.append("└" + "┴".join("─" * (w + 2) for w in widths) + "┘\n")
    console.print(text, soft_wrap=True, end="")
