"""Connections to a store's database, set up the one way Alexandria needs them.

Writers (the projector) take SQLite's write lock at the start of every
transaction (BEGIN IMMEDIATE), so two projectors can never read the same
segment position and both fold from it. WAL mode lets readers and the
projector run at once. Foreign keys are on.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from .errors import StoreError
from .schema import SCHEMA_VERSION, meta, metadata

BUSY_TIMEOUT_MS = 120_000


def _refuse_attach(action: int, *_args: object) -> int:
    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH) else sqlite3.SQLITE_OK


def _sqlite_engine(path: Path, *, readonly: bool, bulk: bool = False) -> Engine:
    url = f"sqlite:///file:{path}?mode=ro&uri=true" if readonly else f"sqlite:///{path}"
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if readonly:
            cur.execute("PRAGMA query_only=ON")
            dbapi_connection.set_authorizer(_refuse_attach)  # ATTACH would create or write other files
        elif bulk:
            cur.execute("PRAGMA journal_mode=OFF")
            cur.execute("PRAGMA synchronous=OFF")
        else:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def writer_engine(path: Path, *, bulk: bool = False) -> Engine:
    """An engine for the projector: BEGIN IMMEDIATE, WAL (or no journal at all for a rebuild's scratch file)."""
    return _sqlite_engine(path, readonly=False, bulk=bulk)


def reader_engine(path: Path) -> Engine:
    """A read-only engine: any write is refused by SQLite itself."""
    if not path.exists():
        raise StoreError(f"no database at {path}; log a run or run `alex rebuild` first")
    return _sqlite_engine(path, readonly=True)


def schema_version(engine: Engine) -> int | None:
    """The schema version a database was written with (None: empty or not ours)."""
    try:
        with engine.connect() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    except OperationalError:
        return None
    return int(value) if value is not None else None


def create_schema(engine: Engine, *, with_metric_index: bool = True) -> None:
    from .schema import QEX_VIEWS, metric_index

    with engine.begin() as conn:
        tables = [t for t in metadata.sorted_tables]
        metadata.create_all(conn, tables=tables, checkfirst=True)
        if not with_metric_index:
            metric_index.drop(conn)
        for name, select_sql in QEX_VIEWS.items():
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE VIEW {name} AS {select_sql}")
        conn.execute(meta.delete().where(meta.c.key == "schema_version"))
        conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
