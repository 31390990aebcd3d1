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

from ..compare import pick_metric
from ..errors import InvalidInputError, NotRegularFileError, RecordedFileError
from ..figures import PALETTE, as_numbers, check_smoothing, parallel_dimensions
from ..filters import FilterError
from ..formatting import run_duration_text, run_label, when_text
from ..plugins import embedded_artifacts
from ..query import (
    deleted_runs,
    downsample,
    experiment_note,
    has_metric,
    list_runs,
    metric_by_run,
    run_conditions,
    run_details,
    run_metrics,
    run_params,
    run_rows,
)
from ..runs_table import (
    ATTRIBUTES,
    DEFAULT_ATTRIBUTES,
    DEFAULT_METRICS,
    DEFAULT_PARAMS,
    PAGE_SIZE,
    Column,
    ColumnError,
    View,
    add_values,
    column_name,
    differing_params,
    keys_of,
    parse_column,
    parse_columns,
    parse_sort,
    runs_table,
)
from ..store import Store
from ..summaries import AGGREGATES, aggregate
from ..values import finite_or_none
from ..verify import FileHashes
from .media import artifact_preview, run_media
from .render import STATUSES, floats, url_part

MAX_PAGE_SIZE = 1000
GROUPABLE = ("param", "tag")  # a group is a parameter's or a tag's value (or experiment, status)
#: A metric with at most this many points, none of them with a step, is a value (a final figure), not a chart.
VALUE_POINTS = 3


@dataclass
class RunFilter:
    """The runs table's view, read from the query string (`from_query`) and written back into links (`items`,
    `sort_url`): filters, columns (`col`), sort (`sort`, `desc`), grouping (`group`) and page (`page`); what it
    cannot use is said in `errors`, not refused, and the rest is shown."""

    experiment: str | None = None
    status: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    text: str = ""
    sort: str = "start"
    desc: bool = True
    columns: list[Column] = field(default_factory=list)  # none: the default columns (`runs_view`)
    group: Column | None = None
    page: int = 1
    per: int = PAGE_SIZE  # top-level runs (or groups) per page
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
        f.columns = parse_columns(qp.getlist("col"), f.errors)
        sort = qp.get("sort")
        if sort:
            try:
                f.sort = parse_sort(sort).name
                f.desc = qp.get("desc", "0") not in ("", "0", "false")
            except ColumnError as exc:
                f.errors.append(f"{exc} (sorted by start instead)")
        group = qp.get("group")
        if group:
            try:
                g = parse_column(group)
                if g.kind not in GROUPABLE and g.name not in ("experiment", "status"):
                    raise ColumnError(
                        f"cannot group by {group!r}: group by params.<key>, tags.<key>, experiment or status"
                    )
                f.group = g
            except ColumnError as exc:
                f.errors.append(f"{exc} (not grouped)")
        page = qp.get("page")
        if page:
            if page.isdigit() and int(page) >= 1:
                f.page = int(page)
            else:
                f.errors.append(f"page {page!r} is not a page number (1, 2, ...): showing page 1")
        per = qp.get("per")
        if per:
            if per.isdigit() and 1 <= int(per) <= MAX_PAGE_SIZE:
                f.per = int(per)
            else:
                f.errors.append(f"per {per!r} is not a page size from 1 to {MAX_PAGE_SIZE}: {PAGE_SIZE} per page")
        return f

    def items(self, **override: Any) -> list[tuple[str, str]]:
        """The query string that gives this view (with `override`s: experiment, status, q, sort, desc, col
        (a list of names), group, page)."""
        values: dict[str, Any] = {
            "experiment": self.experiment,
            "status": self.status,
            "q": self.text,
            "col": [c.name for c in self.columns],
            "sort": self.sort,
            "desc": self.desc,
            "group": self.group.name if self.group else "",
            "page": self.page,
        }
        values.update(override)
        out: list[tuple[str, str]] = []
        for key in ("experiment", "status", "q"):
            if values[key]:
                out.append((key, str(values[key])))
        out += [("tag", f"{k}={v}") for k, v in self.tags.items()]
        out += [("param", f"{k}={v}") for k, v in self.params.items()]
        out += [("col", name) for name in values["col"]]
        out += [("sort", values["sort"]), ("desc", "1" if values["desc"] else "0")]
        if values["group"]:
            out.append(("group", values["group"]))
        if self.per != PAGE_SIZE:
            out.append(("per", str(self.per)))
        if values["page"] != 1:
            out.append(("page", str(values["page"])))
        return out

    def sort_url(self, column: str) -> str:
        # Clicking the sorted column flips its order; another column starts ascending (start: newest first).
        desc = (not self.desc) if column == self.sort else column == "start"
        return "/?" + urlencode(self.items(sort=column, desc=desc, page=1))

    def conditions(self, *, with_text: bool = True) -> list[Any]:
        return run_conditions(
            experiment=self.experiment,
            status=self.status,
            tags=self.tags,
            params=self.params,
            filter=self.text if with_text else None,
        )


