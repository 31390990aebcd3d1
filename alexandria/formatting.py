"""How every view writes times, durations, numbers and sizes: the CLI, the report pages and the dashboard
call these, so a run reads the same wherever it is shown."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any


def when_text(ts: float | None) -> str:
    """A unix time as local "YYYY-MM-DD HH:MM:SS" ("-" when unknown)."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def duration_text(start: float | None, end: float | None) -> str:
    """ "12.3s", "4.5m" or "6.7h"; a run still going (no end) is timed until now and marked "+"."""
    if not start:
        return "-"
    seconds = (end or time.time()) - start
    text = (
        f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"
    )
    return text if end else text + "+"


def run_duration_text(r: Mapping[str, Any]) -> str:
    """`duration_text` of a run row."""
    return duration_text(r.get("timestamp_start"), r.get("timestamp_end"))


def duration_seconds(r: Mapping[str, Any], now: float | None = None) -> float | None:
    """A run row's duration in seconds, until now while it runs; None when it has no start."""
    start = r.get("timestamp_start")
    if not start:
        return None
    end = r.get("timestamp_end") or (now or time.time())
    return float(end - start)


def number_text(value: Any) -> str:
    """A metric value: 6 significant digits, "nan" for NaN or nothing logged."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def size_text(n: int | None) -> str:
    """A byte count in decimal units: "512 B", "1.5 kB", ... "2.0 GB"."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def run_label(r: Mapping[str, Any]) -> str:
    """How a run is called wherever it is listed or drawn: its name, or for a run logged before runs had
    names (name NULL) its id's first 8 characters. Names are not unique: views that need the identity
    show the id beside it (a link, a column, the hover text)."""
    name = r.get("name")
    return str(name) if name else str(r["id"])[:8]
