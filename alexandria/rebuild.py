"""Opening a store's database, and rebuilding it from the logs.

The logs are the truth; the database is a projection of them. A database
that is missing, or written by another schema version, is rebuilt rather than
migrated.

SQLite: `rebuild` replays every segment into a scratch database beside the
real one (no journal: it is thrown away on failure), builds the big metric
index after the rows are in, then copies it over the real database with
SQLite's online backup in one write transaction: readers see the old database
or the new one, never half.

PostgreSQL: `rebuild` replays every segment into a scratch schema
(`<live>_rebuild_<random hex>`, the same tables, indexes and views), builds the
metric index, then in ONE transaction renames the live schema away and the
scratch schema to the live name; the old one is dropped after that commit.
Every statement of a reader resolves the live name either before the rename
commits (old tables, complete) or after it (new tables, complete); a fold
transaction holds the schema lock shared and the swap holds it exclusive, so
no fold spans the swap.

Either way, a projector running meanwhile simply continues from the
positions the rebuild committed.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DatabaseError, DBAPIError

from .db import (
    connection_schema,
    create_schema,
    has_tables,
    is_postgres,
    postgres_url,
    quote_ident,
    safe_target,
    schema_lock,
    schema_version,
    writer_engine,
)
from .errors import StoreError
from .projector import TRANSACTION_BYTES, FoldStats, Projector, store_size
from .schema import SCHEMA_VERSION, metadata, metric_index
from .store import Store

log = logging.getLogger("alexandria.rebuild")

ProgressFactory = Callable[[int], Callable[[int], None]]


def open_database(store: Store, *, catch_up: bool = True) -> Engine:
    """The store's writable engine (its SQLite file, or `store.db_url`), its schema current, with
    everything complete folded in."""
    engine = writer_engine(store.database)
    try:
        version = schema_version(engine)
        if version is None and not has_tables(engine):
            create_schema(engine)
        elif version != SCHEMA_VERSION:
            rebuild(store)
    except DatabaseError as exc:
        if is_postgres(engine) or not _is_unreadable(exc.orig):
            engine.dispose()
            raise StoreError(f"cannot open database {safe_target(store.database)}: {exc.orig}") from exc
        # not a database at all (overwritten, truncated): the logs still are the truth
        log.warning("database %s is unreadable (%s); rebuilding it from the logs", store.db_path, exc.orig)
        engine.dispose()
        rebuild(store)
    if catch_up:
        Projector(store, engine).catch_up()
    return engine


def _is_unreadable(exc: BaseException | None) -> bool:
    """Only a file that is not (or no longer) an SQLite database is replaced wholesale; a lock or a
    full disk is reported instead."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)


def rebuild(
    store: Store, progress: ProgressFactory | None = None, *, transaction_bytes: int = TRANSACTION_BYTES
) -> FoldStats:
    """Replay every log into a fresh database and swap it in atomically."""
    if postgres_url(store.database) is not None:
        return _rebuild_postgres(store, progress, transaction_bytes)
    scratch = store.root / f".{store.db_path.name}.rebuild-{os.getpid()}"
    for leftover in (scratch, scratch.with_name(scratch.name + "-journal")):
        leftover.unlink(missing_ok=True)
    engine = writer_engine(scratch, bulk=True)
    try:
        create_schema(engine, with_metric_index=False)
        on_bytes = progress(store_size(store)) if progress else None
        stats = Projector(store, engine).catch_up(progress=on_bytes, transaction_bytes=transaction_bytes)
        with engine.begin() as conn:
            metric_index.create(conn)
        engine.dispose()
        _swap_in(scratch, store)
    finally:
        engine.dispose()
        scratch.unlink(missing_ok=True)
    return stats