def _cell(c: Column, r: Mapping[str, Any]) -> Any:
    """A column's value of a run row as JSON carries it."""
    value = r["values"].get(c.name)
    if c.kind == "attribute" and c.key == "tags":
        return value or {}
    return value


def runs_view(engine: Engine, f: RunFilter) -> dict[str, Any]:
    """The runs table of the view `f` asks for: its columns (the chosen ones, or the defaults: name, experiment,
    status, start, duration, the first params that differ among the page's runs and the last values of its first
    metrics, tags and parent), one page of runs sorted in SQL with children under their parent, or its groups.
    Deleted runs are never among them. The search box is the filter language (docs/filters.md); one it cannot
    read is said in `f.errors` and not applied."""
    chosen = bool(f.columns)
    columns = f.columns or [parse_column(name) for name in DEFAULT_ATTRIBUTES]
    view = View(columns, parse_sort(f.sort), f.desc, f.group, f.page, f.per)
    try:
        conditions = f.conditions()
    except FilterError as exc:
        f.errors.append(f"{exc} (the filter is not applied)")
        f.pointer = exc.pointer
        conditions = f.conditions(with_text=False)
    table = runs_table(engine, conditions, view)
    listed = [r for _, r in table.rows] + [r for g in table.groups for r in g["rows"]]
    ids = [r["id"] for r in listed]
    keys = keys_of(engine, ids)  # only keys the filter language can name
    if not chosen:
        differ = [k for k in differing_params(engine, ids) if k in keys["param"]]
        extra = [parse_column(column_name("param", k)) for k in differ[:DEFAULT_PARAMS]]
        extra += [parse_column(column_name("metric", k, "last")) for k in keys["metric"][:DEFAULT_METRICS]]
        extra += [parse_column("tags"), parse_column("parent")]
        add_values(engine, table, extra)
        columns = columns + extra
    shown = {c.name for c in columns}
    choices = [name for name in DEFAULT_ATTRIBUTES + tuple(a for a in ATTRIBUTES if a not in DEFAULT_ATTRIBUTES)]
    choices += [column_name("param", k) for k in keys["param"]]
    for k in keys["metric"]:
        choices += [column_name("metric", k, agg) for agg in ("last", "min", "max")]
    choices += [column_name("tag", k) for k in keys["tag"]]
    choices += [c.name for c in columns if c.name not in choices]
    groups = ["experiment", "status"] + [column_name("param", k) for k in keys["param"]]
    groups += [column_name("tag", k) for k in keys["tag"]]
    if f.group is not None and f.group.name not in groups:
        groups.append(f.group.name)
    labels = {r["id"]: run_label(r) for r in listed}  # a parent by its name, when it is listed
    return {
        "columns": columns,
        "table": table,
        "choices": [{"name": name, "checked": name in shown} for name in choices],
        "group_choices": groups,
        "labels": labels,
        "ids": ids,
        "next_url": "/?" + urlencode(f.items(page=f.page + 1)) if f.page < table.pages else "",
        "prev_url": "/?" + urlencode(f.items(page=f.page - 1)) if f.page > 1 else "",
        "group_filters": [_group_filter(f, g["value"]) for g in table.groups],
    }


def _group_filter(f: RunFilter, value: Any) -> str:
    """The link that lists one group's runs alone (its value added to the filter, the grouping dropped)."""
    assert f.group is not None
    cond = f"{f.group.name} is null" if value is None else f"{f.group.name} = {_quoted(str(value))}"
    text = f"({f.text}) and {cond}" if f.text and not f.pointer else cond
    return "/?" + urlencode(f.items(q=text, group="", page=1))


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def api_runs(engine: Engine, f: RunFilter) -> dict[str, Any]:
    """What /api/runs answers: the view's runs (each with `depth` and `values` per column name) or groups."""
    v = runs_view(engine, f)
    table = v["table"]
    columns = v["columns"]

    def run_json(depth: int, r: Mapping[str, Any]) -> dict[str, Any]:
        return {**run_summary(r), "depth": depth, "values": {c.name: _cell(c, r) for c in columns}}

    out: dict[str, Any] = {
        "count": table.runs,
        "top": table.top,
        "page": f.page,
        "pages": table.pages,
        "columns": [c.name for c in columns],
        "sort": f.sort,
        "desc": f.desc,
        "errors": f.errors,
        "runs": [run_json(depth, r) for depth, r in table.rows]
        + [run_json(0, r) for g in table.groups for r in g["rows"]],
    }
    if f.group is not None:
        out["group"] = f.group.name
        out["groups"] = [
            {"value": g["value"], "count": g["count"], "stats": g["stats"], "runs": [r["id"] for r in g["rows"]]}
            for g in table.groups
        ]
    return out


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


