"""The events of the log: msgspec Structs in one tagged union, one JSON line each.

Schema evolution: every field added after format 1 must have a default, so old
logs keep decoding. Unknown fields are ignored by older readers; an unknown
event type is reported and skipped, never fatal.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import msgspec

FORMAT_VERSION = 1

NonFinite = Literal["NaN", "Infinity", "-Infinity"]

# Non-finite floats are not JSON; they travel as these strings.
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_float(value: float) -> float | NonFinite:
    """Return `value` itself when finite, else its JSON-safe string spelling."""
    if value - value == 0.0:
        return value
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def decode_float(value: float | str) -> float:
    """Invert `encode_float`."""
    if type(value) is float:
        return value
    if isinstance(value, str):
        return _NONFINITE[value]
    return float(value)


#: SQL's INTEGER range: a step outside it could never be stored.
STEP_MIN, STEP_MAX = -(2**63), 2**63 - 1
Step = Annotated[int, msgspec.Meta(ge=STEP_MIN, le=STEP_MAX)]


class _Event(msgspec.Struct, tag_field="event", omit_defaults=True, kw_only=True):
    """Common base: every event carries its wall-clock time (unix seconds)."""

    time: float


class WriterInfo(msgspec.Struct, omit_defaults=True):
    """Who wrote a segment: enough to find the process again."""

    host: str
    pid: int
    ppid: int = 0
    python: str = ""
    alexandria: str = ""


class Header(_Event, tag="header"):
    """First line of every segment."""

    format: int
    run_id: str
    writer: WriterInfo


class RunStarted(_Event, tag="run_started"):
    experiment: str
    tags: dict[str, str] = {}


class ParamLogged(_Event, tag="param"):
    key: str
    value: str


class MetricLogged(msgspec.Struct, tag="metric", tag_field="event", omit_defaults=True):
    """One metric point. Not an `_Event` subclass only so that `time` can be positional: the writer
    builds one from a queued `(time, key, value, step)` tuple with `MetricLogged(*item)`, the
    cheapest construction msgspec has. Encoded exactly like the others (time first)."""

    time: float
    key: str
    value: Union[float, NonFinite]  # noqa: UP007 - msgspec needs a runtime union
    step: Union[Step, None] = None  # noqa: UP007


class TagSet(_Event, tag="tag"):
    key: str
    value: str


class ArtifactSaved(_Event, tag="artifact"):
    name: str
    path: str
    type: Union[str, None] = None  # noqa: UP007
    size: int = 0
    sha256: str = ""


class RunFinished(_Event, tag="run_finished"):
    status: str
    error: Union[str, None] = None  # noqa: UP007


Event = Union[Header, RunStarted, ParamLogged, MetricLogged, TagSet, ArtifactSaved, RunFinished]  # noqa: UP007

EVENT_TYPES = frozenset(
    cls.__struct_config__.tag
    for cls in (Header, RunStarted, ParamLogged, MetricLogged, TagSet, ArtifactSaved, RunFinished)
)

encoder = msgspec.json.Encoder()
decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
