"""PostgreSQL: for a team whose projectors run on several nodes (a `postgresql://` URL; psycopg 3).

The tables live in one schema, `alexandria` unless the URL names another as the first entry of its search
path (`?options=-csearch_path=myschema`); every connection's search_path is set to it, so the same
unqualified SQL runs on both backends. Writers run in READ COMMITTED and coordinate with row and advisory
locks (`fold_once`, `schema_lock`, `lock_runs`); the reader's sessions are read-only
(`SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY`).

A rebuild replays every segment into a scratch schema (`<live>_rebuild_<random hex>`, the same tables,
indexes and views), builds the metric index, then in ONE transaction renames the live schema away and the
scratch schema to the live name; the old one is dropped after that commit. Every statement of a reader
resolves the live name either before the rename commits (old tables, complete) or after it (new tables,
complete); a fold transaction holds the schema lock shared and the swap holds it exclusive, so no fold
spans the swap.
"""

from __future__ import annotations

import logging
import re
import secrets
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, select
from sqlalchemy.dialects import postgresql as dialect
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from ..errors import StoreError
from ..schema import log_segment, metadata, metric_index, run
from .base import READ_ONLY_MESSAGE, Backend, FoldTransaction, Rows, segment_sizes

if TYPE_CHECKING:
    from ..projector import FoldStats
    from ..store import Store

log = logging.getLogger("alexandria.backends.postgres")

#: The schema holding the tables when the URL names none.
DEFAULT_SCHEMA = "alexandria"
#: A writer session idle inside a transaction for this long is ended by the server, which releases its
#: locks: a projector frozen mid-fold (stopped, partitioned away) cannot hold segments forever.
IDLE_IN_TRANSACTION = "10min"
#: SQLSTATE of a write in a read-only transaction.
READ_ONLY_SQL_TRANSACTION = "25006"
#: PostgreSQL's refusal of a write on a view it cannot update (the seed's `metric` is a join), checked before
#: the transaction's read-only state.
VIEW_NOT_UPDATABLE = "55000"

_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*((?:\\ |[^ ])+)")

#: What a user is told for a database a command cannot use, by the server's SQLSTATE. 25006 on a reader is
#: a refused write (`refusal`); on the projector it is a server that takes only reads.
_UNUSABLE = {
    "53100": "the database server's disk is full; free space on the server, then run the command again",
    "53200": "the database server is out of memory; run the command again when it has memory to spare",
    "53300": (
        "the server has no connection left for this user or database (max_connections, or a CONNECTION "
        "LIMIT); close idle clients or raise the limit, then run the command again"
    ),
    READ_ONLY_SQL_TRANSACTION: (
        "the server takes only reads (a standby, or default_transaction_read_only) and new log lines must be "
        "folded into it; point the URL at the primary server"
    ),
    "42501": (
        "the user {user} lacks a privilege Alexandria needs (to create schema {schema} and its tables in the "
        "database, to read and write them); grant it, or connect as a user that has it"
    ),
    "3D000": "the database {database} does not exist; create it (`createdb {database}`) or correct the URL",
    "28000": "the server does not accept the user {user}; correct the URL's user, or create the role",
    "28P01": "the server refused the password; correct the password (in the URL, or ~/.pgpass)",
    "57P01": "the server was shut down; run the command again when it is back",
    "57P03": "the server is starting up or shutting down; run the command again when it is up",
}
#: A connection that fails while it is made has no SQLSTATE (libpq gives only words): the server's words
#: for each (its messages are in English unless lc_messages says otherwise), else it could not be reached.
_AT_CONNECT = (
    (re.compile(r'database ".*" does not exist'), "3D000"),
    (re.compile(r'role ".*" does not exist|no pg_hba\.conf entry'), "28000"),
    (re.compile(r"password authentication failed|password is required|no password supplied"), "28P01"),
    (re.compile(r"too many clients|too many connections|remaining connection slots are reserved"), "53300"),
    (re.compile(r"the database system is (starting up|shutting down|in recovery mode)"), "57P03"),
)
UNREACHABLE = (
    "the server cannot be reached (or the connection to it broke); check that it is running and that the "
    "URL's host and port are right, then run the command again"
)


