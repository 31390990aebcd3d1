"""The read model: every question the CLI, the reports, the dashboard and Python callers ask of the
projection, answered here (and in summaries.py, which defines a metric's last value), over a read-only
engine. Views format what these return; they hold no SQL of their own."""

from __future__ import annotations

import itertools
import math
import operator
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Result, and_, case, exists, func, or_, select
from sqlalchemy.sql import ColumnElement

from .backends import backend_of
from .db import open_database, reader_engine
from .errors import InvalidInputError, QueryError, RunNotFoundError, StoreError
from .filters import compile_filter
from .schema import (
    artifact,
    code,
    dataset,
    environment,
    histogram,
    lifecycle,
    log_problem,
    media,
    metric_summary,
    parameter,
    run,
    run_edit,
    tag,
)
from .store import Store
from .summaries import MetricSummary, aggregate, id_chunks, last_value, metric_summaries
from .values import param_to_str

if TYPE_CHECKING:
    import numpy as np  # imported where arrays are made: `alex runs` never loads numpy

#: Runs given as ids or unique id prefixes; a single string instead names a sweep's parent run: its children.
RunSelection = Sequence[str] | str


def list_runs(
    engine: Engine,
    experiment: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    *,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    metric_filter: tuple[str, str, float] | None = None,
    since: float | None = None,
    until: float | None = None,
    parent_id: str | None = None,
    deleted: bool | None = False,
    filter: str | None = None,  # noqa: A002 (the name callers know, from `alex runs --filter`)
) -> list[dict[str, Any]]:
    """Runs, newest first, with their parameter and metric counts (see `run_tree` for the nesting).
    Deleted runs are left out (`deleted=True`: only they, `None`: every run).

    Filters combine with AND: `tags` and `params` match exact text (parameters as `param_to_str`
    stores them, so `{"lr": 0.01}` works); `metric_filter=("val/acc", ">=", 0.9)` keeps runs whose
    *last* value of the metric (see summaries.py) passes; `since`/`until` bound the start
    time (unix seconds); `parent_id` keeps one sweep's children; `filter` is an expression of the filter
    language (`filters.py`, docs/filters.md), compiled into this one query (FilterError when it is not one).
    """

    nparams = select(func.count()).where(parameter.c.run_id == run.c.id).scalar_subquery()
    keys = select(func.count()).where(metric_summary.c.run_id == run.c.id).scalar_subquery()
    q = select(run, nparams.label("num_params"), keys.label("num_metric_keys")).order_by(
        run.c.timestamp_start.desc().nulls_last(), run.c.id
    )
    q = q.where(
        *run_conditions(
            experiment=experiment,
            status=status,
            tags=tags,
            params=params,
            metric_filter=metric_filter,
            since=since,
            until=until,
            parent_id=parent_id,
            deleted=deleted,
            filter=filter,
        )
    )
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        return row_dicts(conn.execute(q))


