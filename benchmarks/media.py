"""The dashboard's media: a logged table's last page and a histogram key's heatmap served over HTTP by the
real app, each beside the raw limit doing the same work with the bare libraries (csv / pyarrow reading up to
that page's rows; one SQL read of the bins and numpy's re-binning)."""

from __future__ import annotations

import functools
import json
import sqlite3
import statistics
from pathlib import Path
from typing import Any

from .common import Result, http_median_ms, timed

PER_PAGE = 50


def _raw_csv_page(path: Path, start: int) -> list[list[str]]:
    import csv
    import itertools

    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        return list(itertools.islice(reader, start, start + PER_PAGE))


def _raw_parquet_page(path: Path, start: int) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return list(pq.read_table(path, memory_map=True).slice(start, PER_PAGE).to_pylist())


def _raw_histogram(db: Path, run_id: str, key: str) -> Any:
    import numpy as np

    from alexandria.media import rebin

    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT step, bin, lower, upper, count FROM histogram WHERE run_id = ? AND key = ? ORDER BY step, id",
            (run_id, key),
        ).fetchall()
    finally:
        conn.close()
    a = np.asarray(rows, dtype=np.float64)
    starts = np.flatnonzero(a[:, 1] == 0).tolist() + [len(a)]
    parts = [a[s:e] for s, e in zip(starts, starts[1:], strict=False)]
    _, grid = rebin(
        [p[:, 2].tolist() for p in parts], [p[:, 3].tolist() for p in parts], [p[:, 4].tolist() for p in parts], 64
    )
    return json.dumps(grid)


def bench_media(quick: bool, tmp: Path) -> list[Any]:
    """A table of N rows logged as CSV and as Parquet, its last page served; a histogram key of S steps as a
    heatmap; the run page with them."""
    import numpy as np

    import alexandria
    from alexandria import media as media_module
    from alexandria.db import open_database
    from alexandria.store import Store
    from alexandria.ui import BackgroundServer

    n = 20_000 if quick else 200_000
    steps = 200 if quick else 2_000
    requests = 5 if quick else 10
    store = Store.open(tmp / "media")
    rng = np.random.default_rng(3)
    columns = {"row": list(range(n)), "score": rng.random(n).tolist(), "label": [f"item {i}" for i in range(n)]}
    with alexandria.start_run(experiment="bench-media", store=store, capture=False) as run:
        run.log_table("parquet", columns)
        real = media_module._pyarrow
        media_module._pyarrow = lambda: None  # the fallback: CSV
        try:
            run.log_table("csv", columns)
        finally:
            media_module._pyarrow = real
        for s in range(steps):
            run.log_histogram("weights", rng.normal(s / steps, 1.0, 256), step=s, bins=64)
    open_database(store).dispose()
    files = {p.suffix: p for p in (store.artifact_dir(run.id) / ".media").rglob("*") if p.is_file()}
    ids = {}
    conn_db = sqlite3.connect(store.db_path)
    for key, mid in conn_db.execute("SELECT key, id FROM media WHERE kind = 'table' AND run_id = ?", (run.id,)):
        ids[key] = mid
    conn_db.close()
    last = -(-n // PER_PAGE)
    start = (last - 1) * PER_PAGE
    results = []
    with BackgroundServer(store, fold=False) as server:
        for fmt, raw in (("csv", _raw_csv_page), ("parquet", _raw_parquet_page)):
            served = http_median_ms(server.port, f"/api/run/{run.id}/media/{ids[fmt]}/table?page={last}", requests)[0]
            path = files[f".{fmt}"]
            limit = statistics.median(timed(functools.partial(raw, path, start)) for _ in range(requests))
            results.append(
                Result(
                    f"ui: last page of a {n:,}-row {fmt} table",
                    1000 / served,
                    "pages/s",
                    limit=1 / limit,
                    limit_name=f"{'csv.reader' if fmt == 'csv' else 'pyarrow read_table'} to that page",
                    extra={"served_ms": served, "raw_ms": limit * 1000},
                )
            )
        served = http_median_ms(server.port, f"/api/run/{run.id}/histogram/weights", requests)[0]
        limit = statistics.median(
            timed(lambda: _raw_histogram(store.db_path, run.id, "weights")) for _ in range(requests)
        )
        page_ms = http_median_ms(server.port, f"/run/{run.id}", requests)[0]
    results.append(
        Result(
            f"ui: histogram of {steps:,} steps x 64 bins as a heatmap",
            1000 / served,
            "grids/s",
            limit=1 / limit,
            limit_name="sqlite3 read of the bins + media.rebin",
            extra={"served_ms": served, "raw_ms": limit * 1000, "run_page_ms": page_ms},
        )
    )
    return results