def _artifact_state(
    store: Store, run_id: str, a: dict[str, Any], hashes: FileHashes, url: str
) -> tuple[str, str | None, dict[str, Any] | None]:
    """What the run page says of an artifact: file (served), directory (browsable), other (not a regular
    file) or missing (not in the store, or refused); for a file, why it no longer matches its log, if it
    does not, and its preview (`media.artifact_preview`: a capped read)."""
    what = f"run {run_id} artifact {a['name']!r}"
    try:
        fd, real = store.open_recorded(a["path"], what)
    except NotRegularFileError as exc:
        return ("directory" if exc.reason == "is a directory" else "other"), None, None
    except RecordedFileError:  # missing, or a path out of the store
        return "missing", None, None
    try:
        return "file", hashes.warning(fd, a, full=True), artifact_preview(fd, real, a, url)
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
        url = f"/artifact/{run_id}/{url_part(a['name'])}"
        kind, warning, preview = _artifact_state(store, run_id, a, hashes, url)
        artifacts.append({**a, "kind": kind, "url": url, "warning": warning, "preview": preview})
        if kind == "file" and a["name"] in panels:
            embedded.append({"title": panels[a["name"]], "name": a["name"], "url": url})
    env = d["environment"]
    media = run_media(engine, store, run_id, hashes)
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
        "media": media,
        "packages": len(env["pip_freeze"] or {}) if env else 0,
        "page_data": {
            "page": "run",
            "run_id": run_id,
            "status": r["status"],
            "interval": interval,
            "metrics": [{"key": m["key"], "dom": m["dom"], "count": m["count"], "value": m["value"]} for m in metrics],
            "start": r["timestamp_start"],  # the origin of x = relative time
            "media": media,
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
    """The compare page's context: the runs' parameters and tags side by side (those that differ counted:
    the page shows them first and alone until asked), every metric key any of them logged (one chart each),
    and the parallel coordinates' data (`parallel_data`); a deleted run left out with a note in `errors`.
    A fixed number of queries however many runs."""
    gone = set(deleted_runs(engine, ids))
    errors = errors + [f"run {rid} is deleted: `alex restore {rid[:8]}` brings it back" for rid in ids if rid in gone]
    ids = [rid for rid in ids if rid not in gone]
    rows = run_rows(engine, ids)
    params = run_params(engine, ids)
    # one summary row per (run, key) (metric_summary): a page of 100 long runs never scans their points
    summaries = run_metrics(engine, ids, extremes=False)
    keys = {rid: list(summaries[rid]) for rid in ids}
    tags = [r["tags"] or {} for r in rows]
    metric_keys = sorted({k for rid in ids for k in keys[rid]})
    runs = [run_summary(r) for r in rows]
    charts = compare_charts(engine, ids)
    param_rows = _side_by_side({k for p in params.values() for k in p}, [params[rid] for rid in ids])
    tag_rows = _side_by_side({k for t in tags for k in t}, tags)
    parallel = parallel_data(ids, params, summaries)
    return {
        "title": "Compare runs",
        "runs": runs,
        "params": param_rows,
        "params_differ": sum(1 for p in param_rows if p["differs"]),
        "tags": tag_rows,
        "tags_differ": sum(1 for t in tag_rows if t["differs"]),
        "errors": errors,
        "metric_keys": [{"key": k, "dom": f"c{i}"} for i, k in enumerate(metric_keys)],
        "charts": charts,
        "parallel": parallel,
        "aggregates": AGGREGATES,
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
            "parallel": parallel,
        },
    }


def parallel_data(
    ids: list[str], params: dict[str, dict[str, str]], summaries: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any] | None:
    """What the compare page's parallel coordinates draw (static/compare.js): the axes of the parameters
    that differ (`figures.parallel_dimensions`: numeric, or categorical with tick labels), the metrics every
    run logged (the colour is picked among them), the default pick (`compare.pick_metric`, by last value)
    and its values per run. None when there is nothing to draw: fewer than 2 runs, or no parameter differs."""
    if len(ids) < 2:
        return None
    dims = parallel_dimensions(ids, params)
    if not dims:
        return None
    shared = sorted(set.intersection(*(set(summaries[rid]) for rid in ids)))
    default = pick_metric(summaries, ids, "last")
    return {
        "run_ids": ids,
        "dims": dims,
        "metrics": shared,
        "metric": default,
        "agg": "last",
        "values": [aggregate(summaries[rid].get(default), "last") for rid in ids] if default else None,
    }


def metric_values(engine: Engine, ids: list[str], key: str, agg: str) -> dict[str, Any]:
    """One number per run for the parallel coordinates' colour (what the compare page fetches when the user
    picks a metric): `key` reduced by `agg`, None where a run lacks it or it is not finite."""
    if agg not in AGGREGATES:
        raise InvalidInputError(f"agg must be one of {', '.join(AGGREGATES)}, got {agg!r}")
    return {"run_ids": ids, "metric": key, "agg": agg, "values": metric_by_run(engine, ids, key, agg)}


def run_status(engine: Engine, run_id: str, *, with_metrics: bool) -> dict[str, Any]:
    """What a run page polls: the run, and per metric key its point count and last value and step (one
    `metric_summary` row per key: the poll costs the same at 10 million points; the pages take min and max
    from the chart's buckets)."""
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
