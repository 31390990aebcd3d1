"""The data the dashboard's pages and JSON endpoints serve, from the read model (query.py): the runs
table's filters and sorting, and what a run page, the compare page and the polls show. No SQL here."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine
from starlette.datastructures import QueryParams

from ..errors import InvalidInputError, NotRegularFileError, RecordedFileError
from ..figures import PALETTE, as_numbers, check_smoothing
from ..filters import FilterError
from ..formatting import duration_seconds, run_duration_text, run_label, when_text
from ..plugins import embedded_artifacts
from ..query import (
    deleted_runs,
    downsample,
    experiment_note,
    has_metric,
    list_runs,
    run_details,
    run_metric_keys,
    run_metrics,
    run_params,
    run_rows,
    run_tree,
)
from ..store import Store
from ..values import finite_or_none
from ..verify import FileHashes
from .render import STATUSES, floats, url_part

#: A metric with at most this many points, none of them with a step, is a value (a final figure), not a chart.
VALUE_POINTS = 3
SORT_KEYS = ("id", "name", "experiment", "status", "start", "duration", "parent", "params", "metrics")
PAGE_LIMIT = 1000


@dataclass
class RunFilter:
    """The runs table's filters and sort, read from the query string (`from_query`) and written back into links
    (`items`, `sort_url`); what it cannot use is said in `errors`, not refused."""

    experiment: str | None = None
    status: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    text: str = ""
    sort: str = "start"
    desc: bool = True
    errors: list[str] = field(default_factory=list)
    pointer: str = ""  # a filter that does not parse, with a caret under its bad token

    @classmethod
    def from_query(cls, qp: QueryParams) -> RunFilter:
        f = cls(experiment=qp.get("experiment") or None, status=qp.get("status") or None, text=qp.get("q", ""))
        if f.status is not None and f.status not in STATUSES:
            f.errors.append(f"unknown status {f.status!r}: one of {', '.join(STATUSES)}")
            f.status = None
        for name, target in (("tag", f.tags), ("param", f.params)):
            for item in qp.getlist(name):
                if not item.strip():
                    continue
                key, sep, value = item.partition("=")
                if not sep or not key.strip():
                    f.errors.append(f"{name} filter {item!r} is not key=value; ignored")
                    continue
                target[key.strip()] = value.strip()
        sort = qp.get("sort")
        if sort is not None:
            if sort in SORT_KEYS:
                f.sort = sort
                f.desc = qp.get("desc", "0") not in ("", "0", "false")
            else:
                f.errors.append(f"cannot sort by {sort!r}: one of {', '.join(SORT_KEYS)}")
        return f

    def items(self, **override: Any) -> list[tuple[str, str]]:
        """The query string that gives this filter (with `override`s)."""
        values: dict[str, Any] = {
            "experiment": self.experiment,
            "status": self.status,
            "q": self.text,
            "sort": self.sort,
            "desc": self.desc,
        }
        values.update(override)
        out: list[tuple[str, str]] = []
        for key in ("experiment", "status", "q"):
            if values[key]:
                out.append((key, str(values[key])))
        out += [("tag", f"{k}={v}") for k, v in self.tags.items()]
        out += [("param", f"{k}={v}") for k, v in self.params.items()]
        out += [("sort", values["sort"]), ("desc", "1" if values["desc"] else "0")]
        return out

    def sort_url(self, column: str) -> str:
        # Clicking the sorted column flips its order; another column starts ascending (start: newest first).
        desc = (not self.desc) if column == self.sort else column == "start"
        return "/?" + urlencode(self.items(sort=column, desc=desc))


def _sort_value(r: Mapping[str, Any], key: str) -> Any:
    if key == "id":
        return r["id"]
    if key == "name":
        return run_label(r)
    if key == "experiment":
        return r["experiment_name"]
    if key == "status":
        return r["status"]
    if key == "start":
        return r["timestamp_start"]
    if key == "duration":
        return duration_seconds(r)
    if key == "parent":
        return r["parent_id"]
    if key == "params":
        return r["num_params"]
    return r["num_metric_keys"]


def runs_tree(engine: Engine, f: RunFilter) -> list[tuple[int, dict[str, Any]]]:
    """The runs the filter keeps, sorted, each child right under its parent: (depth, row). Deleted runs are
    never among them (`list_runs` leaves them out). The search box is the filter language (docs/filters.md);
    one it cannot read is said in `f.errors` and not applied."""
    try:
        rows = list_runs(engine, experiment=f.experiment, status=f.status, tags=f.tags, params=f.params, filter=f.text)
    except FilterError as exc:
        f.errors.append(f"{exc} (the filter is not applied)")
        f.pointer = exc.pointer
        rows = list_runs(engine, experiment=f.experiment, status=f.status, tags=f.tags, params=f.params)
    known = [r for r in rows if _sort_value(r, f.sort) is not None]
    unknown = [r for r in rows if _sort_value(r, f.sort) is None]  # missing values last, either way
    known.sort(key=lambda r: (_sort_value(r, f.sort), r["id"]), reverse=f.desc)
    return run_tree(known + unknown)


def run_summary(r: Mapping[str, Any]) -> dict[str, Any]:
    """A run row as the pages' JSON has it."""
    return {
        "id": r["id"],
        "name": r["name"],
        "label": run_label(r),
        "deleted": bool(r["deleted"]),
        "experiment": r["experiment_name"],
        "status": r["status"],
        "attempt": r["attempt"] or 0,
        "error": r["error"],
        "parent_id": r["parent_id"],
        "tags": r["tags"] or {},
        "timestamp_start": r["timestamp_start"],
        "timestamp_end": r["timestamp_end"],
        "start": when_text(r["timestamp_start"]),
        "end": when_text(r["timestamp_end"]),
        "duration": run_duration_text(r),
    }


