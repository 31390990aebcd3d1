"""The projector: folds new events from the segments into the SQL tables.

Exactly once: each transaction takes the write lock first, reads every
segment's committed position, reads the complete lines after it, writes their
rows and the new positions, and commits them together. Killed at any point,
it resumes from the last commit; two projectors serialize on the lock.

Deterministic: the rules for rows that more than one event touch do not
depend on the order segments are folded in, so a live projection and
`alex rebuild` give the same rows (only the integer surrogate `id`s, which
number rows in the order they were folded, may differ):

* a run's start time is the earliest RunStarted; its status and end time come
  from the latest RunFinished (a run with none is "running");
* a parameter keeps its earliest value (the API refuses a second value in
  one process; if two processes disagree the earliest wins);
* a tag and an artifact name keep their latest value;
* metric points are simply all there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Table, Text, and_, bindparam, case, func, or_, select, update

from .events import ArtifactSaved, MetricLogged, ParamLogged, RunFinished, RunStarted, TagSet, decode_float
from .schema import artifact, log_problem, log_segment, metric, parameter, run, tag
from .segment import Problem, SegmentReader
from .store import Store

log = logging.getLogger("alexandria.projector")

#: Bytes of log folded per transaction: bounds memory whatever the backlog.
TRANSACTION_BYTES = 32 << 20

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
    finishes: list[dict[str, Any]] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[tuple[Any, ...]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)

    def fold(self, run_id: str, events: list[Any]) -> None:
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
                metrics.append((run_id, e.key, v, e.step, e.time))
            elif t is ParamLogged:
                self.params.append({"run_id": run_id, "key": e.key, "value": e.value, "timestamp": e.time})
            elif t is TagSet:
                self.tags.append({"run_id": run_id, "key": e.key, "value": e.value, "timestamp": e.time})
            elif t is RunStarted:
                self.starts.append({"rid": run_id, "exp": e.experiment, "t": e.time})
                for k, v in e.tags.items():
                    self.tags.append({"run_id": run_id, "key": k, "value": v, "timestamp": e.time})
            elif t is RunFinished:
                self.finishes.append({"rid": run_id, "status": e.status, "t": e.time, "err": e.error})
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


class Projector:
    """Folds a store's logs into one database."""

    def __init__(self, store: Store, engine: Engine) -> None:
        self.store = store
        self.engine = engine

    def catch_up(self, progress: Progress | None = None, transaction_bytes: int = TRANSACTION_BYTES) -> FoldStats:
        """Fold everything complete that is not folded yet; returns what was done."""
        total = FoldStats()
        while True:
            stats, more = self._fold_once(transaction_bytes)
            total.add(stats)
            if progress is not None and stats.bytes:
                progress(stats.bytes)
            if not more:
                return total

    def _fold_once(self, budget: int) -> tuple[FoldStats, bool]:
        stats = FoldStats()
        batch = _Batch()
        more = False
        with self.engine.begin() as conn:
            known = {
                row.path: (row.offset, row.events)
                for row in conn.execute(select(log_segment.c.path, log_segment.c.offset, log_segment.c.events))
            }
            for path in self.store.segments():
                rel = self.store.relative(path)
                offset, count = known.get(rel, (0, 0))
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
                if size <= offset:
                    continue
                if budget <= 0:
                    more = True
                    break
                want = size - offset
                reader = SegmentReader(path, offset)
                events = reader.read(max_bytes=min(want, budget))
                if want > budget:
                    more = True
                consumed = reader.offset - offset
                if consumed == 0 and not reader.problems:
                    continue
                budget -= consumed
                run_id = path.parent.name
                self._check_header(reader, run_id)
                batch.fold(run_id, events)
                for p in reader.problems:
                    batch.problems.append({"segment": rel, "offset": p.offset, "kind": p.kind, "detail": p.detail})
                    msg = f"{p.kind} line in {p.segment} at byte {p.offset}: {p.detail}"
                    stats.problems.append(msg)
                    log.warning("%s (skipped)", msg)
                batch.positions.append(
                    {"path": rel, "run_id": run_id, "offset": reader.offset, "events": count + len(events)}
                )
                stats.events += len(events)
                stats.bytes += consumed
                stats.segments += 1
            if batch.positions:
                self._write(conn, batch)
        return stats, more

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
                    timestamp_start=case((first, t), else_=run.c.timestamp_start),
                ),
                b.starts,
            )
        if b.finishes:
            t = bindparam("t")
            outcome: Any = bindparam("status", type_=Text) + "\n" + func.coalesce(bindparam("err", type_=Text), "")
            old_outcome = run.c.status + "\n" + func.coalesce(run.c.error, "")
            last = _wins(t, run.c.timestamp_end, outcome, old_outcome, latest=True)
            conn.execute(
                update(run)
                .where(and_(run.c.id == bindparam("rid"), last))
                .values(status=bindparam("status"), timestamp_end=t, error=bindparam("err")),
                b.finishes,
            )
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
            _bulk_insert(conn, metric, ("run_id", "key", "value", "step", "timestamp"), b.metrics)
        if b.problems:
            conn.execute(_insert(conn, log_problem).on_conflict_do_nothing(), b.problems)
        ins = _insert(conn, log_segment)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["path"], set_={"offset": ins.excluded.offset, "events": ins.excluded.events}
            ),
            b.positions,
        )

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


def _wins(new_time: Any, old_time: Any, new_key: Any, old_key: Any, *, latest: bool) -> Any:
    """SQL for "the new value replaces the old": by time (latest or earliest), ties broken by a key,
    so the outcome never depends on the order events are folded in."""
    if latest:
        return or_(old_time.is_(None), new_time > old_time, and_(new_time == old_time, new_key > old_key))
    return or_(old_time.is_(None), new_time < old_time, and_(new_time == old_time, new_key < old_key))


_INSERT_SQL: dict[tuple[str, str, tuple[str, ...]], str] = {}


def _bulk_insert(conn: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """executemany straight on the DBAPI cursor: the statement comes from the one schema, the rows skip
    SQLAlchemy's per-row processing (plain floats, ints and strings need none)."""
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
