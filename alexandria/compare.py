"""What differs between runs, as plain data: the parameters that differ and those equal in every run, and per
metric each run's last value (summaries.py), best value and point count. What `alex compare` prints and
`Reader.compare` returns; read through the read model (query.py), a fixed number of queries for N runs."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine

from .errors import InvalidInputError
from .query import RunSelection, run_metrics, run_params, run_rows, select_runs
from .summaries import AGGREGATES, MetricSummary, aggregate

_EVAL_WORDS = {"val", "valid", "validation", "eval", "test", "dev"}


def _preference(key: str) -> tuple[int, str]:
    k = key.lower()
    words = set(re.split(r"[^a-z]+", k))
    held_out = bool(words & _EVAL_WORDS)
    order = [
        held_out and "acc" in k,
        held_out and "loss" in k,
        "acc" in k,
        "loss" in k,
        not k.startswith("system/"),
    ]
    return next((i for i, hit in enumerate(order) if hit), len(order)), key


def pick_metric(
    summaries: Mapping[str, Mapping[str, MetricSummary]],
    ids: Sequence[str],
    agg: str = "last",
    among: Sequence[str] | None = None,
) -> str | None:
    """The metric a parallel-coordinates view colours by when the user names none (the dashboard's compare
    page and `alex report` alike). Candidates: the metrics every run logged (only `among`, when given) with
    a finite value (by `agg`) in every run, else in at least one run. Among them, by preference: a held-out
    accuracy (a key with a word val/valid/validation/eval/test/dev and "acc": "val/acc"), a held-out loss,
    any accuracy, any loss, any metric but the system ones (`system/...`); ties alphabetically."""
    if not ids:
        return None
    common = set.intersection(*(set(summaries[rid]) for rid in ids))
    if among is not None:
        common &= set(among)
    finite = {k: [aggregate(summaries[rid][k], agg) is not None for rid in ids] for k in common}
    pool = [k for k, ok in finite.items() if all(ok)] or [k for k, ok in finite.items() if any(ok)]
    return min(pool, key=_preference) if pool else None


def default_metric(
    engine: Engine, ids: Sequence[str], agg: str = "last", among: Sequence[str] | None = None
) -> str | None:
    """`pick_metric` over the runs' summaries, read in a fixed number of queries."""
    if agg not in AGGREGATES:
        raise InvalidInputError(f"agg must be 'last', 'min' or 'max', got {agg!r}")
    return pick_metric(run_metrics(engine, ids, extremes=agg != "last"), ids, agg, among)


def best_direction(key: str, override: str | None = None) -> str:
    """Whether lower or higher is better for a metric: `override` ("min"/"max") when given; else "min" for
    keys containing "loss" or "error" (any case), "max" for every other key (accuracy, reward, ...)."""
    if override is not None:
        if override not in ("min", "max"):
            raise InvalidInputError(f"best must be 'min' or 'max', got {override!r}")
        return override
    k = key.lower()
    return "min" if "loss" in k or "error" in k else "max"


def compare_runs(engine: Engine, run_ids: RunSelection, *, best: str | None = None) -> dict[str, Any]:
    """What differs between runs, as plain data (what `alex compare` prints).

    Returns ``{"runs": [{"id", "name", "experiment", "status"}...], "params_differ": {key: [value or None per run]},
    "params_equal": {key: value}, "metrics": {key: {"best_rule": "min"|"max", "runs": [None (not logged) or
    {"final", "final_step", "best", "points"} per run]}}}``. `final` is the metric's last value (summaries.py:
    the highest step; NaN when NaN was logged last); `best` is the min or max over the run's non-NaN values,
    by `best_direction`.
    """
    ids = select_runs(engine, run_ids)
    runs = run_rows(engine, ids)
    params = run_params(engine, ids)
    differ: dict[str, list[str | None]] = {}
    equal: dict[str, str] = {}
    for key in sorted(set().union(*params.values())):
        column = [params[rid].get(key) for rid in ids]
        if len(set(column)) > 1:
            differ[key] = column
        else:
            equal[key] = column[0]  # type: ignore[assignment]  # the same, and present, in every run
    summaries = run_metrics(engine, ids)
    metrics: dict[str, Any] = {}
    for key in sorted(set().union(*summaries.values())):
        rule = best_direction(key, best)
        per_run: list[dict[str, Any] | None] = []
        for rid in ids:
            s = summaries[rid].get(key)
            if s is None:
                per_run.append(None)
                continue
            found = s.min if rule == "min" else s.max
            per_run.append(
                {
                    "final": s.last_value,
                    "final_step": s.last_step,
                    "best": math.nan if found is None else float(found),
                    "points": s.count,
                }
            )
        metrics[key] = {"best_rule": rule, "runs": per_run}
    return {
        "runs": [
            {"id": r["id"], "name": r["name"], "experiment": r["experiment_name"], "status": r["status"]} for r in runs
        ],
        "params_differ": differ,
        "params_equal": equal,
        "metrics": metrics,
    }