def row_dicts(result: Result[Any]) -> list[dict[str, Any]]:
    """The rows of `result` as dicts by column name, fetched at once with the names read once: a thousand runs'
    rows cost half what a `Row._mapping` each costs (the runs list, the runs table)."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


def run_conditions(
    experiment: str | None = None,
    status: str | None = None,
    *,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    metric_filter: tuple[str, str, float] | None = None,
    since: float | None = None,
    until: float | None = None,
    parent_id: str | None = None,
    deleted: bool | None = False,
    filter: str | None = None,  # noqa: A002
) -> list[ColumnElement[bool]]:
    """`list_runs`' filters as conditions on the `run` table, for every query that lists runs (the runs table
    of the dashboard too, runs_table.py): FilterError when `filter` is not the language."""
    out: list[ColumnElement[bool]] = []
    if filter:
        out.append(compile_filter(filter))
    if deleted is not None:
        out.append(run.c.deleted == deleted)
    if experiment is not None:
        out.append(run.c.experiment_name == experiment)
    if status is not None:
        out.append(run.c.status == status)
    if parent_id is not None:
        out.append(run.c.parent_id == parent_id)
    if since is not None:
        out.append(run.c.timestamp_start >= since)
    if until is not None:
        out.append(run.c.timestamp_start <= until)
    for key, value in (tags or {}).items():
        out.append(exists().where(tag.c.run_id == run.c.id, tag.c.key == key, tag.c.value == param_to_str(value)))
    for key, value in (params or {}).items():
        out.append(
            exists().where(
                parameter.c.run_id == run.c.id, parameter.c.key == key, parameter.c.value == param_to_str(value)
            )
        )
    if metric_filter is not None:
        key, op, threshold = metric_filter
        if op not in _COMPARE:
            raise QueryError(f"metric filter operator {op!r} is not one of {', '.join(_COMPARE)}")
        out.append(_COMPARE[op](last_value(run.c.id, key), threshold))
    return out


_COMPARE: dict[str, Callable[[Any, float], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
}


def metric_keys(engine: Engine, run_id: str) -> list[str]:
    """The metric keys a run logged, sorted."""
    return run_metric_keys(engine, [run_id])[run_id]


def experiments(engine: Engine) -> list[str]:
    """Every experiment with a live run, sorted (runs without one are not counted; an experiment whose runs
    are all deleted is gone with them)."""
    with engine.connect() as conn:
        names = conn.execute(
            select(run.c.experiment_name).where(run.c.deleted.is_(False)).distinct().order_by(run.c.experiment_name)
        )
        return [e for e in names.scalars() if e is not None]


def experiment_note(engine: Engine, experiment: str) -> str | None:
    """An experiment's note (Markdown): the latest `experiment_note` edit among its runs (edits.py writes it
    into every run of the experiment); None when it has none or it was cleared."""
    return experiment_notes(engine, [experiment]).get(experiment)


def experiment_notes(engine: Engine, experiments: Sequence[str] | None = None) -> dict[str, str]:
    """`experiment_note` of each experiment (every one when None) in one query: the latest by time, then by
    run id; experiments without a note, or whose note was cleared, are left out."""
    q = (
        select(run.c.experiment_name, run_edit.c.value)
        .join(run, run.c.id == run_edit.c.run_id)
        .where(run_edit.c.field == "experiment_note")
        .order_by(run_edit.c.timestamp, run_edit.c.run_id)
    )
    if experiments is not None:
        q = q.where(run.c.experiment_name.in_(list(experiments)))
    with engine.connect() as conn:
        latest = {e: note for e, note in conn.execute(q)}  # in order: each experiment's latest comes last
    return {e: note for e, note in latest.items() if note}


def run_tree(rows: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """The rows with their depth, each child right under its parent (children oldest first); a run whose
    parent is not among the rows is shown at the top level."""
    ids = {r["id"] for r in rows}
    children: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("parent_id") in ids:
            children.setdefault(r["parent_id"], []).append(r)
    out: list[tuple[int, dict[str, Any]]] = []

    def visit(r: dict[str, Any], depth: int) -> None:
        out.append((depth, r))
        for child in sorted(children.get(r["id"], []), key=lambda c: (c["timestamp_start"] or 0.0, c["id"])):
            visit(child, depth + 1)

    for r in rows:
        if r.get("parent_id") not in ids:
            visit(r, 0)
    return out


def resolve_run_id(engine: Engine, ref: str) -> str:
    """The full id of the one run `ref` names: its id, a unique prefix of it, its name, or
    EXPERIMENT/NAME where the name alone is not unique (names are looked up when no id starts with `ref`;
    deleted runs are found too, so that they can be restored)."""
    if not ref:
        raise RunNotFoundError("an empty run id; give a run id (or a unique prefix of one) or a run name")
    ids: Sequence[str] = []
    with engine.connect() as conn:
        if all(c in "0123456789abcdef" for c in ref):
            ids = conn.execute(select(run.c.id).where(run.c.id.like(ref + "%")).limit(2)).scalars().all()
            if len(ids) > 1:
                raise RunNotFoundError(f"run id prefix {ref!r} is ambiguous; give more characters")
            if ids:
                return ids[0]
        named = conn.execute(
            select(run.c.id, run.c.experiment_name).where(run.c.name == ref).order_by(run.c.timestamp_start).limit(6)
        ).all()
        if not named and "/" in ref:
            options = [(ref[:i], ref[i + 1 :]) for i, c in enumerate(ref) if c == "/"]
            named = conn.execute(
                select(run.c.id, run.c.experiment_name)
                .where(or_(*(and_(run.c.experiment_name == e, run.c.name == n) for e, n in options)))
                .limit(6)
            ).all()
    if not named:
        raise RunNotFoundError(f"no run with id or name {ref!r}; `alex runs` lists the runs")
    if len(named) > 1:
        some = ", ".join(f"{rid[:8]} in {exp!r}" for rid, exp in named[:5])
        raise RunNotFoundError(
            f"run name {ref!r} is ambiguous: runs {some}{', ...' if len(named) > 5 else ''} have it; "
            "give the id (or a unique prefix), or EXPERIMENT/NAME"
        )
    return str(named[0][0])


# -- many runs at once: a fixed number of queries per chunk of ids ----------------------------------------------
_HEX = frozenset("0123456789abcdef")


def resolve_run_ids(engine: Engine, prefixes: Sequence[str], *, errors: list[str] | None = None) -> list[str]:
    """`resolve_run_id` of each prefix, in order: full ids are looked up in one query per chunk, only shorter
    prefixes cost a query each. One that names no run raises `RunNotFoundError`, or, given `errors`, is left
    out and its message appended there."""
    full = [p for p in prefixes if len(p) == 32 and _HEX.issuperset(p)]
    known: set[str] = set()
    with engine.connect() as conn:
        for chunk in id_chunks(full):
            known.update(conn.execute(select(run.c.id).where(run.c.id.in_(chunk))).scalars())
    out = []
    for prefix in prefixes:
        try:
            out.append(prefix if prefix in known else resolve_run_id(engine, prefix))
        except RunNotFoundError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
    return out


def select_runs(engine: Engine, run_ids: RunSelection) -> list[str]:
    """Full run ids, in the order given, without repeats. A string is a sweep's parent run: its children."""
    if isinstance(run_ids, str):
        return sweep_children(engine, run_ids)
    ids = list(dict.fromkeys(resolve_run_ids(engine, run_ids)))
    if not ids:
        raise InvalidInputError("no runs selected: give at least one run id (or a unique prefix of one)")
    gone = deleted_runs(engine, ids)
    if gone:
        raise InvalidInputError(
            f"run {gone[0]} is deleted{f' (and {len(gone) - 1} more)' if len(gone) > 1 else ''}: "
            f"`alex restore {gone[0][:8]}` brings it back"
        )
    return ids


