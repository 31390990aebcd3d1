"""The contract every database backend implements: one class per database, chosen by URL scheme.

Everything that differs between databases lives behind this seam, so that the projector, the rebuild and
the read functions are written once: the engines (writer, reader, a rebuild's bulk scratch), the dialect's
INSERT with ON CONFLICT, bulk inserts, the fold transaction's locking, the rebuild and its atomic swap,
the SQL of the read paths that need the driver's own speed, and the translation of a user's failed query
into the `AlexandriaError` tree. Modelled on eventsourcing's persistence module: an abstract recorder per
concern, one concrete module per database.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sqlalchemy import Boolean, Connection, Engine, Table, event, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DatabaseError, DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement

from ..compaction import segment_size
from ..errors import ForeignDatabaseError, QueryError, ReadOnlyError, StoreError
from ..schema import SCHEMA_VERSION, VIEWS, meta, metadata, metric_index
from ..store import REFUSED_SIZE

if TYPE_CHECKING:
    import numpy as np

    from ..projector import FoldStats
    from ..store import Store

#: What `Backend.claim` returns for a file that is no database at all, when the logs can rebuild it.
UNREADABLE = -1

#: Plain rows for `bulk_insert`.
Rows = list[tuple[Any, ...]]

#: What a user is told when a query tries to write.
READ_ONLY_MESSAGE = (
    "the database is opened read-only: the logs are the truth and the tables are their projection, "
    "so change data by logging events (queries only here)"
)


class CaseSensitiveLike(ColumnElement[bool]):
    """`column LIKE pattern` that respects case on every database (`%` any text, `_` one character, a
    backslash takes the next character literally). PostgreSQL's LIKE does; SQLite's ignores ASCII case, so
    its backend compiles this as GLOB instead. Not cached: the pattern is compiled into its own parameter."""

    inherit_cache = False
    type = Boolean()

    def __init__(self, column: ColumnElement[Any], pattern: str) -> None:
        self.column = column
        self.pattern = pattern


@compiles(CaseSensitiveLike)
def _like(element: CaseSensitiveLike, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column.like(element.pattern, escape="\\"), **kw))


class FoldTransaction(Protocol):
    """What a backend's fold loop drives: one transaction's worth of segments (projector.py)."""

    @property
    def runs(self) -> set[str]:
        """The runs whose rows this transaction writes."""

    def fold_segment(
        self,
        path: Path,
        rel: str,
        size: int,
        offset: int,
        count: int,
        attempt: int,
        budget: int,
        rank: int | None = None,
    ) -> tuple[int, bool]:
        """Read one segment after `offset` into the transaction; returns (budget left, lines left over)."""

    def write(self, conn: Connection, running: set[str] | None = None) -> None:
        """Write the rows gathered and settle the runs they touch (`running`: which running runs to settle)."""


def segment_sizes(store: Store) -> Iterator[tuple[Path, str, int]]:
    """(path, path relative to the store, size) of every segment on disk now. An entry refused as a segment
    (a link, a FIFO, ...: `Store.segment_entries`) comes with `REFUSED_SIZE`, so that it is folded once, into
    its problem, and is then known to be."""
    for path, refused in store.segment_entries():
        size = REFUSED_SIZE if refused else segment_size(path)  # a compacted one's: its lines' (compaction.py)
        if size is None:
            continue
        yield path, store.relative(path), size


class Backend(ABC):
    """One database: how to connect to it, write the projection into it, rebuild it and read it fast."""

    #: SQLAlchemy's dialect name (`backends.backend_of` finds a backend by it, through `_SCHEMES`).
    dialect: ClassVar[str]
    #: The DBAPI driver's placeholder for raw SQL on `conn.connection.driver_connection`.
    placeholder: ClassVar[str]

    def __init__(self, url: URL) -> None:
        self.url = url

    # -- engines ----------------------------------------------------------------------------------------------
    @abstractmethod
    def writer_engine(self, *, bulk: bool = False, schema: str | None = None) -> Engine:
        """An engine for the projector (`bulk`: a rebuild's scratch copy, durability traded for speed;
        `schema`: where the tables are, for a database that has schemas)."""

    @abstractmethod
    def reader_engine(self) -> Engine:
        """An engine whose sessions the database itself keeps from writing."""

    # -- writing the projection -------------------------------------------------------------------------------
    @abstractmethod
    def insert(self, table: Table) -> Any:
        """The dialect's INSERT, which knows ON CONFLICT (`on_conflict_do_nothing`, `..._do_update`)."""

    @abstractmethod
    def bulk_insert(self, conn: Connection, table: Table, columns: tuple[str, ...], rows: Rows) -> None:
        """Append plain rows (floats, ints, strings) as fast as the driver can, in the caller's transaction."""

    @abstractmethod
    def fold_once(
        self, engine: Engine, store: Store, fold: FoldTransaction, budget: int, block: bool
    ) -> tuple[bool, bool]:
        """One fold transaction of about `budget` bytes, exactly once however many projectors run; returns
        (more to do, segments skipped because another projector holds them). `block`: wait for those."""

    @abstractmethod
    def lock_for_purge(self, conn: Connection, run_ids: list[str]) -> None:
        """In the caller's transaction, hold what a projector folding these runs holds, so that none reads
        their segments or writes their rows until it commits (gc.py renames and deletes them meanwhile)."""

    # -- schema and rebuild -----------------------------------------------------------------------------------
    @abstractmethod
    def has_tables(self, engine: Engine) -> bool:
        """Whether the database (or the store's schema in it) holds any table."""

    def create_schema(self, engine: Engine, *, with_metric_index: bool = True) -> None:
        """Create the tables, the plug-ins' views and the version row (what exists already is kept)."""
        from ..plugins import sql_views

        with engine.begin() as conn:
            self.prepare_schema(conn)
            metadata.create_all(conn, tables=list(metadata.sorted_tables), checkfirst=True)
            if not with_metric_index:
                metric_index.drop(conn)
            for name, select_sql in {**VIEWS, **sql_views()}.items():  # the core's first: plug-ins may use them
                conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
                conn.exec_driver_sql(f"CREATE VIEW {name} AS {select_sql}")
            conn.execute(meta.delete().where(meta.c.key == "schema_version"))
            conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))

    @abstractmethod
    def prepare_schema(self, conn: Connection) -> None:
        """Run first in the transaction that creates the tables (a database with schemas makes its own)."""

    def schema_version(self, engine: Engine) -> int | None:
        """The schema version a database was written with (None: empty or not ours)."""
        try:
            with engine.connect() as conn:
                value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        except (OperationalError, ProgrammingError) as exc:
            if self.unusable(exc) is not None:  # a lock held too long, a server it cannot reach: not "no table"
                raise
            return None  # no such table
        return int(value) if value is not None else None

    def claim(self, store: Store) -> int | None:
        """The one rule for what Alexandria may write into or replace, asked before it creates its tables in a
        database or rebuilds one: the schema version of a database carrying Alexandria's marker (the
        `alexandria_meta` row `schema_version`; any other version is rebuilt); None for one with no tables at
        all (missing, empty: ours to create into); `UNREADABLE` for no database at all (overwritten,
        truncated), but only when the store has logs to rebuild it from. Anything else is refused: tables
        without the marker are another program's (`ForeignDatabaseError`), and so is an unreadable file
        with nothing to rebuild it from. Asked on a read-only connection, so a refused database is left
        byte for byte as it was."""
        engine = self.inspection_engine()
        if engine is None:
            return None
        try:
            version = self.schema_version(engine)
            if version is None and self.has_tables(engine):
                raise ForeignDatabaseError(
                    f"{self.describe()} was not made by Alexandria (it holds tables but no alexandria_meta "
                    "schema version), so it is left as it is: move it away (Alexandria then builds its own "
                    "database there from the logs), or import it (an importer for upstream qex stores is planned)"
                )
            return version
        except DatabaseError as exc:
            if not self.is_unreadable(exc):
                raise self.store_error(exc) from exc
            if next(iter(store.segments()), None) is None:
                raise StoreError(
                    f"{self.describe()} is not a readable database and the store has no logs to rebuild it "
                    "from, so it is left as it is: move it away (or restore it from a backup) and run the "
                    "command again"
                ) from exc
            return UNREADABLE
        finally:
            engine.dispose()

    def inspection_engine(self) -> Engine | None:
        """An engine that looks at the database without changing it (`claim`); None: there is nothing yet."""
        return self.reader_engine()

    def describe(self) -> str:
        """The database as a message names it (no password)."""
        return self.url.render_as_string(hide_password=True)

    def unusable(self, exc: DBAPIError) -> str | None:
        """Why the database cannot be used where it is, in a user's words and with what to do (a full disk,
        a read-only file, a lock held beyond the busy timeout, a file that is no database), by the driver's
        error code; None for any other failure (a query's own error, a missing table)."""
        return None

    def store_error(self, exc: DBAPIError) -> StoreError:
        """The one typed error for a database a command cannot use (`unusable`, else the driver's words), on
        one line: a driver's message may span several (libpq's hints)."""
        message = f"cannot use database {self.describe()}: {self.unusable(exc) or exc.orig}"
        return StoreError(" ".join(message.split()))

    def translate_errors(self, engine: Engine) -> Engine:
        """Make a reader `engine` raise `store_error` for what `unusable` names, instead of the driver's
        exception (a write it refused stays the driver's, for `execute_sql`; a writer's callers tell a lock
        or a lost server apart themselves, to retry)."""

        @event.listens_for(engine, "handle_error")
        def _translate(context: Any) -> None:
            exc = context.sqlalchemy_exception
            if isinstance(exc, DBAPIError) and self.refusal(exc, None) is None and self.unusable(exc) is not None:
                raise self.store_error(exc) from exc

        return engine

    def is_unreadable(self, exc: DBAPIError) -> bool:
        """Whether the database is no database at all (overwritten, truncated), to be rebuilt from the logs
        rather than reported."""
        return False

    @abstractmethod
    def rebuild(self, store: Store, load: Callable[[Engine], FoldStats]) -> FoldStats:
        """Build a fresh copy of the tables beside the live ones (`load` folds every log into an engine on
        it), then swap it in atomically: readers see the old tables or the new ones, never half."""

    # -- reading ------------------------------------------------------------------------------------------------
    def metric_history(self, engine: Engine, run_id: str, key: str, *, with_times: bool) -> np.ndarray:
        """One metric's (step, value[, time]) rows ordered by step, points without a step first, as one
        flat float64 array (NaN for no step and for NaN), read straight from the driver's cursor: no Python
        object per point. numpy is imported here, not by the projector's paths."""
        import numpy as np

        with engine.connect() as conn:
            cursor = self.fast_rows(conn.connection.driver_connection, self.history_sql(with_times), (run_id, key))
            return np.fromiter(itertools.chain.from_iterable(cursor), dtype=np.float64)

    @abstractmethod
    def history_sql(self, with_times: bool) -> str:
        """The SQL of `metric_history`: (step, value[, timestamp]) of one (run_id, key), NULLs as NaN."""

    def fast_rows(self, driver: Any, sql: str, args: tuple[Any, ...]) -> Any:
        """Rows of `sql` from the DBAPI connection itself, the fastest way the driver has."""
        return driver.execute(sql, args)

    def metric_filter(
        self, run_id: str, key: str, col: str, start: float | None, end: float | None
    ) -> tuple[str, list[Any]]:
        """The WHERE clause (the driver's placeholders) and its arguments for one metric's rows with `col`
        in [start, end]."""
        mark = self.placeholder
        where = f"run_id = {mark} AND key = {mark} AND {col} IS NOT NULL"
        args: list[Any] = [run_id, key]
        if start is not None:
            where += f" AND {col} >= {mark}"
            args.append(start)
        if end is not None:
            where += f" AND {col} <= {mark}"
            args.append(end)
        return where, args

    def buckets(
        self, db: Any, run_id: str, key: str, col: str, where: str, args: list[Any], buckets: int
    ) -> list[tuple[Any, ...]]:
        """(bucket, min, max, count, last x) per non-empty bucket of the rows `where` selects, in one GROUP BY
        (any x). A backend may read them faster its own way."""
        lo, hi, total = db.execute(
            f"SELECT min({col}), max({col}), count(*) FROM metric WHERE {where}",  # noqa: S608
            args,
        ).fetchone()
        if not total:
            return []
        width = float(hi - lo) / buckets or 1.0
        return list(
            db.execute(
                f"SELECT {self.bucket_of(col, buckets)} AS b, min(value), max(value), count(*), max({col}) "  # noqa: S608
                f"FROM metric WHERE {where} GROUP BY b ORDER BY b",
                [lo, width, *args],
            ).fetchall()
        )

    @abstractmethod
    def bucket_of(self, col: str, buckets: int) -> str:
        """SQL for the bucket (0 to buckets - 1) of a row's `col`; its two placeholders take the range's
        low end and the bucket width."""

    def last_values(self, db: Any, run_id: str, key: str, col: str, xs: list[Any]) -> dict[Any, float]:
        """The value at each of `xs` (the latest logged there), read through the index a chunk at a time."""
        last: dict[Any, float] = {}
        step = self.max_parameters
        for i in range(0, len(xs), step):
            for xv, value in db.execute(*self._values_at(run_id, key, col, xs[i : i + step])):
                last[xv] = math.nan if value is None else value
        return last

    #: The most values bound in one statement.
    max_parameters: ClassVar[int] = 500

    @abstractmethod
    def _values_at(self, run_id: str, key: str, col: str, chunk: list[Any]) -> tuple[str, list[Any]]:
        """The SQL and arguments selecting (x, value) of the rows at the x's of `chunk`, the last point of each x
        (summaries.py's rule: latest time, then latest attempt, then last folded) last."""

    def execute_sql(self, engine: Engine, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one statement of a user's on a read-only engine; returns column names and rows. A write is a
        ReadOnlyError, any other failure a QueryError."""
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            try:
                result = self.raw(conn).exec_driver_sql(sql)
                if not result.returns_rows:
                    return [], []
                return list(result.keys()), [tuple(r) for r in result]
            except DBAPIError as exc:
                refused = self.refusal(exc, driver)
                if refused is not None:
                    raise ReadOnlyError(refused) from exc
                raise QueryError(f"query failed: {exc.orig}") from exc

    def raw(self, conn: Connection) -> Connection:
        """The connection set to pass a user's SQL to the driver as written."""
        return conn

    @abstractmethod
    def refusal(self, exc: DBAPIError, driver: Any) -> str | None:
        """Why the database refused a statement as not a read (the message for a ReadOnlyError), by the
        driver's error code (`driver`: the DBAPI connection it ran on); None when it failed otherwise."""
