"""How the dashboard renders: Jinja2 templates (autoescaping on, so whatever a user logged is shown as
text), the formatting helpers the templates call, notes as Markdown (`markdown_html`: no raw HTML, links to
http, https and mailto only), and JSON responses (no NaN: JSON has none)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import numpy as np
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.responses import Response

from ..formatting import number_text, run_duration_text, run_label, size_text, when_text
from ..values import finite_or_none, map_nonfinite

PACKAGE = Path(__file__).resolve().parent.parent
STATUSES = ("running", "finished", "failed", "killed", "crashed")


def url_part(text: str) -> str:
    """One path segment of a URL: every reserved character (a slash too) percent-encoded."""
    return quote(str(text), safe="")


#: The only schemes a note's link may have: anything else (javascript:, data:, a relative path) stays text.
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*):")


class _NoteMarkdown(MarkdownIt):
    """CommonMark with raw HTML off (written out as text) and links restricted to `LINK_SCHEMES`."""

    def validateLink(self, url: str) -> bool:  # noqa: N802  (markdown-it's name)
        m = _SCHEME.match(url)
        return m is not None and m.group(1).lower() in LINK_SCHEMES


@cache
def _markdown() -> MarkdownIt:
    md = _NoteMarkdown("commonmark", {"html": False, "linkify": False})
    md.disable("image")  # the page loads nothing a note names (the CSP would refuse it anyway)

    def link_open(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
        return str(self.renderToken(tokens, idx, options, env))

    md.add_render_rule("link_open", link_open)
    return md


def markdown_html(text: str | None) -> Markup:
    """A note (Markdown) as HTML that is safe to put in a page: markup the user wrote is escaped text, not
    HTML, and only http, https and mailto links are links; "" for no note."""
    if not text:
        return Markup("")
    return Markup(_markdown().render(text))  # noqa: S704  (markdown-it escapes: html is off)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity; a chart draws None (null) as a gap."""
    return map_nonfinite(value, lambda _: None)


def floats(a: np.ndarray) -> list[float | None]:
    """An array as JSON numbers, None where not finite."""
    return [finite_or_none(v) for v in a.tolist()]


def json_response(data: Any, status_code: int = 200) -> Response:
    body = json.dumps(_finite(data), allow_nan=False, separators=(",", ":"), default=str)
    return Response(body, status_code=status_code, media_type="application/json")


def templates() -> jinja2.Environment:
    """The pages' templates (alexandria/templates), with the helpers they call."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PACKAGE / "templates"),
        autoescape=True,  # every {{ }} is HTML-escaped: run names, keys, values, errors are text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        fmt_time=when_text,
        fmt_duration=run_duration_text,
        fmt_num=number_text,
        fmt_size=size_text,
        run_label=run_label,
        markdown=markdown_html,
        url_part=url_part,
        statuses=STATUSES,
    )
    return env
