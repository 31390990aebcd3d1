"""The events of the log: msgspec Structs in one tagged union, one JSON line each.

Schema evolution: every field added after format 1 must have a default, so old
logs keep decoding. Unknown fields are ignored by older readers; an unknown
event type is reported and skipped, never fatal.
"""

from __future__ import annotations

from typing import Annotated, Any, Union, get_args

import msgspec

from .values import STEP_MAX, STEP_MIN, NonFinite

FORMAT_VERSION = 1

Step = Annotated[int, msgspec.Meta(ge=STEP_MIN, le=STEP_MAX)]


class _Event(msgspec.Struct, tag_field="event", omit_defaults=True, kw_only=True):
    """Common base: every event carries its wall-clock time (unix seconds)."""

    time: float


class WriterInfo(msgspec.Struct, omit_defaults=True):
    """Who wrote a segment: enough to find the process again, and to tell whether it still lives."""

    host: str
    pid: int
    ppid: int = 0
    python: str = ""
    alexandria: str = ""
    #: Linux: the kernel's boot id and the process's start time (clock ticks since boot); together
    #: with host and pid they name one process exactly, even after its pid is reused.
    boot_id: str = ""
    started: int = 0
    #: Seconds between heartbeats this writer promised (0: an old writer that sends none).
    heartbeat: float = 0.0


class Header(_Event, tag="header"):
    """First line of every segment: who wrote it, in which format, for which life of the run."""

    #: The log format's version (1).
    format: int
    run_id: str
    #: `boot_id` and `started` tell the writer apart from a later process with the same pid.
    writer: WriterInfo
    #: 0 for the run's first life, n after its n-th resume: every row from this segment carries it.
    attempt: int = 0
    #: A segment of edits made after the fact (`alex edit`, `alex delete`: see edits.py), not a life of the
    #: run: written whole and closed, it never counts for the run's status, end, last sign of life or attempt.
    annotation: bool = False
    #: The global rank of its writer in a distributed job (ranks.py: torchrun, Lightning, MPI, Slurm), None
    #: outside one: every metric point of the segment carries it, so a run's points tell its ranks apart.
    rank: Union[int, None] = None  # noqa: UP007


class RunStarted(_Event, tag="run_started"):
    """The run began: written once, by the process that started it, before `start_run` returns."""

    experiment: str
    tags: dict[str, str] = {}
    parent_id: Union[str, None] = None  # noqa: UP007 - a sweep's child names its parent run
    #: A readable name (given, or generated: see names.py); None in logs written before names existed.
    name: Union[str, None] = None  # noqa: UP007


class RunResumed(_Event, tag="run_resumed"):
    """A finished, failed, killed or crashed run continues (`start_run(run_id=...)`)."""

    #: The new life's number; the headers of its segments carry the same.
    attempt: int
    previous_status: Union[str, None] = None  # noqa: UP007


class Heartbeat(_Event, tag="heartbeat"):
    """ "Still alive": written when a writer had nothing else to write for its heartbeat interval."""


class SegmentClosed(_Event, tag="closed"):
    """The last line of a segment whose writer ended cleanly (its process may go on without it)."""


class ParamLogged(_Event, tag="param"):
    """A parameter: its value as text (see `values.param_to_str`)."""

    key: str
    value: str


class MetricLogged(msgspec.Struct, tag="metric", tag_field="event", omit_defaults=True, gc=False):
    """One metric point. Not an `_Event` subclass only so that `time` can be positional: `log_metric`
    builds one with `MetricLogged(time, key, value, step)`, the cheapest construction msgspec has, and
    queues it as it is. `gc=False` (it holds a float, a str and an int: no cycle is possible) keeps the
    points out of the garbage collector: queued tuples were tracked, and the collections their numbers
    set off were the hot path's slowest calls (1 in 700 calls took ~20 us). Encoded exactly like the
    others (time first)."""

    time: float
    key: str
    value: Union[float, NonFinite]  # noqa: UP007 - msgspec needs a runtime union
    step: Union[Step, None] = None  # noqa: UP007


class TagSet(_Event, tag="tag"):
    """A tag set (a later value of the same key replaces it)."""

    key: str
    value: str


class ArtifactSaved(_Event, tag="artifact"):
    """A file or directory copied into the store (a later artifact of the same name replaces it)."""

    name: str
    #: Relative to the store directory.
    path: str
    type: Union[str, None] = None  # noqa: UP007
    size: int = 0
    sha256: str = ""
    #: Of a directory: relative path -> target text of each symbolic link in it (recorded, never followed nor
    #: copied; `size` and `sha256` cover its regular files only).
    links: dict[str, str] = {}


class TagRemoved(_Event, tag="untag"):
    """A tag removed (a later `tag` of the same key sets it again)."""

    key: str


class RunEdited(_Event, tag="run_edited"):
    """What a user changed about a run after the fact (`alex edit`): only the fields given change; a later
    edit of the same field replaces this one. Written into an annotation segment of its own."""

    name: Union[str, None] = None  # noqa: UP007
    #: The run's description, Markdown text ("" clears it).
    note: Union[str, None] = None  # noqa: UP007
    #: The experiment the run now belongs to (an experiment renamed: every one of its runs says so).
    experiment: Union[str, None] = None  # noqa: UP007
    #: The description of the run's experiment, Markdown: written into every run of it (an experiment has no
    #: log of its own), the latest among its runs is the experiment's.
    experiment_note: Union[str, None] = None  # noqa: UP007


