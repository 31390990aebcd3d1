"""Connections to a store's database, set up the one way Alexandria needs them.

Two backends share one schema (schema.py): SQLite, the zero-setup default (the file inside the store),
and PostgreSQL, for a team whose projectors run on several nodes (a `postgresql://` URL, in
$ALEXANDRIA_DB or `Store.db_url`; driven by psycopg 3).

SQLite: writers (the projector) take SQLite's write lock at the start of every transaction (BEGIN
IMMEDIATE), so two projectors can never read the same segment position and both fold from it. WAL mode
lets readers and the projector run at once. Foreign keys are on.

PostgreSQL: the tables live in one schema, `alexandria` unless the URL names another as the first entry
of its search path (`?options=-csearch_path=myschema`); every connection's search_path is set to it, so
the same unqualified SQL runs on both backends. Writers run in READ COMMITTED and coordinate with row and
advisory locks (see projector.py and the lock helpers below); the reader's sessions are read-only
(`SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY`). A rebuild builds a scratch schema and renames
it into place (rebuild.py).
"""

from __future__ import annotations

import re
import sqlite3
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from .errors import StoreError
from .schema import SCHEMA_VERSION, meta, metadata

BUSY_TIMEOUT_MS = 120_000

#: The PostgreSQL schema holding the tables when the URL names none.
DEFAULT_PG_SCHEMA = "alexandria"
#: A PostgreSQL writer session idle inside a transaction for this long is ended by the server, which
#: releases its locks: a projector frozen mid-fold (stopped, partitioned away) cannot hold segments forever.
PG_IDLE_IN_TRANSACTION = "10min"

#: A database: the path of an SQLite file, or a URL (postgresql://..., sqlite:///path).
Target = Path | str


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


# -- targets: paths and URLs ------------------------------------------------------------------------------
def _is_url(target: Target) -> bool:
    return isinstance(target, str) and "://" in target


def postgres_url(target: Target) -> URL | None:
    """The SQLAlchemy URL (psycopg 3 driver) of a PostgreSQL target; None for an SQLite one.
    `postgresql://` and `postgres://` are taken to mean `postgresql+psycopg://`."""
    if not _is_url(target):
        return None
    url = make_url(str(target))
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        driver = url.get_driver_name()
        if url.drivername in ("postgresql", "postgres") or driver in ("psycopg2", "psycopg2cffi", "pg8000", "asyncpg"):
            driver = "psycopg"  # the projector uses psycopg 3's own API (COPY FROM STDIN, binary results)
        return url.set(drivername=f"postgresql+{driver}")
    if backend == "sqlite":
        return None
    raise StoreError(f"unsupported database URL {safe_target(target)}: use postgresql://... or an SQLite file")


def sqlite_path(target: Target) -> Path:
    """The file of an SQLite target (a path, or an sqlite:/// URL)."""
    if _is_url(target):
        database = make_url(str(target)).database
        if not database or database == ":memory:":
            raise StoreError(f"an SQLite database for a store must be a file, not {target!r}")
        return Path(database).expanduser()
    return Path(target)


def safe_target(target: Target) -> str:
    """A target as it may be printed: a URL without its password."""
    if _is_url(target):
        return make_url(str(target)).render_as_string(hide_password=True)
    return str(target)


_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*((?:\\ |[^ ])+)")