def deleted_runs(engine: Engine, run_ids: Sequence[str]) -> list[str]:
    """Those of `run_ids` that are deleted, in the order given: what every view of chosen runs leaves out
    (or refuses), as `list_runs` leaves them out of every listing."""
    found: set[str] = set()
    with engine.connect() as conn:
        for chunk in id_chunks(run_ids):
            found.update(conn.execute(select(run.c.id).where(run.c.id.in_(chunk), run.c.deleted.is_(True))).scalars())
    return [rid for rid in run_ids if rid in found]


def sweep_children(engine: Engine, parent: str) -> list[str]:
    """The child runs of `parent` (an id, a unique prefix or a name), oldest first; deleted ones left out."""
    parent_id = resolve_run_id(engine, parent)
    with engine.connect() as conn:
        children = (
            conn.execute(
                select(run.c.id)
                .where(run.c.parent_id == parent_id, run.c.deleted.is_(False))
                .order_by(run.c.timestamp_start.nulls_last(), run.c.id)
            )
            .scalars()
            .all()
        )
    if not children:
        raise InvalidInputError(f"run {parent_id} has no child runs: --sweep takes the parent run of a sweep")
    return list(children)


def run_rows(engine: Engine, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The `run` rows of full run ids, in the order given."""
    found: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for chunk in id_chunks(run_ids):
            found.update((r["id"], r) for r in row_dicts(conn.execute(select(run).where(run.c.id.in_(chunk)))))
    missing = [rid for rid in run_ids if rid not in found]
    if missing:
        raise RunNotFoundError(f"no run {missing[0]!r}")
    return [found[rid] for rid in run_ids]


def run_params(engine: Engine, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """Per run id, its parameters (key -> stored text), keys sorted."""
    out: dict[str, dict[str, str]] = {rid: {} for rid in run_ids}
    with engine.connect() as conn:
        for chunk in id_chunks(run_ids):
            q = select(parameter.c.run_id, parameter.c.key, parameter.c.value).where(parameter.c.run_id.in_(chunk))
            for rid, key, value in conn.execute(q.order_by(parameter.c.run_id, parameter.c.key)).all():
                out[rid][key] = value
    return out


def run_metric_keys(engine: Engine, run_ids: Sequence[str]) -> dict[str, list[str]]:
    """Per run id, the metric keys it logged, sorted (one `metric_summary` row each)."""
    out: dict[str, list[str]] = {rid: [] for rid in run_ids}
    s = metric_summary.c
    with engine.connect() as conn:
        for chunk in id_chunks(run_ids):
            q = select(s.run_id, s.key).where(s.run_id.in_(chunk)).order_by(s.run_id, s.key)
            for rid, key in conn.execute(q):
                out[rid].append(key)
    return out


def run_metrics(
    engine: Engine, run_ids: Sequence[str], keys: Sequence[str] | None = None, *, extremes: bool = True
) -> dict[str, dict[str, MetricSummary]]:
    """Per run id, per metric key (sorted), its `MetricSummary`: see summaries.py for the last value."""
    with engine.connect() as conn:
        return metric_summaries(conn, run_ids, keys, extremes=extremes)


def metric_by_run(engine: Engine, run_ids: Sequence[str], key: str, agg: str) -> list[float | None]:
    """One number per run for metric `key`: its last value, min or max (`agg`); None where it is not finite."""
    if agg not in ("last", "min", "max"):
        raise InvalidInputError(f"agg must be 'last', 'min' or 'max', got {agg!r}")
    summaries = run_metrics(engine, run_ids, [key], extremes=agg != "last")
    return [aggregate(summaries[rid].get(key), agg) for rid in run_ids]


def has_metric(engine: Engine, run_id: str, key: str) -> bool:
    """Whether the run logged at least one point of `key`."""
    s = metric_summary.c
    q = select(s.run_id).where(s.run_id == run_id, s.key == key)
    with engine.connect() as conn:
        return conn.execute(q).first() is not None


def artifact_record(engine: Engine, run_id: str, name: str) -> dict[str, Any] | None:
    """The artifact row (path as recorded, type, logged size and SHA-256) of a run's artifact `name`, or None."""
    q = select(artifact.c.path, artifact.c.type, artifact.c.size, artifact.c.sha256).where(
        artifact.c.run_id == run_id, artifact.c.name == name
    )
    with engine.connect() as conn:
        row = conn.execute(q).first()
    return None if row is None else dict(row._mapping)


def run_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(run)).scalar_one())


