"""What a run's metrics come to (point count, first and last step, last value, min, max), for many runs at once.

A metric's *last value* is defined here and only here, for every view (`alex show`, `alex compare`,
`Reader.run`/`table`/`runs(metric_filter=...)`, the dashboard, the reports): it is the value of the point
with the **highest step**; among points with that step, the one logged **latest** (timestamp), then
the one of the **latest attempt** (life of the run), then the last folded. Points logged without a
step count as lower than any step: they decide only when no point of the metric has a step. A NaN
logged last is the last value (NaN). Logging step 5 then step 2 leaves the step-5 value last. `later` is
this rule as code.

A metric's *min* and *max* are over its values that are not NaN (+-inf count as they are), None when every
value is NaN: NaN is stored as NULL, and SQL's min and max skip NULL, so a GROUP BY over the metric table
gives the same figures.

Kept, not computed when read: each (run, key)'s summary is a row of `metric_summary`, written by the fold in
the transaction that writes its points (folding.py's `METRIC` rule): the batch's points are gathered
(`gather`), then merged with the stored row (`merge`), never by reading the metric's points again. A read
costs one row per (run, key) however many points were logged, and `alex rebuild`, folding the same points
in the same order per segment, writes the same rows (but for points of one key equal in step, time to the
float and attempt in two segments: "the last folded" is then which segment folded first, as it is for
the metric rows' ids). Runs are read `IN (...)` in chunks of `IN_CHUNK` ids,
below SQLite's bound-parameter limit, so N runs cost a fixed number of queries per chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.sql import ColumnElement

from .schema import metric_summary

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
    or when they were not asked for). (`metric_summary` has the lowest step and the last point's time too.)"""

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


# -- the rule, as the fold applies it -------------------------------------------------------------------------
def later(step: Any, time: Any, attempt: Any, than_step: Any, than_time: Any, than_attempt: Any) -> bool:
    """Whether a point at (`step`, `time`, `attempt`), folded after one at (`than_...`), replaces it as the
    metric's last point (the module's rule: no step is lower than any step, a missing time or attempt lower
    than any; all equal, the one folded later wins)."""
    if step != than_step:
        return than_step is None or (step is not None and step > than_step)
    if time != than_time:
        return than_time is None or (time is not None and time > than_time)
    if attempt != than_attempt:
        return than_attempt is None or (attempt is not None and attempt > than_attempt)
    return True


#: A summary being gathered: [count, first_step, last_step, last_value, last_time, last_attempt, min, max].
Gathered = list[Any]
#: The columns of `metric_summary` after (run_id, key), in `Gathered`'s order.
COLUMNS = ("count", "first_step", "last_step", "last_value", "last_time", "last_attempt", "min_value", "max_value")


def gather(points: Iterable[tuple[Any, ...]]) -> dict[tuple[str, str], Gathered]:
    """Per (run id, key), the summary of `points`, the metric table's rows in the order they are folded:
    (run_id, key, value (None: NaN), step, timestamp, attempt, rank). One pass, no point kept."""
    by_run: dict[str, dict[str, Gathered]] = {}
    of_run: dict[str, Gathered] = {}
    current = None
    for run_id, key, value, step, time, attempt, _rank in points:
        if run_id is not current:  # a segment's points come together, and share their run id's string
            current = run_id
            of_run = by_run.setdefault(run_id, {})
        s = of_run.get(key)
        if s is None:
            of_run[key] = [1, step, step, value, time, attempt, value, value]
            continue
        s[0] += 1
        last = s[2]
        # the common case first: a higher step than the last (then `later` says so too)
        if (step is not None and last is not None and step > last) or later(step, time, attempt, last, s[4], s[5]):
            s[2], s[3], s[4], s[5] = step, value, time, attempt
        if step is not None and (s[1] is None or step < s[1]):
            s[1] = step
        if value is not None:
            low = s[6]
            if low is None:
                s[6] = s[7] = value
            elif value < low:
                s[6] = value
            elif value > s[7]:
                s[7] = value
    return {(run_id, key): g for run_id, of_run in by_run.items() for key, g in of_run.items()}


def merge(stored: Gathered, new: Gathered) -> Gathered:
    """A stored summary and one of points folded after it, as one (what a rebuild's single pass gives)."""
    count, first, last_step, last_value, last_time, last_attempt, low, high = stored
    if later(new[2], new[4], new[5], last_step, last_time, last_attempt):
        last_step, last_value, last_time, last_attempt = new[2], new[3], new[4], new[5]
    if new[1] is not None and (first is None or new[1] < first):
        first = new[1]
    if new[6] is not None:
        low = new[6] if low is None else min(low, new[6])
        high = new[7] if high is None else max(high, new[7])
    return [count + new[0], first, last_step, last_value, last_time, last_attempt, low, high]


# -- reading ------------------------------------------------------------------------------------------------------
def last_value(run_id: Any, key: str) -> Any:
    """The last value of metric `key` of the run `run_id` (a column of an enclosing query) as a correlated
    scalar subquery on the summary's primary key: NULL when NaN was logged last or the run has no such metric."""
    return summary_column(run_id, key, "last_value")


def summary_column(run_id: Any, key: str, column: str) -> ColumnElement[Any]:
    """One column of the summary of metric `key` of the run `run_id` (a column of an enclosing query), as a
    correlated scalar subquery: `last_value`, `min_value`, `max_value`, `count`, ..."""
    s = metric_summary.c
    return select(s[column]).where(s.run_id == run_id, s.key == key).correlate_except(metric_summary).scalar_subquery()


def metric_summaries(
    conn: Connection, run_ids: Sequence[str], keys: Sequence[str] | None = None, *, extremes: bool = True
) -> dict[str, dict[str, MetricSummary]]:
    """Per run id (every one of `run_ids`, in order), per metric key (sorted; only `keys` when given), its
    summary: one row each from `metric_summary`. Without `extremes`, min and max are left None (what a
    caller that has no use for them asked before they were kept; they cost nothing more now)."""
    out: dict[str, dict[str, MetricSummary]] = {rid: {} for rid in run_ids}
    s = metric_summary.c
    nan = math.nan
    for chunk in id_chunks(list(dict.fromkeys(run_ids))):
        q = select(s.run_id, s.key, s["count"], s.last_value, s.last_step, s.min_value, s.max_value)
        q = q.where(s.run_id.in_(chunk))
        if keys is not None:
            q = q.where(s.key.in_(list(keys)))
        # positional rows fetched at once: a thousand runs' summaries without a mapping per row
        for run_id, key, count, last, last_step, low, high in conn.execute(q.order_by(s.run_id, s.key)).all():
            out[run_id][key] = MetricSummary(
                key,
                int(count),
                nan if last is None else float(last),
                last_step,
                low if extremes else None,
                high if extremes else None,
            )
    return out
