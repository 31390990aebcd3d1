"""SQLite: the zero-setup default, one file inside the store.

Writers (the projector) take SQLite's write lock at the start of every transaction (BEGIN IMMEDIATE), so
two projectors can never read the same segment position and both fold from it; one loop does the whole
fold. WAL mode lets readers and the projector run at once. Foreign keys are on. Readers open the file
read-only, with query_only and ATTACH refused.

A rebuild replays every segment into a scratch file beside the real one (no journal: it is thrown away on
failure), builds the big metric index after the rows are in, then copies it over the real database with
SQLite's online backup in one write transaction: readers see the old database or the new one, never half.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, select
from sqlalchemy.dialects import sqlite as dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from ..errors import StoreError
from ..schema import log_segment, meta, metric_index
from .base import READ_ONLY_MESSAGE, Backend, FoldTransaction, Rows, segment_sizes

if TYPE_CHECKING:
    from ..projector import FoldStats
    from ..store import Store

log = logging.getLogger("alexandria.backends.sqlite")

BUSY_TIMEOUT_MS = 120_000


def _refuse_attach(action: int, *_args: object) -> int:
    return sqlite3.SQLITE_DENY if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH) else sqlite3.SQLITE_OK


def _error_code(exc: BaseException | None) -> int | None:
    """The primary SQLite result code of a driver error (the extended code's low byte)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_not_a_database(exc: BaseException | None) -> bool:
    """Only a file that is not (or no longer) an SQLite database is replaced wholesale; a lock or a full
    disk is reported instead."""
    return _error_code(exc) in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)