def live_schema(url: URL) -> str:
    """The PostgreSQL schema holding a store's tables: the first schema of the search path the URL sets
    (`?options=-csearch_path=myschema`), else `alexandria`."""
    options = url.query.get("options")
    text = " ".join(options) if isinstance(options, tuple) else (options or "")
    found = _SEARCH_PATH.search(text)
    if found:
        for name in found.group(1).replace("\\ ", " ").split(","):
            name = name.strip().strip('"')
            if name and name != "$user":
                return name
    return DEFAULT_PG_SCHEMA


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pg_engine(url: URL, *, readonly: bool, schema: str | None = None, bulk: bool = False) -> Engine:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise StoreError("a PostgreSQL database needs psycopg 3: pip install 'alexandria[postgres]'") from exc
    schema = schema or live_schema(url)
    engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=8)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        record.info["alexandria_schema"] = schema
        with dbapi_connection.cursor() as cur:
            cur.execute(f"SET search_path TO {quote_ident(schema)}")
            if readonly:
                cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            else:
                cur.execute(f"SET idle_in_transaction_session_timeout TO '{PG_IDLE_IN_TRANSACTION}'")
            if bulk:  # a rebuild's scratch schema: thrown away if the server dies before the swap
                cur.execute("SET synchronous_commit TO off")
        dbapi_connection.commit()

    return engine


def writer_engine(target: Target, *, bulk: bool = False, schema: str | None = None) -> Engine:
    """An engine for the projector. SQLite (a path): BEGIN IMMEDIATE, WAL (or no journal at all for a
    rebuild's scratch file). PostgreSQL (a URL): READ COMMITTED sessions whose search_path is the store's
    schema, or `schema` (a rebuild's scratch schema)."""
    url = postgres_url(target)
    if url is not None:
        return _pg_engine(url, readonly=False, schema=schema, bulk=bulk)
    return _sqlite_engine(sqlite_path(target), readonly=False, bulk=bulk)


def reader_engine(target: Target) -> Engine:
    """A read-only engine: any write is refused by the database itself (SQLite's query_only and its
    read-only open; PostgreSQL's read-only sessions)."""
    url = postgres_url(target)
    if url is not None:
        return _pg_engine(url, readonly=True)
    path = sqlite_path(target)
    if not path.exists():
        raise StoreError(f"no database at {path}; log a run or run `alex rebuild` first")
    return _sqlite_engine(path, readonly=True)


def engines(target: Target) -> tuple[Engine, Engine]:
    """The writer and the reader engine of one database, from an SQLite path or a database URL."""
    writer = writer_engine(target)
    try:
        return writer, reader_engine(target)
    except BaseException:
        writer.dispose()
        raise


def is_postgres(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "postgresql"


def connection_schema(conn: Connection) -> str:
    """The PostgreSQL schema a connection's search path points at."""
    schema = conn.info.get("alexandria_schema")
    if schema is None:  # a connection not made by _pg_engine
        schema = conn.exec_driver_sql("SELECT current_schema()").scalar() or DEFAULT_PG_SCHEMA
    return str(schema)


# -- PostgreSQL locks ------------------------------------------------------------------------------------------
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


# -- schema ------------------------------------------------------------------------------------------------
def schema_version(engine: Engine) -> int | None:
    """The schema version a database was written with (None: empty or not ours)."""
    try:
        with engine.connect() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    except (OperationalError, ProgrammingError):  # no such table (SQLite: OperationalError)
        return None
    return int(value) if value is not None else None


def has_tables(engine: Engine) -> bool:
    """Whether the database (on PostgreSQL: the store's schema) holds any table."""
    with engine.connect() as conn:
        if is_postgres(conn):
            sql = "SELECT count(*) FROM information_schema.tables WHERE table_schema = %(schema)s"
            return bool(conn.exec_driver_sql(sql, {"schema": connection_schema(conn)}).scalar())
        return bool(conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type='table'").scalar())


def create_schema(engine: Engine, *, with_metric_index: bool = True) -> None:
    from .plugins import sql_views
    from .schema import metric_index

    with engine.begin() as conn:
        if is_postgres(conn):
            # Two processes opening an empty database at once: one creates, the other finds it made.
            schema_lock(conn, exclusive=True)
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(connection_schema(conn))}")
        tables = [t for t in metadata.sorted_tables]
        metadata.create_all(conn, tables=tables, checkfirst=True)
        if not with_metric_index:
            metric_index.drop(conn)
        for name, select_sql in sql_views().items():
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE VIEW {name} AS {select_sql}")
        conn.execute(meta.delete().where(meta.c.key == "schema_version"))
        conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
