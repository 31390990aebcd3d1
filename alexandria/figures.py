"""Plotly figures of runs: metric curves (drawn from buckets, smoothed) and parallel coordinates.

Curves are drawn from `query.downsample`, never from the raw points: per bucket, the line is the bucket's
`last` value and a filled envelope spans the bucket's min..max, so a one-step spike among millions of points
stays visible. Logged text reaches the figures escaped for plotly's pseudo-HTML (`_text`).

Where tests and tools find the data (stable): a curves trace has `meta = {"role": "line" | "envelope",
"run_id": ..., "metric": ...}`; a line's `customdata` rows are `[last, min, max, count]` per bucket
(`last` unsmoothed: the page's smoothing control recomputes the line from it). In a subplot of more than
`LEGEND_RUNS` runs a line has no customdata and no legend entry, and its `y` is the unsmoothed last (the page
smooths it): at 200 runs the customdata alone would double the page. Values carry 7 significant digits.

Pages build figures as plain dicts (`curves_spec`): plotly's graph objects validate and deep-copy every
number, which cost a 200-run sweep report most of its 106 s and 1.2 GB.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots
from sqlalchemy import Engine

from .errors import InvalidInputError, QueryError
from .formatting import run_label
from .pages import plotly_text
from .query import (
    Downsampled,
    RunSelection,
    downsample,
    metric_by_run,
    run_metric_keys,
    run_params,
    run_rows,
    select_runs,
)

#: One colour per run, the same in every figure of a page.
PALETTE = qualitative.Plotly + qualitative.D3
DEFAULT_BUCKETS = 2000
#: A curves subplot of more runs than this has no legend entries (names on hover instead).
LEGEND_RUNS = 20
#: The points a report page's curves draw at most, all together (see `page_buckets`).
PAGE_POINTS = 60_000
#: The fewest buckets a page's curve gets, however many curves share the page.
MIN_BUCKETS = 50
#: Threads reading a figure's curves at once (at most one per CPU).
READ_THREADS = 4


def require_metrics(keys: dict[str, list[str]], metrics: Sequence[str]) -> None:
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


#: The colour of the min..max bands when a figure has too many runs for a band in each run's colour.
ENVELOPE_COLOR = "#64748b"


def _rgba(color: str, alpha: float) -> str:
    c = color.lstrip("#")
    r, g, b = (int(c[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def trace_name(run_row: dict[str, Any], key: str) -> str:
    """A curve's legend name, as drawn: the run's name (`run_label`: its id's first 8 characters when it has
    none), the metric, the experiment. The id prefix is in the hover text (names are not unique)."""
    return plotly_text(f"{run_label(run_row)} {key} ({run_row['experiment_name'] or '?'})")


def _chart_number(v: float) -> float | None:
    """A value as a chart draws it: 7 significant digits (float32's resolution, finer than any chart or
    its 6-digit hover shows), None when not finite: a page of 200 runs is half the size of full digits."""
    return float(f"{v:.7g}") if math.isfinite(v) else None


def page_buckets(buckets: int, traces: int) -> int:
    """The buckets per curve on a page of `traces` curves: `buckets`, fewer when the page would then draw
    more than `PAGE_POINTS` points (an equal share each, at least `MIN_BUCKETS`): what keeps a sweep's page
    of 200 runs small enough to open fast, while a page of a few runs keeps every bucket."""
    if traces <= 0:
        return buckets
    return max(1, min(buckets, max(MIN_BUCKETS, PAGE_POINTS // traces)))


def _curve_traces(
    d: Downsampled,
    run_row: dict[str, Any],
    key: str,
    color: str,
    *,
    x: str,
    smoothing: float,
    axes: tuple[str, str],
    many: bool,
) -> list[dict[str, Any]]:
    """The envelope (bucket min..max, filled) and the line (bucket last, smoothed) of one run's metric `d`, as
    plotly trace dicts (no plotly objects: validating and copying them was most of a sweep report's time).
    With `many` (a figure of more than `LEGEND_RUNS` runs) the line is out of the legend, has no customdata
    and its y is unsmoothed (the page's smoothing control smooths it on load)."""
    xs = d.x
    if x == "time":  # seconds since the run's start: runs started at different times overlay
        origin = run_row["timestamp_start"] if run_row["timestamp_start"] is not None else (xs[0] if len(xs) else 0)
        xs = xs - origin
    xl: list[Any] = [_chart_number(float(v)) for v in xs] if x == "time" else [int(v) for v in xs]
    lows = [_chart_number(float(v)) for v in d.min]
    highs = [_chart_number(float(v)) for v in d.max]
    name = trace_name(run_row, key)
    group = f"{run_row['id']}/{key}"
    meta = {"run_id": run_row["id"], "metric": key}
    band = [i for i in range(len(xl)) if lows[i] is not None and highs[i] is not None]
    envelope = {
        "type": "scatter",
        "xaxis": axes[0],
        "yaxis": axes[1],
        "x": [xl[i] for i in band] + [xl[i] for i in reversed(band)],
        "y": [highs[i] for i in band] + [lows[i] for i in reversed(band)],
        "fill": "toself",
        "fillcolor": _rgba(color, 0.06 if many else 0.18),
        "line": {"color": _rgba(color, 0.3 if many else 0.45), "width": 0.6},
        "mode": "lines",
        "name": name + " min..max",
        "legendgroup": group,
        "showlegend": False,
        "hoverinfo": "skip",
        "meta": {**meta, "role": "envelope"},
    }
    raw = [_chart_number(float(v)) for v in d.last]
    x_label = "t+%{x:.3~f}s" if x == "time" else "step %{x}"
    line: dict[str, Any] = {
        "type": "scatter",
        "xaxis": axes[0],
        "yaxis": axes[1],
        "x": xl,
        "mode": "lines",
        "line": {"color": color, "width": 1.0 if many else 1.6},
        "name": name,
        "legendgroup": group,
        "meta": {**meta, "role": "line"},
    }
    if many:
        line["y"] = raw
        line["showlegend"] = False
        line["hovertemplate"] = (
            f"%{{fullData.name}}<br>run {run_row['id'][:8]}<br>{x_label}<br>value %{{y:.6g}}<extra></extra>"
        )
        return [envelope, line]
    smoothed = smooth(raw, smoothing) if smoothing else raw
    line["y"] = [None if v is None else _chart_number(v) for v in smoothed]
    line["customdata"] = [[raw[i], lows[i], highs[i], int(d.count[i])] for i in range(len(xl))]
    line["hovertemplate"] = (
        f"%{{fullData.name}}<br>run {run_row['id'][:8]}<br>{x_label}"
        "<br>value %{customdata[0]:.6g}, smoothed %{y:.6g}"
        "<br>bucket of %{customdata[3]} point(s): min %{customdata[1]:.6g}, max %{customdata[2]:.6g}"
        "<extra></extra>"
    )
    return [envelope, line]


def _one_envelope(traces: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The envelopes of many runs' curves as one trace (each run's band a shape of its own, closed and filled
    separately: plotly's `toself` fills each segment between gaps), behind their lines: a browser draws a
    figure's traces one by one, and 200 bands were half of a sweep page's drawing time."""
    bands = [t for t in traces if t["meta"]["role"] == "envelope"]
    lines = [t for t in traces if t["meta"]["role"] != "envelope"]
    xs: list[Any] = []
    ys: list[Any] = []
    for band in bands:
        xs += [*band["x"], None]
        ys += [*band["y"], None]
    merged = {
        **bands[0],
        "x": xs,
        "y": ys,
        "fillcolor": _rgba(ENVELOPE_COLOR, 0.08),
        "line": {"color": _rgba(ENVELOPE_COLOR, 0.25), "width": 0.6},
        "name": f"{key} min..max",
        "legendgroup": None,
        "meta": {"metric": key, "role": "envelope", "runs": [t["meta"]["run_id"] for t in bands]},
    }
    return [merged, *lines]


def _downsample_all(
    engine: Engine, wanted: Sequence[tuple[str, str]], buckets: int, x: str
) -> dict[tuple[str, str], Downsampled]:
    """`query.downsample` of every (run id, metric key), a few at a time in threads: the database reads
    (the drivers release the GIL) are most of a sweep report's time, and each thread has its own connection."""
    workers = min(READ_THREADS, os.cpu_count() or 1, len(wanted))
    if workers <= 1:
        return {(rid, key): downsample(engine, rid, key, buckets, x=x) for rid, key in wanted}
    with ThreadPoolExecutor(workers, thread_name_prefix="alexandria-figures") as pool:
        found = pool.map(lambda w: downsample(engine, w[0], w[1], buckets, x=x), wanted)
        return dict(zip(wanted, found, strict=True))


def curves_spec(
    engine: Engine,
    runs: Sequence[dict[str, Any]],
    keys: dict[str, list[str]],
    metrics: Sequence[str],
    *,
    x: str,
    smoothing: float,
    log_y: bool,
    buckets: int,
) -> dict[str, Any]:
    """The curves figure (see `curves_figure`) of `runs` (their `run` rows) over `metrics`, already checked,
    as a plain plotly figure dict ``{"data", "layout"}`` (what a page writes); a run whose `keys` lack a
    metric has no curve in that metric's subplot. A subplot of more than `LEGEND_RUNS` runs has no legend
    entries: 200 names would eat the chart; each line's hover names its run."""
    rows = len(metrics)
    grid = make_subplots(rows=rows, cols=1, subplot_titles=[plotly_text(m) for m in metrics], shared_xaxes=False)
    data: list[dict[str, Any]] = []
    wanted = [(r["id"], key) for key in metrics for r in runs if key in keys[r["id"]]]
    read = _downsample_all(engine, wanted, buckets, x)
    for row, key in enumerate(metrics, 1):
        axes = ("x" if row == 1 else f"x{row}", "y" if row == 1 else f"y{row}")
        having = [(i, r) for i, r in enumerate(runs) if key in keys[r["id"]]]
        many = len(having) > LEGEND_RUNS
        traces = []
        for i, r in having:
            color = PALETTE[i % len(PALETTE)]
            d = read[(r["id"], key)]
            traces += _curve_traces(d, r, key, color, x=x, smoothing=smoothing, axes=axes, many=many)
        data += _one_envelope(traces, key) if many else traces
        grid.update_xaxes(title_text="seconds since the run's start" if x == "time" else "step", row=row, col=1)
    axis_names = ["yaxis" if i == 1 else f"yaxis{i}" for i in range(1, rows + 1)]
    grid.update_yaxes(type="log" if log_y else "linear")
    grid.update_layout(
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
                    {"label": "linear y", "method": "relayout", "args": [{f"{a}.type": "linear" for a in axis_names}]},
                    {"label": "log y", "method": "relayout", "args": [{f"{a}.type": "log" for a in axis_names}]},
                ],
            }
        ],
    )
    return {"data": data, "layout": grid.to_plotly_json()["layout"]}


