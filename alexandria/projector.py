"""The projector: folds new events from the segments into the SQL tables.

Exactly once: each transaction takes the write lock first, reads every
segment's committed position, reads the complete lines after it, writes their
rows and the new positions, and commits them together. Killed at any point,
it resumes from the last commit; two projectors serialize on the lock.

Deterministic: the rules for rows that more than one event touch do not
depend on the order segments are folded in, so a live projection and
`alex rebuild` give the same rows (only the integer surrogate `id`s, which
number rows in the order they were folded, may differ):

* a run's start time, experiment and parent are the earliest RunStarted's;
  every start, resume and end is a `lifecycle` row, and the run's status and
  end time come from the latest of them (by time, then started < resumed <
  finished, then status and error text); a run whose latest is a start or a
  resume is "running" or "crashed" by the liveness of its writers (life.py),
  judged again at every catch-up while it is running;
* a parameter keeps its earliest value (the API refuses a second value in
  one process; if two processes disagree the earliest wins);
* a tag and an artifact name keep their latest value;
* metric points, datasets and code and environment records are simply all
  there (each carries the `attempt`, the life of the run, of its segment).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, bindparam, case, func, or_, select, update

from .db import is_postgres, lock_runs, quote_ident, schema_lock
from .events import (
    ArtifactSaved,
    CodeCaptured,
    DatasetLogged,
    EnvironmentCaptured,
    Header,
    Heartbeat,
    MetricLogged,
    ParamLogged,
    RunFinished,
    RunResumed,
    RunStarted,
    SegmentClosed,
    TagSet,
    WriterInfo,
)
from .life import writer_alive
from .schema import (
    artifact,
    code,
    dataset,
    environment,
    lifecycle,
    log_problem,
    log_segment,
    metric,
    parameter,
    run,
    tag,
)
from .segment import Problem, SegmentReader
from .store import Store
from .values import decode_float

log = logging.getLogger("alexandria.projector")

#: Bytes of log folded per transaction: bounds memory whatever the backlog.
TRANSACTION_BYTES = 16 << 20

Progress = Callable[[int], None]


@dataclass
class FoldStats:
    """What a catch-up did."""

    events: int = 0
    bytes: int = 0
    segments: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: FoldStats) -> None:
        self.events += other.events
        self.bytes += other.bytes
        self.segments += other.segments
        self.problems.extend(other.problems)


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


@dataclass
class _Batch:
    """Rows of one transaction, gathered before any is written."""

    runs: set[str] = field(default_factory=set)
    starts: list[dict[str, Any]] = field(default_factory=list)
    lives: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    codes: list[dict[str, Any]] = field(default_factory=list)
    environments: list[dict[str, Any]] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[tuple[Any, ...]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)

    def fold(self, run_id: str, attempt: int, events: list[Any]) -> None:
        self.runs.add(run_id)
        metrics = self.metrics
        for e in events:
            t = type(e)
            if t is MetricLogged:
                v = e.value
                if type(v) is not float:
                    v = decode_float(v)
                    if v != v:
                        v = None  # NaN: SQL has no NaN in SQLite; NULL stands for it
                metrics.append((run_id, e.key, v, e.step, e.time, attempt))
            elif t is Heartbeat or t is SegmentClosed:
                pass  # read from the segment's position row (last_time, closed)
            elif t is ParamLogged:
                self.params.append({"run_id": run_id, "key": e.key, "value": e.value, "timestamp": e.time})
            elif t is TagSet:
                self.tags.append({"run_id": run_id, "key": e.key, "value": e.value, "timestamp": e.time})
            elif t is RunStarted:
                self.starts.append({"rid": run_id, "exp": e.experiment, "parent": e.parent_id, "t": e.time})
                self._life(run_id, "started", "running", None, attempt, e.time)
                for k, v in e.tags.items():
                    self.tags.append({"run_id": run_id, "key": k, "value": v, "timestamp": e.time})
            elif t is RunFinished:
                self._life(run_id, "finished", e.status, e.error, attempt, e.time)
            elif t is RunResumed:
                self._life(run_id, "resumed", "running", None, e.attempt, e.time)
            elif t is DatasetLogged:
                row = {f: getattr(e, f) for f in DatasetLogged.__struct_fields__}
                row["timestamp"] = row.pop("time")
                self.datasets.append({"run_id": run_id, **row})
            elif t is CodeCaptured or t is EnvironmentCaptured:
                row = {f: getattr(e, f) for f in t.__struct_fields__}
                row["timestamp"] = row.pop("time")
                (self.codes if t is CodeCaptured else self.environments).append(
                    {"run_id": run_id, "attempt": attempt, **row}
                )
            elif t is ArtifactSaved:
                self.artifacts.append(
                    {
                        "run_id": run_id,
                        "name": e.name,
                        "type": e.type,
                        "path": e.path,
                        "size": e.size,
                        "sha256": e.sha256,
                        "timestamp": e.time,
                    }
                )

    def _life(self, run_id: str, event: str, status: str, error: str | None, attempt: int, t: float) -> None:
        self.lives.append(
            {"run_id": run_id, "event": event, "status": status, "error": error, "attempt": attempt, "timestamp": t}
        )


class Projector:
    """Folds a store's logs into one database."""

    def __init__(self, store: Store, engine: Engine) -> None:
        self.store = store
        self.engine = engine

    def catch_up(
        self, progress: Progress | None = None, transaction_bytes: int = TRANSACTION_BYTES, *, wait: bool = True
    ) -> FoldStats:
        """Fold everything complete that is not folded yet; returns what was done.

        On PostgreSQL, segments another projector is folding right now are skipped at first; with `wait`
        (the default) they are then waited for, so everything complete when this was called is committed
        when it returns, as on SQLite. `watch` passes wait=False: a fleet of watchers never queues up."""
        total = FoldStats()
        postgres = is_postgres(self.engine)
        block = False
        while True:
            if postgres:
                stats, more, skipped = self._fold_once_pg(transaction_bytes, block)
            else:
                (stats, more), skipped = self._fold_once(transaction_bytes), False
            total.add(stats)
            if progress is not None and stats.bytes:
                progress(stats.bytes)
            if more:
                block = False
            elif skipped and wait and not block:
                block = True  # once more, waiting for the segments other projectors hold
            else:
                return total

    def _fold_once(self, budget: int) -> tuple[FoldStats, bool]:
        """One SQLite transaction: BEGIN IMMEDIATE (the write lock) serializes projectors, so the positions
        read here stay ours until the commit."""
        stats = FoldStats()
        batch = _Batch()
        more = False
        with self.engine.begin() as conn:
            known = {
                row.path: (row.offset, row.events, row.attempt or 0)
                for row in conn.execute(
                    select(log_segment.c.path, log_segment.c.offset, log_segment.c.events, log_segment.c.attempt)
                )
            }
            for path in self.store.segments():
                rel = self.store.relative(path)
                offset, count, attempt = known.get(rel, (0, 0, 0))
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                if size <= offset:
                    continue
                if budget <= 0:
                    more = True
                    break
                budget, cut = self._fold_segment(batch, stats, path, rel, size, offset, count, attempt, budget)
                more = more or cut
            if batch.positions:
                self._write(conn, batch)
            settle_runs(conn, batch.runs)
        return stats, more

    def _fold_once_pg(self, budget: int, block: bool) -> tuple[FoldStats, bool, bool]:
        """One PostgreSQL fold; returns (what was done, more to do, segments skipped as another's).

        Several projectors (one per node, or a restarted one while the old one still runs) share the work
        segment by segment. First, in a transaction of its own, every segment on disk gets its log_segment
        row (offset 0; INSERT ... ON CONFLICT DO NOTHING), so that there is a row to lock. Then, in the fold
        transaction: the rows of the segments with new bytes are locked with SELECT ... FOR UPDATE SKIP
        LOCKED (in path order, a chunk at a time, about `budget` bytes in all); a row another projector
        holds is skipped, it is folding that segment. The offset read with the lock is the committed one,
        and no other projector can move it until we commit: the lines after it are read, their rows and the
        new offsets are written, and all of it commits together (killed midway, the server rolls it back
        and the locks go). With `block`, the rows are waited for instead of skipped.

        Rows of a run that several segments touch (run, tag, parameter, artifact) are written under the
        run's advisory lock (db.lock_runs), taken after every row lock and in one fixed order; the fold
        rules (`_wins`, upserts) make the result independent of which projector commits first."""
        segs = []
        for path in self.store.segments():
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size:
                segs.append((path, self.store.relative(path), size))
        stats = FoldStats()
        batch = _Batch()
        more = skipped = False
        with self.engine.connect() as conn:
            with conn.begin():
                schema_lock(conn, exclusive=False)
                known = {row.path: row.offset for row in conn.execute(select(log_segment.c.path, log_segment.c.offset))}
                missing = [{"path": r, "run_id": p.parent.name, "offset": 0, "events": 0} for p, r, _ in segs]
                missing = [row for row in missing if row["path"] not in known]
                if missing:
                    conn.execute(_insert(conn, log_segment).on_conflict_do_nothing(), missing)
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
                    seg = log_segment.c
                    locked = {
                        row.path: row
                        for row in conn.execute(
                            select(seg.path, seg.offset, seg.events, seg.attempt)
                            .where(seg.path.in_(rels))
                            .order_by(seg.path)
                            .with_for_update(skip_locked=not block)
                        )
                    }
                    absent = [r for r in rels if r not in locked]
                    if absent:
                        present = set(conn.execute(select(log_segment.c.path).where(log_segment.c.path.in_(absent))))
                        skipped = skipped or bool(present)
                        more = more or len(present) < len(absent)  # no row (a rebuild swapped the schema): again
                    for path, rel, size in chunk:
                        row = locked.get(rel)
                        if row is None or size <= row.offset:
                            continue
                        if budget <= 0:
                            more = True
                            break
                        budget, cut = self._fold_segment(
                            batch, stats, path, rel, size, row.offset, row.events, row.attempt or 0, budget
                        )
                        more = more or cut
                running = set(conn.execute(select(run.c.id).where(run.c.status == "running")).scalars())
                held = lock_runs(conn, batch.runs, running - batch.runs)
                if batch.positions:
                    self._write(conn, batch)
                settle_runs(conn, batch.runs, running=running & held)
        return stats, more, skipped

    def _fold_segment(
        self,
        batch: _Batch,
        stats: FoldStats,
        path: Path,
        rel: str,
        size: int,
        offset: int,
        count: int,
        attempt: int,
        budget: int,
    ) -> tuple[int, bool]:
        """Read the complete lines of one segment after `offset` (at most about `budget` bytes) into the batch;
        returns the budget left and whether lines were left for a later transaction."""
        want = size - offset
        reader = SegmentReader(path, offset)
        events = reader.read(max_bytes=min(want, budget))
        cut = want > budget
        consumed = reader.offset - offset
        if consumed == 0 and not reader.problems:
            return budget, cut
        budget -= consumed
        run_id = path.parent.name
        self._check_header(reader, run_id)
        position: dict[str, Any] = {"path": rel, "run_id": run_id, "offset": reader.offset}
        position["events"] = count + len(events)
        position["last_time"] = events[-1].time if events else None
        position["closed"] = type(events[-1]) is SegmentClosed if events else None
        if offset == 0:
            header = reader.header
            attempt = header.attempt if header else 0
            position.update(_header_columns(header))
            if position["last_time"] is None and header is not None:
                position["last_time"] = header.time
        batch.fold(run_id, attempt, events)
        for p in reader.problems:
            batch.problems.append({"segment": rel, "offset": p.offset, "kind": p.kind, "detail": p.detail})
            msg = f"{p.kind} line in {p.segment} at byte {p.offset}: {p.detail}"
            stats.problems.append(msg)
            log.warning("%s (skipped)", msg)
        batch.positions.append(position)
        stats.events += len(events)
        stats.bytes += consumed
        stats.segments += 1
        return budget, cut

    @staticmethod
    def _check_header(reader: SegmentReader, run_id: str) -> None:
        header = reader.header
        if header is not None and header.run_id != run_id:
            reader.problems.append(
                Problem(reader.path, 0, "bad_header", f"header names run {header.run_id}, folder is {run_id}")
            )

    def _write(self, conn: Connection, b: _Batch) -> None:
        if b.runs:
            conn.execute(
                _insert(conn, run).on_conflict_do_nothing(), [{"id": r, "status": "running"} for r in sorted(b.runs)]
            )
        if b.starts:
            t: Any = bindparam("t")
            exp: Any = bindparam("exp")
            first = _wins(t, run.c.timestamp_start, exp, run.c.experiment_name, latest=False)
            conn.execute(
                update(run)
                .where(run.c.id == bindparam("rid"))
                .values(
                    experiment_name=case((first, exp), else_=run.c.experiment_name),
                    parent_id=case((first, bindparam("parent")), else_=run.c.parent_id),
                    timestamp_start=case((first, t), else_=run.c.timestamp_start),
                ),
                b.starts,
            )
        for table, rows in (
            (lifecycle, b.lives),
            (dataset, b.datasets),
            (code, b.codes),
            (environment, b.environments),
        ):
            if rows:
                conn.execute(table.insert(), rows)
        if b.params:
            ins = _insert(conn, parameter)
            x = ins.excluded
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["run_id", "key"],
                    set_={"value": x.value, "timestamp": x.timestamp},
                    where=_wins(x.timestamp, parameter.c.timestamp, x.value, parameter.c.value, latest=False),
                ),
                b.params,
            )
        if b.tags:
            ins = _insert(conn, tag)
            x = ins.excluded
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["run_id", "key"],
                    set_={"value": x.value, "timestamp": x.timestamp},
                    where=_wins(x.timestamp, tag.c.timestamp, x.value, tag.c.value, latest=True),
                ),
                b.tags,
            )
            self._refresh_run_tags(conn, {row["run_id"] for row in b.tags})
        if b.artifacts:
            ins = _insert(conn, artifact)
            x = ins.excluded
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["run_id", "name"],
                    set_={c: x[c] for c in ("type", "path", "size", "sha256", "timestamp")},
                    where=_wins(x.timestamp, artifact.c.timestamp, x.sha256, artifact.c.sha256, latest=True),
                ),
                b.artifacts,
            )
        if b.metrics:
            _bulk_insert(conn, metric, ("run_id", "key", "value", "step", "timestamp", "attempt"), b.metrics)
        if b.problems:
            conn.execute(_insert(conn, log_problem).on_conflict_do_nothing(), b.problems)
        ins = _insert(conn, log_segment)
        x = ins.excluded
        set_ = {"offset": x.offset, "events": x.events}
        set_ |= {c: func.coalesce(x[c], log_segment.c[c]) for c in ("last_time", "closed")}
        for group in _same_keys(b.positions):  # first folds carry the header's columns too
            header = {c: x[c] for c in _HEADER_COLUMNS if c in group[0]}  # over a row made beforehand (PostgreSQL)
            conn.execute(ins.on_conflict_do_update(index_elements=["path"], set_=set_ | header), group)

    @staticmethod
    def _refresh_run_tags(conn: Connection, run_ids: set[str]) -> None:
        tags: dict[str, dict[str, str]] = {r: {} for r in run_ids}
        rows = conn.execute(
            select(tag.c.run_id, tag.c.key, tag.c.value).where(tag.c.run_id.in_(sorted(run_ids))).order_by(tag.c.key)
        )
        for rid, key, value in rows:
            tags[rid][key] = value
        conn.execute(
            update(run).where(run.c.id == bindparam("rid")).values(tags=bindparam("tags")),
            [{"rid": rid, "tags": t} for rid, t in sorted(tags.items())],
        )


