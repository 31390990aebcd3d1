"""How each event folds into the tables: one registry, read by the live projector and by `alex rebuild`.

Every event type of the log (`events.Event`) has an entry in `FOLDS`: the rows it makes and the rule each
row is written by. Importing this module checks that every type of the union has one, so an event type
added to events.py and forgotten here fails loudly instead of being dropped.

The rules do not depend on the order segments are folded in, so a live projection and a rebuild give the
same rows (only the integer surrogate `id`s, numbered in fold order, may differ):

* `Append`: every row is kept (metric points, datasets, code and environment records, media records and
  histogram bins; metric, code, environment and media rows carry the `attempt`, the life of the run, of
  their segment);
* `Keep`: one row per key, the earliest or the latest by time (ties broken by a column, so the outcome is
  the same whichever row comes first): a parameter keeps its earliest value (the API refuses a second
  value in one process; if two processes disagree the earliest wins), a tag (set or removed: `tag_state`,
  from which `tag` and run.tags are settled), an artifact name and an edited field of a run (`run_edit`:
  name, note, experiment, deleted, from which the run row's columns are settled) their latest, and a run
  its earliest RunStarted's start time, experiment and parent;
* `Metrics`: every point is kept (`BulkAppend`), and each (run, key)'s summary (`metric_summary`) is merged
  with the batch's points in the same transaction (summaries.py: the last value by the one rule, count,
  steps, min and max), so the summary equals one taken over all the points at once, in the same order
  (the one tie folding order can decide: points of one key equal in step, time and attempt from two
  segments, the one folded later last, as their ids number them);
* `Lifecycle`: every start, resume and end is a row; the run's status and end time are then settled from
  the latest of them (projector.settle_runs);
* `BOOKKEEPING`: nothing but the segment's position row (last_time, closed, the header's columns).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

from sqlalchemy import Connection, Table, and_, bindparam, or_, select, update

from .backends.base import Backend
from .errors import UnfoldedEventError
from .events import (
    ArtifactSaved,
    CodeCaptured,
    DatasetLogged,
    EnvironmentCaptured,
    Event,
    Header,
    Heartbeat,
    HistogramLogged,
    MediaLogged,
    MetricLogged,
    ParamLogged,
    RunDeleted,
    RunEdited,
    RunFinished,
    RunResumed,
    RunStarted,
    SegmentClosed,
    TagRemoved,
    TagSet,
)
from .schema import (
    artifact,
    code,
    dataset,
    environment,
    histogram,
    lifecycle,
    media,
    metric_point,
    metric_summary,
    parameter,
    run,
    run_edit,
    tag,
    tag_state,
)
from .summaries import COLUMNS as SUMMARY_COLUMNS
from .summaries import IN_CHUNK, gather, id_chunks, merge
from .values import decode_float

Row = dict[str, Any]
#: An event's rows for one rule: (run id, attempt of its segment, the event) -> rows.
RowsOf = Callable[[str, int, Any], list[Row]]


class Rule(ABC):
    """How the rows of one table are written, in the fold's transaction."""

    table: Table | None

    @abstractmethod
    def write(self, conn: Connection, backend: Backend, rows: list[Any]) -> None:
        """Write `rows` (never empty)."""


@dataclass(frozen=True, eq=False)
class Append(Rule):
    """Every row is a new row."""

    table: Table

    def write(self, conn: Connection, backend: Backend, rows: list[Any]) -> None:
        conn.execute(self.table.insert(), rows)


@dataclass(frozen=True, eq=False)
class Lifecycle(Append):
    """Every start, resume and end of a run is a row; the run's status is settled from the latest."""


@dataclass(frozen=True, eq=False)
class BulkAppend(Rule):
    """Every row is a new row, given as a plain tuple of `columns` and written the backend's fastest way."""

    table: Table
    columns: tuple[str, ...]

    def write(self, conn: Connection, backend: Backend, rows: list[Any]) -> None:
        backend.bulk_insert(conn, self.table, self.columns, rows)


