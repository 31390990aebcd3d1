"""What a run's metrics come to (point count, last value and its step, min, max), for many runs at once.

A metric's *last value* is defined here and only here, for every view (`alex show`, `alex compare`,
`Reader.run`/`table`/`runs(metric_filter=...)`, the dashboard, the reports): it is the value of the point
with the **highest step**; among points with that step, the one logged **latest** (timestamp), then
the one of the **latest attempt** (life of the run), then the last folded. Points logged without a
step count as lower than any step: they decide only when no point of the metric has a step. A NaN
logged last is the last value (NaN). Logging step 5 then step 2 leaves the step-5 value last.

Read cheaply: the highest step per (run, key) comes from the (run_id, key, step) index alone, and only
the points at that step are read from the table. Runs are read `IN (...)` in chunks of `IN_CHUNK` ids,
below SQLite's bound-parameter limit, so N runs cost a fixed number of queries per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, select
from sqlalchemy.sql import ColumnElement

from .schema import metric

#: Run ids per `IN (...)`: SQLite binds at most 32,766 parameters (999 before 3.32), this stays far below.
IN_CHUNK = 500


def id_chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    """`ids` in slices of at most `IN_CHUNK`, in order."""
    size = IN_CHUNK
    for i in range(0, len(ids), size):
        yield list(ids[i : i + size])


#: How a metric comes to one number per run (`aggregate`): its last value, its min or its max.
AGGREGATES = ("last", "min", "max")


@dataclass
class MetricSummary:
    """One metric of one run: `count` points, the last value (NaN when NaN was logged last) and its step
    (None: no point has a step), `min` and `max` over the non-NaN values (None when every value is NaN,
    or when they were not asked for)."""

    key: str
    count: int
    last_value: float
    last_step: int | None
    min: float | None
    max: float | None


def aggregate(s: MetricSummary | None, agg: str) -> float | None:
    """One run's number for a metric by `agg` (one of `AGGREGATES`); None when missing or not finite."""
    if s is None:
        return None
    v = {"last": s.last_value, "min": s.min, "max": s.max}[agg]
    return float(v) if v is not None and math.isfinite(v) else None


def _last_point_id(run_id: Any, key: Any, top: Any) -> ColumnElement[Any]:
    """The id of the last point of (`run_id`, `key`) whose highest step is `top` (see the module's docstring):
    a seek on the index to the points at that step (or, when `top` is NULL, the points without a step)."""

    def pick(step_matches: Callable[[Any], ColumnElement[bool]]) -> Any:
        tie = metric.alias("tie")
        return (
            select(tie.c.id)
            .where(tie.c.run_id == run_id, tie.c.key == key, step_matches(tie.c.step))
            .order_by(tie.c.timestamp.desc().nulls_last(), tie.c.attempt.desc().nulls_last(), tie.c.id.desc())
            .limit(1)
            .correlate_except(tie)
            .scalar_subquery()
        )

    return func.coalesce(pick(lambda step: step == top), pick(lambda step: and_(top.is_(None), step.is_(None))))


def last_value(run_id: Any, key: str) -> Any:
    """The last value of metric `key` of the run `run_id` (a column of an enclosing query) as a correlated
    scalar subquery: NULL when NaN was logged last or the run has no such metric."""
    top_of = metric.alias("top_of")
    top = (
        select(func.max(top_of.c.step))
        .where(top_of.c.run_id == run_id, top_of.c.key == key)
        .correlate_except(top_of)
        .scalar_subquery()
    )
    point = metric.alias("point")
    last = select(point.c.value).where(point.c.id == _last_point_id(run_id, key, top))
    return last.correlate_except(point).scalar_subquery()


def metric_summaries(
    conn: Connection, run_ids: Sequence[str], keys: Sequence[str] | None = None, *, extremes: bool = True
) -> dict[str, dict[str, MetricSummary]]:
    """Per run id (every one of `run_ids`, in order), per metric key (sorted; only `keys` when given), its
    summary. Without `extremes`, min and max are left None and the read touches only the index and the
    last points: what a page polling every second can afford."""
    out: dict[str, dict[str, MetricSummary]] = {rid: {} for rid in run_ids}
    for chunk in id_chunks(list(dict.fromkeys(run_ids))):
        columns = [metric.c.run_id, metric.c.key, func.count().label("points"), func.max(metric.c.step).label("top")]
        if extremes:
            columns += [func.min(metric.c.value).label("lo"), func.max(metric.c.value).label("hi")]
        groups = select(*columns).where(metric.c.run_id.in_(chunk)).group_by(metric.c.run_id, metric.c.key)
        if keys is not None:
            groups = groups.where(metric.c.key.in_(list(keys)))
        g = groups.subquery("g")
        last = select(g, _last_point_id(g.c.run_id, g.c.key, g.c.top).label("last_id")).subquery("last")
        q = (
            select(last, metric.c.value)
            .join_from(last, metric, metric.c.id == last.c.last_id)
            .order_by(last.c.run_id, last.c.key)
        )
        for r in conn.execute(q):
            out[r.run_id][r.key] = MetricSummary(
                r.key,
                int(r.points),
                math.nan if r.value is None else float(r.value),
                r.top,
                r.lo if extremes else None,
                r.hi if extremes else None,
            )
    return out
