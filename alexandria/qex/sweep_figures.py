"""Plotly pictures of a qex sweep (`qex sweep`, its `{parent}_sweep.html`): what a physicist reads off a grid.

* One swept parameter (`sweep_figure`): each qubit's Bloch path on its sphere, coloured by the parameter,
  and purity / fidelity against it below.
* Two or more (`grid_figure`): heatmaps over the first two parameters (the first across, the second up):
  whole-state purity, fidelity to the reference (when there is one) and each qubit's Bloch x, y and z. A path
  through a 2-D grid has no order, so no sphere is drawn: the x, y, z heatmaps are the Bloch vectors. With a
  third parameter and more, one set of heatmaps per combination of the others, picked from a menu (at most
  `MAX_SLICES`; the page says when it shows fewer).

Values keep their type: an integer parameter (`--over n=1,2,3`) is drawn at 1, 2, 3 and labelled so. The
purity / fidelity axis and colour scale fit the data (`fit_range`: 0.9990 and 0.9999 are told apart, never
beyond [0, 1]); numbers written on the page (tick labels, cell values) have 4 significant digits
(`number_text`). Hover text carries more.

Trace names tests and tools rely on: `sweep_figure` has ``f"qubit {k} trajectory"`` (customdata
``[value, purity]``), ``"purity"``, ``f"qubit {k} purity"`` and, with reference states or fidelities,
``"fidelity to reference"``. `grid_figure` has heatmaps ``"purity"``, ``"fidelity to reference"`` and
``f"qubit {k} bloch x|y|z"``, each named ``f"{name} @ {combination}"`` when there are more than two parameters.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..pages import plotly_text
from .bloch import _cell, _grid, _sphere_frame, _style_scenes
from .states import ValidState, check_state, fidelity, num_qubits, purity, qubit_summary

Number = int | float

#: Significant digits of a number written on the page (hover text has more).
DIGITS = 4
#: A purity / fidelity axis spans at least this much: finer than that is float noise, not physics.
MIN_SPAN = 1e-4
#: Padding above and below the data, as a fraction of its span.
PAD = 0.08
#: A parameter with at most this many values gets one tick per value, labelled with it.
MAX_TICKS = 12
#: A heatmap with at most this many cells writes each cell's value in it.
MAX_CELL_TEXT = 144
#: The most combinations of the third and further parameters one page draws heatmaps for.
MAX_SLICES = 50
BLOCH_COLORSCALE = "RdBu"
PURITY_COLORSCALE = "Viridis"


def number_text(value: Any, digits: int = DIGITS) -> str:
    """A number as the page writes it: an int as is, a float to `digits` significant digits ("0.3", not
    "0.30000000000000004"; 1e-16, float noise around 0, as "0"), anything else as str()."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if abs(v) < 1e-12:
        return "0"
    return f"{v:.{digits}g}"


def fit_range(values: Sequence[float | None], lo: float = 0.0, hi: float = 1.0) -> list[float]:
    """An axis range [a, b] that fits `values` (None and NaN skipped) with `PAD` of padding, at least
    `MIN_SPAN` wide, inside the physical bounds [lo, hi] (purity and fidelity lie in [0, 1])."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return [lo, hi]
    a, b = min(finite), max(finite)
    if b - a < MIN_SPAN:
        mid = (a + b) / 2
        a, b = mid - MIN_SPAN / 2, mid + MIN_SPAN / 2
        if b > hi:  # keep the span, inside the bounds
            a, b = a - (b - hi), hi
        if a < lo:
            a, b = lo, b + (lo - a)
    pad = PAD * (b - a)
    return [max(lo, a - pad), min(hi, b + pad)]


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def param_axis(values: Sequence[Number]) -> dict[str, Any]:
    """Axis settings for a swept parameter: a labelled tick per value when there are few, integer ticks for
    integer values (never 1.5 between runs at 1 and 2)."""
    if not _numeric(values):
        return {}  # text (an edge list, say): plotly's categorical axis names each value already
    distinct = sorted(set(values))
    if len(distinct) <= MAX_TICKS:
        return {"tickmode": "array", "tickvals": distinct, "ticktext": [number_text(v) for v in distinct]}
    if all(_is_int(v) for v in distinct):
        return {"tickformat": "d", "dtick": max(1, math.ceil((distinct[-1] - distinct[0]) / MAX_TICKS))}
    return {}


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool) for v in values)


def _hover(values: Sequence[Any]) -> str:
    """The hover format of a parameter's values: numbers to 6 significant digits, text as it is."""
    return ":.6g" if _numeric(values) else ""