def driver_url(url: URL) -> URL:
    """The URL with psycopg 3 as its driver: the projector uses its own API (COPY FROM STDIN, binary
    results), so a bare scheme or another driver's name is taken to mean it."""
    driver = url.get_driver_name()
    if "+" not in url.drivername or driver in ("psycopg2", "psycopg2cffi", "pg8000", "asyncpg"):
        driver = "psycopg"
    return url.set(drivername=f"postgresql+{driver}")


def live_schema(url: URL) -> str:
    """The schema holding a store's tables: the first schema of the search path the URL sets
    (`?options=-csearch_path=myschema`), else `alexandria`."""
    options = url.query.get("options")
    text = " ".join(options) if isinstance(options, tuple) else (options or "")
    found = _SEARCH_PATH.search(text)
    if found:
        for name in found.group(1).replace("\\ ", " ").split(","):
            name = name.strip().strip('"')
            if name and name != "$user":
                return name
    return DEFAULT_SCHEMA


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connection_schema(conn: Connection) -> str:
    """The schema a connection's search path points at."""
    schema = conn.info.get("alexandria_schema")
    if schema is None:  # a connection not made by this module's engines
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar() or DEFAULT_SCHEMA
    return str(schema)


class PostgresBackend(Backend):
    dialect = "postgresql"
    placeholder = "%s"
    max_parameters = 100_000  # one array parameter, not one placeholder per value

    def __init__(self, url: URL) -> None:
        super().__init__(driver_url(url))

    # -- engines ------------------------------------------------------------------------------------------------
    def writer_engine(self, *, bulk: bool = False, schema: str | None = None) -> Engine:
        """READ COMMITTED sessions whose search_path is the store's schema, or `schema` (a rebuild's scratch)."""
        return self._engine(readonly=False, schema=schema, bulk=bulk)

    def reader_engine(self) -> Engine:
        return self.translate_errors(self._engine(readonly=True))

    def _engine(self, *, readonly: bool, schema: str | None = None, bulk: bool = False) -> Engine:
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise StoreError("a PostgreSQL database needs psycopg 3: pip install 'alexandria[postgres]'") from exc
        schema = schema or live_schema(self.url)
        engine = create_engine(self.url, pool_pre_ping=True, pool_size=2, max_overflow=8)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, record: Any) -> None:
            record.info["alexandria_schema"] = schema
            with dbapi_connection.cursor() as cur:
                cur.execute(f"SET search_path TO {quote_ident(schema)}")
                if readonly:
                    cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                else:
                    cur.execute(f"SET idle_in_transaction_session_timeout TO '{IDLE_IN_TRANSACTION}'")
                if bulk:  # a rebuild's scratch schema: thrown away if the server dies before the swap
                    cur.execute("SET synchronous_commit TO off")
            dbapi_connection.commit()

        return engine

    def describe(self) -> str:
        return f"schema {live_schema(self.url)} of {self.url.render_as_string(hide_password=True)}"

    # -- writing ---------------------------------------------------------------------------------------------
    def insert(self, table: Table) -> Any:
        return dialect.insert(table)

    def bulk_insert(self, conn: Connection, table: Table, columns: tuple[str, ...], rows: Rows) -> None:
        """COPY FROM STDIN in the fold's transaction (the table is found through the connection's search_path).
        The driver's own API: its errors (a full disk) are wrapped as SQLAlchemy wraps every other statement's,
        so the fold's callers meet one kind of database error."""
        import psycopg

        names = ", ".join(quote_ident(c) for c in columns)
        sql = f"COPY {quote_ident(table.name)} ({names}) FROM STDIN"
        driver: Any = conn.connection.driver_connection
        try:
            with driver.cursor() as cur, cur.copy(sql) as copy:
                write = copy.write_row
                for row in rows:
                    write(row)
        except psycopg.Error as exc:
            raise DBAPIError.instance(sql, None, exc, psycopg.Error, dialect=conn.dialect) from exc

    def lock_for_purge(self, conn: Connection, run_ids: list[str]) -> None:
        """What a fold transaction takes, in its order: the schema lock (shared), the rows of the runs'
        segments (waiting, in path order), then the runs' advisory locks."""
        schema_lock(conn, exclusive=False)
        seg = log_segment.c
        conn.execute(select(seg.path).where(seg.run_id.in_(run_ids)).order_by(seg.path).with_for_update()).all()
        lock_runs(conn, run_ids)

    def fold_once(
        self, engine: Engine, store: Store, fold: FoldTransaction, budget: int, block: bool
    ) -> tuple[bool, bool]:
        """Several projectors (one per node, or a restarted one while the old one still runs) share the work
        segment by segment. First, in a transaction of its own, every segment on disk gets its log_segment
        row (offset 0; INSERT ... ON CONFLICT DO NOTHING), so that there is a row to lock. Then, in the fold
        transaction: the rows of the segments with new bytes are locked with SELECT ... FOR UPDATE SKIP
        LOCKED (in path order, a chunk at a time, about `budget` bytes in all); a row another projector
        holds is skipped, it is folding that segment. The offset read with the lock is the committed one,
        and no other projector can move it until we commit: the lines after it are read, their rows and the
        new offsets are written, and all of it commits together (killed midway, the server rolls it back
        and the locks go). With `block`, the rows are waited for instead of skipped.

        Rows of a run that several segments touch (run, tag, parameter, artifact) are written under the
        run's advisory lock (`lock_runs`), taken after every row lock and in one fixed order; the fold
        rules (folding.py) make the result independent of which projector commits first."""
        segs = [(path, rel, size) for path, rel, size in segment_sizes(store) if size]
        more = skipped = False
        seg = log_segment.c
        with engine.connect() as conn:
            with conn.begin():
                schema_lock(conn, exclusive=False)
                known = {row.path: row.offset for row in conn.execute(select(seg.path, seg.offset))}
                missing = [{"path": r, "run_id": store.run_id_of(r), "offset": 0, "events": 0} for _, r, _ in segs]
                missing = [row for row in missing if row["path"] not in known]
                if missing:
                    conn.execute(self.insert(log_segment).on_conflict_do_nothing(), missing)
            candidates = [(p, r, size) for p, r, size in segs if size > known.get(r, 0)]
            with conn.begin():
                schema_lock(conn, exclusive=False)  # no rebuild swaps the schema under this transaction
                i = 0
                while i < len(candidates):
                    if budget <= 0:
                        more = True
                        break
                    chunk: list[tuple[Path, str, int]] = []
                    estimate = 0
                    while i < len(candidates) and len(chunk) < 64 and estimate < budget:
                        chunk.append(candidates[i])
                        estimate += candidates[i][2] - known.get(candidates[i][1], 0)
                        i += 1
                    rels = [r for _, r, _ in chunk]
                    locked = {
                        row.path: row
                        for row in conn.execute(
                            select(seg.path, seg.offset, seg.events, seg.attempt, seg.rank)
                            .where(seg.path.in_(rels))
                            .order_by(seg.path)
                            .with_for_update(skip_locked=not block)
                        )
                    }
                    absent = [r for r in rels if r not in locked]
                    if absent:
                        present = set(conn.execute(select(seg.path).where(seg.path.in_(absent))))
                        skipped = skipped or bool(present)
                        more = more or len(present) < len(absent)  # no row (a rebuild swapped the schema): again
                    for path, rel, size in chunk:
                        row = locked.get(rel)
                        if row is None or size <= row.offset:
                            continue
                        if budget <= 0:
                            more = True
                            break
                        budget, cut = fold.fold_segment(
                            path, rel, size, row.offset, row.events, row.attempt or 0, budget, row.rank
                        )
                        more = more or cut
                running = set(conn.execute(select(run.c.id).where(run.c.status == "running")).scalars())
                held = lock_runs(conn, fold.runs, running - fold.runs)
                fold.write(conn, running & held)
        return more, skipped

    # -- schema and rebuild ---------------------------------------------------------------------------------
    def has_tables(self, engine: Engine) -> bool:
        with engine.connect() as conn:
            sql = "SELECT count(*) FROM information_schema.tables WHERE table_schema = %(schema)s"
            return bool(conn.exec_driver_sql(sql, {"schema": connection_schema(conn)}).scalar())

    def prepare_schema(self, conn: Connection) -> None:
        # Two processes opening an empty database at once: one creates, the other finds it made.
        schema_lock(conn, exclusive=True)
        conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(connection_schema(conn))}")

    def rebuild(self, store: Store, load: Callable[[Engine], FoldStats]) -> FoldStats:
        live_engine = self.writer_engine()
        try:
            with live_engine.connect() as conn:
                live = connection_schema(conn)
            scratch = _scratch_name(live, "rebuild")
            engine = self.writer_engine(bulk=True, schema=scratch)
            swapped = False
            try:
                self.create_schema(engine, with_metric_index=False)
                with engine.begin() as conn:  # checked row by row while loading, the metric foreign key halves the rate
                    foreign_keys = _drop_foreign_keys(conn, "metric_point")
                stats = load(engine)
                with engine.begin() as conn:
                    metric_index.create(conn)
                    for definition in foreign_keys:  # validated in one pass over the loaded rows
                        conn.exec_driver_sql(f"ALTER TABLE metric_point ADD {definition}")
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

    # -- reading ---------------------------------------------------------------------------------------------
    def history_sql(self, with_times: bool) -> str:
        # Steps are BIGINT here, and NULLs sort last unless told: the same order as SQLite's (no step first).
        columns = "COALESCE(CAST(step AS float8), 'NaN'), COALESCE(value, 'NaN')"
        columns += ", timestamp" if with_times else ""
        return f"SELECT {columns} FROM metric WHERE run_id = %s AND key = %s ORDER BY step NULLS FIRST, id"  # noqa: S608

    def fast_rows(self, driver: Any, sql: str, args: tuple[Any, ...]) -> Any:
        # binary results: float8 straight from the wire (a third faster than parsing text)
        return driver.execute(sql, args, binary=True)

    def bucket_of(self, col: str, buckets: int) -> str:
        # CAST rounds here, SQLite's truncates: floor (x >= lo, so the same); LEAST is SQLite's min(a, b)
        return f"LEAST(CAST(FLOOR(({col} - %s) / CAST(%s AS float8)) AS integer), {buckets - 1})"

    def _values_at(self, run_id: str, key: str, col: str, chunk: list[Any]) -> tuple[str, list[Any]]:
        # an array of the column's own type: PostgreSQL hashes it (a mixed-type ANY is a linear scan)
        array = "bigint[]" if col == "step" else "float8[]"
        sql = f"SELECT {col}, value FROM metric WHERE run_id = %s AND key = %s"  # noqa: S608
        order = "ORDER BY timestamp NULLS FIRST, attempt NULLS FIRST, id"  # the last point of each x last
        return f"{sql} AND {col} = ANY(CAST(%s AS {array})) {order}", [run_id, key, chunk]

    def raw(self, conn: Connection) -> Connection:
        return conn.execution_options(no_parameters=True)  # a % in a user's SQL is no placeholder for psycopg

    def unusable(self, exc: DBAPIError) -> str | None:
        """By SQLSTATE. A connection that fails while it is made, or breaks, has none (an OperationalError
        with libpq's words only): told by the server's words, else the server could not be reached."""
        import psycopg

        orig = exc.orig
        code = getattr(orig, "sqlstate", None)
        reason: str | None
        if code is None and isinstance(orig, psycopg.OperationalError):
            text = str(orig)
            code = next((c for pattern, c in _AT_CONNECT if pattern.search(text)), None)
            reason = UNREACHABLE if code is None else _UNUSABLE[code]
        else:
            reason = _UNUSABLE.get(code or "")
        if reason is None:
            return None
        names = {"user": self.url.username, "database": self.url.database, "schema": live_schema(self.url)}
        return f"{reason.format(**names)} ({orig})"

    def refusal(self, exc: DBAPIError, driver: Any) -> str | None:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate == READ_ONLY_SQL_TRANSACTION:  # the reader's sessions are read-only
            return READ_ONLY_MESSAGE
        if sqlstate == VIEW_NOT_UPDATABLE and " view " in str(exc.orig):
            return READ_ONLY_MESSAGE  # a write on a view is a write all the same
        return None


