"""Plotly pictures of quantum states: Bloch spheres per qubit, sweeps, and offline HTML pages.

Every number drawn comes from `qex.states` (Bloch vectors, purity, entropy,
fidelity); this module only lays them out. Qubit 0 is the leftmost tensor
factor, as in `qex.states`.

Where tests and tools find the data (trace names are stable):

* `bloch_figure`: per qubit k, the trace ``f"qubit {k} state"`` is the tip; its
  x/y/z are the Bloch vector and its customdata is ``[[purity, entropy_bits]]``.
* `sweep_figure`: ``f"qubit {k} trajectory"`` (one point per sweep value whose
  state has qubit k: a sweep over the qubit count has states of several sizes;
  customdata ``[value, purity]``), ``"purity"`` (whole state),
  ``f"qubit {k} purity"`` and, with reference states, ``"fidelity to reference"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from ..pages import plotly_text, write_page
from .states import ValidState, check_state, fidelity, num_qubits, purity, qubit_summary

SPHERES_PER_ROW = 4
# One-qubit purity lies in [1/2, 1]: a fixed scale, so the same colour means the same purity in every picture.
PURITY_COLORSCALE = "Viridis"
PURITY_RANGE = (0.5, 1.0)
AXIS_RANGE = [-1.1, 1.1]
_LABEL_AT = 1.05  # inside AXIS_RANGE: 3-D scenes clip anything outside their ranges


def _grid(n: int) -> tuple[int, int]:
    """(rows, cols) for n spheres: a row of up to SPHERES_PER_ROW, wrapping after that."""
    cols = min(n, SPHERES_PER_ROW)
    return math.ceil(n / cols), cols


def _cell(k: int) -> tuple[int, int]:
    """1-based (row, col) of qubit k's sphere."""
    return k // SPHERES_PER_ROW + 1, k % SPHERES_PER_ROW + 1


def _sphere_frame(k: int) -> list[Any]:
    """The furniture of one sphere: translucent surface, axes, axis labels, equator (none of it hoverable)."""
    u, v = np.mgrid[0 : 2 * np.pi : 41j, 0 : np.pi : 21j]
    gray = [[0.0, "lightsteelblue"], [1.0, "lightsteelblue"]]
    surface = go.Surface(
        x=np.cos(u) * np.sin(v),
        y=np.sin(u) * np.sin(v),
        z=np.cos(v),
        opacity=0.12,
        colorscale=gray,
        showscale=False,
        hoverinfo="skip",
        name=f"qubit {k} sphere",
        showlegend=False,
    )
    nan = None  # breaks the line between the three axes
    axes = go.Scatter3d(
        x=[-1, 1, nan, 0, 0, nan, 0, 0],
        y=[0, 0, nan, -1, 1, nan, 0, 0],
        z=[0, 0, nan, 0, 0, nan, -1, 1],
        mode="lines",
        line={"color": "gray", "width": 2},
        hoverinfo="skip",
        name=f"qubit {k} axes",
        showlegend=False,
    )
    labels = go.Scatter3d(
        x=[_LABEL_AT, 0, 0, 0],
        y=[0, _LABEL_AT, 0, 0],
        z=[0, 0, _LABEL_AT, -_LABEL_AT],
        mode="text",
        text=["x |+⟩", "y |+i⟩", "|0⟩", "|1⟩"],
        textfont={"size": 13},
        hoverinfo="skip",
        name=f"qubit {k} axis labels",
        showlegend=False,
    )
    t = np.linspace(0, 2 * np.pi, 73)
    equator = go.Scatter3d(
        x=np.cos(t),
        y=np.sin(t),
        z=np.zeros_like(t),
        mode="lines",
        line={"color": "gray", "width": 1, "dash": "dash"},
        hoverinfo="skip",
        name=f"qubit {k} equator",
        showlegend=False,
    )
    return [surface, axes, labels, equator]


