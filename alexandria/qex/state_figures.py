"""A whole density matrix as pictures, and the offline pages that show one run's state or compare two runs.

`bloch.py` draws what each qubit alone looks like; this module draws the matrix itself, as a physicist
reads a tomography result: its real and imaginary parts as two heatmaps (rows and columns labelled by
the basis states |00⟩, |01⟩, ... with qubit 0 the leftmost bit, as in `qex.states`), on one diverging
scale centred at 0 with a symmetric range (white is 0, the same colour is the same value in both
parts), and a "city" plot of 3-D bars (as Qiskit's `plot_state_city`; plotly has no bar chart in 3-D,
so each part is one mesh of cuboids). A city of more than `CITY_MAX_QUBITS` qubits is an unreadable
forest (and a heavy page), so it is left out with a note; heatmaps of more than `HEATMAP_MAX_QUBITS`
qubits would draw more cells than a screen has pixels, so they too are replaced by a note pointing to
`qex export`.

The pages (`run_page_html`, `compare_page_html`) use the page shell of `alexandria.pages`: offline,
every user string escaped (`html.escape` in tables, `plotly_text` in figures).

Where tests and tools find the data (trace names are stable):

* `heatmap_figure`: traces ``"Re rho"`` and ``"Im rho"``, z = the matrix's real / imaginary part, x the
  column labels, y the row labels; the shared ``layout.coloraxis`` has cmin = -cmax.
* `city_figure`: traces ``"Re rho bars"`` and ``"Im rho bars"``, 8 vertices per entry in row-major order
  (entry (r, c) is bar ``r * 2**n + c``), its 4 top vertices at the entry's height, its 4 bottom ones at 0.
* `compare_bloch_figure`: per qubit k, ``f"qubit {k} A state"`` and ``f"qubit {k} B state"``, the tips.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import get_colorscale
from plotly.subplots import make_subplots

from ..pages import figure_html, page_html, plotly_text, write_page
from . import bloch
from .states import ValidState, check_state

#: Above this many qubits (64 x 64 = 4096 bars per part) the city plot is left out.
CITY_MAX_QUBITS = 6
#: Above this many qubits (256 x 256 cells per part) the heatmaps are left out too.
HEATMAP_MAX_QUBITS = 8
#: Blue below 0, white at 0, red above: a diverging scale (ColorBrewer's RdBu, reversed), centred by a
#: symmetric range; spelled out, as plotly.js does not know plotly's "_r" names.
DIVERGING = get_colorscale("RdBu_r")
_BAR_HALF_WIDTH = 0.35
_CITY_HOVER_NAMES_UP_TO = 4  # qubits: up to 256 bars, each vertex's hover text names its basis states
COLOURS = {"A": "#1f77b4", "B": "#d62728"}

# The 12 triangles of a cuboid whose 8 corners are bottom (0..3) then top (4..7), each face as two triangles.
_CUBOID = np.array(
    [
        [0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7],  # bottom, top
        [0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5],  # front, right
        [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7],  # back, left
    ]
)  # fmt: skip


def basis_labels(n: int) -> list[str]:
    """|0...0⟩ to |1...1⟩: basis index b in binary, qubit 0 the leftmost (most significant) bit."""
    return [f"|{b:0{n}b}⟩" for b in range(2**n)]


def _parts(state: ValidState) -> tuple[np.ndarray, np.ndarray, float]:
    """Real part, imaginary part, and the symmetric colour limit they share (never 0: a state has trace 1)."""
    m = state.matrix
    re, im = np.ascontiguousarray(m.real), np.ascontiguousarray(m.imag)
    return re, im, float(max(np.abs(re).max(), np.abs(im).max()))


def _typed(a: np.ndarray) -> dict[str, str]:
    """A numpy array as plotly.js's typed-array JSON (little-endian base64, its shape): exact and compact."""
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    spec = {"dtype": a.dtype.str[1:], "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
    if a.ndim > 1:
        spec["shape"] = ", ".join(str(d) for d in a.shape)
    return spec


def _titles(texts: Sequence[str], centres: Sequence[float]) -> list[dict[str, Any]]:
    """Subplot titles as make_subplots places them, for the figures built here as plain dicts (plotly's
    figure objects validate every property: 0.1 s or more a figure, paid by every run's page)."""
    return [
        {"text": t, "x": x, "y": 1.0, "xref": "paper", "yref": "paper", "xanchor": "center", "yanchor": "bottom",
         "showarrow": False, "font": {"size": 16}}
        for t, x in zip(texts, centres, strict=True)
    ]  # fmt: skip


@cache
def _template() -> dict[str, Any]:
    """plotly's default template, as plotly's figure objects carry it: these figures look like the others."""
    import plotly.io as pio

    return pio.templates[pio.templates.default].to_plotly_json()


def heatmap_figure(
    rho: np.ndarray | ValidState, title: str | None = None, *, limit: float | None = None
) -> dict[str, Any]:
    """Re and Im of the matrix as two heatmaps side by side, row 0 at the top as the matrix is written; one
    colour scale from -limit to +limit (default: the largest |entry|; give two states one limit to compare)."""
    state = check_state(rho)
    n = state.num_qubits
    labels = basis_labels(n)
    re, im, own = _parts(state)
    limit = own if limit is None else limit
    data = [
        {
            "type": "heatmap",
            "z": _typed(z),
            "x": labels,
            "y": labels,
            "xaxis": axis_x,
            "yaxis": axis_y,
            "coloraxis": "coloraxis",
            "name": f"{part} rho",
            "hovertemplate": f"row %{{y}}, column %{{x}}<br>{part} ρ = %{{z:.4f}}<extra></extra>",
        }
        for part, z, axis_x, axis_y in (("Re", re, "x", "y"), ("Im", im, "x2", "y2"))
    ]
    x_axis = {"title": {"text": "column"}, "type": "category", "tickangle": -90 if n > 2 else 0, "automargin": True}
    y_axis = {"title": {"text": "row"}, "type": "category", "autorange": "reversed", "automargin": True}
    domains = ([0.0, 0.42], [0.56, 0.98])
    layout = {
        "template": _template(),
        "title": {"text": plotly_text(title if title is not None else f"density matrix ({2**n} x {2**n})")},
        "xaxis": {**x_axis, "domain": domains[0], "anchor": "y"},
        "yaxis": {**y_axis, "domain": [0.0, 1.0], "anchor": "x"},
        "xaxis2": {**x_axis, "domain": domains[1], "anchor": "y2"},
        "yaxis2": {**y_axis, "domain": [0.0, 1.0], "anchor": "x2"},
        "coloraxis": {
            "colorscale": DIVERGING,
            "cmin": -limit,
            "cmax": limit,
            "colorbar": {"title": {"text": "entry"}, "thickness": 12},
        },
        "annotations": _titles(["real part Re ρ", "imaginary part Im ρ"], [sum(d) / 2 for d in domains]),
        "height": 330 + 6 * min(2**n, 64),
        "margin": {"l": 10, "r": 10, "t": 80, "b": 10},
    }
    return {"data": data, "layout": layout}


def _bars(values: np.ndarray) -> dict[str, Any]:
    """One cuboid per entry of a square matrix: entry (r, c) stands at x = c, y = r, from height 0 to its value."""
    size = values.shape[0]
    rows, cols = (a.ravel().astype(float) for a in np.indices(values.shape))
    h = values.ravel()
    w = _BAR_HALF_WIDTH
    x0, x1, y0, y1 = cols - w, cols + w, rows - w, rows + w
    zero = np.zeros_like(h)
    # corners in float32 (geometry only); heights in float64: the top of a bar is the entry exactly
    x = np.stack([x0, x1, x1, x0] * 2, axis=1).ravel().astype(np.float32)
    y = np.stack([y0, y0, y1, y1] * 2, axis=1).ravel().astype(np.float32)
    z = np.stack([zero] * 4 + [h] * 4, axis=1).ravel()
    faces = (_CUBOID[None, :, :] + 8 * np.arange(size * size)[:, None, None]).reshape(-1, 3).astype(np.int32)
    return {"x": x, "y": y, "z": z, "i": faces[:, 0], "j": faces[:, 1], "k": faces[:, 2], "heights": h}


def city_figure(
    rho: np.ndarray | ValidState, title: str | None = None, *, limit: float | None = None
) -> dict[str, Any]:
    """The 'city' plot: Re and Im of every entry as a bar of that height, in two 3-D scenes on one scale
    (from -limit to +limit, default the largest |entry|, as `heatmap_figure`)."""
    state = check_state(rho)
    n = state.num_qubits
    labels = basis_labels(n)
    re, im, own = _parts(state)
    limit = own if limit is None else limit
    size = 2**n
    named = n <= _CITY_HOVER_NAMES_UP_TO
    where = [f"row {labels[r]}, column {labels[c]}" for r in range(size) for c in range(size)] if named else []
    data = []
    for scene, (part, values) in zip(("scene", "scene2"), (("Re", re), ("Im", im)), strict=True):
        bars = _bars(values)
        heights = bars.pop("heights")
        if named:  # per vertex: any corner of a bar names its entry
            hover: dict[str, Any] = {
                "text": [
                    f"{w}: {part} ρ = {v:.4f}" for w, v in zip(where, heights.tolist(), strict=True) for _ in range(8)
                ],
                "hovertemplate": "%{text}<extra></extra>",
            }
        else:  # thousands of bars: their indices (x, y rounded to the bar's column, row), not 8 strings each
            hover = {"hovertemplate": f"row %{{y:.0f}}, column %{{x:.0f}}: {part} ρ = %{{z:.4f}}<extra></extra>"}
        data.append(
            {
                "type": "mesh3d",
                **{axis: _typed(v) for axis, v in bars.items()},
                # all 8 corners of a bar alike: one colour a bar, its value
                "intensity": _typed(np.repeat(heights, 8).astype(np.float32)),
                "colorscale": DIVERGING,
                "cmin": -limit,
                "cmax": limit,
                "showscale": scene == "scene2",
                "colorbar": {"title": {"text": "entry"}, "thickness": 12, "len": 0.7},
                "flatshading": True,
                "scene": scene,
                "name": f"{part} rho bars",
                **hover,
            }
        )
    ticks = list(range(size)) if size <= 16 else list(range(0, size, size // 8))
    axis = {"tickvals": ticks, "ticktext": [labels[t] for t in ticks], "range": [-0.6, size - 0.4]}
    domains = ([0.0, 0.48], [0.52, 1.0])
    scene_style = {
        "xaxis": {**axis, "title": {"text": "column"}},
        "yaxis": {**axis, "title": {"text": "row"}, "autorange": "reversed"},
        "zaxis": {"range": [-limit, limit], "title": {"text": ""}},
        "aspectmode": "manual",
        "aspectratio": {"x": 1, "y": 1, "z": 0.6},
        "camera": {"eye": {"x": 1.5, "y": 1.5, "z": 1.0}},
    }
    layout = {
        "template": _template(),
        "title": {"text": plotly_text(title if title is not None else "density matrix as a city")},
        "scene": {**scene_style, "domain": {"x": domains[0], "y": [0.0, 1.0]}},
        "scene2": {**scene_style, "domain": {"x": domains[1], "y": [0.0, 1.0]}},
        "annotations": _titles(["Re ρ", "Im ρ"], [sum(d) / 2 for d in domains]),
        "height": 520,
        "margin": {"l": 10, "r": 10, "t": 80, "b": 10},
    }
    return {"data": data, "layout": layout}


def matrix_sections(
    state: ValidState, key: str, heading: str | None = None, *, limit: float | None = None
) -> list[str]:
    """The HTML parts showing one matrix: the heatmaps and the city, or the notes saying why one is left out.
    `key` makes the figures' element ids unique on the page (and names nothing the user typed)."""
    n = state.num_qubits
    size = 2**n
    out = [f"<h2>{html.escape(heading or 'Density matrix')}</h2>"]
    out.append(
        f'<p class="note">{size} x {size}; rows and columns are the basis states {basis_labels(n)[0]} to '
        f"{basis_labels(n)[-1]}, qubit 0 the leftmost bit; blue below 0, red above, white 0.</p>"
    )
    if n > HEATMAP_MAX_QUBITS:
        out.append(
            f'<p class="note">A {n}-qubit matrix has more entries per side ({size}) than a picture can show: '
            f"heatmaps are drawn up to {HEATMAP_MAX_QUBITS} qubits. `qex export RUN out.csv` writes every "
            "entry.</p>"
        )
        return out
    out.append(figure_html(heatmap_figure(state, limit=limit), f"{key}-heatmap", "figure"))
    if n > CITY_MAX_QUBITS:
        out.append(
            f'<p class="note">The city plot is drawn up to {CITY_MAX_QUBITS} qubits ({2**CITY_MAX_QUBITS} x '
            f"{2**CITY_MAX_QUBITS} bars per part); this state has {n}: the heatmaps above show it.</p>"
        )
    else:
        out.append(figure_html(city_figure(state, limit=limit), f"{key}-city", "figure", when_visible=True))
    return out


def _table(rows: Sequence[tuple[str, str]]) -> str:
    """Two-column table of (label, value); both escaped."""
    e = html.escape
    return "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows) + "</table>"


def _qubits_table(columns: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Per qubit, for each labelled state: its Bloch vector, |r|, purity and entropy, rounded to 4 places."""
    head = "".join(
        f"<th>Bloch vector {html.escape(label)} (x, y, z)</th><th>|r|</th><th>purity</th><th>entropy (bits)</th>"
        for label in columns
    )
    lines = [f"<table><thead><tr><th>qubit</th>{head}</tr></thead><tbody>"]
    for k, per in enumerate(zip(*columns.values(), strict=True)):
        cells = ""
        for q in per:
            x, y, z = q["bloch"]
            vector = "(" + ", ".join(f"{v:+.4f}" for v in (x, y, z)) + ")"
            cells += (
                f"<td>{vector}</td><td>{math.sqrt(x * x + y * y + z * z):.4f}</td>"
                f"<td>{q['purity']:.4f}</td><td>{q['entropy_bits']:.4f}</td>"
            )
        lines.append(f"<tr><td>{k}</td>{cells}</tr>")
    return "".join(lines) + "</tbody></table>"


def state_numbers(measures: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The whole state's numbers as `qex show` prints them (purity, entropy, fidelity to the noiseless state)."""
    rows = [("purity Tr(ρ²)", f"{measures['purity']:.6f}"), ("entropy", f"{measures['entropy_bits']:.6f} bits")]
    if "fidelity_to_ideal" in measures:
        rows.append(("fidelity to the noiseless state", f"{measures['fidelity_to_ideal']:.6f}"))
    if "trace_distance_to_ideal" in measures:
        rows.append(("trace distance to the noiseless state", f"{measures['trace_distance_to_ideal']:.6f}"))
    return rows


def run_page_html(
    rho: np.ndarray | ValidState,
    *,
    title: str,
    about: Sequence[tuple[str, str]],
    measures: Mapping[str, Any],
    embed: bool = False,
    qubit_names: Sequence[str] | None = None,
) -> str:
    """One run's page: the Bloch sphere of each qubit (titled by `qubit_names`, else "qubit k"), what ran
    (`about`), its numbers (`measures`: purity, entropy_bits, qubits as `runner.describe_state` gives them),
    and the density matrix views."""
    state = check_state(rho)
    body = [  # the spheres first: in the dashboard's frame (560 px) they are what shows without scrolling
        figure_html(bloch.bloch_figure(state, title=title, qubit_names=qubit_names), "bloch", "figure"),
        _table([*about, *state_numbers(measures)]),
        "<h2>Qubits</h2>",
        _qubits_table({"": measures["qubits"]}),
        *matrix_sections(state, "rho"),
    ]
    return page_html(title, body, embed=embed, smoothing_js=False)


def write_run_page(
    path: str | Path,
    rho: np.ndarray | ValidState,
    *,
    title: str,
    about: Sequence[tuple[str, str]],
    measures: Mapping[str, Any],
    embed: bool = False,
    qubit_names: Sequence[str] | None = None,
) -> Path:
    """`run_page_html` written atomically at `path` (plotly.js beside it unless `embed`)."""
    page = run_page_html(rho, title=title, about=about, measures=measures, embed=embed, qubit_names=qubit_names)
    return write_page(path, page, embed=embed)


def compare_bloch_figure(
    a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], title: str | None = None
) -> Any:
    """One sphere per qubit holding both runs' Bloch vectors (A blue, B red), from their `qubit_summary`s."""
    n = len(a)
    rows, cols = bloch._grid(n)
    specs: list[list[dict[str, Any] | None]] = [
        [{"type": "scene"} if r * cols + c < n else None for c in range(cols)] for r in range(rows)
    ]
    fig = make_subplots(
        rows=rows,
        cols=cols,
        specs=specs,
        subplot_titles=[f"qubit {k}" for k in range(n)],
        horizontal_spacing=0.02,
        vertical_spacing=0.06,
    )
    for k in range(n):
        row, col = bloch._cell(k)
        traces = bloch._sphere_frame(k)
        for label, q in (("A", a[k]), ("B", b[k])):
            x, y, z = (float(c) for c in q["bloch"])
            colour = COLOURS[label]
            traces += bloch.vector_traces((x, y, z), colour, f"qubit {k} {label}")
            traces.append(
                go.Scatter3d(
                    x=[x],
                    y=[y],
                    z=[z],
                    mode="markers",
                    marker={"size": 6, "color": colour},
                    customdata=[[q["purity"]]],
                    hovertemplate=(
                        f"run {label}, qubit {k}<br>x=%{{x:.4f}}<br>y=%{{y:.4f}}<br>z=%{{z:.4f}}"
                        "<br>purity=%{customdata[0]:.4f}<extra></extra>"
                    ),
                    name=f"qubit {k} {label} state",
                    showlegend=False,
                )
            )
        for trace in traces:
            fig.add_trace(trace, row=row, col=col)
    bloch._style_scenes(fig)
    fig.update_layout(
        title={"text": plotly_text(title or "Bloch vectors: A in blue, B in red")},
        height=420 * rows + 60,
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
        showlegend=False,
    )
    return fig


def compare_page_html(
    rho_a: np.ndarray | ValidState,
    rho_b: np.ndarray | ValidState,
    *,
    about_a: Sequence[tuple[str, str]],
    about_b: Sequence[tuple[str, str]],
    fidelity: float,
    trace_distance: float,
    qubits_a: Sequence[Mapping[str, Any]],
    qubits_b: Sequence[Mapping[str, Any]],
    embed: bool = False,
) -> str:
    """Two runs' states side by side: fidelity and trace distance, both runs' Bloch vectors on shared spheres,
    and both density matrices. The numbers are the caller's (`qex compare` prints the same ones)."""
    a, b = check_state(rho_a), check_state(rho_b)
    limit = max(_parts(a)[2], _parts(b)[2])  # one colour scale for both: the same colour, the same value
    e = html.escape
    runs = ["<table><thead><tr><th></th><th>A</th><th>B</th></tr></thead><tbody>"]
    for (label, va), (_, vb) in zip(about_a, about_b, strict=True):
        runs.append(f"<tr><th>{e(label)}</th><td>{e(va)}</td><td>{e(vb)}</td></tr>")
    runs.append("</tbody></table>")
    body = [
        "".join(runs),
        _table(
            [
                ("fidelity (Uhlmann-Jozsa, squared)", f"{fidelity:.6f}"),
                ("trace distance", f"{trace_distance:.6f}"),
            ]
        ),
        "<h2>Qubits</h2>",
        _qubits_table({"A": qubits_a, "B": qubits_b}),
        figure_html(compare_bloch_figure(qubits_a, qubits_b), "bloch-compare", "figure"),
        *matrix_sections(a, "a-rho", "Density matrix of A", limit=limit),
        *matrix_sections(b, "b-rho", "Density matrix of B", limit=limit),
    ]
    return page_html("Comparing two states", body, embed=embed, smoothing_js=False)


def write_compare_page(
    path: str | Path, rho_a: np.ndarray | ValidState, rho_b: np.ndarray | ValidState, **kw: Any
) -> Path:
    """`compare_page_html` (same keywords) written atomically at `path` (plotly.js beside it unless `embed`)."""
    return write_page(path, compare_page_html(rho_a, rho_b, **kw), embed=kw.get("embed", False))