@dataclass(frozen=True, eq=False)
class Metrics(BulkAppend):
    """Metric points, gathered as (run_id, key, value, step, timestamp, attempt, rank): their (run, key)
    summaries settled first (`settle_summaries`, which gives each its series id), then the points appended to
    `metric_point` under those ids."""

    def write(self, conn: Connection, backend: Backend, rows: list[Any]) -> None:
        series = settle_summaries(conn, backend, rows)
        # unpacked by name, not sliced: a third of the cost on 10 M points
        points = [(series[(rid, key)], v, step, t, attempt, rank) for rid, key, v, step, t, attempt, rank in rows]
        super().write(conn, backend, points)


def settle_summaries(conn: Connection, backend: Backend, points: list[tuple[Any, ...]]) -> dict[tuple[str, str], int]:
    """Merge the summaries of `points` (metric rows, in fold order) into `metric_summary` and return each
    (run, key)'s series id: a (run, key) new to the database gets its row first (its id is what the points
    refer to), then the stored rows of every (run, key) touched are read (by their unique key), merged
    (`summaries.merge`) and written back in one batched upsert. Never a read of the stored points: a fold costs
    the same on a 10-million-point run. On a database server the fold holds the runs' locks (`lock_runs`), so
    no other projector merges the same row meanwhile."""
    new = gather(points)
    ins = backend.insert(metric_summary)
    conn.execute(
        ins.on_conflict_do_nothing(index_elements=["run_id", "key"]),
        [{"run_id": rid, "key": key, "count": 0} for rid, key in new],  # count 0: no point stored yet
    )
    runs = sorted({rid for rid, _ in new})
    keys = sorted({key for _, key in new})
    s = metric_summary.c
    series: dict[tuple[str, str], int] = {}
    for chunk in id_chunks(runs):
        q = select(metric_summary).where(s.run_id.in_(chunk))
        if len(keys) <= IN_CHUNK:  # by the unique key; beyond the bound-parameter budget, every key of these runs
            q = q.where(s.key.in_(keys))
        for row in conn.execute(q):
            found = new.get((row.run_id, row.key))
            if found is not None:
                series[(row.run_id, row.key)] = row.id
                stored = [row._mapping[c] for c in SUMMARY_COLUMNS]
                if stored[0]:  # a count of 0: the row was made just now, for its id
                    new[(row.run_id, row.key)] = merge(stored, found)
    upsert = ins.on_conflict_do_update(
        index_elements=["run_id", "key"], set_={c: ins.excluded[c] for c in SUMMARY_COLUMNS}
    )
    conn.execute(
        upsert,
        [{"run_id": rid, "key": key, **dict(zip(SUMMARY_COLUMNS, g, strict=True))} for (rid, key), g in new.items()],
    )
    return series


@dataclass(frozen=True, eq=False)
class Keep(Rule):
    """One row per `key`: a new row replaces the one there when it is later (`latest`) or earlier than it by
    `time`, ties broken by the greater (latest) or smaller `tiebreak`. `then` settles what is derived from
    the table (run.tags, run.name, ...) for the runs whose rows were written: `Batch.write` calls it once per
    transaction, after every rule wrote, whichever rules share it."""

    table: Table
    key: tuple[str, ...]
    columns: tuple[str, ...]
    tiebreak: str
    latest: bool
    time: str = "timestamp"
    then: Callable[[Connection, set[str]], None] | None = field(default=None)

    def write(self, conn: Connection, backend: Backend, rows: list[Any]) -> None:
        ins = backend.insert(self.table)
        x, old = ins.excluded, self.table.c
        new_time, old_time, new_key, old_key = x[self.time], old[self.time], x[self.tiebreak], old[self.tiebreak]
        if self.latest:
            wins = or_(old_time.is_(None), new_time > old_time, and_(new_time == old_time, new_key > old_key))
        else:
            wins = or_(old_time.is_(None), new_time < old_time, and_(new_time == old_time, new_key < old_key))
        conn.execute(
            ins.on_conflict_do_update(index_elements=list(self.key), set_={c: x[c] for c in self.columns}, where=wins),
            rows,
        )


@dataclass(frozen=True, eq=False)
class _Bookkeeping(Rule):
    """No rows of its own: what the event says is read from its segment's position row."""

    table: None = None

    def write(self, conn: Connection, backend: Backend, rows: list[Any]) -> None:
        """Nothing to write."""


