"""What the run page shows of a run's media and artifacts, from the read model (query.py) and the store's files:
media records grouped by key (with whether each file is still as logged), a table's page, a histogram key as
a step x bin grid, an artifact's preview (a capped read), and a directory artifact's listing. No SQL here;
which file may be opened at all is `Store.open_recorded`'s one check."""

from __future__ import annotations

import csv
import io
import itertools
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from ..errors import InvalidInputError, NotRegularFileError, RecordedFileError
from ..media import rebin
from ..query import histogram_steps, media_records
from ..store import Store
from ..verify import FileHashes
from .render import url_part
from .security import content_type

#: Rows a table page shows (the server reads only that page's rows out of the file).
TABLE_PAGE_ROWS = 50
#: Most bytes read to preview an artifact as text or CSV, and the most lines / rows shown of it.
PREVIEW_BYTES = 64 << 10
PREVIEW_LINES = 40
PREVIEW_ROWS = 20
#: Largest image artifact shown inline (the browser loads it); a bigger one keeps its links only.
PREVIEW_IMAGE_BYTES = 20 << 20
#: Rows of a histogram's heatmap (each record's bins are spread onto this many common bins).
HEATMAP_BINS = 64
_TEXT_TYPES = {"application/json", "application/x-yaml", "application/yaml", "application/toml", "application/xml"}
_TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".json", ".jsonl", ".yaml", ".yml", ".toml", ".log", ".cfg", ".ini"}


def media_url(run_id: str, media_id: int, file: str | None = None) -> str:
    return f"/media/{run_id}/{media_id}" + (f"?file={url_part(file)}" if file else "")


def _file_state(store: Store, run_id: str, record: dict[str, Any], hashes: FileHashes) -> str | None:
    """Why a media record's file cannot be shown as logged ("missing", "changed since ..."), or None."""
    if record["path"] is None:  # a histogram: its bins are in SQL
        return None
    what = f"run {run_id} media {record['key']!r}"
    try:
        fd, _real = store.open_recorded(record["path"], what)
    except NotRegularFileError as exc:
        return f"not a regular file ({exc.reason})"
    except RecordedFileError as exc:
        return "missing from the store" if exc.reason == "missing" else f"refused: its path {exc.reason}"
    try:
        return hashes.warning(fd, record, full=False)
    finally:
        os.close(fd)


def run_media(engine: Engine, store: Store, run_id: str, hashes: FileHashes) -> list[dict[str, Any]]:
    """A run's media, one group per key (records by step), each record with its URL(s) and, when its file is
    missing or no longer as logged, the `problem` the page says instead of a broken view."""
    groups: list[dict[str, Any]] = []
    for (key, kind), records in itertools.groupby(media_records(engine, run_id), lambda r: (r["key"], r["kind"])):
        items = []
        for r in records:
            svg = next((f for f in (r["files"] or []) if f.get("format") == "svg"), None)
            items.append(
                {
                    "id": r["id"],
                    "step": r["step"],
                    "format": r["format"],
                    "size": r["size"],
                    "width": r["width"],
                    "height": r["height"],
                    "caption": r["caption"],
                    "n_rows": r["n_rows"],
                    "n_cols": r["n_cols"],
                    "columns": r["columns"] or [],
                    "url": None if r["path"] is None else media_url(run_id, r["id"]),
                    "svg_url": media_url(run_id, r["id"], "svg") if svg else None,
                    "problem": _file_state(store, run_id, r, hashes),
                }
            )
        groups.append({"key": key, "kind": kind, "dom": f"media{len(groups)}", "records": items})
    return groups


def media_file(store: Store, run_id: str, record: dict[str, Any], file: str | None) -> tuple[str, dict[str, Any]]:
    """The recorded path of a media record's file (`file`: the format of one of its other files, e.g. "svg")
    and the record (size, sha256) it is checked against; InvalidInputError for no such file."""
    if file is None or file == record["format"]:
        if record["path"] is None:
            raise InvalidInputError(f"media {record['key']!r} is a histogram: it has no file (its bins are in SQL)")
        return record["path"], record
    for f in record["files"] or []:
        if f.get("format") == file:
            return f["path"], f
    raise InvalidInputError(f"media {record['key']!r} has no {file!r} file; it has {record['format']!r}")


