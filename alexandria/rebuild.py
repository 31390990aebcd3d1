"""Opening a store's database, and rebuilding it from the logs.

The logs are the truth; the database is a projection of them. A database
that is missing, or written by another schema version, is rebuilt rather than
migrated.

`rebuild` replays every segment into a scratch database beside the real one
(no journal: it is thrown away on failure), builds the big metric index after
the rows are in, then copies it over the real database with SQLite's online
backup in one write transaction: readers see the old database or the new one,
never half. A projector running meanwhile simply continues from the positions
the rebuild committed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DatabaseError

from .db import create_schema, schema_version, writer_engine
from .errors import StoreError
from .projector import FoldStats, Projector, store_size
from .schema import SCHEMA_VERSION, metric_index
from .store import Store

log = logging.getLogger("alexandria.rebuild")

ProgressFactory = Callable[[int], Callable[[int], None]]


def open_database(store: Store, *, catch_up: bool = True) -> Engine:
    """The store's writable engine, its schema current, with everything complete folded in."""
    engine = writer_engine(store.db_path)
    try:
        version = schema_version(engine)
        if version is None and not _has_tables(engine):
            create_schema(engine)
        elif version != SCHEMA_VERSION:
            rebuild(store)
    except DatabaseError as exc:
        if not _is_unreadable(exc.orig):
            raise StoreError(f"cannot open database {store.db_path}: {exc.orig}") from exc
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


def _has_tables(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type='table'").scalar())


def rebuild(store: Store, progress: ProgressFactory | None = None) -> FoldStats:
    """Replay every log into a fresh database and swap it in atomically."""
    scratch = store.root / f".{store.db_path.name}.rebuild-{os.getpid()}"
    for leftover in (scratch, scratch.with_name(scratch.name + "-journal")):
        leftover.unlink(missing_ok=True)
    engine = writer_engine(scratch, bulk=True)
    try:
        create_schema(engine, with_metric_index=False)
        on_bytes = progress(store_size(store)) if progress else None
        stats = Projector(store, engine).catch_up(progress=on_bytes)
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
