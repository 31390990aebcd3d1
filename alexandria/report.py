"""Reports over the projection: pages about runs (`alex report`, `alex plot`) and the Python face of reporting.

Every function takes a read-only engine (`Reader(...).engine`) and runs given as ids or unique id prefixes; a
single string instead of a list names a sweep's parent run: its child runs are the runs. The pieces live in
their own homes and are named here for Python callers: the figures in figures.py, the page shell in pages.py,
what runs differ in (`compare_runs`) in compare.py, on the read model, the files of `alex export` in export.py.
All logged text (experiment names, keys, parameter values) reaches a page escaped, either as HTML text or
inside the figures' JSON.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from .compare import compare_runs, pick_metric
from .errors import InvalidInputError
from .export import export_runs
from .figures import (
    DEFAULT_BUCKETS,
    PALETTE,
    as_numbers,
    check_smoothing,
    curves_figure,
    curves_figure_spec,
    curves_spec,
    page_buckets,
    parallel_coordinates_figure,
    parallel_figure,
    require_metrics,
)
from .formatting import duration_text, run_label, when_text
from .pages import figure_html, page_html, smoothing_control, write_page
from .query import (
    RunSelection,
    resolve_run_id,
    run_metrics,
    run_params,
    run_rows,
    select_runs,
)
from .summaries import AGGREGATES, aggregate

__all__ = [
    "compare_runs",
    "curves_figure",
    "export_runs",
    "parallel_coordinates_figure",
    "params_table_html",
    "write_plot",
    "write_report",
]


def _run_header(r: dict[str, Any]) -> str:
    e = html.escape
    return (
        f'<th><span class="name" title="{e(r["id"])}">{e(run_label(r))}</span>'
        f'<br><span class="id">{e(r["id"][:8])}</span> <span class="exp">{e(r["experiment_name"] or "?")}</span></th>'
    )


def _label_with_id(r: dict[str, Any]) -> str:
    """A run in running text: its name and id prefix ("bold-fox-3 1a2b3c4d"), or the prefix alone."""
    label = run_label(r)
    return label if label == r["id"][:8] else f"{label} {r['id'][:8]}"


def params_table_html(engine: Engine, run_ids: RunSelection) -> str:
    """The runs' parameters side by side as an HTML table: a row per key, a column per run. Keys whose value
    is not the same in every run come first, their rows marked ``class="differs"`` (highlighted, and "≠"
    beside the key); a run without the key shows "—". Every logged text is HTML-escaped. The table sits in a
    ``div.scroll-box`` that scrolls sideways (its first column stays): 200 runs do not widen the page."""
    ids = select_runs(engine, run_ids)
    runs = run_rows(engine, ids)
    params = run_params(engine, ids)
    keys = sorted(set().union(*params.values()))
    differs = {k for k in keys if len({params[rid].get(k) for rid in ids}) > 1}
    e = html.escape
    out = [
        '<div class="scroll-box">',
        '<table class="params">',
        "<thead><tr><th>parameter</th>",
        *map(_run_header, runs),
        "</tr></thead>",
    ]
    out.append("<tbody>")
    for k in sorted(keys, key=lambda k: (k not in differs, k)):
        mark = ' <span class="mark" title="differs between runs">≠</span>' if k in differs else ""
        out.append('<tr class="differs">' if k in differs else "<tr>")
        out.append(f"<th>{e(k)}{mark}</th>")
        for rid in ids:
            v = params[rid].get(k)
            out.append('<td class="missing">—</td>' if v is None else f"<td>{e(v)}</td>")
        out.append("</tr>")
    if not keys:
        out.append(f'<tr><td colspan="{len(ids) + 1}">no parameters logged</td></tr>')
    out.append("</tbody></table></div>")
    return "".join(out)


def _runs_table_html(runs: Sequence[dict[str, Any]]) -> str:
    e = html.escape
    out = [
        '<table class="runs"><thead><tr><th>run</th><th>name</th><th>experiment</th><th>status</th><th>started</th>'
        "<th>duration</th><th>parent</th></tr></thead><tbody>"
    ]
    for i, r in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        status = e(r["status"] or "?") + (f" (resumed {r['attempt']}x)" if r["attempt"] else "")
        if r["error"]:
            status += f'<br><span class="error">{e(r["error"])}</span>'
        out.append(
            f'<tr><td class="id"><span class="swatch" style="background:{color}"></span>{e(r["id"])}</td>'
            f'<td class="name">{e(run_label(r))}</td><td>{e(r["experiment_name"] or "?")}</td>'
            f"<td>{status}</td><td>{when_text(r['timestamp_start'])}</td>"
            f"<td>{duration_text(r['timestamp_start'], r['timestamp_end'])}</td>"
            f'<td class="id">{e((r["parent_id"] or "")[:8])}</td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


def write_plot(
    path: str | os.PathLike[str],
    engine: Engine,
    run_ids: RunSelection,
    metrics: Sequence[str],
    *,
    x: str = "step",
    smoothing: float = 0.0,
    log_y: bool = False,
    buckets: int = DEFAULT_BUCKETS,
    embed: bool = False,
) -> Path:
    """A page with `curves_figure` and its smoothing control (what `alex plot` writes), atomically; each
    curve has at most `buckets` buckets, fewer on a page of many (`figures.page_buckets`)."""
    ids = select_runs(engine, run_ids)
    share = page_buckets(buckets, len(ids) * len(dict.fromkeys(metrics)))
    fig = curves_figure_spec(engine, ids, metrics, x=x, smoothing=smoothing, log_y=log_y, buckets=share)
    title = f"{', '.join(dict.fromkeys(metrics))}: {len(ids)} run(s)"
    runs = run_rows(engine, ids)
    body = [_runs_table_html(runs), smoothing_control(smoothing), figure_html(fig, "curves-1", "curves")]
    return write_page(path, page_html(title, body, embed=embed, smoothing_js=True), embed=embed)


def write_report(
    path: str | os.PathLike[str],
    engine: Engine,
    run_ids: RunSelection,
    metrics: Sequence[str] | None = None,
    *,
    x: str = "step",
    smoothing: float = 0.0,
    buckets: int = DEFAULT_BUCKETS,
    embed: bool = False,
    title: str | None = None,
    parallel_metric: str | None = None,
    parallel_agg: str = "last",
) -> Path:
    """One self-contained HTML page about the runs, written atomically; returns its path.

    Title, the runs (id, name, experiment, status, start, duration), a curves figure per metric (every metric any
    run logged, or `metrics`: then every run must have them) with the runs that logged it, the parameters
    side by side, and parallel coordinates when there are at least 2 runs and a parameter that is numeric in
    every run and differs between them (coloured by `parallel_metric` reduced by `parallel_agg`; by default
    the metric `compare.pick_metric` prefers, as the dashboard's compare page does).
    A string `run_ids` is a sweep's parent: the page covers its children.

    Each curve has at most `buckets` buckets, fewer on a page of many curves (`figures.page_buckets`: the
    page draws at most `figures.PAGE_POINTS` points), so a sweep of 200 runs writes a page of a few MB.
    """
    if x not in ("step", "time"):
        raise InvalidInputError(f"x must be 'step' or 'time', got {x!r}")
    check_smoothing(smoothing)
    if parallel_agg not in AGGREGATES:
        raise InvalidInputError(f"parallel_agg must be 'last', 'min' or 'max', got {parallel_agg!r}")
    ids = select_runs(engine, run_ids)
    runs = run_rows(engine, ids)
    # one read of every (run, metric)'s summary: the metric keys, the default colouring metric and its values
    summaries = run_metrics(engine, ids, extremes=parallel_agg != "last")
    keys = {rid: list(summaries[rid]) for rid in ids}
    if metrics:
        chosen = list(dict.fromkeys(metrics))
        require_metrics(keys, chosen)
    else:
        chosen = sorted(set().union(*keys.values()))
    if title is None:
        if isinstance(run_ids, str):
            parent = run_rows(engine, [resolve_run_id(engine, run_ids)])[0]
            title = f"sweep {_label_with_id(parent)} ({parent['experiment_name'] or '?'}): {len(ids)} runs"
        else:
            experiments = ", ".join(dict.fromkeys(r["experiment_name"] or "?" for r in runs))
            title = f"{len(ids)} run(s): {experiments}"
    body = ["<h2>Runs</h2>", _runs_table_html(runs), "<h2>Metrics</h2>"]
    if chosen:
        body.append(smoothing_control(smoothing))
    else:
        body.append('<p class="note">no metrics logged</p>')
    share = page_buckets(buckets, sum(1 for r in runs for key in chosen if key in keys[r["id"]]))
    for n, key in enumerate(chosen, 1):
        having = [r for r in runs if key in keys[r["id"]]]
        fig = curves_spec(engine, having, keys, [key], x=x, smoothing=smoothing, log_y=False, buckets=share)
        body.append(figure_html(fig, f"curves-{n}", "curves"))
        missing = [_label_with_id(r) for r in runs if key not in keys[r["id"]]]
        if missing:
            body.append(f'<p class="note">not logged by {html.escape(", ".join(missing))}</p>')
    params = run_params(engine, ids)
    body += ["<h2>Parameters</h2>", params_table_html(engine, ids)]
    target = parallel_metric
    if target is None and len(ids) >= 2:
        target = pick_metric(summaries, ids, parallel_agg, among=chosen)
    elif target is not None:
        require_metrics(keys, [target])
    if len(ids) >= 2 and target is not None and _has_varying_numeric_param(params, ids):
        values = [aggregate(summaries[rid].get(target), parallel_agg) for rid in ids]
        fig = parallel_figure(ids, params, target, parallel_agg, values)
        body += ["<h2>Parameters against " + html.escape(f"{target} ({parallel_agg})") + "</h2>"]
        body.append(figure_html(fig, "parallel", "parallel", when_visible=True))  # WebGL: drawn when seen
    page = page_html(title, body, embed=embed, smoothing_js=bool(chosen))
    return write_page(path, page, embed=embed)


def _has_varying_numeric_param(params: dict[str, dict[str, str]], ids: Sequence[str]) -> bool:
    for key in set().union(*params.values()):
        column = [params[rid].get(key) for rid in ids]
        if len(set(column)) > 1 and as_numbers(column) is not None:
            return True
    return False