def _plain(values: Sequence[Any]) -> list[Any]:
    """Values as plotly serializes them faithfully: numpy scalars as Python ones, ints kept ints."""
    return [v.item() if hasattr(v, "item") else v for v in values]


def sweep_figure(
    param_name: str,
    values: Sequence[Number],
    states: Sequence[np.ndarray | ValidState],
    reference: Sequence[np.ndarray | ValidState] | None = None,
    title: str | None = None,
    *,
    fidelities: Sequence[float] | None = None,
) -> Any:
    """A one-parameter sweep: each qubit's Bloch path on its sphere, and purity (and fidelity to `reference`) below.

    `reference` (e.g. the noiseless states at the same values) turns the plot
    into "how far did noise take us": fidelity 1 means no loss. `fidelities`, when the caller has them
    already (each run logged its own), are plotted as that curve instead: no state is decomposed again.
    """
    if fidelities is not None and len(fidelities) != len(states):
        raise ValueError(f"{len(states)} states but {len(fidelities)} fidelities")
    if len(values) != len(states):
        raise ValueError(f"{len(values)} sweep values but {len(states)} states")
    if not states:
        raise ValueError("an empty sweep has nothing to plot")
    if reference is not None and len(reference) != len(states):
        raise ValueError(f"{len(states)} states but {len(reference)} reference states")
    ms = [check_state(s) for s in states]  # once each: the measures below reuse the check
    n = max(num_qubits(m) for m in ms)
    refs = [check_state(r) for r in reference] if reference is not None else None
    xs = _plain(values)
    summaries = [qubit_summary(m) for m in ms]
    label = plotly_text(param_name)

    sphere_rows, cols = _grid(n)
    specs: list[list[dict[str, Any] | None]] = [
        [{"type": "scene"} if r * cols + c < n else None for c in range(cols)] for r in range(sphere_rows)
    ]
    specs.append([{"type": "xy", "colspan": cols}] + [None] * (cols - 1))
    fig = make_subplots(
        rows=sphere_rows + 1,
        cols=cols,
        specs=specs,
        subplot_titles=[f"qubit {k}" for k in range(n)] + [f"purity and fidelity against {label}"],
        row_heights=[1.0] * sphere_rows + [0.8],
        horizontal_spacing=0.02,
        vertical_spacing=0.08,
    )
    for k in range(n):
        row, col = _cell(k)
        here = [(x, s[k]) for x, s in zip(xs, summaries, strict=True) if k < len(s)]
        at = [x for x, _ in here]
        path = [p for _, p in here]
        traces = _sphere_frame(k)
        traces.append(
            go.Scatter3d(
                x=[float(p["bloch"][0]) for p in path],
                y=[float(p["bloch"][1]) for p in path],
                z=[float(p["bloch"][2]) for p in path],
                mode="lines+markers",
                line={"color": "gray", "width": 3},
                # coloured by the parameter, so the direction of the sweep reads off the picture
                marker={
                    "size": 4,
                    "color": at,
                    "colorscale": "Plasma",
                    "showscale": k == 0,
                    "colorbar": {"title": {"text": label}, "len": 0.4, "y": 0.8, "thickness": 12} | param_axis(at),
                },
                customdata=[[v, p["purity"]] for v, p in here],
                hovertemplate=(
                    f"qubit {k}<br>{label}=%{{customdata[0]{_hover(xs)}}}"
                    "<br>x=%{x:.4f}<br>y=%{y:.4f}<br>z=%{z:.4f}"
                    "<br>purity=%{customdata[1]:.6g}<extra></extra>"
                ),
                name=f"qubit {k} trajectory",
                showlegend=False,
            )
        )
        for trace in traces:
            fig.add_trace(trace, row=row, col=col)

    plot_row = sphere_rows + 1
    hover = f"{label}=%{{x{_hover(xs)}}}<br>%{{fullData.name}}=%{{y:.6g}}<extra></extra>"
    curves: list[tuple[str, list[Any], list[float], dict[str, Any]]] = [
        ("purity", xs, [purity(m) for m in ms], {"width": 3})
    ]
    if refs is not None or fidelities is not None:
        fids = (
            [float(f) for f in fidelities]
            if fidelities is not None
            else [fidelity(m, r) for m, r in zip(ms, refs or [], strict=True)]
        )
        curves.append(("fidelity to reference", xs, fids, {"width": 3, "dash": "dash"}))
    for k in range(n):
        at = [x for x, s in zip(xs, summaries, strict=True) if k < len(s)]
        curves.append((f"qubit {k} purity", at, [s[k]["purity"] for s in summaries if k < len(s)], {"width": 1}))
    for name, x, y, line in curves:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=name,
                line=line,
                marker={"size": 4 if line["width"] == 1 else 6},
                cliponaxis=False,  # a point at exactly 1, the top of the range, is drawn whole
                hovertemplate=hover,
            ),
            row=plot_row,
            col=1,
        )
    fig.update_xaxes(title_text=label, row=plot_row, col=1, **param_axis(xs))
    fig.update_yaxes(
        range=fit_range([v for _, _, y, _ in curves for v in y]),
        title_text="purity / fidelity",
        row=plot_row,
        col=1,
    )
    _style_scenes(fig)
    fig.update_layout(
        title={"text": plotly_text(title if title is not None else f"sweep over {param_name}")},
        height=420 * sphere_rows + 360,
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        legend={"orientation": "h", "y": -0.08},
    )
    return fig


