"""The backend seam itself: every backend keeps the contract of alexandria/backends/base.py.

Each test runs once per backend (conftest.BACKENDS): the factory picks the backend from the store's
target, its engines and schema work, its insert knows ON CONFLICT, its bulk insert appends, its reader
refuses writes with a ReadOnlyError (by the driver's error code) and reports other failures as a
QueryError, and its history and bucket SQL agree with a plain reading of the rows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import Connection, Engine

from alexandria.backends import backend_for, backend_of, safe_target
from alexandria.backends.base import Backend
from alexandria.db import open_database, reader_engine
from alexandria.errors import QueryError, ReadOnlyError, StoreError
from alexandria.schema import SCHEMA_VERSION, metric_point, metric_summary, run
from alexandria.store import Store
from tests.conftest import every_backend, rows

pytestmark = every_backend

RUN_ID = "a" * 32


@pytest.fixture
def engine(store: Store) -> Engine:
    """The store's writable engine, its schema made, one run row in it."""
    found = open_database(store)
    backend = backend_of(found)
    with found.begin() as conn:
        conn.execute(backend.insert(run).on_conflict_do_nothing(), [{"id": RUN_ID, "status": "running"}])
    return found


def test_the_factory_picks_the_backend_of_the_target_and_the_engines_name_it(
    store: Store, backend: str, engine: Engine
) -> None:
    chosen = backend_for(store.database)
    assert isinstance(chosen, Backend) and chosen.dialect == backend
    assert type(backend_of(engine)) is type(chosen)
    assert chosen.has_tables(engine) and chosen.schema_version(engine) == SCHEMA_VERSION
    assert safe_target(store.database) == str(store.database)  # no password to hide in either
    engine.dispose()


def test_an_unknown_scheme_is_refused_with_what_is_supported() -> None:
    with pytest.raises(StoreError, match="unsupported database URL"):
        backend_for("mysql://host/db")


def new_series(conn: Connection, key: str) -> int:
    """The metric_summary row a run's metric `key` points refer to (the fold writes it with its points)."""
    insert = metric_summary.insert().values(run_id=RUN_ID, key=key, count=0).returning(metric_summary.c.id)
    return int(conn.execute(insert).scalar_one())


def test_insert_knows_on_conflict_and_bulk_insert_appends(engine: Engine) -> None:
    backend = backend_of(engine)
    with engine.begin() as conn:
        conn.execute(backend.insert(run).on_conflict_do_nothing(), [{"id": RUN_ID, "status": "finished"}])
        columns = ("series", "value", "step", "timestamp", "attempt")
        series = new_series(conn, "m")
        backend.bulk_insert(conn, metric_point, columns, [(series, float(i), i, 1.0, 0) for i in range(5)])
        backend.bulk_insert(conn, metric_point, columns, [(series, None, None, 2.0, 0)])
    assert rows(engine, "SELECT status FROM run") == [("running",)]  # the first row stays
    assert rows(engine, "SELECT count(*), count(step), sum(value) FROM metric") == [(6, 5, 10.0)]
    engine.dispose()


def test_the_reader_refuses_writes_as_read_only_and_reports_bad_sql_as_a_query_error(
    store: Store, engine: Engine
) -> None:
    engine.dispose()
    reader = reader_engine(store.database)
    backend = backend_of(reader)
    try:
        assert backend.execute_sql(reader, "SELECT id FROM run") == (["id"], [(RUN_ID,)])
        assert backend.execute_sql(reader, "SELECT '100%' AS pct") == (["pct"], [("100%",)])  # no placeholder
        for write in ("DELETE FROM run", "CREATE TABLE nope (x integer)", "UPDATE run SET status = 'x'"):
            with pytest.raises(ReadOnlyError, match="read-only"):
                backend.execute_sql(reader, write)
        with pytest.raises(QueryError, match="query failed"):
            backend.execute_sql(reader, "SELECT * FROM no_such_table")
        with pytest.raises(QueryError, match="query failed"):
            backend.execute_sql(reader, "SELEC 1")
        assert rows(reader, "SELECT count(*) FROM run") == [(1,)]
    finally:
        reader.dispose()


def test_history_and_buckets_agree_with_the_rows(engine: Engine) -> None:
    backend = backend_of(engine)
    with engine.begin() as conn:
        series = new_series(conn, "m")
        points = [(series, math.sin(i) if i != 7 else None, i, 100.0 + i, 0) for i in range(50)]
        points.append((series, 5.0, None, 99.0, 0))  # no step: first in the history, in no step bucket
        backend.bulk_insert(conn, metric_point, ("series", "value", "step", "timestamp", "attempt"), points)
    flat = backend.metric_history(engine, RUN_ID, "m", with_times=True).reshape(-1, 3)
    assert np.isnan(flat[0, 0]) and flat[0, 1] == 5.0 and flat[0, 2] == 99.0
    assert list(flat[1:, 0]) == [float(i) for i in range(50)]
    assert np.isnan(flat[8, 1]) and flat[1, 1] == 0.0

    where, args = backend.metric_filter(RUN_ID, "m", "step", 10, 29)
    with engine.connect() as conn:
        db = conn.connection.driver_connection
        grouped = backend.buckets(db, RUN_ID, "m", "step", where, args, 4)
        last = backend.last_values(db, RUN_ID, "m", "step", [r[4] for r in grouped])
    assert [r[0] for r in grouped] == [0, 1, 2, 3] and [r[3] for r in grouped] == [5, 5, 5, 5]
    assert [r[4] for r in grouped] == [14, 19, 24, 29]
    assert last == {s: math.sin(s) for s in (14, 19, 24, 29)}
    engine.dispose()
