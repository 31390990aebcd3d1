"""Reports over the projection: metric curves, parameters side by side, parallel coordinates, comparisons, exports.

Every function takes a read-only engine (`query.Reader(...).engine`, or what the CLI folds) and runs given
as ids or unique id prefixes (`query.resolve_run_id`). A single string instead of a list names a sweep's
parent run: its child runs are the runs.

Pictures are plotly figures. Curves are drawn from `query.downsample`, never from the raw points: per
bucket, the line is the bucket's `last` value and a filled envelope spans the bucket's min..max, so a
one-step spike among millions of points stays visible. Pages open offline: plotly's library is written
once beside the page as `plotly.min.js` (or embedded with `embed=True`), never fetched from a CDN. All
logged text (experiment names, keys, parameter values) reaches a page escaped, either as HTML text or
inside the figures' JSON, where `<`, `>` and `&` are additionally written as JSON escapes.

Where tests and tools find the data (stable): a curves trace has `meta = {"role": "line" | "envelope",
"run_id": ..., "metric": ...}`; a line's `customdata` rows are `[last, min, max, count]` per bucket
(`last` unsmoothed: the page's smoothing control recomputes the line from it).
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.io.json import to_json_plotly
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots
from sqlalchemy import Engine, func, select

from .backends import backend_of
from .errors import InvalidInputError, QueryError
from .files import atomic_file, write_atomically
from .query import downsample, duration_text, resolve_run_id, when_text
from .schema import metric, parameter, run

#: One colour per run, the same in every figure of a page.
PALETTE = qualitative.Plotly + qualitative.D3
DEFAULT_BUCKETS = 2000
#: Rows per Parquet row group, and per fetch from SQLite while exporting.
ROW_GROUP_ROWS = 500_000
FETCH_ROWS = 50_000

RunSelection = Sequence[str] | str


# -- selecting runs ------------------------------------------------------------------
def select_runs(engine: Engine, run_ids: RunSelection) -> list[str]:
    """Full run ids, in the order given, without repeats. A string is a sweep's parent run: its children."""
    if isinstance(run_ids, str):
        return sweep_children(engine, run_ids)
    ids: list[str] = []
    for prefix in run_ids:
        rid = resolve_run_id(engine, prefix)
        if rid not in ids:
            ids.append(rid)
    if not ids:
        raise InvalidInputError("no runs selected: give at least one run id (or a unique prefix of one)")
    return ids


def sweep_children(engine: Engine, parent: str) -> list[str]:
    """The child runs of `parent` (an id or unique prefix), oldest first."""
    parent_id = resolve_run_id(engine, parent)
    with engine.connect() as conn:
        children = (
            conn.execute(
                select(run.c.id)
                .where(run.c.parent_id == parent_id)
                .order_by(run.c.timestamp_start.nulls_last(), run.c.id)
            )
            .scalars()
            .all()
        )
    if not children:
        raise InvalidInputError(f"run {parent_id} has no child runs: --sweep takes the parent run of a sweep")
    return list(children)