def grid_figure(
    grid: Mapping[str, Sequence[Number]],
    states: Sequence[np.ndarray | ValidState],
    reference: Sequence[np.ndarray | ValidState] | None = None,
    title: str | None = None,
    *,
    fidelities: Sequence[float] | None = None,
) -> Any:
    """Heatmaps of a sweep over two or more parameters (see the module docstring).

    `states` come in the order of `itertools.product(*grid.values())` (the first parameter slowest, as
    `runner.sweep` runs them); `reference` and `fidelities` are as for `sweep_figure`.
    """
    keys = list(grid)
    if len(keys) < 2:
        raise ValueError("a grid figure needs two parameters or more; one is drawn by sweep_figure")
    shape = [len(grid[k]) for k in keys]
    if 0 in shape:
        raise ValueError("an empty sweep has nothing to plot")
    if len(states) != math.prod(shape):
        raise ValueError(f"a grid of {' x '.join(map(str, shape))} points but {len(states)} states")
    if fidelities is not None and len(fidelities) != len(states):
        raise ValueError(f"{len(states)} states but {len(fidelities)} fidelities")
    if reference is not None and len(reference) != len(states):
        raise ValueError(f"{len(states)} states but {len(reference)} reference states")
    ms = [check_state(s) for s in states]
    n = max(num_qubits(m) for m in ms)
    if reference is not None and fidelities is None:
        fidelities = [fidelity(m, check_state(r)) for m, r in zip(ms, reference, strict=True)]
    summaries = [qubit_summary(m) for m in ms]

    # one value per point and panel (None: that point's state has no such qubit), in grid order
    panels: dict[str, list[float | None]] = {"purity": [purity(m) for m in ms]}
    if fidelities is not None:
        panels["fidelity to reference"] = [float(f) for f in fidelities]
    for k in range(n):
        for a, axis in enumerate("xyz"):
            panels[f"qubit {k} bloch {axis}"] = [float(s[k]["bloch"][a]) if k < len(s) else None for s in summaries]
    quality = [name for name in panels if not name.startswith("qubit ")]
    z_range = fit_range([v for name in quality for v in panels[name]])

    xs, ys = _plain(grid[keys[0]]), _plain(grid[keys[1]])
    rest = keys[2:]
    combos = list(itertools.product(*(_plain(grid[k]) for k in rest)))
    shown = combos[:MAX_SLICES]
    per_slice = len(xs) * len(ys)

    cols = 3
    rows = 1 + n
    titles = [*quality, *([""] * (cols - len(quality)))]
    for k in range(n):
        titles += [f"qubit {k} Bloch {axis}" for axis in "xyz"]
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.09, vertical_spacing=110 / (320 * rows)
    )
    x_label, y_label = plotly_text(keys[0]), plotly_text(keys[1])
    write_cells = per_slice <= MAX_CELL_TEXT
    slice_traces: list[list[int]] = []
    for c, combo in enumerate(shown):
        where = ", ".join(f"{k}={number_text(v)}" for k, v in zip(rest, combo, strict=True))
        ids = []
        for p, (name, flat) in enumerate(panels.items()):
            # the rows of this combination: point index = (ix * len(ys) + iy) * len(combos) + c
            z = [[flat[(ix * len(ys) + iy) * len(combos) + c] for ix in range(len(xs))] for iy in range(len(ys))]
            row, col = (1, p + 1) if name in quality else (2 + (p - len(quality)) // 3, 1 + (p - len(quality)) % 3)
            is_bloch = name not in quality
            fig.add_trace(
                go.Heatmap(
                    x=xs,
                    y=ys,
                    z=z,
                    coloraxis="coloraxis2" if is_bloch else "coloraxis",
                    text=[[number_text(v) if v is not None else "" for v in line] for line in z]
                    if write_cells
                    else None,
                    texttemplate="%{text}" if write_cells else None,
                    textfont={"size": 11},
                    hovertemplate=(
                        f"{x_label}=%{{x{_hover(xs)}}}<br>{y_label}=%{{y{_hover(ys)}}}<br>{plotly_text(name)}=%{{z:.6g}}"
                        f"{'<br>' + plotly_text(where) if where else ''}<extra></extra>"
                    ),
                    name=f"{name} @ {where}" if where else name,
                    visible=c == 0,
                    xgap=1,
                    ygap=1,
                ),
                row=row,
                col=col,
            )
            ids.append(len(fig.data) - 1)
        slice_traces.append(ids)
    for row in range(1, rows + 1):
        for col in range(1, cols + 1):
            if row == 1 and col > len(quality):
                continue
            fig.update_xaxes(title_text=x_label, row=row, col=col, **param_axis(xs))
            fig.update_yaxes(title_text=y_label, row=row, col=col, **param_axis(ys))
    top = fig.layout.yaxis.domain  # row 1: the purity / fidelity colour bar beside it
    fig.update_layout(
        coloraxis={
            "colorscale": PURITY_COLORSCALE,
            "cmin": z_range[0],
            "cmax": z_range[1],
            "colorbar": {"title": {"text": "purity / fidelity"}, "y": sum(top) / 2, "len": top[1] - top[0]},
        },
        coloraxis2={
            "colorscale": BLOCH_COLORSCALE,
            "cmin": -1.0,
            "cmax": 1.0,
            "colorbar": {"title": {"text": "Bloch component"}, "y": top[0] / 2, "len": 0.9 * top[0]},
        },
    )
    heading = plotly_text(title if title is not None else f"sweep over {', '.join(keys)}")
    if rest:
        labels = [", ".join(f"{k}={number_text(v)}" for k, v in zip(rest, combo, strict=True)) for combo in shown]
        total = len(fig.data)
        buttons = []
        for c, ids in enumerate(slice_traces):
            mask = [False] * total
            for i in ids:
                mask[i] = True
            buttons.append({"label": plotly_text(labels[c]), "method": "restyle", "args": [{"visible": mask}]})
        fig.update_layout(
            updatemenus=[{"buttons": buttons, "x": 0.0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"}]
        )
        note = f"{', '.join(rest)}: pick a combination in the menu"
        if len(shown) < len(combos):
            note += f" (the first {len(shown)} of {len(combos)} are drawn)"
        heading += f"<br><sub>{plotly_text(note)}</sub>"
    fig.update_layout(
        title={"text": heading, "x": 0.5, "xanchor": "center"},
        height=320 * rows + 120,
        margin={"l": 60, "r": 20, "t": 120, "b": 40},
    )
    return fig


def sweep_plot(
    grid: Mapping[str, Sequence[Number]],
    states: Sequence[np.ndarray | ValidState],
    title: str | None = None,
    *,
    fidelities: Sequence[float] | None = None,
) -> Any:
    """The picture of a sweep's page: `sweep_figure` over one parameter, `grid_figure` over more."""
    if len(grid) == 1:
        ((name, values),) = grid.items()
        return sweep_figure(name, values, states, title=title, fidelities=fidelities)
    return grid_figure(grid, states, title=title, fidelities=fidelities)