_HEADER_COLUMNS = ("attempt", "host", "pid", "boot_id", "started", "heartbeat")


def _header_columns(header: Header | None) -> dict[str, Any]:
    """A segment's header as log_segment columns (written on its first fold only)."""
    if header is None:
        return {"attempt": 0, "host": None, "pid": None, "boot_id": None, "started": None, "heartbeat": None}
    w = header.writer
    return {
        "attempt": header.attempt,
        "host": w.host,
        "pid": w.pid,
        "boot_id": w.boot_id,
        "started": w.started,
        "heartbeat": w.heartbeat,
    }


def _same_keys(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped by their set of keys: one executemany needs one shape."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.values())


_LIFE_ORDER = {"started": 0, "resumed": 1, "finished": 2}


def settle_runs(
    conn: Connection, affected: set[str], now: float | None = None, *, running: set[str] | None = None
) -> None:
    """Set status, error, end time, attempt and last_seen of the runs that changed and of every run still
    running (`running`: those of them to settle, by default all), from their lifecycle rows and the
    liveness of their writers (life.py). Deterministic: the same rows give the same verdict whatever order
    they were folded in. On PostgreSQL the caller holds the lock of every one of these runs (db.lock_runs),
    so what is read here is not changed by another projector before this transaction commits."""
    now = time.time() if now is None else now
    if running is None:
        running = set(conn.execute(select(run.c.id).where(run.c.status == "running")).scalars())
    ids = sorted(affected | running)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        latest: dict[str, Any] = {}
        for row in conn.execute(select(lifecycle).where(lifecycle.c.run_id.in_(chunk))):
            key = (row.timestamp, _LIFE_ORDER.get(row.event, 0), row.status, row.error or "")
            if row.run_id not in latest or key > latest[row.run_id][0]:
                latest[row.run_id] = (key, row)
        segments: dict[str, list[Any]] = {}
        folded = log_segment.c.offset > 0  # a row made ahead of its first fold (PostgreSQL) says nothing yet
        for row in conn.execute(select(log_segment).where(log_segment.c.run_id.in_(chunk), folded)):
            segments.setdefault(row.run_id, []).append(row)
        updates = []
        for rid, status, error, end, attempt, seen in conn.execute(
            select(run.c.id, run.c.status, run.c.error, run.c.timestamp_end, run.c.attempt, run.c.last_seen).where(
                run.c.id.in_(chunk)
            )
        ):
            segs = segments.get(rid, [])
            new = _verdict(latest.get(rid, (None, None))[1], segs, now)
            if new != (status, error, end, attempt, seen):
                updates.append(dict(zip(("status", "error", "end", "attempt", "seen"), new, strict=True), rid=rid))
        if updates:
            conn.execute(
                update(run)
                .where(run.c.id == bindparam("rid"))
                .values(
                    status=bindparam("status"),
                    error=bindparam("error"),
                    timestamp_end=bindparam("end"),
                    attempt=bindparam("attempt"),
                    last_seen=bindparam("seen"),
                ),
                updates,
            )


def _verdict(life: Any, segments: list[Any], now: float) -> tuple[Any, ...]:
    """(status, error, timestamp_end, attempt, last_seen) of one run."""
    seen = max((s.last_time for s in segments if s.last_time is not None), default=None)
    attempt = max([s.attempt or 0 for s in segments] + [life.attempt if life is not None else 0])
    if life is not None and life.status != "running":
        return life.status, life.error, life.timestamp, attempt, seen
    alive = [s for s in segments if writer_alive(_writer_of(s), s.last_time or 0.0, bool(s.closed), now)]
    if alive or not segments:
        return "running", None, None, attempt, seen
    last = max(segments, key=lambda s: (s.last_time or 0.0, s.path))
    when = datetime.fromtimestamp(seen or 0.0, UTC).isoformat(timespec="seconds")
    error = f"no writer alive and no end recorded; last sign of life {when} (pid {last.pid} on {last.host})"
    return "crashed", error, seen, attempt, seen


def _writer_of(segment: Any) -> WriterInfo | None:
    if segment.host is None:
        return None
    return WriterInfo(
        host=segment.host,
        pid=segment.pid,
        boot_id=segment.boot_id or "",
        started=segment.started or 0,
        heartbeat=segment.heartbeat or 0.0,
    )


def _wins(new_time: Any, old_time: Any, new_key: Any, old_key: Any, *, latest: bool) -> Any:
    """SQL for "the new value replaces the old": by time (latest or earliest), ties broken by a key,
    so the outcome never depends on the order events are folded in."""
    if latest:
        return or_(old_time.is_(None), new_time > old_time, and_(new_time == old_time, new_key > old_key))
    return or_(old_time.is_(None), new_time < old_time, and_(new_time == old_time, new_key < old_key))


_INSERT_SQL: dict[tuple[str, str, tuple[str, ...]], str] = {}


def _bulk_insert(conn: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """executemany straight on the DBAPI cursor: the statement comes from the one schema, the rows skip
    SQLAlchemy's per-row processing (plain floats, ints and strings need none). On PostgreSQL: COPY FROM
    STDIN in the fold's transaction (the table is found through the connection's search_path)."""
    if conn.dialect.name == "postgresql":
        names = ", ".join(quote_ident(c) for c in columns)
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cur, cur.copy(f"COPY {quote_ident(table.name)} ({names}) FROM STDIN") as copy:
            write = copy.write_row
            for row in rows:
                write(row)
        return
    key = (conn.dialect.name, table.name, columns)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(columns))
        if conn.dialect.paramstyle not in ("qmark", "format"):
            conn.execute(table.insert(), [dict(zip(columns, r, strict=True)) for r in rows])
            return
        sql = _INSERT_SQL[key] = str(compiled)
    conn.exec_driver_sql(sql, rows)


def store_size(store: Store) -> int:
    total = 0
    for path in store.segments():
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total
