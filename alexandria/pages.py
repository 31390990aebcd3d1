"""Offline HTML pages: the page shell around figures, and the plotting library written once beside the pages.

Pages open offline: plotly's library is written once beside the page as `plotly.min.js` (or embedded with
`embed=True`), never fetched from a CDN. The shell's stylesheet and its smoothing control are package data
(static/report.css; static/report.js with static/smoothing.js, the debiased EMA of `figures.smooth` that the
dashboard's charts load too, on each line's unsmoothed values, customdata column 0, applied with Plotly.restyle
to every curves figure of the page), inlined into each page so that one file is the whole page. Figures' JSON
is written with `<`, `>` and `&` as JSON escapes, so logged text cannot close the script it sits in. Used by
reports and by plug-ins' pictures.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from plotly.io.json import to_json_plotly
from plotly.offline import get_plotlyjs

from .errors import InvalidInputError
from .files import write_atomically
from .formatting import when_text

#: The plotting library's file beside offline pages (written once per folder, see `write_page`).
PLOTLYJS_NAME = "plotly.min.js"
STATIC = Path(__file__).resolve().parent / "static"


@cache
def plotly_text(s: str) -> str:
    """User text for plotly's pseudo-HTML (trace names, titles, parcoords labels): &, <, > escaped (not
    quotes: plotly.js does not decode &quot;). Parcoords tick labels are plain text to plotly: not for them."""
    return html.escape(s, quote=False)


def _static(name: str) -> str:
    return (STATIC / name).read_text("utf-8")


def _script_json(obj: Any) -> str:
    """Plotly JSON that is safe inside <script>: no <, > or & left in it (JSON escapes instead)."""
    text = to_json_plotly(obj)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def figure_html(fig: Any, div_id: str, css_class: str, *, when_visible: bool = False) -> str:
    """A figure (a plotly Figure, or a ``{"data", "layout"}`` dict) as a div and the script that draws it
    (plotly.js must be loaded before). With `when_visible` it is drawn once it comes near the screen, not as
    the page loads: for a WebGL figure (parcoords), which a browser without a GPU renders in software for
    seconds, so that it does not hold up the page's first draw."""
    spec = fig if isinstance(fig, dict) else fig.to_plotly_json()
    config = {"responsive": True, "displaylogo": False}
    draw = (
        f'Plotly.newPlot("{div_id}", {_script_json(spec["data"])}, {_script_json(spec["layout"])}, '
        f"{json.dumps(config)});"
    )
    if when_visible:
        draw = (
            f'(function () {{ var gd = document.getElementById("{div_id}"); function draw() {{ {draw} }}\n'
            'if (!("IntersectionObserver" in window)) { draw(); return; }\n'
            "var seen = new IntersectionObserver(function (entries) { if (entries.some(function (e) "
            '{ return e.isIntersecting; })) { seen.disconnect(); draw(); } }, {rootMargin: "300px"});\n'
            "seen.observe(gd); })();"
        )
    return f'<div id="{div_id}" class="{css_class}"></div>\n<script type="text/javascript">{draw}</script>'


def smoothing_control(smoothing: float) -> str:
    """The slider and number box that set the smoothing of every curves figure of the page."""
    return (
        '<div class="controls"><label>smoothing <input type="range" id="smoothing" min="0" max="0.99" '
        f'step="0.01" value="{smoothing}"></label> <input type="number" id="smoothing-value" min="0" '
        f'max="0.999" step="0.01" value="{smoothing}"> <span class="note">exponential moving average of each '
        "line (debiased, as TensorBoard); the shaded band is each bucket's min..max of the raw values</span></div>"
    )


def page_html(title: str, body: Sequence[str], *, embed: bool, smoothing_js: bool) -> str:
    """A whole offline page: `title`, the `body` HTML parts, plotly.js (beside it, or embedded), and the
    smoothing control's script when the page has one."""
    if embed:
        lib = '<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: "local"};</script>\n' + (
            f'<script type="text/javascript">{get_plotlyjs()}</script>'
        )
    else:
        lib = f'<script src="{PLOTLYJS_NAME}" charset="utf-8"></script>'
    scripts = _static("smoothing.js") + _static("report.js")  # the smoothing the dashboard's charts share
    tail = f'<script type="text/javascript">\n{scripts}</script>' if smoothing_js else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>\n<style>\n{_static('report.css')}</style>\n{lib}\n</head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        + "\n".join(body)
        + f'\n<p class="note">written {when_text(time.time())} by alexandria</p>\n{tail}\n</body></html>\n'
    )


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