def list_experiments(engine: Engine, deleted: bool | None = False) -> list[dict[str, Any]]:
    """Experiments, the most recently active first (`alex experiments`): `name`, `runs` (live ones),
    `deleted` (deleted ones), `last_activity` (the latest start or sign of life of any of its runs, unix
    seconds) and `note` (`experiment_note`: Markdown, or None). As `list_runs`: experiments with a live run
    by default, `deleted=True` only those whose every run is deleted, `None` all."""
    live = func.sum(case((run.c.deleted.is_(False), 1), else_=0))
    gone = func.sum(case((run.c.deleted.is_(True), 1), else_=0))
    last = func.max(func.coalesce(run.c.last_seen, run.c.timestamp_start))
    q = (
        select(run.c.experiment_name, live.label("runs"), gone.label("deleted"), last.label("last_activity"))
        .where(run.c.experiment_name.is_not(None))
        .group_by(run.c.experiment_name)
        .order_by(last.desc().nulls_last(), run.c.experiment_name)
    )
    if deleted is not None:
        q = q.having(live == 0 if deleted else live > 0)
    with engine.connect() as conn:
        found = conn.execute(q).all()
    notes = experiment_notes(engine)
    return [
        {"name": exp, "runs": int(n_live), "deleted": int(n_gone), "last_activity": seen, "note": notes.get(exp)}
        for exp, n_live, n_gone, seen in found
    ]