def _run_rows(engine: Engine, ids: Sequence[str]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = {r.id: dict(r._mapping) for r in conn.execute(select(run).where(run.c.id.in_(ids)))}
    return [rows[i] for i in ids]


def _params(engine: Engine, ids: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {i: {} for i in ids}
    with engine.connect() as conn:
        for rid, key, value in conn.execute(
            select(parameter.c.run_id, parameter.c.key, parameter.c.value).where(parameter.c.run_id.in_(ids))
        ):
            out[rid][key] = value
    return out


def _metric_keys(engine: Engine, ids: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {i: [] for i in ids}
    with engine.connect() as conn:
        for rid in ids:  # per run: the (run_id, key, step) index answers each without a scan
            out[rid] = list(
                conn.execute(
                    select(metric.c.key).where(metric.c.run_id == rid).group_by(metric.c.key).order_by(metric.c.key)
                ).scalars()
            )
    return out


def _require_metrics(keys: dict[str, list[str]], metrics: Sequence[str]) -> None:
    """Every run must have every metric; else say which runs lack which, and what they have instead."""
    for key in metrics:
        lacking = [rid for rid, have in keys.items() if key not in have]
        if lacking:
            parts = [f"{rid[:8]} (it has: {_key_list(keys[rid])})" for rid in lacking]
            which = "run" if len(lacking) == 1 else f"{len(lacking)} runs:"
            raise QueryError(f"metric {key!r} is missing from {which} {'; '.join(parts)}")


def _key_list(keys: Sequence[str], limit: int = 20) -> str:
    if not keys:
        return "no metrics"
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _last_and_stats(conn: Any, run_id: str, key: str) -> dict[str, Any]:
    """final (value at the highest step, then latest; NaN if NaN was logged last), its step, min, max, count."""
    count, lo, hi = conn.execute(
        select(func.count(), func.min(metric.c.value), func.max(metric.c.value)).where(
            metric.c.run_id == run_id, metric.c.key == key
        )
    ).one()
    last = conn.execute(
        select(metric.c.value, metric.c.step)
        .where(metric.c.run_id == run_id, metric.c.key == key)
        .order_by(metric.c.step.desc().nulls_last(), metric.c.timestamp.desc(), metric.c.id.desc())
        .limit(1)
    ).first()
    final = None if last is None else (math.nan if last.value is None else float(last.value))
    return {
        "final": final,
        "final_step": None if last is None else last.step,
        "min": lo,
        "max": hi,
        "points": int(count),
    }


# -- smoothing -----------------------------------------------------------------------
def check_smoothing(weight: float) -> float:
    if not (isinstance(weight, int | float) and 0.0 <= weight < 1.0):
        raise InvalidInputError(f"smoothing must be a number in [0, 1), got {weight!r}")
    return float(weight)


def smooth(values: Sequence[float | None], weight: float) -> list[float | None]:
    """TensorBoard's smoothing: an exponential moving average with `weight` in [0, 1), debiased (divided by
    1 - weight**n, so the first points are not pulled towards 0). NaN, infinities and None pass through
    unchanged and do not enter the average. The page's smoothing control runs the same code in JavaScript."""
    check_smoothing(weight)
    out: list[float | None] = []
    last, n = 0.0, 0
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1 - weight) * v
        n += 1
        out.append(last / (1 - weight**n))
    return out


# -- figures -------------------------------------------------------------------------
def _text(s: str) -> str:
    """User text for plotly's pseudo-HTML (trace names, titles, parcoords labels): &, <, > escaped (not
    quotes: plotly.js does not decode &quot;). Parcoords tick labels are plain text to plotly: not for them."""
    return html.escape(s, quote=False)


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    r, g, b = (int(c[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def trace_name(run_row: dict[str, Any], key: str) -> str:
    """A curve's legend name, as drawn: the run id's first 8 characters, the metric, the experiment."""
    return _text(f"{run_row['id'][:8]} {key} ({run_row['experiment_name'] or '?'})")


def _curve_traces(
    engine: Engine, run_row: dict[str, Any], key: str, color: str, *, x: str, smoothing: float, buckets: int
) -> list[Any]:
    """The envelope (bucket min..max, filled) and the line (bucket last, smoothed) of one run's metric."""
    d = downsample(engine, run_row["id"], key, buckets, x=x)
    xs = d.x
    if x == "time":  # seconds since the run's start: runs started at different times overlay
        origin = run_row["timestamp_start"] if run_row["timestamp_start"] is not None else (xs[0] if len(xs) else 0)
        xs = xs - origin
    xl = [float(v) if x == "time" else int(v) for v in xs]
    name = trace_name(run_row, key)
    group = f"{run_row['id']}/{key}"
    meta = {"run_id": run_row["id"], "metric": key}
    band = [i for i in range(len(xl)) if math.isfinite(d.min[i]) and math.isfinite(d.max[i])]
    envelope = go.Scatter(
        x=[xl[i] for i in band] + [xl[i] for i in reversed(band)],
        y=[float(d.max[i]) for i in band] + [float(d.min[i]) for i in reversed(band)],
        fill="toself",
        fillcolor=_rgba(color, 0.18),
        line={"color": _rgba(color, 0.45), "width": 0.6},
        mode="lines",
        name=name + " min..max",
        legendgroup=group,
        showlegend=False,
        hoverinfo="skip",
        meta={**meta, "role": "envelope"},
    )
    raw = [_finite(v) for v in d.last]
    x_label = "t+%{x:.3~f}s" if x == "time" else "step %{x}"
    line = go.Scatter(
        x=xl,
        y=smooth(raw, smoothing) if smoothing else raw,
        customdata=[[raw[i], _finite(d.min[i]), _finite(d.max[i]), int(d.count[i])] for i in range(len(xl))],
        mode="lines",
        line={"color": color, "width": 1.6},
        name=name,
        legendgroup=group,
        meta={**meta, "role": "line"},
        hovertemplate=(
            f"%{{fullData.name}}<br>{x_label}<br>value %{{customdata[0]:.6g}}, smoothed %{{y:.6g}}"
            "<br>bucket of %{customdata[3]} point(s): min %{customdata[1]:.6g}, max %{customdata[2]:.6g}"
            "<extra></extra>"
        ),
    )
    return [envelope, line]


def _curves(
    engine: Engine,
    runs: Sequence[dict[str, Any]],
    keys: dict[str, list[str]],
    metrics: Sequence[str],
    *,
    x: str,
    smoothing: float,
    log_y: bool,
    buckets: int,
) -> Any:
    rows = len(metrics)
    fig = make_subplots(rows=rows, cols=1, subplot_titles=[_text(m) for m in metrics], shared_xaxes=False)
    for row, key in enumerate(metrics, 1):
        for i, r in enumerate(runs):
            if key not in keys[r["id"]]:
                continue
            color = PALETTE[i % len(PALETTE)]
            for trace in _curve_traces(engine, r, key, color, x=x, smoothing=smoothing, buckets=buckets):
                fig.add_trace(trace, row=row, col=1)
        fig.update_xaxes(title_text="seconds since the run's start" if x == "time" else "step", row=row, col=1)
    axes = ["yaxis" if i == 1 else f"yaxis{i}" for i in range(1, rows + 1)]
    fig.update_yaxes(type="log" if log_y else "linear")
    fig.update_layout(
        height=320 * rows + 110,
        margin={"l": 60, "r": 20, "t": 70, "b": 50},
        hovermode="closest",
        template="plotly_white",
        meta={"alexandria": "curves", "x": x, "smoothing": smoothing, "buckets": buckets},
        updatemenus=[
            {
                "type": "buttons",
                "direction": "right",
                "active": 1 if log_y else 0,
                "showactive": True,
                "x": 0,
                "xanchor": "left",
                "y": 1.0,
                "yanchor": "bottom",
                "pad": {"b": 28},
                "buttons": [
                    {"label": "linear y", "method": "relayout", "args": [{f"{a}.type": "linear" for a in axes}]},
                    {"label": "log y", "method": "relayout", "args": [{f"{a}.type": "log" for a in axes}]},
                ],
            }
        ],
    )
    return fig


def curves_figure(
    engine: Engine,
    run_ids: RunSelection,
    metrics: Sequence[str],
    *,
    x: str = "step",
    smoothing: float = 0.0,
    log_y: bool = False,
    buckets: int = DEFAULT_BUCKETS,
) -> Any:
    """Metric curves, one subplot per metric, the runs overlaid (a colour per run).

    Per (run, metric) two traces: the line (named ``"<id[:8]> <metric> (<experiment>)"``, at most `buckets`
    points: each bucket's last value, smoothed with `smoothing`) and its envelope (each bucket's min..max,
    filled, not in the legend). x is the step, or with ``x="time"`` the seconds since the run's start
    (so runs started at different times overlay). Every run must have every metric. Buttons switch the y
    axes between linear and log; `log_y` starts on log.
    """
    if x not in ("step", "time"):
        raise InvalidInputError(f"x must be 'step' or 'time', got {x!r}")
    check_smoothing(smoothing)
    if buckets < 1:
        raise InvalidInputError(f"buckets must be at least 1, got {buckets}")
    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        raise InvalidInputError("no metric given: name at least one metric key")
    ids = select_runs(engine, run_ids)
    keys = _metric_keys(engine, ids)
    _require_metrics(keys, metrics)
    return _curves(
        engine, _run_rows(engine, ids), keys, metrics, x=x, smoothing=smoothing, log_y=log_y, buckets=buckets
    )


def _metric_value(conn: Any, run_id: str, key: str, agg: str) -> float | None:
    if agg == "last":
        final = _last_and_stats(conn, run_id, key)["final"]
        return None if final is None or not math.isfinite(final) else final
    fn = func.min if agg == "min" else func.max
    value = conn.execute(select(fn(metric.c.value)).where(metric.c.run_id == run_id, metric.c.key == key)).scalar()
    return None if value is None or not math.isfinite(value) else float(value)


def _as_numbers(values: Sequence[str | None]) -> list[float] | None:
    """The parameter's values as floats when every run has a finite number, else None (categorical)."""
    out = []
    for v in values:
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if not math.isfinite(f):
            return None
        out.append(f)
    return out


def _short(s: str, limit: int = 32) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


def parallel_coordinates_figure(
    engine: Engine, run_ids: RunSelection, metric_key: str, *, agg: str = "last", varying_only: bool = True
) -> Any:
    """One line per run across its parameters, the metric last and colouring the lines.

    A parameter whose value is a finite number in every run is a numeric axis; any other (text, booleans,
    a run without it, shown as "-") is categorical, its values sorted and shown as tick labels. With
    `varying_only` (the default, and when there are at least 2 runs) parameters equal in every run are left
    out: they explain nothing. The metric is reduced per run by `agg`: "last" (the value at the highest step),
    "min" or "max"; a run whose value is NaN has a null there. Pass a parent run id as `run_ids` for a sweep.
    """
    if agg not in ("last", "min", "max"):
        raise InvalidInputError(f"agg must be 'last', 'min' or 'max', got {agg!r}")
    ids = select_runs(engine, run_ids)
    _require_metrics(_metric_keys(engine, ids), [metric_key])
    params = _params(engine, ids)
    dims: list[dict[str, Any]] = []
    for key in sorted(set().union(*params.values())):
        column = [params[rid].get(key) for rid in ids]
        if varying_only and len(ids) > 1 and len(set(column)) == 1:
            continue
        numbers = _as_numbers(column)
        if numbers is not None:
            dim: dict[str, Any] = {"label": _text(key), "values": numbers}
            if min(numbers) == max(numbers):
                dim["range"] = [numbers[0] - 1, numbers[0] + 1]
        else:
            texts = ["-" if v is None else v for v in column]
            levels = sorted(set(texts))
            code = {v: i for i, v in enumerate(levels)}
            dim = {
                "label": _text(key),
                "values": [code[v] for v in texts],
                "tickvals": list(range(len(levels))),
                "ticktext": [_short(v) for v in levels],  # plain text to plotly: not escaped (the JSON is)
                "range": [-0.5, len(levels) - 0.5] if len(levels) == 1 else [0, len(levels) - 1],
            }
        dims.append(dim)
    with engine.connect() as conn:
        values = [_metric_value(conn, rid, metric_key, agg) for rid in ids]
    label = _text(f"{metric_key} ({agg})")
    dims.append({"label": label, "values": values})
    finite = [v for v in values if v is not None]
    fig = go.Figure(
        go.Parcoords(
            dimensions=dims,
            line={
                "color": [math.nan if v is None else v for v in values],
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": label}},
                **({"cmin": min(finite), "cmax": max(finite)} if finite else {}),
            },
            meta={"run_ids": ids, "metric": metric_key, "agg": agg},
        )
    )
    fig.update_layout(height=460, margin={"l": 80, "r": 80, "t": 60, "b": 40}, template="plotly_white")
    return fig


# -- tables --------------------------------------------------------------------------
def _run_header(r: dict[str, Any]) -> str:
    e = html.escape
    return (
        f'<th><span class="id" title="{e(r["id"])}">{e(r["id"][:8])}</span>'
        f'<br><span class="exp">{e(r["experiment_name"] or "?")}</span></th>'
    )


def params_table_html(engine: Engine, run_ids: RunSelection) -> str:
    """The runs' parameters side by side as an HTML table: a row per key, a column per run. Keys whose value
    is not the same in every run come first, their rows marked ``class="differs"`` (highlighted, and "≠"
    beside the key); a run without the key shows "—". Every logged text is HTML-escaped."""
    ids = select_runs(engine, run_ids)
    runs = _run_rows(engine, ids)
    params = _params(engine, ids)
    keys = sorted(set().union(*params.values()))
    differs = {k for k in keys if len({params[rid].get(k) for rid in ids}) > 1}
    e = html.escape
    out = ['<table class="params">', "<thead><tr><th>parameter</th>", *map(_run_header, runs), "</tr></thead>"]
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
    out.append("</tbody></table>")
    return "".join(out)


def _runs_table_html(runs: Sequence[dict[str, Any]]) -> str:
    e = html.escape
    out = [
        '<table class="runs"><thead><tr><th>run</th><th>experiment</th><th>status</th><th>started</th>'
        "<th>duration</th><th>parent</th></tr></thead><tbody>"
    ]
    for i, r in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        status = e(r["status"] or "?") + (f" (resumed {r['attempt']}x)" if r["attempt"] else "")
        if r["error"]:
            status += f'<br><span class="error">{e(r["error"])}</span>'
        out.append(
            f'<tr><td class="id"><span class="swatch" style="background:{color}"></span>{e(r["id"])}</td>'
            f"<td>{e(r['experiment_name'] or '?')}</td><td>{status}</td><td>{when_text(r['timestamp_start'])}</td>"
            f"<td>{duration_text(r['timestamp_start'], r['timestamp_end'])}</td>"
            f'<td class="id">{e((r["parent_id"] or "")[:8])}</td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


# -- pages ---------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:#f5f5f5}.id{font-family:ui-monospace,monospace}.exp{font-weight:normal;color:#555}
tr.differs th,tr.differs td{background:#fff3c4}.mark{color:#b35900}.missing{color:#999}
.error{color:#b00;font-size:.85em}.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.4em}
.controls{margin:.5em 0;font-size:.9em}.controls input[type=number]{width:5em}.note{color:#666;font-size:.85em}
"""

# The page's smoothing control: the same debiased EMA as `smooth`, on each line's unsmoothed values
# (customdata column 0), applied with Plotly.restyle to every curves figure of the page.
_SMOOTHING_JS = """
(function () {
  function ema(ys, w) {
    var last = 0, n = 0;
    return ys.map(function (y) {
      if (typeof y !== "number" || !Number.isFinite(y)) return y;
      last = last * w + (1 - w) * y; n += 1;
      return last / (1 - Math.pow(w, n));
    });
  }
  var range = document.getElementById("smoothing"), number = document.getElementById("smoothing-value");
  function apply(w) {
    document.querySelectorAll(".curves").forEach(function (gd) {
      var idx = [], ys = [];
      (gd.data || []).forEach(function (t, i) {
        if (t.meta && t.meta.role === "line") {
          idx.push(i);
          ys.push(ema(t.customdata.map(function (c) { return c[0]; }), w));
        }
      });
      if (idx.length) Plotly.restyle(gd, {y: ys}, idx);
    });
  }
  function set(v) {
    var w = Math.min(0.999, Math.max(0, Number(v) || 0));
    range.value = w; number.value = w; apply(w);
  }
  range.addEventListener("input", function () { set(range.value); });
  number.addEventListener("change", function () { set(number.value); });
})();
"""


def _script_json(obj: Any) -> str:
    """Plotly JSON that is safe inside <script>: no <, > or & left in it (JSON escapes instead)."""
    text = to_json_plotly(obj)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _figure_html(fig: Any, div_id: str, css_class: str) -> str:
    spec = fig.to_plotly_json()
    config = {"responsive": True, "displaylogo": False}
    return (
        f'<div id="{div_id}" class="{css_class}"></div>\n<script type="text/javascript">Plotly.newPlot('
        f'"{div_id}", {_script_json(spec["data"])}, {_script_json(spec["layout"])}, {json.dumps(config)});'
        "</script>"
    )


def _smoothing_control(smoothing: float) -> str:
    return (
        '<div class="controls"><label>smoothing <input type="range" id="smoothing" min="0" max="0.99" '
        f'step="0.01" value="{smoothing}"></label> <input type="number" id="smoothing-value" min="0" '
        f'max="0.999" step="0.01" value="{smoothing}"> <span class="note">exponential moving average of each '
        "line (debiased, as TensorBoard); the shaded band is each bucket's min..max of the raw values</span></div>"
    )


def _page(title: str, body: Sequence[str], *, embed: bool, smoothing_js: bool) -> str:
    if embed:
        lib = '<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};</script>\n' + (
            f'<script type="text/javascript">{get_plotlyjs()}</script>'
        )
    else:
        lib = f'<script src="{PLOTLYJS_NAME}" charset="utf-8"></script>'
    tail = f'<script type="text/javascript">{_SMOOTHING_JS}</script>' if smoothing_js else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n{lib}\n</head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        + "\n".join(body)
        + f'\n<p class="note">written {when_text(time.time())} by alexandria</p>\n{tail}\n</body></html>\n'
    )


#: The plotting library's file beside offline pages (written once per folder, see `write_page`).
PLOTLYJS_NAME = "plotly.min.js"


def ensure_plotlyjs(directory: Path) -> None:
    """Put this plotly's plotly.min.js in `directory` unless the very same library is already there.

    Kept when it matches (the common case: no 4.8 MB rewrite per page). Replaced
    when it does not: a truncated copy, or one from another plotly version, would
    break every page in the folder (older plotly.js cannot read the typed arrays
    that newer plotly writes into the figure JSON).
    """
    bundle = get_plotlyjs()
    target = directory / PLOTLYJS_NAME
    try:
        if target.stat().st_size == len(bundle.encode("utf-8")) and target.read_text("utf-8") == bundle:
            return
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    write_atomically(target, bundle.encode("utf-8"))


def write_page(path: str | os.PathLike[str], page: str, *, embed: bool) -> Path:
    """Write an offline HTML page atomically; unless the page embeds plotly.js (`embed`), put the library
    beside it once: one ~4.8 MB copy per folder instead of one per page (keep the folder together)."""
    target = Path(path)
    if target.name == PLOTLYJS_NAME:
        raise InvalidInputError(f"{target}: that name is reserved for the plotting library beside the pages")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not embed:
        ensure_plotlyjs(target.parent)
    write_atomically(target, page.encode("utf-8"))
    return target


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
    """A page with `curves_figure` and its smoothing control (what `alex plot` writes), atomically."""
    ids = select_runs(engine, run_ids)
    fig = curves_figure(engine, ids, metrics, x=x, smoothing=smoothing, log_y=log_y, buckets=buckets)
    title = f"{', '.join(dict.fromkeys(metrics))}: {len(ids)} run(s)"
    runs = _run_rows(engine, ids)
    body = [_runs_table_html(runs), _smoothing_control(smoothing), _figure_html(fig, "curves-1", "curves")]
    return write_page(path, _page(title, body, embed=embed, smoothing_js=True), embed=embed)


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

    Title, the runs (id, experiment, status, start, duration), a curves figure per metric (every metric any
    run logged, or `metrics`: then every run must have them) with the runs that logged it, the parameters
    side by side, and parallel coordinates when there are at least 2 runs and a parameter that is numeric in
    every run and differs between them (over `parallel_metric`, by default the first of the metrics that every
    run logged and that has a finite value in every run, else in at least one).
    A string `run_ids` is a sweep's parent: the page covers its children.
    """
    if x not in ("step", "time"):
        raise InvalidInputError(f"x must be 'step' or 'time', got {x!r}")
    check_smoothing(smoothing)
    ids = select_runs(engine, run_ids)
    runs = _run_rows(engine, ids)
    keys = _metric_keys(engine, ids)
    if metrics:
        chosen = list(dict.fromkeys(metrics))
        _require_metrics(keys, chosen)
    else:
        chosen = sorted(set().union(*keys.values()))
    if title is None:
        if isinstance(run_ids, str):
            parent = _run_rows(engine, [resolve_run_id(engine, run_ids)])[0]
            title = f"sweep {parent['id'][:8]} ({parent['experiment_name'] or '?'}): {len(ids)} runs"
        else:
            experiments = ", ".join(dict.fromkeys(r["experiment_name"] or "?" for r in runs))
            title = f"{len(ids)} run(s): {experiments}"
    body = ["<h2>Runs</h2>", _runs_table_html(runs), "<h2>Metrics</h2>"]
    if chosen:
        body.append(_smoothing_control(smoothing))
    else:
        body.append('<p class="note">no metrics logged</p>')
    for n, key in enumerate(chosen, 1):
        having = [r for r in runs if key in keys[r["id"]]]
        fig = _curves(engine, having, keys, [key], x=x, smoothing=smoothing, log_y=False, buckets=buckets)
        body.append(_figure_html(fig, f"curves-{n}", "curves"))
        missing = [r["id"][:8] for r in runs if key not in keys[r["id"]]]
        if missing:
            body.append(f'<p class="note">not logged by {", ".join(missing)}</p>')
    body += ["<h2>Parameters</h2>", params_table_html(engine, ids)]
    target = parallel_metric
    if target is None and len(ids) >= 2:
        target = _parallel_default(engine, ids, [k for k in chosen if all(k in keys[rid] for rid in ids)], parallel_agg)
    if len(ids) >= 2 and target is not None and _has_varying_numeric_param(engine, ids):
        fig = parallel_coordinates_figure(engine, ids, target, agg=parallel_agg)
        body += ["<h2>Parameters against " + html.escape(f"{target} ({parallel_agg})") + "</h2>"]
        body.append(_figure_html(fig, "parallel", "parallel"))
    page = _page(title, body, embed=embed, smoothing_js=bool(chosen))
    return write_page(path, page, embed=embed)


def _parallel_default(engine: Engine, ids: Sequence[str], common: Sequence[str], agg: str) -> str | None:
    """The first metric every run has with a finite value (by `agg`) in every run, else in some run."""
    fallback = None
    with engine.connect() as conn:
        for key in common:
            finite = [_metric_value(conn, rid, key, agg) is not None for rid in ids]
            if all(finite):
                return key
            if fallback is None and any(finite):
                fallback = key
    return fallback


def _has_varying_numeric_param(engine: Engine, ids: Sequence[str]) -> bool:
    params = _params(engine, ids)
    for key in set().union(*params.values()):
        column = [params[rid].get(key) for rid in ids]
        if len(set(column)) > 1 and _as_numbers(column) is not None:
            return True
    return False


# -- comparing -----------------------------------------------------------------------
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
    """What differs between runs, as plain data.

    Returns ``{"runs": [{"id", "experiment", "status"}...], "params_differ": {key: [value or None per run]},
    "params_equal": {key: value}, "metrics": {key: {"best_rule": "min"|"max", "runs": [None (not logged) or
    {"final", "final_step", "best", "points"} per run]}}}``. `final` is the value at the highest step (NaN
    when NaN was logged last); `best` is the min or max over the run's non-NaN values, by `best_direction`.
    """
    ids = select_runs(engine, run_ids)
    runs = _run_rows(engine, ids)
    params = _params(engine, ids)
    differ: dict[str, list[str | None]] = {}
    equal: dict[str, str] = {}
    for key in sorted(set().union(*params.values())):
        column = [params[rid].get(key) for rid in ids]
        if len(set(column)) > 1:
            differ[key] = column
        else:
            equal[key] = column[0]  # type: ignore[assignment]  # the same, and present, in every run
    keys = _metric_keys(engine, ids)
    metrics: dict[str, Any] = {}
    with engine.connect() as conn:
        for key in sorted(set().union(*keys.values())):
            rule = best_direction(key, best)
            per_run: list[dict[str, Any] | None] = []
            for rid in ids:
                if key not in keys[rid]:
                    per_run.append(None)
                    continue
                s = _last_and_stats(conn, rid, key)
                found = s["min"] if rule == "min" else s["max"]
                per_run.append(
                    {
                        "final": s["final"],
                        "final_step": s["final_step"],
                        "best": math.nan if found is None else float(found),
                        "points": s["points"],
                    }
                )
            metrics[key] = {"best_rule": rule, "runs": per_run}
    return {
        "runs": [{"id": r["id"], "experiment": r["experiment_name"], "status": r["status"]} for r in runs],
        "params_differ": differ,
        "params_equal": equal,
        "metrics": metrics,
    }


# -- exporting -----------------------------------------------------------------------
_RUN_COLUMNS = ("id", "experiment", "status", "start", "end", "parent_id", "tags")
_PARAM_COLUMNS = ("run_id", "key", "value")
_METRIC_COLUMNS = ("run_id", "key", "step", "value", "timestamp", "attempt")


def _export_rows(db: Any, ids: Sequence[str], mark: str) -> dict[str, Iterator[Sequence[list[Any]]]]:
    """Per file, an iterator of row chunks from the DBAPI cursor (never a whole table in memory); `mark` is
    the driver's placeholder."""

    def runs() -> Iterator[Sequence[list[Any]]]:
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join([mark] * len(chunk))
            rows = {
                r[0]: r
                for r in db.execute(
                    "SELECT id, experiment_name, status, timestamp_start, timestamp_end, parent_id, tags "  # noqa: S608
                    f"FROM run WHERE id IN ({marks})",
                    chunk,
                )
            }
            yield [list(rows[rid][:6]) + [_tags_json(rows[rid][6])] for rid in chunk]

    def fetched(sql: str) -> Iterator[Sequence[list[Any]]]:
        for rid in ids:
            cursor = db.execute(sql, (rid,))
            while chunk := cursor.fetchmany(FETCH_ROWS):
                yield chunk

    return {
        "runs": runs(),
        "params": fetched(f"SELECT run_id, key, value FROM parameter WHERE run_id = {mark} ORDER BY key"),  # noqa: S608
        "metrics": fetched(
            f"SELECT run_id, key, step, value, timestamp, attempt FROM metric WHERE run_id = {mark} "  # noqa: S608
            "ORDER BY key, step, id"
        ),
    }


def _tags_json(raw: Any) -> str:
    tags = json.loads(raw) if isinstance(raw, str) else (raw or {})
    return json.dumps(tags or {}, sort_keys=True, ensure_ascii=False)


def _write_csv(path: Path, columns: Sequence[str], chunks: Iterator[Sequence[Any]]) -> None:
    with atomic_file(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for chunk in chunks:
            w.writerows(chunk)  # None (NULL: NaN values, missing steps) is an empty cell


def _write_parquet(path: Path, schema: Any, chunks: Iterator[Sequence[Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_file(path) as f, pq.ParquetWriter(f, schema) as writer:  # no rows: a valid file, schema only
        batches: list[Any] = []
        pending = 0
        for chunk in chunks:
            columns = list(zip(*chunk, strict=True))
            arrays = [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)]
            batches.append(pa.record_batch(arrays, schema=schema))
            pending += len(chunk)
            if pending >= ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_batches(batches, schema=schema), row_group_size=ROW_GROUP_ROWS)
                batches, pending = [], 0
        if batches:
            writer.write_table(pa.Table.from_batches(batches, schema=schema), row_group_size=ROW_GROUP_ROWS)


def export_runs(
    engine: Engine,
    run_ids: RunSelection | None,
    out_dir: str | os.PathLike[str],
    fmt: str = "csv",
) -> list[Path]:
    """Write the runs (all of them when `run_ids` is None) as three tables in `out_dir`; returns their paths.

    `runs` (id, experiment, status, start, end, parent_id, tags as a JSON object; times in unix seconds),
    `params` (run_id, key, value) and `metrics` (run_id, key, step, value, timestamp, attempt), as `.csv`
    or `.parquet` (pyarrow; row groups of 500,000 rows). NaN metric values (NULL in SQL) and missing steps
    are empty cells in CSV and nulls in Parquet. Rows are read in chunks straight from the database cursor,
    all three tables in one read transaction (a consistent snapshot while runs keep logging), so any size
    exports in little memory. Each file is written to a temporary name and renamed into place.
    """
    if fmt not in ("csv", "parquet"):
        raise InvalidInputError(f"format must be 'csv' or 'parquet', got {fmt!r}")
    schemas: dict[str, Any] = {}
    if fmt == "parquet":
        try:
            import pyarrow as pa
        except ImportError as exc:
            raise InvalidInputError(
                "exporting Parquet needs pyarrow: pip install 'alexandria[data]' (or pip install pyarrow)"
            ) from exc
        s, f, i = pa.string(), pa.float64(), pa.int64()
        schemas = {
            "runs": pa.schema(list(zip(_RUN_COLUMNS, (s, s, s, f, f, s, s), strict=True))),
            "params": pa.schema(list(zip(_PARAM_COLUMNS, (s, s, s), strict=True))),
            "metrics": pa.schema(list(zip(_METRIC_COLUMNS, (s, s, i, f, f, i), strict=True))),
        }
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(f"cannot create the export directory {out}: {exc.strerror}") from exc
    columns = {"runs": _RUN_COLUMNS, "params": _PARAM_COLUMNS, "metrics": _METRIC_COLUMNS}
    ids = None if run_ids is None else select_runs(engine, run_ids)
    written: list[Path] = []
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1").all()  # opens the read transaction: one snapshot for all three files
        db: Any = conn.connection.driver_connection
        if ids is None:
            ids = [r[0] for r in db.execute("SELECT id FROM run ORDER BY timestamp_start, id")]
            if not ids:
                raise InvalidInputError("no runs in the store: nothing to export")
        mark = backend_of(engine).placeholder
        for name, chunks in _export_rows(db, ids, mark).items():
            path = out / f"{name}.{fmt}"
            if fmt == "csv":
                _write_csv(path, columns[name], chunks)
            else:
                _write_parquet(path, schemas[name], chunks)
            written.append(path)
    return written