def _style_scenes(fig: Any) -> None:
    """Every sphere alike: z up, a cube (so the sphere looks round), fixed ranges, no plotly axis furniture."""
    axis = {"range": AXIS_RANGE, "visible": False, "autorange": False}
    fig.update_scenes(
        xaxis=axis,
        yaxis=axis,
        zaxis=axis,
        aspectmode="cube",
        camera={"up": {"x": 0, "y": 0, "z": 1}, "eye": {"x": 1.35, "y": 1.05, "z": 0.75}},
    )


def bloch_figure(
    rho: np.ndarray | ValidState, title: str | None = None, qubit_names: Sequence[str] | None = None
) -> Any:
    """One Bloch sphere per qubit (its reduced state), tip coloured by purity; a mixed qubit's tip sits inside.
    Each sphere is titled by its qubit's name (`qubit_names`, in the state's order), else "qubit k".
    A `ValidState` is not checked again."""
    m = check_state(rho)
    n = num_qubits(m)
    if qubit_names is not None and len(qubit_names) != n:
        raise ValueError(f"{len(qubit_names)} qubit names for a {n}-qubit state")
    labels = [plotly_text(str(name)) for name in qubit_names] if qubit_names is not None else None
    summary = qubit_summary(m)
    rows, cols = _grid(n)
    specs: list[list[dict[str, Any] | None]] = [
        [{"type": "scene"} if r * cols + c < n else None for c in range(cols)] for r in range(rows)
    ]
    fig = make_subplots(
        rows=rows,
        cols=cols,
        specs=specs,
        subplot_titles=labels if labels is not None else [f"qubit {k}" for k in range(n)],
        horizontal_spacing=0.02,
        vertical_spacing=0.06,
    )
    for q in summary:
        k = q["qubit"]
        row, col = _cell(k)
        x, y, z = (float(c) for c in q["bloch"])
        who = f"qubit {k}: {labels[k]}" if labels is not None else f"qubit {k}"
        length = math.sqrt(x * x + y * y + z * z)
        color = sample_colorscale(PURITY_COLORSCALE, [_unit_purity(q["purity"])])[0]
        traces = _sphere_frame(k)
        traces.append(
            go.Scatter3d(
                x=[0.0, x],
                y=[0.0, y],
                z=[0.0, z],
                mode="lines",
                line={"color": color, "width": 6},
                hoverinfo="skip",
                name=f"qubit {k} vector",
                showlegend=False,
            )
        )
        if length > 0.05:  # a cone needs a direction; at (almost) the origin the marker alone says it
            traces.append(
                go.Cone(
                    x=[x],
                    y=[y],
                    z=[z],
                    u=[x / length],
                    v=[y / length],
                    w=[z / length],
                    anchor="tip",
                    sizemode="absolute",
                    sizeref=0.18,
                    colorscale=[[0.0, color], [1.0, color]],
                    showscale=False,
                    hoverinfo="skip",
                    name=f"qubit {k} arrow head",
                    showlegend=False,
                )
            )
        traces.append(
            go.Scatter3d(
                x=[x],
                y=[y],
                z=[z],
                mode="markers",
                marker={
                    "size": 7,
                    "color": [q["purity"]],
                    "colorscale": PURITY_COLORSCALE,
                    "cmin": PURITY_RANGE[0],
                    "cmax": PURITY_RANGE[1],
                    "showscale": k == 0,
                    "colorbar": {"title": {"text": "qubit purity"}, "len": 0.6, "thickness": 12},
                },
                customdata=[[q["purity"], q["entropy_bits"]]],
                hovertemplate=(
                    f"{who}<br>x=%{{x:.3f}}<br>y=%{{y:.3f}}<br>z=%{{z:.3f}}<br>|r|={length:.3f}"
                    "<br>purity=%{customdata[0]:.3f}<br>entropy=%{customdata[1]:.3f} bits<extra></extra>"
                ),
                name=f"qubit {k} state",
                showlegend=False,
            )
        )
        for trace in traces:
            fig.add_trace(trace, row=row, col=col)
    _style_scenes(fig)
    heading = title if title is not None else f"{n}-qubit state, purity {purity(m):.3f}"
    fig.update_layout(
        title={"text": plotly_text(heading)},
        height=420 * rows + 60,
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        showlegend=False,
    )
    return fig