def recorded_files(engine: Engine, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """What the runs (every run when None) recorded as files, with the size and SHA-256 logged for each:
    every artifact (kind "artifact", its path relative to the store), every media file (kind "media", named
    by its key, step and format) and every dataset logged from a file
    (kind "dataset", its absolute path; one row per distinct path and hash), by run, kind and name."""
    arts = select(artifact.c.run_id, artifact.c.name, artifact.c.path, artifact.c.size, artifact.c.sha256)
    sets = (
        select(dataset.c.run_id, dataset.c.name, dataset.c.role, dataset.c.path, dataset.c.size, dataset.c.hash)
        .where(dataset.c.path.is_not(None))
        .distinct()
    )
    chunks: list[list[str] | None] = [None] if run_ids is None else list(id_chunks(list(run_ids)))
    out: list[dict[str, Any]] = []
    with engine.connect() as conn:
        for chunk in chunks:
            a = arts if chunk is None else arts.where(artifact.c.run_id.in_(chunk))
            d = sets if chunk is None else sets.where(dataset.c.run_id.in_(chunk))
            out.extend({"kind": "artifact", **r._mapping} for r in conn.execute(a))
            m = select(media.c.run_id, media.c.key, media.c.step, media.c.path, media.c.format, media.c.size)
            m = m.add_columns(media.c.sha256, media.c.files).where(media.c.path.is_not(None))
            out.extend(_media_files(conn.execute(m if chunk is None else m.where(media.c.run_id.in_(chunk)))))
            out.extend(
                {
                    "kind": "dataset",
                    "run_id": r.run_id,
                    "name": f"{r.name} ({r.role})" if r.role else r.name,
                    "path": r.path,
                    "size": r.size,
                    "sha256": r.hash,
                }
                for r in conn.execute(d)
            )
    out.sort(key=lambda f: (f["run_id"], f["kind"], f["name"] or "", f["path"]))
    return out


def _media_files(rows: Any) -> Iterator[dict[str, Any]]:
    """`recorded_files` rows of media records: the record's own file and its others (a figure's SVG)."""
    for r in rows:
        at = "" if r.step is None else f" step {r.step}"
        for f in [{"path": r.path, "format": r.format, "size": r.size, "sha256": r.sha256}, *(r.files or [])]:
            yield {
                "kind": "media",
                "run_id": r.run_id,
                "name": f"{r.key}{at} ({f['format']})",
                "path": f["path"],
                "size": f["size"],
                "sha256": f["sha256"],
            }


def media_keys(conn: Any, run_id: str) -> list[dict[str, Any]]:
    """A run's media keys: each key's kind, how many records it has and its last step (None: no step)."""
    q = (
        select(media.c.key, media.c.kind, func.count().label("count"), func.max(media.c.step).label("last_step"))
        .where(media.c.run_id == run_id)
        .group_by(media.c.key, media.c.kind)
        .order_by(media.c.key, media.c.kind)
    )
    return [dict(r._mapping) for r in conn.execute(q)]


#: The `media` columns a page shows of a record (all but the timestamp and attempt).
_MEDIA_COLUMNS = (
    "id", "key", "step", "kind", "path", "format", "size", "sha256", "width", "height", "caption",
    "n_rows", "n_cols", "columns", "files", "value_min", "value_max", "value_count", "nonfinite",
)  # fmt: skip


def media_records(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """Every media record of a run, by key then step (a record without a step first), then the order logged."""
    cols = [media.c[name] for name in _MEDIA_COLUMNS]
    q = (
        select(*cols)
        .where(media.c.run_id == run_id)
        .order_by(media.c.key, media.c.step.is_not(None), media.c.step, media.c.id)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def media_record(engine: Engine, run_id: str, media_id: int) -> dict[str, Any] | None:
    """One media record of a run by its id, or None (an id of another run is None too)."""
    q = select(*[media.c[name] for name in _MEDIA_COLUMNS]).where(media.c.run_id == run_id, media.c.id == media_id)
    with engine.connect() as conn:
        row = conn.execute(q).first()
    return None if row is None else dict(row._mapping)


@dataclass
class HistogramSteps:
    """A histogram key's records over steps: `steps[i]`'s bins are `lower[i]`, `upper[i]`, `counts[i]`."""

    steps: list[int | None]
    lower: list[list[float]]
    upper: list[list[float]]
    counts: list[list[int]]


def histogram_steps(engine: Engine, run_id: str, key: str) -> HistogramSteps:
    """The bins of every histogram a run logged under `key`, one list per record, by step (one query)."""
    q = (
        select(histogram.c.step, histogram.c.bin, histogram.c.lower, histogram.c.upper, histogram.c.count)
        .where(histogram.c.run_id == run_id, histogram.c.key == key)
        .order_by(histogram.c.step, histogram.c.id)  # the index's order: no sort (no step: the backend's NULL place)
    )
    compiled = q.compile(dialect=engine.dialect)
    args: Any = [compiled.params[k] for k in compiled.positiontup or ()] if compiled.positional else compiled.params
    with engine.connect() as conn:  # the driver's own tuples: a bin is one row, a Row object each costs 3x
        db: Any = conn.connection.driver_connection
        rows = backend_of(engine).fast_rows(db, str(compiled), args).fetchall()
    out = HistogramSteps([], [], [], [])
    if not rows:
        return out
    steps, bins, lower, upper, counts = zip(*rows, strict=True)
    starts = [i for i, b in enumerate(bins) if b == 0 or i == 0] + [len(rows)]  # bin 0 starts a record
    for a, b in itertools.pairwise(starts):
        out.steps.append(steps[a])
        out.lower.append(list(lower[a:b]))
        out.upper.append(list(upper[a:b]))
        out.counts.append(list(counts[a:b]))
    return out


def run_details(engine: Engine, run_id: str) -> dict[str, Any]:
    """Everything `alex show` prints about one run."""
    run_id = resolve_run_id(engine, run_id)
    with engine.connect() as conn:
        row = conn.execute(select(run).where(run.c.id == run_id)).one()
        params = {
            key: value
            for key, value in conn.execute(
                select(parameter.c.key, parameter.c.value).where(parameter.c.run_id == run_id).order_by(parameter.c.key)
            )
        }
        metrics = list(metric_summaries(conn, [run_id])[run_id].values())
        arts = [
            dict(r._mapping)
            for r in conn.execute(
                select(artifact.c.name, artifact.c.type, artifact.c.path, artifact.c.size, artifact.c.sha256)
                .where(artifact.c.run_id == run_id)
                .order_by(artifact.c.name)
            )
        ]
        media_rows = media_keys(conn, run_id)
        problems = [
            dict(r._mapping)
            for r in conn.execute(
                select(log_problem).where(log_problem.c.segment.like(f"runs/{run_id}/%")).order_by(log_problem.c.id)
            )
        ]
        life = [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    lifecycle.c.event, lifecycle.c.status, lifecycle.c.error, lifecycle.c.attempt, lifecycle.c.timestamp
                )
                .where(lifecycle.c.run_id == run_id)
                .order_by(lifecycle.c.timestamp, lifecycle.c.id)
            )
        ]
        datasets = [
            dict(r._mapping)
            for r in conn.execute(select(dataset).where(dataset.c.run_id == run_id).order_by(dataset.c.timestamp))
        ]
        latest = {"attempt": row.attempt or 0}
        records = {}
        for name, table in (("code", code), ("environment", environment)):
            found = conn.execute(
                select(table).where(table.c.run_id == run_id).order_by(table.c.attempt.desc(), table.c.id.desc())
            ).first()
            records[name] = dict(found._mapping) if found is not None and found.attempt == latest["attempt"] else None
        children = (
            conn.execute(select(run.c.id).where(run.c.parent_id == run_id).order_by(run.c.timestamp_start, run.c.id))
            .scalars()
            .all()
        )
    return {
        "run": dict(row._mapping),
        "params": params,
        "metrics": metrics,
        "artifacts": arts,
        "media": media_rows,
        "problems": problems,
        "lifecycle": life,
        "datasets": datasets,
        "code": records["code"],
        "environment": records["environment"],
        "children": list(children),
    }


def problems(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(select(log_problem).order_by(log_problem.c.segment, log_problem.c.offset))
        ]


def execute_sql(engine: Engine, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement on a read-only engine; returns column names and rows."""
    return backend_of(engine).execute_sql(engine, sql)


@dataclass
class History:
    """One metric of one run as numpy arrays, ordered by step (points logged without a step first).

    `steps` is float64 so a point logged without a step can be NaN; `values` holds NaN where NaN was
    logged; `times` (unix seconds) is filled only when asked for, as it costs a third of the read.
    """

    steps: np.ndarray
    values: np.ndarray
    times: np.ndarray | None = None


def metric_history(engine: Engine, run_id: str, key: str, *, with_times: bool = False) -> History:
    """Read a metric's whole history straight into numpy, without a Python object per point."""
    flat = backend_of(engine).metric_history(engine, run_id, key, with_times=with_times)
    table = flat.reshape(-1, 3 if with_times else 2)
    return History(
        steps=table[:, 0].copy(), values=table[:, 1].copy(), times=table[:, 2].copy() if with_times else None
    )


@dataclass
class Downsampled:
    """A metric reduced to at most `buckets` buckets of equal width along x (step or wall-clock time).

    Per bucket: `x` (the x of its last point), `first_x`/`last_x`, `min` and `max` of the values (NaN
    ignored; NaN when every value is), `last` (the value at the highest x) and `count`. A chart that
    draws min and max per bucket still shows a one-step spike among 10 million points. `total` is the
    number of points in the range read; `exact` says no bucket holds more than one point (then `last`
    is every value).
    """

    x: np.ndarray
    min: np.ndarray
    max: np.ndarray
    last: np.ndarray
    count: np.ndarray
    total: int

    @property
    def exact(self) -> bool:
        return bool(len(self.count) == 0 or self.count.max() <= 1)


def downsample(
    engine: Engine,
    run_id: str,
    key: str,
    buckets: int = 1000,
    *,
    x: str = "step",
    start: float | None = None,
    end: float | None = None,
) -> Downsampled:
    """Read one metric reduced to `buckets` buckets, only the rows with x in [start, end] (the whole
    history by default): zooming in reads only the range shown. x is "step" (points without a step
    are left out) or "time". SQLite does the grouping: no Python object per point."""
    import numpy as np

    if x not in ("step", "time"):
        raise QueryError(f"x must be 'step' or 'time', got {x!r}")
    if buckets < 1:
        raise QueryError(f"buckets must be at least 1, got {buckets}")
    col = "step" if x == "step" else "timestamp"
    backend = backend_of(engine)
    where, args = backend.metric_filter(run_id, key, col, start, end)
    with engine.connect() as conn:
        db: Any = conn.connection.driver_connection
        rows = backend.buckets(db, run_id, key, col, where, args, buckets)
        if not rows:
            empty = np.array([], dtype=np.float64)
            return Downsampled(empty, empty, empty, empty, np.array([], dtype=np.int64), 0)
        xs = [r[4] for r in rows]
        last = backend.last_values(db, run_id, key, col, xs)  # the value at each bucket's last x
    nan = math.nan
    return Downsampled(
        x=np.array(xs, dtype=np.float64),
        min=np.array([nan if r[1] is None else r[1] for r in rows], dtype=np.float64),
        max=np.array([nan if r[2] is None else r[2] for r in rows], dtype=np.float64),
        last=np.array([last.get(v, nan) for v in xs], dtype=np.float64),
        count=np.array([r[3] for r in rows], dtype=np.int64),
        total=sum(r[3] for r in rows),
    )


def runs_table(engine: Engine, run_ids: Sequence[str], metrics: Sequence[str] = ()) -> Any:
    """One row per run: id, experiment, status, start, end, every parameter (`param.<key>`) and, for
    each of `metrics`, its last, min and max value (`<key>.last`, ...; None where not logged or NaN). A
    pandas DataFrame when pandas is installed, else a list of dicts with the same columns."""
    runs = run_rows(engine, run_ids)
    params = run_params(engine, run_ids)
    summaries = run_metrics(engine, run_ids, list(metrics)) if metrics else {}
    rows: list[dict[str, Any]] = []
    for r in runs:
        row: dict[str, Any] = {
            "run_id": r["id"],
            "experiment": r["experiment_name"],
            "status": r["status"],
            "parent_id": r["parent_id"],
            "start": r["timestamp_start"],
            "end": r["timestamp_end"],
        }
        for k, v in params[r["id"]].items():
            row[f"param.{k}"] = v
        for key in metrics:
            s = summaries[r["id"]].get(key)
            last = None if s is None or math.isnan(s.last_value) else s.last_value
            row[f"{key}.last"], row[f"{key}.min"], row[f"{key}.max"] = last, s and s.min, s and s.max
        rows.append(row)
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


#: What `export_rows` yields per table, column by column (the `run` table's tags: as stored).
EXPORT_COLUMNS = {
    "runs": ("id", "name", "experiment", "status", "start", "end", "parent_id", "tags"),
    "params": ("run_id", "key", "value"),
    "metrics": ("run_id", "key", "step", "value", "timestamp", "attempt"),
}


@contextmanager
def export_rows(
    engine: Engine, run_ids: Sequence[str] | None, fetch_rows: int
) -> Iterator[dict[str, Iterator[Sequence[Sequence[Any]]]]]:
    """The runs (every run, oldest first, when `run_ids` is None), their parameters and their metric points
    as row chunks of at most `fetch_rows` rows (`EXPORT_COLUMNS`), straight from the DBAPI cursor: never a
    whole table in memory. All three read in one read transaction, a consistent snapshot while runs keep
    logging; the iterators are valid inside the `with` only."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1").all()  # opens the read transaction: one snapshot for all three tables
        db: Any = conn.connection.driver_connection
        if run_ids is None:
            live = "SELECT id FROM run WHERE NOT deleted ORDER BY timestamp_start, id"  # deleted runs: not exported
            run_ids = [r[0] for r in db.execute(live)]
            if not run_ids:
                raise InvalidInputError("no runs in the store (deleted runs are not exported): nothing to export")
        ids = list(run_ids)
        mark = backend_of(engine).placeholder  # the driver's own placeholder

        def runs() -> Iterator[Sequence[Sequence[Any]]]:
            for chunk in id_chunks(ids):
                marks = ",".join([mark] * len(chunk))
                sql = (
                    "SELECT id, name, experiment_name, status, timestamp_start, timestamp_end, parent_id, tags FROM run"
                )
                found = {r[0]: r for r in db.execute(f"{sql} WHERE id IN ({marks})", chunk)}  # noqa: S608
                yield [found[rid] for rid in chunk]

        def per_run(sql: str) -> Iterator[Sequence[Sequence[Any]]]:
            for rid in ids:  # per run: the rows come in index order, without a sort of the whole table
                cursor = db.execute(sql, (rid,))
                while chunk := cursor.fetchmany(fetch_rows):
                    yield chunk

        yield {
            "runs": runs(),
            "params": per_run(f"SELECT run_id, key, value FROM parameter WHERE run_id = {mark} ORDER BY key"),  # noqa: S608
            "metrics": per_run(
                f"SELECT run_id, key, step, value, timestamp, attempt FROM metric WHERE run_id = {mark} "  # noqa: S608
                "ORDER BY key, step, id"
            ),
        }


class Reader:
    """The reading API in one object, over a read-only connection to the projection: the one way to get a
    fresh reader (the CLI, the dashboard and Python callers open one; the reports take its `engine`).

    `Reader(store, fold=True)`, the default, first folds what is new in the logs into the projection, so what
    it reads is current when it is made: users rely on that. `fold=False` only reads: for a dashboard
    started with --no-fold, or a caller that keeps the projection current itself (`alex watch`, its own
    fold). `refresh()` folds again, whatever `fold` said (a live run keeps logging)."""

    def __init__(self, store: str | os.PathLike[str] | Store | None = None, *, fold: bool = True) -> None:
        self.store = Store.open(store, create=False)
        if not self.store.runs_dir.is_dir():
            raise StoreError(f"no Alexandria store at {self.store.root}; log a run there first")
        if fold:
            self.refresh()
        self.engine = reader_engine(self.store.database)

    def refresh(self) -> None:
        open_database(self.store).dispose()

    def runs(self, filter: str | None = None, **filters: Any) -> list[dict[str, Any]]:  # noqa: A002
        """`list_runs` filters: experiment, status, limit, tags, params, metric_filter, since, until, parent_id,
        filter (an expression of the filter language, docs/filters.md),
        deleted (False, the default: live runs only; True: only deleted ones; None: every run)."""
        return list_runs(self.engine, filter=filter, **filters)

    def run(self, run_id: str) -> dict[str, Any]:
        """`run_details` of a run given by id, unique prefix or name: its `run` row has name, note (Markdown)
        and deleted; a deleted run is still found (to restore it)."""
        return run_details(self.engine, run_id)

    def experiments(self, deleted: bool | None = False) -> list[dict[str, Any]]:
        """`list_experiments`: name, runs, deleted, last_activity and note of each experiment."""
        return list_experiments(self.engine, deleted)

    def metric_keys(self, run_id: str) -> list[str]:
        return metric_keys(self.engine, resolve_run_id(self.engine, run_id))

    def history(self, run_id: str, key: str, *, with_times: bool = False) -> History:
        return metric_history(self.engine, resolve_run_id(self.engine, run_id), key, with_times=with_times)

    def downsample(self, run_id: str, key: str, buckets: int = 1000, **kwargs: Any) -> Downsampled:
        return downsample(self.engine, resolve_run_id(self.engine, run_id), key, buckets, **kwargs)

    def table(self, run_ids: Sequence[str], metrics: Sequence[str] = ()) -> Any:
        return runs_table(self.engine, resolve_run_ids(self.engine, run_ids), metrics)

    def compare(self, run_ids: RunSelection, *, best: str | None = None) -> dict[str, Any]:
        """`compare.compare_runs`: what differs between the runs, and each metric's last and best value per run."""
        from .compare import compare_runs  # compare.py reads through this module

        return compare_runs(self.engine, run_ids, best=best)

    def sql(self, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        return execute_sql(self.engine, query)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
