"""The dashboard's runs table at 10,000 runs: the page, /api/runs and a grouped view, through a real `alex ui`
server (HTTP in a thread), beside the bare SQL that fetches the same page of rows with sqlite3."""

from __future__ import annotations

import random
import sqlite3
import statistics
import time
from pathlib import Path
from urllib.parse import urlencode

import alexandria
from alexandria.db import open_database
from alexandria.store import Store

from .common import Result, http_median_ms

PARAMS = 10
METRICS = 5
COLUMNS = ["metrics.m0.last", "metrics.m1.max", "metrics.m2.min", "params.p0", "params.p1", "params.p2"]

# The same page as the view asks for, by hand: each run's six values (a metric's from its metric_summary row,
# as the view reads them), sorted by the metric's last value, missing last, ties by id, the first 100.
RAW_PAGE = """
SELECT r.id, r.name, r.experiment_name, r.status, r.timestamp_start, r.timestamp_end, r.tags,
  (SELECT last_value FROM metric_summary WHERE run_id = r.id AND key = 'm0') AS m0,
  (SELECT max_value FROM metric_summary WHERE run_id = r.id AND key = 'm1') AS m1,
  (SELECT min_value FROM metric_summary WHERE run_id = r.id AND key = 'm2') AS m2,
  (SELECT value FROM parameter WHERE run_id = r.id AND key = 'p0') AS p0,
  (SELECT value FROM parameter WHERE run_id = r.id AND key = 'p1') AS p1,
  (SELECT value FROM parameter WHERE run_id = r.id AND key = 'p2') AS p2
FROM run r WHERE r.deleted = 0 ORDER BY m0 IS NULL, m0 DESC, r.id LIMIT 100
"""
RAW_GROUPS = """
SELECT g, count(*), min(m0), max(m0), avg(m0), min(m1), max(m1), avg(m1), min(m2), max(m2), avg(m2) FROM (
  SELECT (SELECT value FROM parameter WHERE run_id = r.id AND key = 'p0') AS g,
    (SELECT last_value FROM metric_summary WHERE run_id = r.id AND key = 'm0') AS m0,
    (SELECT max_value FROM metric_summary WHERE run_id = r.id AND key = 'm1') AS m1,
    (SELECT min_value FROM metric_summary WHERE run_id = r.id AND key = 'm2') AS m2
  FROM run r WHERE r.deleted = 0) GROUP BY g ORDER BY g
"""


def build_store(path: Path, runs: int, points: int, seed: int = 15) -> Store:
    """`runs` ended runs logged through the library, many per process (no capture, no system metrics), each
    with `PARAMS` params and `METRICS` metrics of `points` steps; then folded by the projector."""
    store = Store.open(path)
    rng = random.Random(seed)
    for i in range(runs):
        run = alexandria.start_run(experiment=f"e{i % 4}", store=store, capture=False, system_metrics=False)
        run.log_params({f"p{k}": rng.choice([0.1, 0.03, 0.01, 0.003, 0.001]) for k in range(PARAMS)})
        for step in range(points):
            run.log_metrics({f"m{k}": rng.random() for k in range(METRICS)}, step=step)
        run.end()
    open_database(store).dispose()
    return store


def _raw_ms(db: Path, sql: str, times: int) -> float:
    conn = sqlite3.connect(db)
    try:
        samples = []
        for _ in range(times):
            t0 = time.perf_counter()
            rows = conn.execute(sql).fetchall()
            samples.append(time.perf_counter() - t0)
            assert rows
        return statistics.median(samples) * 1000
    finally:
        conn.close()


def bench_runs_table(quick: bool, tmp: Path) -> list[Result]:
    """GET / with 3 metric and 3 param columns sorted by a metric's last value, /api/runs the same, and the
    view grouped by a param: medians of several requests, each beside the bare sqlite3 query of the same rows
    (the ratio is how many times the raw query's time the dashboard takes: the page's HTML or JSON, its
    count, the children and the column picker's keys on top)."""
    from alexandria.ui import BackgroundServer

    runs = 500 if quick else 10_000
    points = 10 if quick else 20
    times = 3 if quick else 7
    t0 = time.perf_counter()
    store = build_store(tmp / "store", runs, points)
    built = time.perf_counter() - t0
    view = [("col", c) for c in COLUMNS] + [("sort", "metrics.m0.last"), ("desc", "1")]
    page, api = "/?" + urlencode(view), "/api/runs?" + urlencode(view)
    grouped = "/?" + urlencode([*view, ("group", "params.p0")])
    with BackgroundServer(store, fold=False) as server:
        page_ms = http_median_ms(server.port, page, times)[0]
        api_ms = http_median_ms(server.port, api, times)[0]
        group_ms = http_median_ms(server.port, grouped, times)[0]
    raw_page = _raw_ms(store.db_path, RAW_PAGE, times)
    raw_groups = _raw_ms(store.db_path, RAW_GROUPS, times)
    size = f"{runs:,} runs"
    extra = {"runs": runs, "points_per_metric": points, "store_built_s": built}
    return [
        Result(
            f"runs table: page, {size}",
            page_ms,
            "ms",
            raw_page,
            "sqlite3: the page's rows",
            "< 1000 ms, <= 2x raw at 10,000 runs",
            extra,
        ),
        Result(
            f"runs table: api, {size}",
            api_ms,
            "ms",
            raw_page,
            "sqlite3: the page's rows",
            "< 1000 ms, <= 2x raw at 10,000 runs",
        ),
        Result(
            f"runs table: grouped, {size}",
            group_ms,
            "ms",
            raw_groups,
            "sqlite3: the groups",
            "<= 2x raw at 10,000 runs",
        ),
    ]