def settle_tags(conn: Connection, run_ids: set[str]) -> None:
    """The tags the runs have now (`tag`, and run.tags as JSON): those of `tag_state` not removed."""
    ids = sorted(run_ids)
    tags: dict[str, dict[str, str]] = {r: {} for r in ids}
    live = []
    rows = conn.execute(
        select(tag_state.c.run_id, tag_state.c.key, tag_state.c.value, tag_state.c.timestamp)
        .where(tag_state.c.run_id.in_(ids), tag_state.c.value.is_not(None))
        .order_by(tag_state.c.run_id, tag_state.c.key)
    )
    for rid, key, value, timestamp in rows:
        tags[rid][key] = value
        live.append({"run_id": rid, "key": key, "value": value, "timestamp": timestamp})
    conn.execute(tag.delete().where(tag.c.run_id.in_(ids)))
    if live:
        conn.execute(tag.insert(), live)
    conn.execute(
        update(run).where(run.c.id == bindparam("rid")).values(tags=bindparam("tags")),
        [{"rid": rid, "tags": t} for rid, t in tags.items()],
    )


def settle_edits(conn: Connection, run_ids: set[str]) -> None:
    """run.name, note and deleted from the runs' latest edits (`run_edit`), and experiment_name where the
    run was moved to another experiment (else it stays its start's)."""
    ids = sorted(run_ids)
    edits: dict[str, dict[str, str]] = {r: {} for r in ids}
    for rid, name, value in conn.execute(
        select(run_edit.c.run_id, run_edit.c.field, run_edit.c.value).where(run_edit.c.run_id.in_(ids))
    ):
        edits[rid][name] = value
    conn.execute(
        update(run)
        .where(run.c.id == bindparam("rid"))
        .values(name=bindparam("v_name"), note=bindparam("v_note"), deleted=bindparam("v_deleted")),
        [
            {"rid": rid, "v_name": e.get("name"), "v_note": e.get("note") or None, "v_deleted": e.get("deleted") == "1"}
            for rid, e in edits.items()
        ],
    )
    moved = [{"rid": rid, "v_experiment": e["experiment"]} for rid, e in edits.items() if "experiment" in e]
    if moved:
        conn.execute(
            update(run).where(run.c.id == bindparam("rid")).values(experiment_name=bindparam("v_experiment")), moved
        )


RUN_START = Keep(
    run,
    ("id",),
    ("experiment_name", "parent_id", "timestamp_start"),
    "experiment_name",
    False,
    "timestamp_start",
    then=settle_edits,  # an edit folded before the start (another projector's) still wins
)
LIFECYCLE = Lifecycle(lifecycle)
DATASET = Append(dataset)
CODE = Append(code)
ENVIRONMENT = Append(environment)
PARAMETER = Keep(parameter, ("run_id", "key"), ("value", "timestamp"), "value", latest=False)
TAG = Keep(tag_state, ("run_id", "key"), ("value", "timestamp"), "value", latest=True, then=settle_tags)
RUN_EDIT = Keep(run_edit, ("run_id", "field"), ("value", "timestamp"), "value", latest=True, then=settle_edits)
ARTIFACT = Keep(
    artifact, ("run_id", "name"), ("type", "path", "size", "sha256", "timestamp", "links"), "sha256", latest=True
)
MEDIA = Append(media)
HISTOGRAM = Append(histogram)
METRIC = Metrics(metric_point, ("series", "value", "step", "timestamp", "attempt", "rank"))
BOOKKEEPING = _Bookkeeping()

#: Every rule with rows, in the order a transaction writes them (foreign keys: the run rows come first).
RULES: tuple[Rule, ...] = (
    RUN_START,
    LIFECYCLE,
    DATASET,
    CODE,
    ENVIRONMENT,
    PARAMETER,
    TAG,
    RUN_EDIT,
    ARTIFACT,
    MEDIA,
    HISTOGRAM,
    METRIC,
)


def _life(event: str, status: str, error: str | None, attempt: int, e: Any, run_id: str) -> list[Row]:
    return [
        {"run_id": run_id, "event": event, "status": status, "error": error, "attempt": attempt, "timestamp": e.time}
    ]