@dataclass
class TablePage:
    columns: list[str]
    rows: list[list[Any]]
    page: int
    pages: int
    total: int
    first: int  # the 1-based number of the page's first row
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def table_page(store: Store, run_id: str, record: dict[str, Any], page: int) -> TablePage:
    """Page `page` (1-based) of a logged table: CSV read with the csv module up to that page's last row,
    Parquet with pyarrow (said in `error` when pyarrow is not installed, or when the file cannot be read)."""
    total = int(record["n_rows"] or 0)
    pages = max(1, -(-total // TABLE_PAGE_ROWS))
    if page < 1:
        raise InvalidInputError(f"page must be 1 or more, got {page}")
    start = (page - 1) * TABLE_PAGE_ROWS
    columns = list(record["columns"] or [])
    out = TablePage(columns, [], page, pages, total, start + 1)
    fd, _real = store.open_recorded(record["path"], f"run {run_id} media {record['key']!r}")
    with os.fdopen(fd, "rb") as f:
        if record["format"] == "csv":
            reader = csv.reader(io.TextIOWrapper(f, encoding="utf-8", newline=""))
            header = next(reader, None)
            out.columns = header or columns
            out.rows = [list(r) for r in itertools.islice(reader, start, start + TABLE_PAGE_ROWS)]
        elif record["format"] == "parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                out.error = "this table is Parquet and pyarrow is not installed: pip install 'alexandria[media]'"
                return out
            try:
                table = _parquet_rows(pq, f.read(), start, TABLE_PAGE_ROWS)
            except Exception as exc:  # pyarrow's errors: a damaged or foreign file
                out.error = f"pyarrow cannot read this table's file ({exc})"
                return out
            out.columns = [str(c) for c in table.column_names]
            out.rows = [list(row.values()) for row in table.to_pylist()]
        else:
            out.error = f"a table stored as {record['format']!r} is not shown"
    return out


def _parquet_rows(pq: Any, data: bytes, start: int, count: int) -> Any:
    """Rows [start, start + count) of a Parquet file's bytes, decoding only the row groups that hold them."""
    import pyarrow as pa

    pf = pq.ParquetFile(pa.BufferReader(data))
    groups, first, at = [], None, 0
    for i in range(pf.metadata.num_row_groups):
        rows = pf.metadata.row_group(i).num_rows
        if at + rows > start and at < start + count:
            groups.append(i)
            first = at if first is None else first
        at += rows
    if not groups:
        return pf.schema_arrow.empty_table()
    return pf.read_row_groups(groups).slice(start - (first or 0), count)


def histogram_grid(engine: Engine, run_id: str, key: str) -> dict[str, Any] | None:
    """A histogram key over steps as a heatmap: `z[bin][record]` counts on common bins (`media.rebin`) and the
    records' steps (a cell's hover reads one step). None: no such key."""
    h = histogram_steps(engine, run_id, key)
    if not h.steps:
        return None
    import numpy as np

    edges, grid = rebin(h.lower, h.upper, h.counts, HEATMAP_BINS)
    z = np.round(np.asarray(grid, dtype=np.float64).T, 3)  # shares of a count: 3 decimals are plenty to read
    return {"key": key, "steps": h.steps, "edges": edges, "z": z.tolist()}


# -- artifacts ----------------------------------------------------------------------------------------------------
def artifact_preview(fd: int, real: Path, record: dict[str, Any], url: str) -> dict[str, Any] | None:
    """What the run page shows of a file artifact beside its links: an image (`<img>`), its first lines
    (text, JSON, Markdown), its first rows (CSV) or its page in the sandboxed frame (HTML); None for other
    files. At most `PREVIEW_BYTES` are read, from the open `fd` (left at its start)."""
    ctype = content_type(real, record.get("type"))
    size = os.fstat(fd).st_size
    suffix = real.suffix.lower()
    if ctype.startswith("image/"):
        return {"kind": "image", "url": url} if size <= PREVIEW_IMAGE_BYTES else None
    if ctype == "text/html":
        return {"kind": "html", "url": url}
    is_csv = ctype == "text/csv" or suffix == ".csv"
    if not (is_csv or ctype.startswith("text/") or ctype in _TEXT_TYPES or suffix in _TEXT_SUFFIXES):
        return None
    head = os.pread(fd, PREVIEW_BYTES, 0)
    cut = size > len(head)
    text = head.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if cut and lines:  # the last line read may be cut short
        lines = lines[:-1]
    if is_csv:
        rows = list(itertools.islice(csv.reader(lines), PREVIEW_ROWS + 1))
        more = cut or len(lines) > len(rows)
        return {"kind": "csv", "header": rows[0] if rows else [], "rows": rows[1:], "more": more}
    shown = lines[:PREVIEW_LINES]
    return {"kind": "text", "text": "\n".join(shown), "more": cut or len(lines) > len(shown)}


@dataclass
class DirectoryEntry:
    name: str
    kind: str  # file, directory, link, other
    size: int | None
    url: str | None  # None: not served (a link is never followed, nor anything not a regular file)


def _inside(store: Store, recorded: str, rest: str, what: str) -> Path:
    """The real path of `rest` inside a directory artifact recorded at `recorded`: the store's one check
    (`recorded_file`), and no symbolic link on the way (not even one leading elsewhere inside the store)."""
    parts = [p for p in rest.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidInputError(f"{what}: a path inside an artifact has no '.' or '..' parts")
    base = store.recorded_file(recorded, what)
    real = store.recorded_file("/".join([recorded, *parts]), what) if parts else base
    if real != base.joinpath(*parts):  # a link was followed on the way
        reason = "is a symbolic link or inside one: not followed"
        raise NotRegularFileError(f"{what}: {rest!r} {reason}", path=rest, reason=reason)
    return real


def directory_listing(store: Store, run_id: str, name: str, recorded: str, rest: str) -> list[DirectoryEntry]:
    """The entries of a directory artifact (or of a folder `rest` inside it), sorted: folders link to their
    listing, regular files to themselves; links and other entries are listed, never followed or served."""
    what = f"run {run_id} artifact {name!r}"
    real = _inside(store, recorded, rest, what)
    if not real.is_dir():
        raise NotRegularFileError(f"{what}: {rest!r} is not a folder", path=rest, reason="is not a directory")
    base = f"/artifact/{run_id}/{url_part(name)}/" + "".join(f"{url_part(p)}/" for p in rest.split("/") if p)
    out = []
    with os.scandir(real) as entries:
        for e in sorted(entries, key=lambda e: e.name):
            mode = e.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                out.append(DirectoryEntry(e.name, "link", None, None))
            elif stat.S_ISDIR(mode):
                out.append(DirectoryEntry(e.name, "directory", None, base + url_part(e.name) + "/"))
            elif stat.S_ISREG(mode):
                size = e.stat(follow_symlinks=False).st_size
                out.append(DirectoryEntry(e.name, "file", size, base + url_part(e.name)))
            else:
                out.append(DirectoryEntry(e.name, "other", None, None))
    return out


def open_in_directory(store: Store, run_id: str, name: str, recorded: str, rest: str) -> tuple[int, Path]:
    """A descriptor of the regular file `rest` inside a directory artifact: inside the store, reached through
    no link (`_inside`), opened by `Store.open_recorded` (regular files only)."""
    what = f"run {run_id} artifact {name!r}"
    _inside(store, recorded, rest, what)
    return store.open_recorded("/".join([recorded, *[p for p in rest.split("/") if p]]), what)