def _swap_in(scratch: Path, store: Store) -> None:
    src = sqlite3.connect(scratch)
    dst = sqlite3.connect(store.db_path, timeout=120)
    try:
        dst.execute("PRAGMA busy_timeout=120000")
        src.backup(dst)  # one step: a single write transaction on the destination
        if dst.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            dst.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:
        if not _is_unreadable(exc):
            raise StoreError(f"cannot replace database {store.db_path}: {exc}") from exc
        # The old file is no SQLite database, so nobody can be reading it:
        # keep it aside for inspection and move the new one in.
        src.close()
        dst.close()
        aside = store.db_path.with_name(f"{store.db_path.name}.unreadable-{int(time.time())}")
        log.warning("cannot write over %s (%s); moving it to %s", store.db_path, exc, aside)
        os.replace(store.db_path, aside)
        for suffix in ("-wal", "-shm"):
            store.db_path.with_name(store.db_path.name + suffix).unlink(missing_ok=True)
        os.replace(scratch, store.db_path)
        with sqlite3.connect(store.db_path) as db:
            db.execute("PRAGMA journal_mode=WAL")
        db.close()
    finally:
        src.close()
        dst.close()


# -- PostgreSQL ------------------------------------------------------------------------------------------------
def _scratch_name(live: str, kind: str) -> str:
    suffix = f"_{kind}_{secrets.token_hex(4)}"
    return live[: 63 - len(suffix)] + suffix  # PostgreSQL names are at most 63 bytes


def _rebuild_postgres(store: Store, progress: ProgressFactory | None, transaction_bytes: int) -> FoldStats:
    live_engine = writer_engine(store.database)
    try:
        with live_engine.connect() as conn:
            live = connection_schema(conn)
        scratch = _scratch_name(live, "rebuild")
        engine = writer_engine(store.database, bulk=True, schema=scratch)
        swapped = False
        try:
            create_schema(engine, with_metric_index=False)
            with engine.begin() as conn:  # checked row by row while loading, the metric foreign key halves the rate
                foreign_keys = _drop_foreign_keys(conn, "metric")
            on_bytes = progress(store_size(store)) if progress else None
            stats = Projector(store, engine).catch_up(progress=on_bytes, transaction_bytes=transaction_bytes)
            with engine.begin() as conn:
                metric_index.create(conn)
                for definition in foreign_keys:  # validated in one pass over the loaded rows
                    conn.exec_driver_sql(f"ALTER TABLE metric ADD {definition}")
            with engine.connect() as conn:
                tables = ", ".join(quote_ident(t.name) for t in metadata.sorted_tables)
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(f"ANALYZE {tables}")
            engine.dispose()
            old = _scratch_name(live, "old")
            with live_engine.begin() as conn:
                schema_lock(conn, exclusive=True, schema=live)  # waits for every fold in flight, holds off new ones
                exists = conn.exec_driver_sql(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %(name)s", {"name": live}
                ).first()
                if exists:
                    conn.exec_driver_sql(f"ALTER SCHEMA {quote_ident(live)} RENAME TO {quote_ident(old)}")
                conn.exec_driver_sql(f"ALTER SCHEMA {quote_ident(scratch)} RENAME TO {quote_ident(live)}")
            swapped = True
            if exists:
                _drop_schema(live_engine, old)
        finally:
            engine.dispose()
            if not swapped:
                _drop_schema(live_engine, scratch)
    finally:
        live_engine.dispose()
    return stats


def _drop_foreign_keys(conn: Connection, table: str) -> list[str]:
    """Drop the foreign keys of a table in the connection's schema; returns their definitions."""
    found = conn.exec_driver_sql(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = CAST(%(table)s AS regclass) AND contype = 'f'",
        {"table": quote_ident(table)},
    ).all()
    for name, _ in found:
        conn.exec_driver_sql(f"ALTER TABLE {quote_ident(table)} DROP CONSTRAINT {quote_ident(name)}")
    return [f"CONSTRAINT {quote_ident(name)} {definition}" for name, definition in found]


def _drop_schema(engine: Engine, name: str) -> None:
    """Drop a schema the live name no longer points at. It waits for the readers still in it (their
    statements began before the swap); if that fails (a lock timeout, a deadlock with such a reader), the
    schema is left behind, harmless, and named in the log."""
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '60s'")
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")
    except DBAPIError as exc:
        log.warning("could not drop schema %s (%s); drop it by hand: DROP SCHEMA %s CASCADE", name, exc.orig, name)
