"""Plotly pictures of quantum states: Bloch spheres per qubit, and offline HTML pages (a sweep's pictures
are `sweep_figures`, on these spheres).

Every number drawn comes from `qex.states` (Bloch vectors, purity, entropy,
fidelity); this module only lays them out. Qubit 0 is the leftmost tensor
factor, as in `qex.states`.

Where tests and tools find the data (trace names are stable): in `bloch_figure`, per qubit k, the trace
``f"qubit {k} state"`` is the tip; its x/y/z are the Bloch vector and its customdata is
``[[purity, entropy_bits]]``; ``f"qubit {k} arrow head"`` is the head (`arrow_head`), absent for a vector
shorter than `MIN_ARROW`.
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

from ..errors import InvalidInputError
from ..pages import plotly_text, write_page
from .states import ValidState, check_state, num_qubits, purity, qubit_summary

SPHERES_PER_ROW = 4
# One-qubit purity lies in [1/2, 1]: a fixed scale, so the same colour means the same purity in every picture.
PURITY_COLORSCALE = "Viridis"
PURITY_RANGE = (0.5, 1.0)
AXIS_RANGE = [-1.1, 1.1]
_LABEL_AT = 1.05  # inside AXIS_RANGE: 3-D scenes clip anything outside their ranges
#: The arrow head is at most HEAD_LENGTH long and at most HEAD_FRACTION of the vector, so that it never
#: reaches back past the origin; below MIN_ARROW there is no head (the tip's marker alone says it).
HEAD_LENGTH = 0.16
HEAD_FRACTION = 0.4
HEAD_RADIUS = 0.4  # the base's radius, as a fraction of the head's length
MIN_ARROW = 0.05
_HEAD_SIDES = 16


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
        # each written on the far side of its anchor (|1> below the south pole): a vector's tip and
        # arrow head, which end on the sphere, never cover a label
        textposition=["middle right", "middle right", "top center", "bottom center"],
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


def vector_traces(vector: tuple[float, float, float], color: str, name: str) -> list[Any]:
    """A Bloch vector drawn from the origin: its line (`f"{name} vector"`) and, unless it is too short for
    one, its arrow head (`f"{name} arrow head"`, `arrow_head`)."""
    x, y, z = vector
    traces: list[Any] = [
        go.Scatter3d(
            x=[0.0, x],
            y=[0.0, y],
            z=[0.0, z],
            mode="lines",
            line={"color": color, "width": 6},
            hoverinfo="skip",
            name=f"{name} vector",
            showlegend=False,
        )
    ]
    head = arrow_head(vector)
    if head is not None:
        (hx, hy, hz), (i, j, k) = head
        traces.append(
            go.Mesh3d(
                x=hx,
                y=hy,
                z=hz,
                i=i,
                j=j,
                k=k,
                color=color,
                flatshading=True,
                hoverinfo="skip",
                name=f"{name} arrow head",
                showlegend=False,
            )
        )
    return traces


def bloch_figure(
    rho: np.ndarray | ValidState, title: str | None = None, qubit_names: Sequence[str] | None = None
) -> Any:
    """One Bloch sphere per qubit (its reduced state), tip coloured by purity; a mixed qubit's tip sits inside.
    Each sphere is titled by its qubit's name (`qubit_names`, in the state's order), else "qubit k".
    A `ValidState` is not checked again."""
    m = check_state(rho)
    n = num_qubits(m)
    if qubit_names is not None and len(qubit_names) != n:
        raise InvalidInputError(f"{len(qubit_names)} qubit names for a {n}-qubit state: give one name per qubit")
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
        traces += vector_traces((x, y, z), color, f"qubit {k}")
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


def arrow_head(
    tip: tuple[float, float, float],
) -> tuple[tuple[list[float], list[float], list[float]], tuple[list[int], list[int], list[int]]] | None:
    """The cone of a Bloch vector's head as a mesh ((x, y, z) of its vertices, (i, j, k) of its triangles):
    apex at `tip`, base min(HEAD_LENGTH, HEAD_FRACTION * |tip|) back along the vector, so a short vector's head
    never crosses the origin; None below MIN_ARROW. Vertex 0 is the apex, 1 the base's centre."""
    d = np.asarray(tip, dtype=float)
    length = float(np.linalg.norm(d))
    if length < MIN_ARROW:
        return None
    d /= length
    h = min(HEAD_LENGTH, HEAD_FRACTION * length)
    side = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(d, side)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    apex = d * length
    base = apex - h * d
    t = np.linspace(0, 2 * np.pi, _HEAD_SIDES, endpoint=False)
    ring = base + HEAD_RADIUS * h * (np.outer(np.cos(t), e1) + np.outer(np.sin(t), e2))
    points = np.vstack([apex, base, ring])
    nxt = [2 + (s + 1) % _HEAD_SIDES for s in range(_HEAD_SIDES)]
    cur = [2 + s for s in range(_HEAD_SIDES)]
    i = [0] * _HEAD_SIDES + [1] * _HEAD_SIDES  # the side, then the base
    j = cur + nxt
    k = nxt + cur
    return (points[:, 0].tolist(), points[:, 1].tolist(), points[:, 2].tolist()), (i, j, k)


def _unit_purity(p: float) -> float:
    """A one-qubit purity mapped onto [0, 1] for sampling the fixed colour scale."""
    lo, hi = PURITY_RANGE
    return min(1.0, max(0.0, (p - lo) / (hi - lo)))


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
