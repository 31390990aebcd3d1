"""SQLite: the zero-setup default, one file inside the store.

Writers (the projector) take SQLite's write lock at the start of every transaction (BEGIN IMMEDIATE), so
two projectors can never read the same segment position and both fold from it; one loop does the whole
fold. WAL mode lets readers and the projector run at once, and the projector keeps its connection open from
fold to fold, so that a client reading without a busy timeout never finds the file locked
(`_keep_connection` says why). Foreign keys are on. Readers open the file
read-only, with query_only, and SQLite's authorizer allows their statements to read and nothing else
(`_ReaderConnection`, `_authorize`): a user's query cannot write, attach files, change settings, control
transactions or load extensions, whichever statement it is.

A rebuild replays every segment into a scratch file beside the real one (no journal: it is thrown away on
failure), builds the big metric index after the rows are in, then copies it over the real database with
SQLite's online backup in one write transaction: readers see the old database or the new one, never half.
The planner's statistics are taken then, and retaken by the fold as the metric table grows (`refresh_statistics`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, select
from sqlalchemy.dialects import sqlite as dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import NullPool, QueuePool

from ..errors import ReadOnlyError, StoreError
from ..schema import log_segment, meta, metric_index
from .base import READ_ONLY_MESSAGE, Backend, CaseSensitiveLike, FoldTransaction, Rows, segment_sizes

if TYPE_CHECKING:
    from ..projector import FoldStats
    from ..store import Store

log = logging.getLogger("alexandria.backends.sqlite")

#: Seconds a connection waits for another process's lock before it gives up; $ALEXANDRIA_BUSY_TIMEOUT.
BUSY_TIMEOUT = float(os.environ.get("ALEXANDRIA_BUSY_TIMEOUT", "120"))
BUSY_TIMEOUT_MS = round(BUSY_TIMEOUT * 1000)


#: PRAGMAs a reader may run with any argument: the argument names what to describe (a table, an index).
NAMING_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
    | {"foreign_key_check", "integrity_check", "quick_check"}
)
#: PRAGMAs a reader may run without an argument only (with one, most of them change a setting).
STATUS_PRAGMAS = frozenset(
    {"application_id", "collation_list", "compile_options", "data_version", "database_list", "encoding"}
    | {"foreign_keys", "freelist_count", "function_list", "journal_mode", "module_list", "page_count"}
    | {"page_size", "pragma_list", "query_only", "read_uncommitted", "schema_version", "user_version"}
)
#: SQL functions with effects outside the query: loading code, registering a tokenizer by pointer, and the
#: file functions of SQLite's shell and fileio extension.
UNSAFE_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit", "lsdir"})

_READING = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})
_SCHEMA_TABLES = ("sqlite_master", "sqlite_temp_master", "sqlite_schema", "sqlite_temp_schema")
_TABLE_WRITES = {sqlite3.SQLITE_INSERT: "INSERT", sqlite3.SQLITE_UPDATE: "UPDATE", sqlite3.SQLITE_DELETE: "DELETE"}
_SAVEPOINTS = {"BEGIN": "SAVEPOINT", "RELEASE": "RELEASE", "ROLLBACK": "ROLLBACK TO"}
_ACTIONS = {
    getattr(sqlite3, name): name.removeprefix("SQLITE_").replace("_", " ")
    for name in dir(sqlite3)
    if name.startswith(("SQLITE_CREATE_", "SQLITE_DROP_"))
    or name in ("SQLITE_ALTER_TABLE", "SQLITE_REINDEX")
    or name in ("SQLITE_ANALYZE", "SQLITE_ATTACH", "SQLITE_DETACH")
}


def like_to_glob(pattern: str) -> str:
    """A LIKE pattern (`%`, `_`, a backslash escaping the next character) as the GLOB pattern matching the
    same text with case respected: `*`, `?`, and GLOB's own `*?[` taken literally in brackets."""
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            ch = next(chars, "\\")
            out.append(f"[{ch}]" if ch in "*?[" else ch)
        elif ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        else:
            out.append(f"[{ch}]" if ch in "*?[" else ch)
    return "".join(out)


@compiles(CaseSensitiveLike, "sqlite")
def _glob(element: CaseSensitiveLike, compiler: Any, **kw: Any) -> str:
    """SQLite's LIKE ignores ASCII case; its GLOB does not."""
    return str(compiler.process(element.column.op("GLOB")(like_to_glob(element.pattern)), **kw))


def refused_message(what: str) -> str:
    """A reader's refusal: what was refused, and why."""
    return f"{what} is refused: the database is opened read-only here (queries only)"


