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
from collections.abc import Callable, Iterable, Sequence
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