def _record(with_attempt: bool) -> RowsOf:
    """Rows of an event whose fields are its table's columns (`time` is `timestamp`)."""

    def rows(run_id: str, attempt: int, e: Any) -> list[Row]:
        row = {f: getattr(e, f) for f in e.__struct_fields__}
        row["timestamp"] = row.pop("time")
        row["run_id"] = run_id
        if with_attempt:
            row["attempt"] = attempt
        return [row]

    return rows


def _keyed(run_id: str, attempt: int, e: Any) -> list[Row]:
    return [{"run_id": run_id, "key": e.key, "value": e.value, "timestamp": e.time}]


def _artifact(run_id: str, attempt: int, e: Any) -> list[Row]:
    return [
        {
            "run_id": run_id,
            "name": e.name,
            "type": e.type,
            "path": e.path,
            "size": e.size,
            "sha256": e.sha256,
            "timestamp": e.time,
            "links": e.links or None,
        }
    ]


#: Every column of a media row, so that rows of every kind have the same keys (one executemany).
_MEDIA_NONE = {c.name: None for c in media.c if c.name != "id"}


def _media(run_id: str, attempt: int, e: Any) -> list[Row]:
    files = [{"path": f.path, "format": f.format, "size": f.size, "sha256": f.sha256} for f in e.files]
    row = {
        **_MEDIA_NONE,
        **{f: getattr(e, f) for f in ("key", "step", "kind", "path", "format", "size", "sha256", "width", "height")},
        **{f: getattr(e, f) for f in ("caption", "n_rows", "n_cols")},
    }
    row.update(run_id=run_id, columns=e.columns or None, files=files or None, attempt=attempt, timestamp=e.time)
    return [row]


def _histogram_media(run_id: str, attempt: int, e: Any) -> list[Row]:
    row = {**_MEDIA_NONE, "run_id": run_id, "key": e.key, "step": e.step, "kind": "histogram"}
    row.update(value_min=e.min, value_max=e.max, value_count=e.count, nonfinite=e.nonfinite)
    row.update(n_rows=len(e.counts), attempt=attempt, timestamp=e.time)
    return [row]


def _histogram_bins(run_id: str, attempt: int, e: Any) -> list[Row]:
    edges = e.edges
    return [
        {"run_id": run_id, "key": e.key, "step": e.step, "bin": i, "lower": edges[i], "upper": edges[i + 1],
         "count": n, "timestamp": e.time}
        for i, n in enumerate(e.counts)
    ]  # fmt: skip


def _start(run_id: str, attempt: int, e: Any) -> list[Row]:
    return [{"id": run_id, "experiment_name": e.experiment, "parent_id": e.parent_id, "timestamp_start": e.time}]


def _start_tags(run_id: str, attempt: int, e: Any) -> list[Row]:
    return [{"run_id": run_id, "key": k, "value": v, "timestamp": e.time} for k, v in e.tags.items()]


def _untag(run_id: str, attempt: int, e: Any) -> list[Row]:
    return [{"run_id": run_id, "key": e.key, "value": None, "timestamp": e.time}]


def _edited(**fields: Any) -> list[Row]:
    """run_edit rows of the fields given (None: not edited)."""
    time, run_id = fields.pop("time"), fields.pop("run_id")
    return [{"run_id": run_id, "field": f, "value": v, "timestamp": time} for f, v in fields.items() if v is not None]


def _start_name(run_id: str, attempt: int, e: Any) -> list[Row]:
    return _edited(run_id=run_id, time=e.time, name=e.name)


def _edit(run_id: str, attempt: int, e: Any) -> list[Row]:
    return _edited(
        run_id=run_id,
        time=e.time,
        name=e.name,
        note=e.note,
        experiment=e.experiment,
        experiment_note=e.experiment_note,
    )


def _tombstone(run_id: str, attempt: int, e: Any) -> list[Row]:
    return _edited(run_id=run_id, time=e.time, deleted="1" if e.deleted else "0")