def _artifact_state(store: Store, run_id: str, a: dict[str, Any], hashes: FileHashes) -> tuple[str, str | None]:
    """What the run page says of an artifact: file (served), directory, other (not a regular file) or
    missing (not in the store, or refused); for a file, why it no longer matches its log, if it does not."""
    what = f"run {run_id} artifact {a['name']!r}"
    try:
        fd, _real = store.open_recorded(a["path"], what)
    except NotRegularFileError as exc:
        return ("directory" if exc.reason == "is a directory" else "other"), None
    except RecordedFileError:  # missing, or a path out of the store
        return "missing", None
    try:
        return "file", hashes.warning(fd, a, full=True)
    finally:
        os.close(fd)


def run_page(engine: Engine, store: Store, run_id: str, interval: float, hashes: FileHashes) -> dict[str, Any]:
    """The run page's context: what `alex show` prints, its children, its artifacts (with whether the
    store holds each as a file, and a warning for a file that changed since it was logged: hashed once per
    version of the file, see `verify.FileHashes`) and those a plug-in embeds, and its metrics' summaries."""
    d = run_details(engine, run_id)
    r = d["run"]
    # a deleted run's children went with it: its page lists them (deleted too), a live run's its live ones
    children = list_runs(engine, parent_id=run_id, deleted=None if r["deleted"] else False)
    children.sort(key=lambda c: (c["timestamp_start"] or 0.0, c["id"]))
    artifacts = []
    embedded = []
    panels = embedded_artifacts()
    for a in d["artifacts"]:
        kind, warning = _artifact_state(store, run_id, a, hashes)
        url = f"/artifact/{run_id}/{url_part(a['name'])}"
        artifacts.append({**a, "kind": kind, "url": url, "warning": warning})
        if kind == "file" and a["name"] in panels:
            embedded.append({"title": panels[a["name"]], "name": a["name"], "url": url})
    env = d["environment"]
    metrics = [
        {
            "key": m.key,
            "count": m.count,
            "last_value": m.last_value,
            "last_step": m.last_step,
            "min": m.min,
            "max": m.max,
            "dom": f"m{i}",
            "value": is_value_metric(m.count, m.last_step),
        }
        for i, m in enumerate(d["metrics"])
    ]
    return {
        "title": f"Run {run_label(r)}",
        "r": r,
        "summary": run_summary(r),
        "label": run_label(r),
        "note": r["note"],
        "experiment_note": experiment_note(engine, r["experiment_name"]) if r["experiment_name"] else None,
        "commands": edit_commands(run_id, deleted=bool(r["deleted"])),
        "d": d,
        "children": children,
        "artifacts": artifacts,
        "embedded": embedded,
        "metrics": metrics,
        "packages": len(env["pip_freeze"] or {}) if env else 0,
        "page_data": {
            "page": "run",
            "run_id": run_id,
            "status": r["status"],
            "interval": interval,
            "metrics": [{"key": m["key"], "dom": m["dom"], "count": m["count"], "value": m["value"]} for m in metrics],
            "start": r["timestamp_start"],  # the origin of x = relative time
        },
    }