def _unit_purity(p: float) -> float:
    """A one-qubit purity mapped onto [0, 1] for sampling the fixed colour scale."""
    lo, hi = PURITY_RANGE
    return min(1.0, max(0.0, (p - lo) / (hi - lo)))


def sweep_figure(
    param_name: str,
    values: Sequence[float],
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
    xs = [float(v) for v in values]
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
                    "colorbar": {"title": {"text": label}, "len": 0.4, "y": 0.8, "thickness": 12},
                },
                customdata=[[v, p["purity"]] for v, p in here],
                hovertemplate=(
                    f"qubit {k}<br>{label}=%{{customdata[0]:.4g}}<br>x=%{{x:.3f}}<br>y=%{{y:.3f}}<br>z=%{{z:.3f}}"
                    "<br>purity=%{customdata[1]:.3f}<extra></extra>"
                ),
                name=f"qubit {k} trajectory",
                showlegend=False,
            )
        )
        for trace in traces:
            fig.add_trace(trace, row=row, col=col)

    plot_row = sphere_rows + 1
    hover = f"{label}=%{{x:.4g}}<br>%{{fullData.name}}=%{{y:.4f}}<extra></extra>"
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[purity(m) for m in ms],
            mode="lines+markers",
            name="purity",
            line={"width": 3},
            hovertemplate=hover,
        ),
        row=plot_row,
        col=1,
    )
    if refs is not None or fidelities is not None:
        fids = (
            [float(f) for f in fidelities]
            if fidelities is not None
            else [fidelity(m, r) for m, r in zip(ms, refs or [], strict=True)]
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=fids,
                mode="lines+markers",
                name="fidelity to reference",
                line={"width": 3, "dash": "dash"},
                hovertemplate=hover,
            ),
            row=plot_row,
            col=1,
        )
    for k in range(n):
        fig.add_trace(
            go.Scatter(
                x=[x for x, s in zip(xs, summaries, strict=True) if k < len(s)],
                y=[s[k]["purity"] for s in summaries if k < len(s)],
                mode="lines+markers",
                name=f"qubit {k} purity",
                line={"width": 1},
                marker={"size": 4},
                hovertemplate=hover,
            ),
            row=plot_row,
            col=1,
        )
    fig.update_xaxes(title_text=label, row=plot_row, col=1)
    fig.update_yaxes(range=[0, 1.05], title_text="purity / fidelity", row=plot_row, col=1)
    _style_scenes(fig)
    fig.update_layout(
        title={"text": plotly_text(title if title is not None else f"sweep over {param_name}")},
        height=420 * sphere_rows + 360,
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        legend={"orientation": "h", "y": -0.08},
    )
    return fig


def write_html(fig: Any, path: Path, embed: bool = False) -> None:
    """Write `fig` as a full HTML page that opens offline (no CDN, no network at view time), atomically.

    By default the page loads ``plotly.min.js`` by relative path from its own
    folder (plotly's ``include_plotlyjs="directory"``), and that file is written
    there once: one copy of the ~4.8 MB library per folder instead of one per
    page, which matters for a folder of many runs' pictures. The folder must
    therefore be kept together: a page copied away without its plotly.min.js
    shows nothing. ``embed=True`` puts the library inside the page instead
    (``include_plotlyjs=True``): one self-contained file to share.

    The page goes to a temporary name in the same folder, is flushed and
    fsynced, then renamed onto `path`, so a crash never leaves a half page.
    """
    include: bool | str = True if embed else "directory"
    # to_html, not fig.write_html(path): plotly writes its bundle copy in place (a crash
    # there leaves a truncated library that it would then keep forever), and the page non-atomically.
    write_page(path, fig.to_html(include_plotlyjs=include, full_html=True), embed=embed)