def _describe(action: int, arg1: str | None, arg2: str | None) -> str:
    """What a denied action is, in the user's SQL words."""
    if action == sqlite3.SQLITE_PRAGMA:
        return f"PRAGMA {arg1}" + ("" if arg2 is None else f"={arg2}")
    if action == sqlite3.SQLITE_FUNCTION:
        return f"the function {arg2}()"
    if action == sqlite3.SQLITE_TRANSACTION:
        return str(arg1)
    if action == sqlite3.SQLITE_SAVEPOINT:
        return f"{_SAVEPOINTS.get(str(arg1), arg1)} {arg2}"
    if action in _TABLE_WRITES:
        if arg1 in _SCHEMA_TABLES:  # SQLite asks this first for CREATE and DROP
            return "CREATE" if action == sqlite3.SQLITE_INSERT else "DROP"
        return f"{_TABLE_WRITES[action]} on {arg1}"
    return _ACTIONS.get(action, f"action {action}")


class _ReaderConnection(sqlite3.Connection):
    """A read-only connection whose authorizer allows reading and nothing else.

    Allowed: SELECT and reading columns (views, CTEs, recursive CTEs, table-valued functions), every SQL
    function but UNSAFE_FUNCTIONS, the PRAGMAs of NAMING_PRAGMAS and STATUS_PRAGMAS (the latter without an
    argument). Transaction control is the engine's own: its BEGIN (`own_transaction`) and the driver's
    COMMIT and ROLLBACK pass, the same statements in a user's SQL do not. Everything else is denied, and the
    first thing denied is kept in `refused` for the error message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused: str | None = None
        self._own = False

    def authorize(self) -> None:
        self.set_authorizer(self._authorize)

    def _authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
        if action in _READING:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() not in UNSAFE_FUNCTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA:
            name = str(arg1).lower()
            if name in NAMING_PRAGMAS or (name in STATUS_PRAGMAS and arg2 is None):
                return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_TRANSACTION and self._own:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and arg1 in _SCHEMA_TABLES:
            # SQLite asks this while it sets up a table-valued function (json_each, pragma_table_info):
            # answered "ignore", the update is never made (the schema table is not writable anyway)
            return sqlite3.SQLITE_IGNORE
        if self.refused is None or (self.refused in ("CREATE", "DROP") and action in _ACTIONS):
            self.refused = _describe(action, arg1, arg2)  # the statement's own action over its schema write
        return sqlite3.SQLITE_DENY

    @contextmanager
    def _engines_own(self) -> Iterator[None]:
        self._own = True
        try:
            yield
        finally:
            self._own = False

    def own_transaction(self, statement: str) -> None:
        """Run the engine's own transaction statement (BEGIN). Through `executescript`, which keeps no
        prepared statement: the authorizer judges a statement when it is prepared, and a cached one would
        let the same text pass unjudged later."""
        with self._engines_own():
            self.executescript(statement)

    def commit(self) -> None:
        with self._engines_own():
            super().commit()

    def rollback(self) -> None:
        with self._engines_own():
            super().rollback()


def _first_keyword(sql: str) -> str:
    """The statement's first keyword, after blanks and comments, upper-cased."""
    pos = 0
    while pos < len(sql):
        if sql[pos].isspace():
            pos += 1
        elif sql.startswith("--", pos):
            end = sql.find("\n", pos)
            pos = len(sql) if end < 0 else end + 1
        elif sql.startswith("/*", pos):
            end = sql.find("*/", pos + 2)
            pos = len(sql) if end < 0 else end + 2
        else:
            break
    end = pos
    while end < len(sql) and (sql[end].isalpha() or sql[end] == "_"):
        end += 1
    return sql[pos:end].upper()