def edit_commands(run_id: str, *, deleted: bool) -> list[str]:
    """What to run to change a run: the dashboard only reads (GET only), so it shows the commands instead of
    edit buttons. The id, not the name, names the run: names are not unique."""
    if deleted:
        return [f"alex restore {run_id}"]
    return [
        f'alex edit {run_id} --name NEW-NAME --note "Markdown text"',
        f"alex edit {run_id} --tag key=value --untag key",
        f"alex delete {run_id}",
    ]


def _side_by_side(keys: set[str], per_run: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for k in sorted(keys):
        values = [m.get(k) for m in per_run]
        rows.append({"key": k, "cells": values, "differs": len(set(values)) > 1})
    return rows


def compare_page(engine: Engine, ids: list[str], errors: list[str], interval: float) -> dict[str, Any]:
    """The compare page's context: the runs' parameters and tags side by side, and every metric key any of
    them logged (one chart each), a deleted run left out with a note in `errors`. A fixed number of queries
    however many runs."""
    gone = set(deleted_runs(engine, ids))
    errors = errors + [f"run {rid} is deleted: `alex restore {rid[:8]}` brings it back" for rid in ids if rid in gone]
    ids = [rid for rid in ids if rid not in gone]
    rows = run_rows(engine, ids)
    params = run_params(engine, ids)
    keys = run_metric_keys(engine, ids)
    tags = [r["tags"] or {} for r in rows]
    metric_keys = sorted({k for rid in ids for k in keys[rid]})
    runs = [run_summary(r) for r in rows]
    charts = compare_charts(engine, ids)
    return {
        "title": "Compare runs",
        "runs": runs,
        "params": _side_by_side({k for p in params.values() for k in p}, [params[rid] for rid in ids]),
        "tags": _side_by_side({k for t in tags for k in t}, tags),
        "errors": errors,
        "metric_keys": [{"key": k, "dom": f"c{i}"} for i, k in enumerate(metric_keys)],
        "charts": charts,
        "page_data": {
            "page": "compare",
            "charts": charts,
            "interval": max(interval, 2.0),
            "runs": [
                {
                    "id": r["id"],
                    # the legend is short of room: the name there, the id prefix and experiment on hover
                    "label": r["label"],
                    "hover": f"{r['id'][:8]} {r['experiment'] or ''}".strip(),
                    "status": r["status"],
                    "keys": keys[r["id"]],
                    "start": r["timestamp_start"],  # the origin of x = relative time
                }
                for r in runs
            ],
            "metrics": [{"key": k, "dom": f"c{i}"} for i, k in enumerate(metric_keys)],
        },
    }


def run_status(engine: Engine, run_id: str, *, with_metrics: bool) -> dict[str, Any]:
    """What a run page polls: the run, and per metric key its point count and last value and step (read
    from the index and the last points only; the pages take min and max from the chart's buckets)."""
    row = run_rows(engine, [run_id])[0]
    stats = {}
    if with_metrics:
        for key, s in run_metrics(engine, [run_id], extremes=False)[run_id].items():
            stats[key] = {
                "count": s.count,
                "last_value": s.last_value,
                "last_step": s.last_step,
                "value": is_value_metric(s.count, s.last_step),
            }
    return {**run_summary(row), "metrics": stats}


def metric_buckets(
    engine: Engine, run_id: str, key: str, buckets: int, x: str, start: float | None, end: float | None
) -> dict[str, Any] | None:
    """A chart's data: the metric in at most `buckets` buckets over x in [start, end] (x "auto": by step,
    or by time when no point has a step); None when the run has no such metric."""
    if not has_metric(engine, run_id, key):
        return None
    kind = "time" if x == "time" else "step"
    ds = downsample(engine, run_id, key, buckets, x=kind, start=start, end=end)
    if ds.total == 0 and x == "auto" and start is None and end is None:  # no point has a step: use time
        kind = "time"
        ds = downsample(engine, run_id, key, buckets, x=kind)
    return {
        "run_id": run_id,
        "key": key,
        "x_kind": kind,
        "x": floats(ds.x),
        "min": floats(ds.min),
        "max": floats(ds.max),
        "last": floats(ds.last),
        "count": ds.count.tolist(),
        "total": ds.total,
        "exact": ds.exact,
    }


def is_value_metric(count: int, last_step: int | None) -> bool:
    """Whether the pages show a metric as a value rather than a chart: one point, or a few points none of
    which has a step (a final figure logged once per evaluation), would be an empty 300-pixel chart."""
    return count <= 1 or (last_step is None and count <= VALUE_POINTS)


def compare_charts(engine: Engine, ids: list[str]) -> dict[str, Any]:
    """What the compare page's chart toolbar needs beyond the curves: per run its colour (the same in every
    chart, `figures.PALETTE` as in the reports), which metrics are values (a value in every run that has
    them: one row of the values table each), every metric's last value per run (summaries.py's definition)
    and the numeric parameters that differ between the runs (`figures.as_numbers`: a number in every run),
    for a chart of the last value against a parameter. A fixed number of queries however many runs."""
    summaries = run_metrics(engine, ids, extremes=False)
    params = run_params(engine, ids)
    keys = sorted({k for rid in ids for k in summaries[rid]})
    last = {k: {rid: finite_or_none(summaries[rid][k].last_value) for rid in ids if k in summaries[rid]} for k in keys}
    values = [
        k for k in keys if all(is_value_metric(summaries[rid][k].count, summaries[rid][k].last_step) for rid in last[k])
    ]
    numeric: list[dict[str, Any]] = []
    for key in sorted({k for rid in ids for k in params[rid]}):
        column = [params[rid].get(key) for rid in ids]
        numbers = as_numbers(column)
        if numbers is not None and len(set(numbers)) > 1:
            numeric.append({"key": key, "values": dict(zip(ids, numbers, strict=True))})
    return {
        "colors": {rid: PALETTE[i % len(PALETTE)] for i, rid in enumerate(ids)},
        "value_keys": values,
        "last": last,
        "numeric_params": numeric,
    }


X_KINDS = ("step", "time", "relative")
SMOOTHING_MAX = 0.999


@dataclass
class ChartView:
    """The chart toolbar's state, read from the page's query string (`from_query`) so that a view can be
    shared and survives a reload; the page's script writes it back as the user changes it. What it cannot use
    is said in `errors` (shown on the page) and left at its default, never refused."""

    smooth: float = 0.0
    logy: bool = False
    x: str = "step"  # step, time (wall clock), relative (seconds since the run started) or param:KEY
    metrics: str = ""  # the metric search: a substring, or a glob with * and ?
    legend: bool = True
    xrange: list[float] | None = None  # the linked zoom, in the x axis' units (seconds for the times)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def from_query(cls, qp: QueryParams, params: list[str] | None = None) -> ChartView:
        """`params`: the numeric parameters that may be the x axis (the compare page's), None on a run page."""
        v = cls(metrics=qp.get("metrics", ""))
        text = qp.get("smooth")
        if text:
            try:
                v.smooth = min(check_smoothing(float(text)), SMOOTHING_MAX)
            except (ValueError, InvalidInputError):
                v.errors.append(f"smooth={text!r}: smoothing is a number from 0 to {SMOOTHING_MAX}; not applied")
        for name in ("logy", "legend"):
            flag = qp.get(name)
            if flag is not None and flag not in ("0", "1"):
                v.errors.append(f"{name}={flag!r}: 1 (on) or 0 (off); not applied")
            elif flag is not None:
                setattr(v, name, flag == "1")
        x = qp.get("x")
        if x:
            choices = [*X_KINDS, *(f"param:{p}" for p in params or [])]
            if x in choices:
                v.x = x
            else:
                v.errors.append(f"x={x!r}: one of {', '.join(choices)}; the x axis is the step")
        text = qp.get("xrange")
        if text:
            try:
                lo, hi = (float(part) for part in text.split(","))
                if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                    raise ValueError(text)
                v.xrange = [lo, hi]
            except ValueError:
                v.errors.append(f"xrange={text!r}: two numbers low,high (low < high); the whole x range is shown")
        return v

    def as_dict(self) -> dict[str, Any]:
        return {
            "smooth": self.smooth,
            "logy": self.logy,
            "x": self.x,
            "metrics": self.metrics,
            "legend": self.legend,
            "xrange": self.xrange,
        }


def with_chart_view(context: dict[str, Any], qp: QueryParams) -> dict[str, Any]:
    """A run or compare page's context with its chart toolbar's state (`ChartView`) from the query string."""
    charts = context.get("charts")
    params = [p["key"] for p in charts["numeric_params"]] if charts is not None else None
    view = ChartView.from_query(qp, params)
    context["view"] = view
    context["page_data"] = {**context["page_data"], "view": view.as_dict()}
    return context