class RunDeleted(_Event, tag="run_deleted"):
    """The run deleted (a tombstone: hidden from every listing until restored) or, `deleted=False`, restored.
    The latest of these decides; `alex gc` removes a run deleted long enough ago for good."""

    deleted: bool = True


class RunFinished(_Event, tag="run_finished"):
    """The run ended."""

    #: `finished`, `failed` or `killed`.
    status: str
    error: Union[str, None] = None  # noqa: UP007


class EnvironmentCaptured(_Event, tag="environment"):
    """What the run's interpreter was: see `capture.capture_environment`."""

    python_version: str
    os: str
    pip_freeze: dict[str, str] = {}
    executable: str = ""
    hostname: str = ""
    cpu_count: Union[int, None] = None  # noqa: UP007
    libraries: dict[str, str] = {}
    note: Union[str, None] = None  # noqa: UP007


class CodeCaptured(_Event, tag="code"):
    """What code the run ran: see `capture.capture_code`."""

    entrypoint: str
    repository: Union[str, None] = None  # noqa: UP007
    git_commit: Union[str, None] = None  # noqa: UP007
    git_branch: Union[str, None] = None  # noqa: UP007
    git_dirty: Union[bool, None] = None  # noqa: UP007
    diff_sha256: Union[str, None] = None  # noqa: UP007
    diff_artifact: Union[str, None] = None  # noqa: UP007 - store path of the saved diff, when small enough
    #: Path -> SHA-256 of each file the code consists of.
    tracked_files: dict[str, str] = {}
    note: Union[str, None] = None  # noqa: UP007


class DatasetLogged(_Event, tag="dataset"):
    """One dataset a run used: see `dataset.describe_dataset`."""

    name: str
    role: str = "train"
    path: Union[str, None] = None  # noqa: UP007
    format: str = ""
    num_rows: Union[int, None] = None  # noqa: UP007
    num_columns: Union[int, None] = None  # noqa: UP007
    schema: dict[str, Any] = {}
    hash: str = ""
    size: Union[int, None] = None  # noqa: UP007


class MediaFile(msgspec.Struct, omit_defaults=True):
    """One more file of a media record (a matplotlib figure's SVG beside its PNG): where, and its hash."""

    #: Relative to the store directory.
    path: str
    format: str
    size: int = 0
    sha256: str = ""


class MediaLogged(_Event, tag="media"):
    """An image, figure, table or text a run logged (media.py): its file in the run's artifact folder, written
    before this event, and what it is. Every one is kept (a key has one per step, like a metric)."""

    key: str
    #: "image", "figure", "table" or "text".
    kind: str
    #: Relative to the store directory.
    path: str
    #: What the file holds: "png", "plotly.json", "parquet", "csv", "txt".
    format: str
    step: Union[Step, None] = None  # noqa: UP007
    size: int = 0
    sha256: str = ""
    #: Of an image or a figure's PNG, in pixels.
    width: Union[int, None] = None  # noqa: UP007
    height: Union[int, None] = None  # noqa: UP007
    caption: Union[str, None] = None  # noqa: UP007
    #: Of a table: its shape and column names.
    n_rows: Union[int, None] = None  # noqa: UP007
    n_cols: Union[int, None] = None  # noqa: UP007
    columns: list[str] = []
    #: Other files of the same record (a matplotlib figure's SVG).
    files: list[MediaFile] = []


class HistogramLogged(_Event, tag="histogram"):
    """A histogram of values (media.py): `len(edges) == len(counts) + 1`, finite edges; `nonfinite` values
    (NaN, +-inf) were dropped before counting. Kept whole in SQL (the `histogram` table, one row per bin)."""

    key: str
    edges: list[float]
    counts: list[int]
    step: Union[Step, None] = None  # noqa: UP007
    #: The smallest and largest value counted (of one logged already counted: its outer edges), and how many.
    min: Union[float, None] = None  # noqa: UP007
    max: Union[float, None] = None  # noqa: UP007
    count: int = 0
    nonfinite: int = 0


Event = Union[  # noqa: UP007
    Header,
    RunStarted,
    RunResumed,
    ParamLogged,
    MetricLogged,
    TagSet,
    TagRemoved,
    ArtifactSaved,
    RunFinished,
    Heartbeat,
    SegmentClosed,
    EnvironmentCaptured,
    CodeCaptured,
    DatasetLogged,
    RunEdited,
    RunDeleted,
    MediaLogged,
    HistogramLogged,
]

EVENT_TYPES = frozenset(cls.__struct_config__.tag for cls in get_args(Event))

encoder = msgspec.json.Encoder()
decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
#: What decoding a line can raise when the line is bad: not JSON, not an event, or nested deeper than
#: msgspec's recursion limit (`[` x 20,000 raises RecursionError). Every reader of the log catches these.
DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)
#: How deep the one free-form field (a dataset's `schema`) may nest. A line nested a little less deep than
#: msgspec's limit decodes, then fails wherever the value is encoded again (SQL's JSON columns): such a
#: line is corrupt, as one too deep to decode is.
MAX_NESTING = 64


def too_deep(event: DatasetLogged) -> bool:
    """Whether the dataset's schema nests deeper than MAX_NESTING (counted without recursion)."""
    level: list[Any] = [event.schema]
    for _ in range(MAX_NESTING):
        level = [v for c in level for v in (c.values() if isinstance(c, dict) else c) if isinstance(v, (dict, list))]
        if not level:
            return False
    return True