# -- locks ------------------------------------------------------------------------------------------------------
def _key32(text: str) -> int:
    """A stable signed 32-bit lock key for a text (CRC-32: the same in every process and on every node)."""
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def schema_lock(conn: Connection, *, exclusive: bool, schema: str | None = None) -> None:
    """A transaction-level advisory lock on a store's schema as a whole. Every fold holds it shared, a
    rebuild's swap and the creation of the tables hold it exclusive: no fold transaction spans a swap
    (its statements would resolve table names in the old schema and then in the new one)."""
    key = _key32("alexandria-schema:" + (schema or connection_schema(conn)))
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    conn.exec_driver_sql(f"SELECT {fn}(CAST(%(key)s AS bigint))", {"key": key})


def lock_runs(conn: Connection, wait_for: Iterable[str], try_for: Iterable[str] = ()) -> set[str]:
    """Transaction-level advisory locks on runs: rows of one run (run, tag, parameter, artifact) are written
    only by the transaction holding that run's lock, so read-modify-writes (run.tags, the status verdict)
    never lose an update and upserts of the same keys never deadlock. `wait_for` runs are locked waiting,
    in one fixed order (by key, then id), so two projectors cannot deadlock on them; `try_for` runs are
    locked only if free (no wait, so no deadlock either). Returns every run now locked.

    The key is (CRC-32 of the schema, CRC-32 of the run id): the two-int key space of advisory locks, apart
    from the schema lock's one-bigint space. Two run ids with the same CRC share a lock, which costs only
    waiting, never correctness."""
    space = _key32("alexandria-run:" + connection_schema(conn))
    waited = sorted({(_key32(r), r) for r in wait_for})
    locked = {r for _, r in waited}
    if waited:
        keys = sorted({k for k, _ in waited})
        conn.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(CAST(%(space)s AS int), k) FROM unnest(CAST(%(keys)s AS int[])) AS k",
            {"space": space, "keys": keys},
        )
    tried = sorted({(_key32(r), r) for r in try_for if r not in locked})
    if tried:
        got = conn.exec_driver_sql(
            "SELECT k FROM unnest(CAST(%(keys)s AS int[])) AS k "
            "WHERE pg_try_advisory_xact_lock(CAST(%(space)s AS int), k)",
            {"space": space, "keys": [k for k, _ in tried]},
        )
        held = set(got.scalars())
        locked.update(r for k, r in tried if k in held)
    return locked


# -- rebuild helpers ----------------------------------------------------------------------------------------------
def _scratch_name(live: str, kind: str) -> str:
    suffix = f"_{kind}_{secrets.token_hex(4)}"
    return live[: 63 - len(suffix)] + suffix  # PostgreSQL names are at most 63 bytes


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
