"""Read-side queries over the projection, shared by the CLI and any Python caller."""

from __future__ import annotations

import math
import operator
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine, exists, func, select

from .backends import backend_of, sqlite
from .backends.base import Backend
from .db import open_database, reader_engine
from .errors import QueryError, RunNotFoundError, StoreError
from .schema import artifact, code, dataset, environment, lifecycle, log_problem, metric, parameter, run, tag
from .store import Store


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
) -> list[dict[str, Any]]:
    """Runs, newest first, with their parameter and metric counts (see `run_tree` for the nesting).

    Filters combine with AND: `tags` and `params` match exact text (parameters as `param_to_str`
    stores them, so `{"lr": 0.01}` works); `metric_filter=("val/acc", ">=", 0.9)` keeps runs whose
    *last* value of the metric (highest step, then latest) passes; `since`/`until` bound the start
    time (unix seconds); `parent_id` keeps one sweep's children.
    """
    from .tracking import param_to_str

    nparams = select(func.count()).where(parameter.c.run_id == run.c.id).scalar_subquery()
    keys = select(func.count(func.distinct(metric.c.key))).where(metric.c.run_id == run.c.id).scalar_subquery()
    q = select(run, nparams.label("num_params"), keys.label("num_metric_keys")).order_by(
        run.c.timestamp_start.desc().nulls_last(), run.c.id
    )
    if experiment is not None:
        q = q.where(run.c.experiment_name == experiment)
    if status is not None:
        q = q.where(run.c.status == status)
    if parent_id is not None:
        q = q.where(run.c.parent_id == parent_id)
    if since is not None:
        q = q.where(run.c.timestamp_start >= since)
    if until is not None:
        q = q.where(run.c.timestamp_start <= until)
    for key, value in (tags or {}).items():
        q = q.where(exists().where(tag.c.run_id == run.c.id, tag.c.key == key, tag.c.value == param_to_str(value)))
    for key, value in (params or {}).items():
        q = q.where(
            exists().where(
                parameter.c.run_id == run.c.id, parameter.c.key == key, parameter.c.value == param_to_str(value)
            )
        )
    if metric_filter is not None:
        key, op, threshold = metric_filter
        if op not in _COMPARE:
            raise QueryError(f"metric filter operator {op!r} is not one of {', '.join(_COMPARE)}")
        m = metric.alias("m")
        last = (
            select(m.c.value)
            .where(m.c.run_id == run.c.id, m.c.key == key)
            .order_by(m.c.step.desc().nulls_last(), m.c.timestamp.desc(), m.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        q = q.where(_COMPARE[op](last, threshold))
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


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
    with engine.connect() as conn:
        rows = conn.execute(
            select(metric.c.key).where(metric.c.run_id == run_id).group_by(metric.c.key).order_by(metric.c.key)
        )
        return [r[0] for r in rows]


def when_text(ts: float | None) -> str:
    """A unix time as local "YYYY-MM-DD HH:MM:SS" ("-" when unknown): how every view shows times."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def duration_text(start: float | None, end: float | None) -> str:
    """ "12.3s", "4.5m" or "6.7h"; a run still going (no end) is timed until now and marked "+"."""
    if not start:
        return "-"
    seconds = (end or time.time()) - start
    text = (
        f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"
    )
    return text if end else text + "+"


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


def resolve_run_id(engine: Engine, prefix: str) -> str:
    """The full id of the one run whose id starts with `prefix`."""
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise RunNotFoundError(f"{prefix!r} is not a run id (32 hex digits, or a unique prefix of one)")
    with engine.connect() as conn:
        ids = conn.execute(select(run.c.id).where(run.c.id.like(prefix + "%")).limit(2)).scalars().all()
    if not ids:
        raise RunNotFoundError(f"no run with id {prefix!r}; `alex runs` lists the runs")
    if len(ids) > 1:
        raise RunNotFoundError(f"run id prefix {prefix!r} is ambiguous; give more characters")
    return ids[0]


@dataclass
class MetricSummary:
    key: str
    count: int
    last_value: float
    last_step: int | None
    min: float | None
    max: float | None


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
        stats = conn.execute(
            select(
                metric.c.key, func.count(), func.min(metric.c.value), func.max(metric.c.value), func.max(metric.c.id)
            )
            .where(metric.c.run_id == run_id)
            .group_by(metric.c.key)
            .order_by(metric.c.key)
        ).all()
        metrics = []
        for key, count, lo, hi, last_id in stats:
            last = conn.execute(select(metric.c.value, metric.c.step).where(metric.c.id == last_id)).one()
            value = math.nan if last.value is None else last.value
            metrics.append(MetricSummary(key, count, value, last.step, lo, hi))
        arts = [
            dict(r._mapping)
            for r in conn.execute(
                select(artifact.c.name, artifact.c.type, artifact.c.path, artifact.c.size)
                .where(artifact.c.run_id == run_id)
                .order_by(artifact.c.name)
            )
        ]
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
    if x not in ("step", "time"):
        raise QueryError(f"x must be 'step' or 'time', got {x!r}")
    if buckets < 1:
        raise QueryError(f"buckets must be at least 1, got {buckets}")
    col = "step" if x == "step" else "timestamp"
    backend = backend_of(engine)
    where, args = backend.metric_filter(run_id, key, col, start, end)
    with engine.connect() as conn:
        db: Any = conn.connection.driver_connection
        if backend.buckets_by_index and col == "step":
            rows = _buckets_by_index_range(db, run_id, key, where, args, buckets)
        else:
            rows = _buckets_by_group(db, col, where, args, buckets, backend)
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


def _buckets_by_index_range(
    db: Any, run_id: str, key: str, where: str, args: list[Any], buckets: int
) -> list[tuple[Any, ...]]:
    """SQLite, x = step: (bucket, min, max, count, last step) per non-empty bucket, each bucket read as one
    range of the (run_id, key, step) index. Twice as fast as one GROUP BY, which sorts the whole range."""
    return sqlite.buckets_by_index_range(db, run_id, key, where, args, buckets)


def _buckets_by_group(
    db: Any, col: str, where: str, args: list[Any], buckets: int, backend: Backend
) -> list[tuple[Any, ...]]:
    """(bucket, min, max, count, last x) per non-empty bucket, in one GROUP BY (any x, any database)."""
    return backend.buckets_by_group(db, col, where, args, buckets)


def runs_table(engine: Engine, run_ids: Sequence[str], metrics: Sequence[str] = ()) -> Any:
    """One row per run: id, experiment, status, start, end, every parameter (`param.<key>`) and, for
    each of `metrics`, its last, min and max value (`<key>.last`, ...). A pandas DataFrame when pandas
    is installed, else a list of dicts with the same columns."""
    rows: list[dict[str, Any]] = []
    with engine.connect() as conn:
        for rid in run_ids:
            r = conn.execute(select(run).where(run.c.id == rid)).one_or_none()
            if r is None:
                raise RunNotFoundError(f"no run {rid!r}")
            row: dict[str, Any] = {
                "run_id": r.id,
                "experiment": r.experiment_name,
                "status": r.status,
                "parent_id": r.parent_id,
                "start": r.timestamp_start,
                "end": r.timestamp_end,
            }
            for k, v in conn.execute(select(parameter.c.key, parameter.c.value).where(parameter.c.run_id == rid)):
                row[f"param.{k}"] = v
            for key in metrics:
                lo, hi = conn.execute(
                    select(func.min(metric.c.value), func.max(metric.c.value)).where(
                        metric.c.run_id == rid, metric.c.key == key
                    )
                ).one()
                last = conn.execute(
                    select(metric.c.value)
                    .where(metric.c.run_id == rid, metric.c.key == key)
                    .order_by(metric.c.step.desc().nulls_last(), metric.c.timestamp.desc(), metric.c.id.desc())
                    .limit(1)
                ).scalar_one_or_none()
                row[f"{key}.last"], row[f"{key}.min"], row[f"{key}.max"] = last, lo, hi
            rows.append(row)
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


class Reader:
    """The reading API in one object: it folds what is new in the logs, then reads the projection through
    a read-only connection. `refresh()` folds again (a live run keeps logging)."""

    def __init__(self, store: str | os.PathLike[str] | Store | None = None) -> None:
        self.store = Store.open(store, create=False)
        if not self.store.runs_dir.is_dir():
            raise StoreError(f"no Alexandria store at {self.store.root}; log a run there first")
        self.refresh()
        self.engine = reader_engine(self.store.database)

    def refresh(self) -> None:
        open_database(self.store).dispose()

    def runs(self, **filters: Any) -> list[dict[str, Any]]:
        """`list_runs` filters: experiment, status, limit, tags, params, metric_filter, since, until, parent_id."""
        return list_runs(self.engine, **filters)

    def run(self, run_id: str) -> dict[str, Any]:
        return run_details(self.engine, run_id)

    def metric_keys(self, run_id: str) -> list[str]:
        return metric_keys(self.engine, resolve_run_id(self.engine, run_id))

    def history(self, run_id: str, key: str, *, with_times: bool = False) -> History:
        return metric_history(self.engine, resolve_run_id(self.engine, run_id), key, with_times=with_times)

    def downsample(self, run_id: str, key: str, buckets: int = 1000, **kwargs: Any) -> Downsampled:
        return downsample(self.engine, resolve_run_id(self.engine, run_id), key, buckets, **kwargs)

    def table(self, run_ids: Sequence[str], metrics: Sequence[str] = ()) -> Any:
        return runs_table(self.engine, [resolve_run_id(self.engine, r) for r in run_ids], metrics)

    def sql(self, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        return execute_sql(self.engine, query)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
