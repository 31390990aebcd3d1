"""The projector: folds new events from the segments into the SQL tables.

Exactly once: each transaction locks what it folds (the database's write lock on SQLite, the segments'
rows on a server: alexandria/backends/), reads every such segment's committed position, reads the complete
lines after it, writes their rows and the new positions, and commits them together. Killed at any point,
it resumes from the last commit; two projectors never fold the same line.

Deterministic: how each event folds (folding.py) does not depend on the order segments are folded in, so a
live projection and `alex rebuild` give the same rows. A run whose latest lifecycle row is a start or a
resume is "running" or "crashed" by the liveness of its writers (life.py), judged again at every catch-up
while it is running (`settle_runs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, bindparam, func, select, update

from .backends import backend_of
from .backends.base import Backend, segment_sizes
from .events import Header, SegmentClosed, WriterInfo
from .folding import Batch
from .life import writer_alive
from .schema import lifecycle, log_problem, log_segment, run
from .segment import Problem, SegmentReader
from .store import Store

if TYPE_CHECKING:
    from .rebuild import ProgressFactory

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


class Projector:
    """Folds a store's logs into one database."""

    def __init__(self, store: Store, engine: Engine) -> None:
        self.store = store
        self.engine = engine

    def catch_up(
        self, progress: Progress | None = None, transaction_bytes: int = TRANSACTION_BYTES, *, wait: bool = True
    ) -> FoldStats:
        """Fold everything complete that is not folded yet; returns what was done. `progress` is called with
        the bytes of each transaction committed.

        Where several projectors share the work (a database server), segments another projector is folding
        right now are skipped at first; with `wait` (the default) they are then waited for, so everything
        complete when this was called is committed when it returns. `watch` passes wait=False: a fleet of
        watchers never queues up."""
        total = FoldStats()
        backend = backend_of(self.engine)
        block = False
        while True:
            fold = _Fold(self.store, backend)
            more, skipped = backend.fold_once(self.engine, self.store, fold, transaction_bytes, block)
            total.add(fold.stats)
            if progress is not None and fold.stats.bytes:
                progress(fold.stats.bytes)
            if more:
                block = False
            elif skipped and wait and not block:
                block = True  # once more, waiting for the segments other projectors hold
            else:
                return total

    def catch_up_reporting(self, progress: ProgressFactory, *, at_least: int = TRANSACTION_BYTES) -> FoldStats:
        """`catch_up`, telling `progress` the backlog's bytes (then each transaction's) when there are more
        than `at_least` to fold: a first read of a long run's logs takes a while, a usual one a blink."""
        pending = backlog(self.store, self.engine)
        return self.catch_up(progress=progress(pending) if pending > at_least else None)


class _Fold:
    """One fold transaction: the segments' new lines read into a batch, then written with their positions
    (the backend's fold loop decides which segments, under which locks)."""

    def __init__(self, store: Store, backend: Backend) -> None:
        self.store = store
        self.backend = backend
        self.stats = FoldStats()
        self.batch = Batch()
        self.problems: list[dict[str, Any]] = []
        self.positions: list[dict[str, Any]] = []

    @property
    def runs(self) -> set[str]:
        return self.batch.runs

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
        """Read the complete lines of one segment after `offset` (at most about `budget` bytes) into the batch;
        returns the budget left and whether lines were left for a later transaction."""
        want = size - offset
        reader = SegmentReader(path, offset)
        events = reader.read(max_bytes=min(want, budget))
        cut = want > budget
        if reader.refused:  # not a segment (a link, a FIFO, ...): one problem, and its position says so
            reader.offset, cut = size, False
        consumed = reader.offset - offset
        if consumed == 0 and not reader.problems:
            return budget, cut
        budget -= consumed
        run_id = self.store.run_id_of(rel)
        self._check_header(reader, run_id)
        position: dict[str, Any] = {"path": rel, "run_id": run_id, "offset": reader.offset}
        position["events"] = count + len(events)
        position["last_time"] = events[-1].time if events else None
        position["closed"] = type(events[-1]) is SegmentClosed if events else None
        if offset == 0:
            header = reader.header
            attempt = header.attempt if header else 0
            rank = header.rank if header else None
            position.update(_header_columns(header))
            if position["last_time"] is None and header is not None:
                position["last_time"] = header.time
        if not reader.refused:
            self.batch.fold(run_id, attempt, events, rank)
        stats = self.stats
        for p in reader.problems:
            self.problems.append({"segment": rel, "offset": p.offset, "kind": p.kind, "detail": p.detail})
            if reader.refused:  # the listing warned already (`Store.segment_entries`)
                stats.problems.append(p.detail)
                continue
            msg = f"{p.kind} line in {p.segment} at byte {p.offset}: {p.detail}"
            stats.problems.append(msg)
            log.warning("%s (skipped)", msg)
        self.positions.append(position)
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

    def write(self, conn: Connection, running: set[str] | None = None) -> None:
        """The batch's rows, the problems and the new positions (if anything was read), then the verdict on
        the runs touched and on the `running` ones (default: every running run)."""
        if self.positions:
            self.batch.write(conn, self.backend)
            if self.problems:
                conn.execute(self.backend.insert(log_problem).on_conflict_do_nothing(), self.problems)
            ins = self.backend.insert(log_segment)
            x = ins.excluded
            set_ = {"offset": x.offset, "events": x.events}
            set_ |= {c: func.coalesce(x[c], log_segment.c[c]) for c in ("last_time", "closed")}
            for group in _same_keys(self.positions):  # first folds carry the header's columns too
                header = {c: x[c] for c in _HEADER_COLUMNS if c in group[0]}  # over a row made beforehand
                conn.execute(ins.on_conflict_do_update(index_elements=["path"], set_=set_ | header), group)
        settle_runs(conn, self.batch.runs, running=running)


_HEADER_COLUMNS = ("attempt", "host", "pid", "boot_id", "started", "heartbeat", "annotation", "rank")


def _header_columns(header: Header | None) -> dict[str, Any]:
    """A segment's header as log_segment columns (written on its first fold only)."""
    if header is None:
        return {
            "attempt": 0,
            "host": None,
            "pid": None,
            "boot_id": None,
            "started": None,
            "heartbeat": None,
            "annotation": False,
            "rank": None,
        }
    w = header.writer
    return {
        "attempt": header.attempt,
        "host": w.host,
        "pid": w.pid,
        "boot_id": w.boot_id,
        "started": w.started,
        "heartbeat": w.heartbeat,
        "annotation": header.annotation,
        "rank": header.rank,
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
    they were folded in. Where several projectors share a database, the caller holds the lock of every one
    of these runs (the backend's run locks), so what is read here is not changed by another projector before
    this transaction commits."""
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
        folded = log_segment.c.offset > 0  # a row made ahead of its first fold says nothing yet
        lives = log_segment.c.annotation.is_not(True)  # edits made after the fact are no sign of life
        for row in conn.execute(select(log_segment).where(log_segment.c.run_id.in_(chunk), folded, lives)):
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


def store_size(store: Store) -> int:
    """Bytes of log in the store now: what a rebuild will read."""
    return sum(size for _, _, size in segment_sizes(store))


def backlog(store: Store, engine: Engine) -> int:
    """Bytes of log on disk that the database has not folded yet: what a catch-up will read now."""
    with engine.connect() as conn:
        folded = dict(conn.execute(select(log_segment.c.path, log_segment.c.offset)).tuples().all())
    return sum(max(size - folded.get(rel, 0), 0) for _, rel, size in segment_sizes(store))
