"""Read-side queries over the projection, shared by the CLI and any Python caller."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError, OperationalError

from .errors import QueryError, ReadOnlyError, RunNotFoundError
from .schema import artifact, code, dataset, environment, lifecycle, log_problem, metric, parameter, run


def list_runs(
    engine: Engine, experiment: str | None = None, status: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Runs, newest first, with their parameter and metric counts (see `run_tree` for the nesting)."""
    params = select(func.count()).where(parameter.c.run_id == run.c.id).scalar_subquery()
    keys = select(func.count(func.distinct(metric.c.key))).where(metric.c.run_id == run.c.id).scalar_subquery()
    q = select(run, params.label("num_params"), keys.label("num_metric_keys")).order_by(
        run.c.timestamp_start.desc().nulls_last(), run.c.id
    )
    if experiment is not None:
        q = q.where(run.c.experiment_name == experiment)
    if status is not None:
        q = q.where(run.c.status == status)
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


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
    try:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(sql)
            if not result.returns_rows:
                return [], []
            return list(result.keys()), [tuple(r) for r in result]
    except OperationalError as exc:
        msg = str(exc.orig)
        if "readonly" in msg or "read-only" in msg or "not authorized" in msg:
            raise ReadOnlyError(
                "the database is opened read-only: the logs are the truth and the tables are their projection, "
                "so change data by logging events (queries only here)"
            ) from exc
        raise QueryError(f"query failed: {msg}") from exc
    except DBAPIError as exc:
        if "not authorized" in str(exc.orig):
            raise ReadOnlyError("ATTACH and DETACH are refused: queries here read the store's database only") from exc
        raise QueryError(f"query failed: {exc.orig}") from exc


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
    columns = "IFNULL(step, 'NaN'), IFNULL(value, 'NaN')" + (", timestamp" if with_times else "")
    width = 3 if with_times else 2
    sql = (
        f"SELECT {columns} FROM metric WHERE run_id = ? AND key = ? "  # noqa: S608 - fixed column list
        "ORDER BY step"  # the (run_id, key, step) index already holds this order: no sort
    )
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.execute(sql, (run_id, key))  # type: ignore[union-attr]
        flat = np.fromiter(itertools.chain.from_iterable(cursor), dtype=np.float64)
    table = flat.reshape(-1, width)
    return History(
        steps=table[:, 0].copy(), values=table[:, 1].copy(), times=table[:, 2].copy() if with_times else None
    )