class SQLiteBackend(Backend):
    dialect = "sqlite"
    placeholder = "?"

    @property
    def path(self) -> Path:
        """The database file (an SQLite database for a store must be a file)."""
        database = self.url.database
        if not database or database == ":memory:":
            raise StoreError(f"an SQLite database for a store must be a file, not {self.url.render_as_string()!r}")
        return Path(database).expanduser()

    # -- engines ------------------------------------------------------------------------------------------------
    def writer_engine(self, *, bulk: bool = False, schema: str | None = None) -> Engine:
        """BEGIN IMMEDIATE, WAL (or no journal at all for a rebuild's scratch file)."""
        return _engine(self.path, readonly=False, bulk=bulk)

    def reader_engine(self) -> Engine:
        path = self.path
        if not path.exists():
            raise StoreError(f"no database at {path}; log a run or run `alex rebuild` first")
        return _engine(path, readonly=True)

    def inspection_engine(self) -> Engine | None:
        """Read-write at the file level (it may recover a crashed writer's journal, as any writer would) but
        with no journal mode set and every write refused (query_only): nothing of the file changes."""
        return _engine(self.path, readonly=False, inspect=True) if self.path.exists() else None

    def describe(self) -> str:
        return str(self.path)

    # -- writing ---------------------------------------------------------------------------------------------
    def insert(self, table: Table) -> Any:
        return dialect.insert(table)

    def bulk_insert(self, conn: Connection, table: Table, columns: tuple[str, ...], rows: Rows) -> None:
        """executemany straight on the DBAPI cursor: the statement comes from the one schema, the rows skip
        SQLAlchemy's per-row processing (plain floats, ints and strings need none)."""
        key = (table.name, columns)
        sql = _INSERT_SQL.get(key)
        if sql is None:
            sql = _INSERT_SQL[key] = str(table.insert().compile(dialect=conn.dialect, column_keys=list(columns)))
        conn.exec_driver_sql(sql, rows)

    def fold_once(
        self, engine: Engine, store: Store, fold: FoldTransaction, budget: int, block: bool
    ) -> tuple[bool, bool]:
        """One transaction: BEGIN IMMEDIATE (the write lock) serializes projectors, so the positions read
        here stay ours until the commit. Nothing is ever skipped."""
        more = False
        with engine.begin() as conn:
            seg = log_segment.c
            known = {
                row.path: (row.offset, row.events, row.attempt or 0)
                for row in conn.execute(select(seg.path, seg.offset, seg.events, seg.attempt))
            }
            for path, rel, size in segment_sizes(store):
                offset, count, attempt = known.get(rel, (0, 0, 0))
                if size <= offset:
                    continue
                if budget <= 0:
                    more = True
                    break
                budget, cut = fold.fold_segment(path, rel, size, offset, count, attempt, budget)
                more = more or cut
            fold.write(conn)
        return more, False

    # -- schema and rebuild ---------------------------------------------------------------------------------
    def has_tables(self, engine: Engine) -> bool:
        with engine.connect() as conn:
            return bool(conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type='table'").scalar())

    def prepare_schema(self, conn: Connection) -> None:
        """Nothing to prepare: the file is the database."""

    def is_unreadable(self, exc: DBAPIError) -> bool:
        return _is_not_a_database(exc.orig)

    def rebuild(self, store: Store, load: Callable[[Engine], FoldStats]) -> FoldStats:
        scratch = store.root / f".{store.db_path.name}.rebuild-{os.getpid()}"
        for leftover in (scratch, scratch.with_name(scratch.name + "-journal")):
            leftover.unlink(missing_ok=True)
        engine = _engine(scratch, readonly=False, bulk=True)
        try:
            self.create_schema(engine, with_metric_index=False)
            stats = load(engine)
            with engine.begin() as conn:
                metric_index.create(conn)
            engine.dispose()
            _swap_in(scratch, store.db_path)
        finally:
            engine.dispose()
            scratch.unlink(missing_ok=True)
        return stats

    # -- reading ---------------------------------------------------------------------------------------------
    def history_sql(self, with_times: bool) -> str:
        columns = "IFNULL(step, 'NaN'), IFNULL(value, 'NaN')" + (", timestamp" if with_times else "")
        return (
            f"SELECT {columns} FROM metric WHERE run_id = ? AND key = ? "  # noqa: S608 - fixed column list
            "ORDER BY step"  # the (run_id, key, step) index already holds this order: no sort
        )

    def buckets(
        self, db: Any, run_id: str, key: str, col: str, where: str, args: list[Any], buckets: int
    ) -> list[tuple[Any, ...]]:
        """x = step: each bucket read as one range of the (run_id, key, step) index, twice as fast as one
        GROUP BY, which sorts the whole range; x = time: the GROUP BY."""
        if col != "step":
            return super().buckets(db, run_id, key, col, where, args, buckets)
        lo = db.execute(f"SELECT min(step) FROM metric WHERE {where}", args).fetchone()[0]  # noqa: S608
        if lo is None:
            return []
        hi = db.execute(f"SELECT max(step) FROM metric WHERE {where}", args).fetchone()[0]  # noqa: S608
        width = (hi - lo) / buckets or 1.0
        # bucket i holds the steps s with floor((s - lo) / width) == i: from lo + ceil(i * width) on
        edges = [lo + math.ceil(i * width) for i in range(buckets)] + [hi + 1]
        # only the bucket's own bounds: with the range's bounds too, SQLite may scan the whole range per bucket
        sql = (
            "SELECT min(value), max(value), count(*), max(step) FROM metric "
            "WHERE run_id = ? AND key = ? AND step >= ? AND step < ?"
        )
        rows = []
        for i in range(buckets):
            if edges[i] >= edges[i + 1]:
                continue
            found = db.execute(sql, [run_id, key, edges[i], edges[i + 1]]).fetchone()
            if found[2]:
                rows.append((i, *found))
        return rows

    def bucket_of(self, col: str, buckets: int) -> str:
        return f"min(CAST(({col} - ?) / ? AS INTEGER), {buckets - 1})"  # x == hi falls in the last bucket

    def _values_at(self, run_id: str, key: str, col: str, chunk: list[Any]) -> tuple[str, list[Any]]:
        marks = ",".join("?" * len(chunk))
        sql = f"SELECT {col}, value FROM metric WHERE run_id = ? AND key = ? AND {col} IN ({marks})"  # noqa: S608
        sql += " ORDER BY timestamp, attempt, id"  # NULLs first in SQLite
        return sql, [run_id, key, *chunk]

    def refusal(self, exc: DBAPIError) -> str | None:
        code = _error_code(exc.orig)
        if code == sqlite3.SQLITE_READONLY:  # query_only, or the file opened read-only
            return READ_ONLY_MESSAGE
        if code == sqlite3.SQLITE_AUTH:  # the authorizer: ATTACH and DETACH
            return "ATTACH and DETACH are refused: queries here read the store's database only"
        return None


_INSERT_SQL: dict[tuple[str, tuple[str, ...]], str] = {}

#: True for a database holding no table, or Alexandria's marker table among them.
_OURS_OR_EMPTY = f"SELECT count(*) = 0 OR max(name = '{meta.name}') FROM sqlite_master WHERE type = 'table'"  # noqa: S608


def _engine(path: Path, *, readonly: bool, bulk: bool = False, inspect: bool = False) -> Engine:
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
        elif inspect:  # `Backend.claim` only looks: no journal mode set
            cur.execute("PRAGMA query_only=ON")
        elif bulk:
            cur.execute("PRAGMA journal_mode=OFF")
            cur.execute("PRAGMA synchronous=OFF")
        else:
            # WAL is written into the file's header: only into a database of ours or one with no tables yet, never
            # into another program's (`Backend.claim` refuses it, byte for byte untouched)
            if cur.execute(_OURS_OR_EMPTY).fetchone()[0]:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if readonly or inspect else "BEGIN IMMEDIATE")

    return engine


def _aside_name(db_path: Path) -> Path:
    """Where an unreadable database is kept: `<name>.corrupt-<time>`, never over an earlier one."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = db_path.with_name(f"{db_path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = db_path.with_name(f"{db_path.name}.corrupt-{stamp}-{n}")
    return aside


def _swap_in(scratch: Path, db_path: Path) -> None:
    src = sqlite3.connect(scratch)
    dst = sqlite3.connect(db_path, timeout=120)
    try:
        dst.execute("PRAGMA busy_timeout=120000")
        src.backup(dst)  # one step: a single write transaction on the destination
        if dst.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            dst.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:
        if not _is_not_a_database(exc):
            raise StoreError(f"cannot replace database {db_path}: {exc}") from exc
        # The old file is no SQLite database, so nobody can be reading it (and `Backend.claim` allowed it:
        # the logs are there to rebuild from): keep it aside for inspection and move the new one in.
        src.close()
        dst.close()
        aside = _aside_name(db_path)
        log.warning("kept the unreadable database %s as %s (%s)", db_path, aside, exc)
        os.replace(db_path, aside)
        for suffix in ("-wal", "-shm"):
            db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
        os.replace(scratch, db_path)
        with sqlite3.connect(db_path) as db:
            db.execute("PRAGMA journal_mode=WAL")
        db.close()
    finally:
        src.close()
        dst.close()