#: Event type -> the rules its rows are written by, each with the function making those rows (None: no
#: rows, or made inline by the fold loop).
FOLDS: dict[type, tuple[tuple[Rule, RowsOf | None], ...]] = {
    MetricLogged: ((METRIC, None),),  # the hot path: Batch.fold makes its tuples inline
    ParamLogged: ((PARAMETER, _keyed),),
    TagSet: ((TAG, _keyed),),
    TagRemoved: ((TAG, _untag),),
    RunEdited: ((RUN_EDIT, _edit),),
    RunDeleted: ((RUN_EDIT, _tombstone),),
    ArtifactSaved: ((ARTIFACT, _artifact),),
    MediaLogged: ((MEDIA, _media),),
    HistogramLogged: ((MEDIA, _histogram_media), (HISTOGRAM, _histogram_bins)),
    RunStarted: (
        (RUN_START, _start),
        (LIFECYCLE, lambda rid, attempt, e: _life("started", "running", None, attempt, e, rid)),
        (TAG, _start_tags),
        (RUN_EDIT, _start_name),
    ),
    RunResumed: ((LIFECYCLE, lambda rid, attempt, e: _life("resumed", "running", None, e.attempt, e, rid)),),
    RunFinished: ((LIFECYCLE, lambda rid, attempt, e: _life("finished", e.status, e.error, attempt, e, rid)),),
    DatasetLogged: ((DATASET, _record(with_attempt=False)),),
    CodeCaptured: ((CODE, _record(with_attempt=True)),),
    EnvironmentCaptured: ((ENVIRONMENT, _record(with_attempt=True)),),
    Heartbeat: ((BOOKKEEPING, None),),
    SegmentClosed: ((BOOKKEEPING, None),),
    Header: ((BOOKKEEPING, None),),
}


def check_registry(union: Any, folds: dict[type, Any]) -> None:
    """Fail (UnfoldedEventError, a TypeError) unless every type of the event union has a fold entry (a new
    event type must say how it folds) and every rule of an entry is one `Batch.write` writes."""
    missing = [t.__name__ for t in get_args(union) if t not in folds]
    unwritten = {rule for into in folds.values() for rule, _ in into} - set(RULES) - {BOOKKEEPING}
    if unwritten:
        tables = ", ".join(sorted(str(rule.table) for rule in unwritten))
        raise UnfoldedEventError(f"the fold rules of table(s) {tables} are missing from alexandria.folding.RULES")
    if missing:
        names = ", ".join(missing)
        raise UnfoldedEventError(f"no fold rule for event type(s) {names}: add them to alexandria.folding.FOLDS")


check_registry(Event, FOLDS)

#: What the fold loop does per event type other than MetricLogged: (rule, rows) for every rule with rows.
_ROWS = {t: tuple((rule, rows) for rule, rows in into if rows is not None) for t, into in FOLDS.items()}


@dataclass
class Batch:
    """Rows of one transaction, gathered before any is written."""

    runs: set[str] = field(default_factory=set)
    rows: dict[Rule, list[Any]] = field(default_factory=lambda: {rule: [] for rule in RULES})

    def fold(self, run_id: str, attempt: int, events: list[Any], rank: int | None = None) -> None:
        """Gather the rows of one segment's `events`; `attempt` and `rank` are its header's."""
        self.runs.add(run_id)
        metrics = self.rows[METRIC]
        rows = self.rows
        for e in events:
            t = type(e)
            if t is MetricLogged:
                v = e.value
                if type(v) is not float:
                    v = decode_float(v)
                    if v != v:
                        v = None  # NaN: SQL has no NaN in SQLite; NULL stands for it
                metrics.append((run_id, e.key, v, e.step, e.time, attempt, rank))
            else:
                for rule, make in _ROWS[t]:
                    rows[rule].extend(make(run_id, attempt, e))

    def write(self, conn: Connection, backend: Backend) -> None:
        """Every rule's rows, in `RULES` order, after the run rows they refer to; then each settle step once,
        for the runs of every rule that shares it (a run's start and its edits settle run.name together)."""
        if self.runs:
            new_runs = [{"id": r, "status": "running"} for r in sorted(self.runs)]
            conn.execute(backend.insert(run).on_conflict_do_nothing(), new_runs)
        settle: dict[Callable[[Connection, set[str]], None], set[str]] = {}
        for rule in RULES:
            found = self.rows[rule]
            if found:
                rule.write(conn, backend, found)
                if isinstance(rule, Keep) and rule.then is not None:
                    settle.setdefault(rule.then, set()).update(row[rule.key[0]] for row in found)
        for then, run_ids in settle.items():
            then(conn, run_ids)