def _error_code(exc: BaseException | None) -> int | None:
    """The primary SQLite result code of a driver error (the extended code's low byte)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_not_a_database(exc: BaseException | None) -> bool:
    """Only a file that is not (or no longer) an SQLite database is replaced wholesale; a lock or a full
    disk is reported instead."""
    return _error_code(exc) in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)


#: What a user is told for errors of the database's surroundings, by SQLite's primary result code. A plain
#: SQLITE_READONLY on a reader is a refused write (`refusal`); on the projector it is a read-only file.
_UNUSABLE = {
    sqlite3.SQLITE_FULL: "the disk is full; free space, then run the command again",
    sqlite3.SQLITE_READONLY: (
        "the database file or its folder is read-only to this user, and new log lines must be folded into it; "
        "run the command as a user who may write the store"
    ),
    sqlite3.SQLITE_BUSY: (
        f"the database is locked by another process, which held the lock longer than the busy timeout "
        f"({BUSY_TIMEOUT:g} s, $ALEXANDRIA_BUSY_TIMEOUT); wait for that process to finish or stop it, then run "
        "the command again"
    ),
    sqlite3.SQLITE_LOCKED: "the database is locked; run the command again",
    sqlite3.SQLITE_NOTADB: "the file is not an SQLite database; move it away and run `alex rebuild`",
    sqlite3.SQLITE_CORRUPT: "the database file is damaged; move it away and run `alex rebuild`",
    sqlite3.SQLITE_CANTOPEN: "the database file cannot be opened; check that its folder exists and may be written",
    sqlite3.SQLITE_IOERR: "the disk failed to read or write the database; check the disk, then run `alex rebuild`",
    sqlite3.SQLITE_PERM: "the operating system refused access to the database file; check its permissions",
    sqlite3.SQLITE_NOMEM: "SQLite ran out of memory",
}


#: Rows a table needs before its statistics matter, and the growth since they were taken that retakes them.
STATISTICS_FLOOR = 10_000
STATISTICS_GROWTH = 10
#: Rows of each index ANALYZE samples (SQLite's `analysis_limit`): statistics good enough to choose plans,
#: in milliseconds whatever the table's size.
ANALYSIS_LIMIT = 2_000


def analyze(conn: Connection) -> None:
    """Takes the query planner's statistics (sqlite_stat1). Without them SQLite guesses that every index is as
    selective as the next, and a join on the metric table at a run's highest step can take seconds instead of
    milliseconds (PostgreSQL analyzes by itself; SQLite never does)."""
    conn.exec_driver_sql(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
    conn.exec_driver_sql("ANALYZE")


def refresh_statistics(conn: Connection) -> None:
    """Retakes the statistics, in the fold's own transaction, once the metric table has grown
    `STATISTICS_GROWTH` times since they were taken (or has `STATISTICS_FLOOR` rows and none were taken):
    a few cheap lookups per fold, an ANALYZE a handful of times over a store's life."""
    rows = conn.exec_driver_sql("SELECT max(id) FROM metric_point").scalar() or 0  # the rowid: a b-tree's last key
    if rows < STATISTICS_FLOOR:
        return
    has_stats = conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").scalar()
    taken = 0
    if has_stats:
        stat = conn.exec_driver_sql("SELECT stat FROM sqlite_stat1 WHERE tbl = 'metric_point' LIMIT 1").scalar()
        taken = int(str(stat).split()[0]) if stat else 0
    if not taken or rows >= STATISTICS_GROWTH * taken:
        log.info("metric_point at %d rows (statistics taken at %d): analyzing", rows, taken)
        analyze(conn)


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
        return self.translate_errors(_engine(path, readonly=True))

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
                row.path: (row.offset, row.events, row.attempt or 0, row.rank)
                for row in conn.execute(select(seg.path, seg.offset, seg.events, seg.attempt, seg.rank))
            }
            for path, rel, size in segment_sizes(store):
                offset, count, attempt, rank = known.get(rel, (0, 0, 0, None))
                if size <= offset:
                    continue
                if budget <= 0:
                    more = True
                    break
                budget, cut = fold.fold_segment(path, rel, size, offset, count, attempt, budget, rank)
                more = more or cut
            fold.write(conn)
            refresh_statistics(conn)
        return more, False

    def lock_for_purge(self, conn: Connection, run_ids: list[str]) -> None:
        """Nothing more to take: the transaction's BEGIN IMMEDIATE is the one write lock every fold takes."""

    # -- schema and rebuild ---------------------------------------------------------------------------------
    def has_tables(self, engine: Engine) -> bool:
        with engine.connect() as conn:
            return bool(conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type='table'").scalar())

    def prepare_schema(self, conn: Connection) -> None:
        """Nothing to prepare: the file is the database."""

    def is_unreadable(self, exc: DBAPIError) -> bool:
        return _is_not_a_database(exc.orig)

    def unusable(self, exc: DBAPIError) -> str | None:
        code = _error_code(exc.orig)
        if code == sqlite3.SQLITE_READONLY and getattr(exc.orig, "sqlite_errorcode", 0) != sqlite3.SQLITE_READONLY:
            code = sqlite3.SQLITE_CANTOPEN  # recovery, a lock or a directory it cannot write: not a refused write
        reason = _UNUSABLE.get(code) if code is not None else None
        return None if reason is None else f"{reason} ({exc.orig})"

    def rebuild(self, store: Store, load: Callable[[Engine], FoldStats]) -> FoldStats:
        scratch = store.root / f".{store.db_path.name}.rebuild-{os.getpid()}"
        for leftover in (scratch, scratch.with_name(scratch.name + "-journal")):
            leftover.unlink(missing_ok=True)
        _remove_abandoned_scratch(store)
        engine = _engine(scratch, readonly=False, bulk=True)
        try:
            self.create_schema(engine, with_metric_index=False)
            stats = load(engine)
            with engine.begin() as conn:
                metric_index.create(conn)
                analyze(conn)
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
            "ORDER BY step"  # the (series, step) index already holds this order: no sort
        )

    def buckets(
        self, db: Any, run_id: str, key: str, col: str, where: str, args: list[Any], buckets: int
    ) -> list[tuple[Any, ...]]:
        """x = step over a long range: each bucket read as one range of the (series, step) index, twice
        as fast as one GROUP BY, which sorts the whole range; x = time, or a range of fewer than
        `RANGE_READS_FROM` steps per bucket: the GROUP BY (a statement per bucket costs more than sorting a few
        thousand rows: 200 runs of 6,000 steps took 120,000 statements)."""
        if col != "step":
            return super().buckets(db, run_id, key, col, where, args, buckets)
        lo = db.execute(f"SELECT min(step) FROM metric WHERE {where}", args).fetchone()[0]  # noqa: S608
        if lo is None:
            return []
        hi = db.execute(f"SELECT max(step) FROM metric WHERE {where}", args).fetchone()[0]  # noqa: S608
        if hi - lo + 1 < RANGE_READS_FROM * buckets:
            return super().buckets(db, run_id, key, col, where, args, buckets)
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

    def execute_sql(self, engine: Engine, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """VACUUM (and VACUUM INTO a file) is the one statement SQLite prepares without asking the
        authorizer anything: refused by its keyword."""
        if _first_keyword(sql) == "VACUUM":
            raise ReadOnlyError(refused_message("VACUUM"))
        return super().execute_sql(engine, sql)

    def refusal(self, exc: DBAPIError, driver: Any) -> str | None:
        code = _error_code(exc.orig)
        refused = getattr(driver, "refused", None)  # what the reader's authorizer denied (a fresh connection)
        if refused is not None or code == sqlite3.SQLITE_AUTH:
            return refused_message(refused or "this statement")
        if code == sqlite3.SQLITE_READONLY:  # query_only, or the file opened read-only
            return READ_ONLY_MESSAGE
        view = _VIEW_WRITE.search(str(exc.orig))  # SQLite refuses a write on a view before asking the authorizer
        if view is not None:
            verb = _WRITE_VERB.search(str(exc.statement or ""))
            return refused_message(f"{verb.group(1).upper() if verb else 'a write'} on {view.group(1)}")
        return None


_INSERT_SQL: dict[tuple[str, tuple[str, ...]], str] = {}

#: SQLite's error for a write on a view (the seed's `metric` is one), and the write a statement makes.
_VIEW_WRITE = re.compile(r"cannot modify (\S+) because it is a view")
_WRITE_VERB = re.compile(r"\b(insert|update|delete|replace)\b", re.IGNORECASE)

#: Steps per bucket from which `SQLiteBackend.buckets` reads each bucket as its own index range.
RANGE_READS_FROM = 256

#: True for a database holding no table, or Alexandria's marker table among them.
_OURS_OR_EMPTY = f"SELECT count(*) = 0 OR max(name = '{meta.name}') FROM sqlite_master WHERE type = 'table'"  # noqa: S608


def _remove_abandoned_scratch(store: Store) -> None:
    """Scratch files of rebuilds killed before they could remove their own (kill -9, a power cut): those whose
    process is gone. One of a rebuild still running (its pid alive) is left to it."""
    pattern = re.compile(re.escape(f".{store.db_path.name}.rebuild-") + r"(\d+)(-journal)?")
    for leftover in store.root.glob(f".{store.db_path.name}.rebuild-*"):
        found = pattern.fullmatch(leftover.name)
        if found is None or int(found.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:
            log.info("removing %s, left by a rebuild that was killed", leftover.name)
            leftover.unlink(missing_ok=True)
        except (PermissionError, OverflowError):
            continue  # a process of another user has that pid (or no process can): not ours to judge


def _file_identity(path: Path) -> tuple[int, int] | None:
    """Which file is at `path` now (device, inode); None: no file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _keep_connection(engine: Engine, path: Path) -> None:
    """The projector's engine keeps its connection open from fold to fold, for as long as the engine lives.

    Why (the cause of "database is locked" in SQL clients): a reader that opens the file without a busy
    timeout (the plain `sqlite3` shell, any SQL client) got SQLITE_BUSY on one query in ten while `alex
    watch` folded, because the projector opened and closed a connection for every fold. Closing a
    read-write connection to a WAL database makes SQLite try for an EXCLUSIVE lock on the file (to
    checkpoint and delete the WAL if it is the last connection): the attempt takes the PENDING lock byte
    first and keeps it until the file is closed (SQLite 3.40), and a last connection holds EXCLUSIVE through
    the whole checkpoint and WAL deletion. Either way a new reader's SHARED lock is refused at once, and the
    next opener of a deleted WAL rebuilds the -shm index besides. A connection kept open is never closed
    between folds, and while it is open no other connection's close is the last one. (Read-only connections,
    which every reader of the library opens, never try for the lock.)

    A file deleted or replaced under the engine (`rm alexandria.db`, a file moved over it) is not written
    through a connection to the old one: before each use the connection is checked against the file at
    `path`, and a stale one is reopened (SQLAlchemy's disconnect handling), so the fold meets the file there
    now and the watcher rebuilds what it must (watch.py). The WAL and its index left at `path` belong to the
    old file (SQLite does not checkpoint into a moved file), and paired with the new one they would make it
    read as the old database: the WAL this connection had open is removed before the file is reopened
    (a file moved in with a WAL of its own keeps it)."""
    wal, shm = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))

    @event.listens_for(engine, "do_connect")
    def _before_open(_dialect: Any, record: Any, _cargs: Any, _cparams: Any) -> None:
        record.info["file"] = _file_identity(path)  # before opening: a file swapped meanwhile only reopens

    @event.listens_for(engine, "connect")
    def _opened(_dbapi_connection: Any, record: Any) -> None:
        if record.info.get("file") is None:  # the file this connection created
            record.info["file"] = _file_identity(path)

    @event.listens_for(engine, "checkin")
    def _used(_dbapi_connection: Any, record: Any) -> None:
        if record.info.get("file") == _file_identity(path):  # its WAL exists once it has read or written
            record.info["wal"] = _file_identity(wal)

    @event.listens_for(engine, "checkout")
    def _same_file(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.get("file") == _file_identity(path):
            return
        dbapi_connection.close()
        if record.info.get("wal") is not None and record.info["wal"] == _file_identity(wal):
            log.info("%s was replaced or deleted; removing the old file's WAL and its index", path)
            for sidecar in (wal, shm):
                sidecar.unlink(missing_ok=True)
        raise DisconnectionError(f"{path} was deleted or replaced since this connection opened it")


def _engine(path: Path, *, readonly: bool, bulk: bool = False, inspect: bool = False) -> Engine:
    url = f"sqlite:///file:{path}?mode=ro&uri=true" if readonly else f"sqlite:///{path}"
    connect_args: dict[str, Any] = {"timeout": BUSY_TIMEOUT_MS / 1000}
    if readonly:
        connect_args["factory"] = _ReaderConnection
    keep = not (readonly or bulk or inspect)  # the projector's own engine (`_keep_connection`)
    if keep:
        connect_args["check_same_thread"] = False  # the pool hands it to whichever thread folds next
        pool: dict[str, Any] = {"poolclass": QueuePool, "pool_size": 1, "max_overflow": -1}
    else:
        pool = {"poolclass": NullPool}
    engine = create_engine(url, connect_args=connect_args, **pool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        pragmas = [f"busy_timeout={BUSY_TIMEOUT_MS}", "foreign_keys=ON"]
        if readonly or inspect:  # inspect: `Backend.claim` only looks, and sets no journal mode
            pragmas.append("query_only=ON")
        elif bulk:
            pragmas += ["journal_mode=OFF", "synchronous=OFF"]
        else:
            # WAL is written into the file's header: only into a database of ours or one with no tables yet, never
            # into another program's (`Backend.claim` refuses it, byte for byte untouched)
            if dbapi_connection.execute(_OURS_OR_EMPTY).fetchone()[0]:
                pragmas.append("journal_mode=WAL")
            pragmas.append("synchronous=NORMAL")
        # executescript keeps no prepared statements: none of these passes a reader's authorizer later
        dbapi_connection.executescript("".join(f"PRAGMA {pragma};" for pragma in pragmas))
        if isinstance(dbapi_connection, _ReaderConnection):
            dbapi_connection.authorize()  # last: from here on, reading only

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if readonly:
            conn.connection.driver_connection.own_transaction("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN" if inspect else "BEGIN IMMEDIATE")

    if keep:
        _keep_connection(engine, path)  # its listeners after the pragmas'
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
    dst = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT)
    try:
        dst.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
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
