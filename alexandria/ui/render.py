"""How the dashboard renders: Jinja2 templates (autoescaping on, so whatever a user logged is shown as
text), the formatting helpers the templates call, and JSON responses (no NaN: JSON has none)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import numpy as np
from starlette.responses import Response

from ..formatting import number_text, run_duration_text, size_text, when_text
from ..values import finite_or_none, map_nonfinite

PACKAGE = Path(__file__).resolve().parent.parent
STATUSES = ("running", "finished", "failed", "killed", "crashed")


def url_part(text: str) -> str:
    """One path segment of a URL: every reserved character (a slash too) percent-encoded."""
    return quote(str(text), safe="")


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
        url_part=url_part,
        statuses=STATUSES,
    )
    return env
