"""`alex export`: runs, their parameters and their metric points as CSV or Parquet files.

Streamed: the read model hands the rows over in chunks straight from the database cursor (`query.export_rows`,
one consistent snapshot), and each chunk is written out before the next is read, so any size exports in
little memory. Each file is written with `files.atomic_file`: a temporary name renamed into place.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from .errors import InvalidInputError
from .files import atomic_file
from .query import EXPORT_COLUMNS, RunSelection, export_rows, select_runs

#: Rows per Parquet row group, and per fetch from the database while exporting.
ROW_GROUP_ROWS = 500_000
FETCH_ROWS = 50_000


def _tags_json(raw: Any) -> str:
    tags = json.loads(raw) if isinstance(raw, str) else (raw or {})
    return json.dumps(tags or {}, sort_keys=True, ensure_ascii=False)


def _write_csv(path: Path, columns: Sequence[str], chunks: Iterator[Sequence[Any]]) -> None:
    with atomic_file(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for chunk in chunks:
            w.writerows(chunk)  # None (NULL: NaN values, missing steps) is an empty cell


def _write_parquet(path: Path, schema: Any, chunks: Iterator[Sequence[Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_file(path) as f, pq.ParquetWriter(f, schema) as writer:  # no rows: a valid file, schema only
        batches: list[Any] = []
        pending = 0
        for chunk in chunks:
            columns = list(zip(*chunk, strict=True))
            arrays = [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)]
            batches.append(pa.record_batch(arrays, schema=schema))
            pending += len(chunk)
            if pending >= ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_batches(batches, schema=schema), row_group_size=ROW_GROUP_ROWS)
                batches, pending = [], 0
        if batches:
            writer.write_table(pa.Table.from_batches(batches, schema=schema), row_group_size=ROW_GROUP_ROWS)


def _runs_with_tags_json(chunks: Iterator[Sequence[Sequence[Any]]]) -> Iterator[list[list[Any]]]:
    for chunk in chunks:
        yield [[*r[:7], _tags_json(r[7])] for r in chunk]


def export_runs(
    engine: Engine,
    run_ids: RunSelection | None,
    out_dir: str | os.PathLike[str],
    fmt: str = "csv",
) -> list[Path]:
    """Write the runs (all of them when `run_ids` is None) as three tables in `out_dir`; returns their paths.

    `runs` (id, name: empty for a run logged before runs had names, experiment, status, start, end, parent_id,
    tags as a JSON object; times in unix seconds),
    `params` (run_id, key, value) and `metrics` (run_id, key, step, value, timestamp, attempt), as `.csv`
    or `.parquet` (pyarrow; row groups of 500,000 rows). NaN metric values (NULL in SQL) and missing steps
    are empty cells in CSV and nulls in Parquet. Deleted runs are not exported: every run means every live
    one, and a deleted run named in `run_ids` is refused (`query.select_runs`). Rows are read in chunks
    straight from the database cursor, all three tables in one read transaction (a consistent snapshot while
    runs keep logging), so any size exports in little memory. Each file is written to a temporary name and
    renamed into place.
    """
    if fmt not in ("csv", "parquet"):
        raise InvalidInputError(f"format must be 'csv' or 'parquet', got {fmt!r}")
    schemas: dict[str, Any] = {}
    if fmt == "parquet":
        try:
            import pyarrow as pa
        except ImportError as exc:
            raise InvalidInputError(
                "exporting Parquet needs pyarrow: pip install 'alexandria[data]' (or pip install pyarrow)"
            ) from exc
        s, f, i = pa.string(), pa.float64(), pa.int64()
        schemas = {
            "runs": pa.schema(list(zip(EXPORT_COLUMNS["runs"], (s, s, s, s, f, f, s, s), strict=True))),
            "params": pa.schema(list(zip(EXPORT_COLUMNS["params"], (s, s, s), strict=True))),
            "metrics": pa.schema(list(zip(EXPORT_COLUMNS["metrics"], (s, s, i, f, f, i), strict=True))),
        }
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"cannot create the export directory {out}: {exc.strerror}") from exc
    ids = None if run_ids is None else select_runs(engine, run_ids)
    written: list[Path] = []
    with export_rows(engine, ids, FETCH_ROWS) as tables:
        tables["runs"] = _runs_with_tags_json(tables["runs"])
        for name, chunks in tables.items():
            path = out / f"{name}.{fmt}"
            if fmt == "csv":
                _write_csv(path, EXPORT_COLUMNS[name], chunks)
            else:
                _write_parquet(path, schemas[name], chunks)
            written.append(path)
    return written
