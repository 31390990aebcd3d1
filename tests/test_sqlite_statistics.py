"""SQLite's query planner gets its statistics (sqlite_stat1): `alex rebuild` takes them, and the live fold
retakes them as the metric table grows. Without them a join on the metric table at each run's highest step
scans every point instead of seeking one per run."""

from __future__ import annotations

import sqlite3

import pytest

import alexandria
from alexandria.backends import sqlite as sqlite_backend
from alexandria.db import open_database
from alexandria.projector import Projector
from alexandria.store import Store
from tests.conftest import alex

LAST_LOSS = """SELECT r.id, m.value FROM run r
JOIN metric m ON m.run_id = r.id AND m.key = 'loss'
 AND m.step = (SELECT MAX(step) FROM metric m2 WHERE m2.run_id = r.id AND m2.key = 'loss')"""


def _log(store: Store, runs: int, points: int) -> None:
    for _ in range(runs):
        run = alexandria.start_run(experiment="stats", store=store, capture=False, system_metrics=False)
        for i in range(points):
            run.log_metric("loss", 1.0 / (i + 1), i)
        run.end()


def _metric_rows_at_analyze(store: Store) -> int | None:
    con = sqlite3.connect(store.db_path)
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
            return None
        row = con.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = 'metric_point'").fetchone()
        return None if row is None else int(row[0].split()[0])
    finally:
        con.close()


def _plan(store: Store) -> list[str]:
    con = sqlite3.connect(store.db_path)
    try:
        return [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + LAST_LOSS)]
    finally:
        con.close()


def test_rebuild_takes_the_statistics_and_the_last_value_join_seeks(store: Store) -> None:
    _log(store, runs=20, points=200)
    assert alex("--store", str(store.root), "rebuild").returncode == 0
    taken = _metric_rows_at_analyze(store)
    assert taken is not None and abs(taken - 20 * 200) <= 400  # sampled (analysis_limit): an estimate
    plan = _plan(store)
    # one seek per run at its highest step (through the view: the series, then its point), never a scan of the
    # points; the one scan is of a small table (the runs, or the one summary row per run and key)
    seek = "SEARCH p USING INDEX ix_metric_point_series_step (series=? AND step=?)"
    assert any(p.startswith(seek) for p in plan), plan
    assert not [p for p in plan if p.startswith("SCAN") and not p.startswith(("SCAN r", "SCAN s"))], plan
    con = sqlite3.connect(store.db_path)
    assert sorted(v for _, v in con.execute(LAST_LOSS)) == [1.0 / 200] * 20
    con.close()


def test_the_live_fold_retakes_them_as_the_metric_table_grows(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_backend, "STATISTICS_FLOOR", 100)
    engine = open_database(store)
    try:
        _log(store, runs=1, points=50)
        Projector(store, engine).catch_up()
        assert _metric_rows_at_analyze(store) is None  # below the floor: nothing taken

        _log(store, runs=1, points=100)
        Projector(store, engine).catch_up()
        assert _metric_rows_at_analyze(store) == 150

        _log(store, runs=3, points=100)  # 450 rows: less than ten times 150, the statistics stand
        Projector(store, engine).catch_up()
        assert _metric_rows_at_analyze(store) == 150

        _log(store, runs=11, points=100)  # 1,550 rows: retaken
        Projector(store, engine).catch_up()
        assert _metric_rows_at_analyze(store) == 1550
    finally:
        engine.dispose()
