"""The data the dashboard's pages and JSON endpoints serve, from the read model (query.py): the runs
table's filters and sorting, and what a run page, the compare page and the polls show. No SQL here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine
from starlette.datastructures import QueryParams

from ..compare import pick_metric
from ..errors import InvalidInputError, NotRegularFileError, RecordedFileError
from ..figures import parallel_dimensions
from ..filters import FilterError
from ..formatting import duration_seconds, run_duration_text, run_label, when_text
from ..plugins import embedded_artifacts
from ..query import (
    deleted_runs,
    downsample,
    experiment_note,
    has_metric,
    list_runs,
    metric_by_run,
    run_details,
    run_metrics,
    run_params,
    run_rows,
    run_tree,
)
from ..store import Store
from ..summaries import AGGREGATES, aggregate
from ..verify import FileHashes
from .render import STATUSES, floats, url_part

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
            "metrics": [{"key": m["key"], "dom": m["dom"], "count": m["count"]} for m in metrics],
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
    # the last values only (the index and the last points): a page of 100 long runs must not scan every point
    summaries = run_metrics(engine, ids, extremes=False)
    keys = {rid: list(summaries[rid]) for rid in ids}
    tags = [r["tags"] or {} for r in rows]
    metric_keys = sorted({k for rid in ids for k in keys[rid]})
    runs = [run_summary(r) for r in rows]
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
        "parallel": parallel,
        "aggregates": AGGREGATES,
        "page_data": {
            "page": "compare",
            "interval": max(interval, 2.0),
            "runs": [
                {
                    "id": r["id"],
                    # the legend is short of room: the name there, the id prefix and experiment on hover
                    "label": r["label"],
                    "hover": f"{r['id'][:8]} {r['experiment'] or ''}".strip(),
                    "status": r["status"],
                    "keys": keys[r["id"]],
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
    """What a run page polls: the run, and per metric key its point count and last value and step (read
    from the index and the last points only; the pages take min and max from the chart's buckets)."""
    row = run_rows(engine, [run_id])[0]
    stats = {}
    if with_metrics:
        for key, s in run_metrics(engine, [run_id], extremes=False)[run_id].items():
            stats[key] = {"count": s.count, "last_value": s.last_value, "last_step": s.last_step}
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