def curves_figure_spec(
    engine: Engine,
    run_ids: RunSelection,
    metrics: Sequence[str],
    *,
    x: str = "step",
    smoothing: float = 0.0,
    log_y: bool = False,
    buckets: int = DEFAULT_BUCKETS,
) -> dict[str, Any]:
    """Metric curves, one subplot per metric, the runs overlaid (a colour per run).

    Per (run, metric) two traces: the line (named ``"<name> <metric> (<experiment>)"``, the name being the id's
    first 8 characters for a run without one; the id prefix in its hover text; at most `buckets`
    points: each bucket's last value, smoothed with `smoothing`) and its envelope (each bucket's min..max,
    filled, not in the legend). x is the step, or with ``x="time"`` the seconds since the run's start
    (so runs started at different times overlay). Every run must have every metric. Buttons switch the y
    axes between linear and log; `log_y` starts on log. A plain figure dict (see `curves_spec`);
    `curves_figure` is the same as a plotly Figure.
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
    keys = run_metric_keys(engine, ids)
    require_metrics(keys, metrics)
    return curves_spec(
        engine, run_rows(engine, ids), keys, metrics, x=x, smoothing=smoothing, log_y=log_y, buckets=buckets
    )


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
    """`curves_figure_spec` as a plotly Figure (for Python callers; pages write the dict)."""
    spec = curves_figure_spec(engine, run_ids, metrics, x=x, smoothing=smoothing, log_y=log_y, buckets=buckets)
    return go.Figure(spec)


def as_numbers(values: Sequence[str | None]) -> list[float] | None:
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


def parallel_dimensions(
    ids: Sequence[str], params: dict[str, dict[str, str]], *, varying_only: bool = True
) -> list[dict[str, Any]]:
    """Parallel coordinates' parameter axes (plotly `dimensions`), one per parameter key, sorted.

    A parameter whose value is a finite number in every run is a numeric axis; any other (text, booleans,
    a run without it, shown as "-") is categorical, its values sorted and shown as tick labels. With
    `varying_only` (when there are at least 2 runs) parameters equal in every run are left out: they
    explain nothing. Labels are escaped for plotly (`plotly_text`); tick labels are plain text to plotly."""
    dims: list[dict[str, Any]] = []
    for key in sorted(set().union(*params.values())):
        column = [params[rid].get(key) for rid in ids]
        if varying_only and len(ids) > 1 and len(set(column)) == 1:
            continue
        numbers = as_numbers(column)
        if numbers is not None:
            dim: dict[str, Any] = {"label": plotly_text(key), "values": numbers}
            if min(numbers) == max(numbers):
                dim["range"] = [numbers[0] - 1, numbers[0] + 1]
        else:
            texts = ["-" if v is None else v for v in column]
            levels = sorted(set(texts))
            code = {v: i for i, v in enumerate(levels)}
            dim = {
                "label": plotly_text(key),
                "values": [code[v] for v in texts],
                "tickvals": list(range(len(levels))),
                "ticktext": [_short(v) for v in levels],  # plain text to plotly: not escaped (the JSON is)
                "range": [-0.5, len(levels) - 0.5] if len(levels) == 1 else [0, len(levels) - 1],
            }
        dims.append(dim)
    return dims


def parallel_figure(
    ids: Sequence[str],
    params: dict[str, dict[str, str]],
    metric_key: str,
    agg: str,
    values: Sequence[float | None],
    *,
    varying_only: bool = True,
) -> Any:
    """The parallel coordinates of `parallel_coordinates_figure` from data already read: the runs'
    parameters and the metric's number per run (`summaries.aggregate`)."""
    dims = parallel_dimensions(ids, params, varying_only=varying_only)
    label = plotly_text(f"{metric_key} ({agg})")
    dims.append({"label": label, "values": list(values)})
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
            meta={"run_ids": list(ids), "metric": metric_key, "agg": agg},
        )
    )
    fig.update_layout(height=460, margin={"l": 80, "r": 80, "t": 60, "b": 40}, template="plotly_white")
    return fig


def parallel_coordinates_figure(
    engine: Engine, run_ids: RunSelection, metric_key: str, *, agg: str = "last", varying_only: bool = True
) -> Any:
    """One line per run across its parameters, the metric last and colouring the lines.

    The axes are `parallel_dimensions`'. The metric is reduced per run by `agg`: "last" (the value at the
    highest step), "min" or "max"; a run whose value is NaN has a null there. Pass a parent run id as
    `run_ids` for a sweep.
    """
    if agg not in ("last", "min", "max"):
        raise InvalidInputError(f"agg must be 'last', 'min' or 'max', got {agg!r}")
    ids = select_runs(engine, run_ids)
    require_metrics(run_metric_keys(engine, ids), [metric_key])
    values = metric_by_run(engine, ids, metric_key, agg)
    return parallel_figure(ids, run_params(engine, ids), metric_key, agg, values, varying_only=varying_only)
