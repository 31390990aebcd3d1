"""The SQL tables, defined once (SQLAlchemy Core) for every backend.

Seed tables and columns (never dropped or renamed): run, parameter, metric,
dataset, code, environment, artifact. Added for users: run.status/error/
parent_id/attempt/last_seen, a `lifecycle` table (every start, resume and
end of a run), timestamps on most rows, artifact size, sha256 and links, a `tag`
table that run.tags (JSON) is kept in step with, dataset role/format/size,
the git details of `code`, the interpreter details of `environment`, and the
`attempt` (which life of a resumed run) on metric, code and environment rows, the
`rank` (of a distributed job's process, ranks.py) on metric and log_segment rows,
and what a user edits after the fact (edits.py): run.name/note/deleted, the
latest edit of each field in `run_edit` and of each tag in `tag_state`. A
deleted run keeps its rows (`alex gc` purges it for good): a query of live runs
says `WHERE NOT deleted` on run (README: "Deleted runs").
A run may have several dataset rows (one per role) and, once resumed, one
code and environment row per life: a seed query still runs, and `WHERE
attempt = 0` (or the latest attempt) picks one. Bookkeeping of the
projection: log_segment (read position of every segment, committed with the
rows), log_problem (corrupt or unknown lines, with file and byte offset) and
alexandria_meta (schema version). Version 7 added `media` and `histogram`
(what a run logged to look at: media.py), version 8 `metric_summary` (what each metric of a run comes to,
kept by the fold: summaries.py), version 9 the compact metric points: `metric` is a view over `metric_point`
(docs/storage.md).

The seed's `metric(id, run_id, key, value, step)` is a view (`VIEWS`): the points are kept in `metric_point`,
whose rows name their (run, key) by the integer id of its `metric_summary` row (its `series`) instead of
repeating a 32-character run id and the key's text in every row and again in the index: 48 bytes a point
instead of 130 (benchmarks/storage.py). The view is a plain join (no expression over a column), so a query
written against the seed table is planned as it was: `WHERE run_id = ? AND key = ?` finds the one summary row
by its unique index, then the points by `ix_metric_point_series_step`.

Timestamps are unix seconds (REAL). A NaN metric value is stored as NULL
(SQLite cannot hold NaN); +-inf are stored as they are.

On a database server, integers that can outgrow 32 bits (metric ids and steps, byte offsets and sizes, row
counts, clock ticks) are BIGINT (`Int64`); SQLite's INTEGER is 64-bit already, and its DDL is unchanged.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

#: Bump when any table changes: databases of another version are rebuilt from the logs.
SCHEMA_VERSION = 9

metadata = MetaData()

#: A 64-bit integer on every backend: INTEGER on SQLite (64-bit, and the rowid alias of a primary key), BIGINT
#: (BIGSERIAL for a primary key) elsewhere.
Int64 = BigInteger().with_variant(Integer(), "sqlite")

run = Table(
    "run",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_name", Text),
    Column("timestamp_start", Float),
    Column("timestamp_end", Float),
    Column("tags", JSON),
    Column("status", Text),  # running, finished, failed, killed, crashed (see life.py)
    Column("error", Text),
    Column("parent_id", String(32)),  # a sweep's parent run
    Column("attempt", Integer),  # 0, or how many times the run was resumed
    Column("last_seen", Float),  # time of the newest line in any of its segments
    # Settled from run_edit (edits.py): the latest name, note and tombstone given.
    Column("name", Text),  # readable, not unique: the id stays the identity
    Column("note", Text),  # Markdown
    Column("deleted", Boolean, nullable=False, server_default=false()),  # hidden until restored
)
Index("ix_run_name", run.c.name)
Index("ix_run_experiment_start", run.c.experiment_name, run.c.timestamp_start)
Index("ix_run_start", run.c.timestamp_start)
Index("ix_run_parent", run.c.parent_id)
Index("ix_run_status", run.c.status)

lifecycle = Table(
    "lifecycle",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("event", Text, nullable=False),  # started, resumed, finished
    Column("status", Text, nullable=False),  # running for started/resumed
    Column("error", Text),
    Column("attempt", Integer, nullable=False),
    Column("timestamp", Float, nullable=False),
)
Index("ix_lifecycle_run", lifecycle.c.run_id)

parameter = Table(
    "parameter",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("timestamp", Float),
    UniqueConstraint("run_id", "key", name="uq_parameter_run_key"),
)

#: What each metric of each run comes to, one row per (run, key), written by the fold in the transaction that
#: writes the points (summaries.py defines the last value and says how NaN counts): a read of last values,
#: counts or extremes costs one row per metric however many points it has. Equal to a GROUP BY over `metric`.
metric_summary = Table(
    "metric_summary",
    metadata,
    Column("id", Int64, primary_key=True),  # the series id of the metric's points (metric_point.series)
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("count", Int64, nullable=False),  # points logged
    Column("first_step", Int64),  # the lowest step; NULL: no point has a step
    Column("last_step", Int64),  # the last point's step, the highest; NULL: no point has a step
    Column("last_value", Float),  # the last point's value; NULL means NaN
    Column("last_time", Float),  # the last point's timestamp
    Column("last_attempt", Integer),  # the last point's attempt (life of the run)
    Column("min_value", Float),  # over the values that are not NaN; NULL: every value is NaN
    Column("max_value", Float),
    UniqueConstraint("run_id", "key", name="uq_metric_summary_run_key"),
)

#: Every metric point, in the order folded; `series` is its (run, key): the id of that metric_summary row.
metric_point = Table(
    "metric_point",
    metadata,
    Column("id", Int64, primary_key=True),
    Column("series", Int64, ForeignKey("metric_summary.id"), nullable=False),
    Column("value", Float),  # NULL means NaN
    Column("step", Int64),  # NULL: logged without a step
    Column("timestamp", Float),
    Column("attempt", Integer),  # which life of the run logged it: 0, or n after the n-th resume
    Column("rank", Integer),  # the global rank that logged it in a distributed job (ranks.py); NULL outside one
)
#: The big index, created after a rebuild has loaded the rows.
metric_index = Index("ix_metric_point_series_step", metric_point.c.series, metric_point.c.step)

#: Views over the tables, created with them (`Backend.create_schema`); their columns as Tables of their own
#: MetaData, so that Core can select from them and `create_all` never makes them.
views = MetaData()

#: The seed's metric table, as a view over the points and their series.
metric = Table(
    "metric",
    views,
    Column("id", Int64),
    Column("run_id", String(32)),
    Column("key", Text),
    Column("value", Float),  # NULL means NaN
    Column("step", Int64),  # NULL: logged without a step
    Column("timestamp", Float),
    Column("attempt", Integer),
    Column("rank", Integer),
)
#: A plain join, no expression over a column: the planner uses both tables' indexes as it did the old table's.
METRIC_VIEW = (
    "SELECT p.id AS id, s.run_id AS run_id, s.key AS key, p.value AS value, p.step AS step, "
    "p.timestamp AS timestamp, p.attempt AS attempt, p.rank AS rank "
    "FROM metric_point p JOIN metric_summary s ON s.id = p.series"
)
VIEWS = {"metric": METRIC_VIEW}


def relation(name: str) -> Table:
    """A table or a view by its name (a user's question names either: the seed's `metric` is a view)."""
    found = metadata.tables.get(name)
    return found if found is not None else views.tables[name]

tag = Table(
    "tag",
    metadata,
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("timestamp", Float),
    PrimaryKeyConstraint("run_id", "key", name="pk_tag"),
)

#: The latest set or removal (value NULL) of each tag: the fold's state, from which `tag` (the tags a run has
#: now) and run.tags are settled.
tag_state = Table(
    "tag_state",
    metadata,
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("value", Text),  # NULL: removed
    Column("timestamp", Float),
    PrimaryKeyConstraint("run_id", "key", name="pk_tag_state"),
)

#: The latest edit of each field of a run (name, note, experiment, experiment_note, deleted): see edits.py.
#: A run's start gives its first name; run.name, note, deleted and experiment_name are settled from here.
run_edit = Table(
    "run_edit",
    metadata,
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("field", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("timestamp", Float, nullable=False),
    PrimaryKeyConstraint("run_id", "field", name="pk_run_edit"),
)

dataset = Table(
    "dataset",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("name", Text),
    Column("path", Text),
    Column("num_rows", Int64),
    Column("num_columns", Integer),
    Column("schema", JSON),
    Column("hash", String(64)),
    Column("role", Text),  # train, eval, test, ...: a run may use several datasets
    Column("format", Text),
    Column("size", Int64),
    Column("timestamp", Float),
)
Index("ix_dataset_run", dataset.c.run_id)

code = Table(
    "code",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("git_commit", Text),
    Column("entrypoint", Text),
    Column("tracked_files", JSON),
    Column("repository", Text),
    Column("git_branch", Text),
    Column("git_dirty", Boolean),
    Column("diff_sha256", String(64)),
    Column("diff_artifact", Text),  # path in the store of the uncommitted diff, when small enough to keep
    Column("note", Text),  # what could not be captured, or where the file list was cut
    Column("attempt", Integer),
    Column("timestamp", Float),
)
Index("ix_code_run", code.c.run_id)

environment = Table(
    "environment",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("python_version", Text),
    Column("pip_freeze", JSON),
    Column("os", Text),
    Column("executable", Text),
    Column("hostname", Text),
    Column("cpu_count", Integer),
    Column("libraries", JSON),  # numpy, torch, jax, tensorflow, cirq versions when installed
    Column("note", Text),
    Column("attempt", Integer),
    Column("timestamp", Float),
)
Index("ix_environment_run", environment.c.run_id)

artifact = Table(
    "artifact",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("type", Text),
    Column("path", Text, nullable=False),  # relative to the store directory
    Column("size", Int64),
    Column("sha256", String(64)),
    Column("timestamp", Float),
    Column("links", JSON),  # of a directory: relative path -> target text of each symbolic link (not copied)
    UniqueConstraint("run_id", "name", name="uq_artifact_run_name"),
)

#: What a run logged to look at (media.py): images, figures, tables, texts and histograms, one row per call
#: (`SELECT * FROM media WHERE run_id = ? AND key = ? ORDER BY step`). A histogram has no file: its bins are
#: the `histogram` table's rows, its summary (value_min, value_max, value_count, nonfinite; n_rows: its
#: number of bins) is here.
media = Table(
    "media",
    metadata,
    Column("id", Int64, primary_key=True),
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("step", Int64),  # NULL: logged without a step
    Column("kind", Text, nullable=False),  # image, figure, table, text, histogram
    Column("path", Text),  # relative to the store directory; NULL for a histogram
    Column("format", Text),  # png, plotly.json, parquet, csv, txt
    Column("size", Int64),
    Column("sha256", String(64)),
    Column("width", Integer),
    Column("height", Integer),
    Column("caption", Text),
    Column("n_rows", Int64),
    Column("n_cols", Integer),
    Column("columns", JSON(none_as_null=True)),  # a table's column names
    Column(
        "files", JSON(none_as_null=True)
    ),  # more files of the record: [{path, format, size, sha256}] (a figure's SVG)
    Column("value_min", Float),
    Column("value_max", Float),
    Column("value_count", Int64),
    Column("nonfinite", Int64),  # a histogram's NaN and +-inf values, dropped before counting
    Column("attempt", Integer),
    Column("timestamp", Float),
)
Index("ix_media_run_key_step", media.c.run_id, media.c.key, media.c.step)

#: A histogram's bins, one row each: `[lower, upper)` (the last bin includes `upper`) held `count` values.
histogram = Table(
    "histogram",
    metadata,
    Column("id", Int64, primary_key=True),
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("step", Int64),
    Column("bin", Integer, nullable=False),  # 0, 1, ...
    Column("lower", Float, nullable=False),
    Column("upper", Float, nullable=False),
    Column("count", Int64, nullable=False),
    Column("timestamp", Float),
)
Index("ix_histogram_run_key_step", histogram.c.run_id, histogram.c.key, histogram.c.step)

log_segment = Table(
    "log_segment",
    metadata,
    Column("path", Text, primary_key=True),  # relative to the store directory
    Column("run_id", String(32), nullable=False),
    Column("offset", Int64, nullable=False),  # bytes folded so far
    Column("events", Int64, nullable=False),  # events folded so far
    # From the header: who writes it (see life.py) and which life of the run it belongs to.
    Column("attempt", Integer),
    Column("host", Text),
    Column("pid", Integer),
    Column("boot_id", Text),
    Column("started", Int64),
    Column("heartbeat", Float),
    Column("last_time", Float),  # time of its newest folded line
    Column("closed", Boolean),  # its writer ended cleanly
    Column("annotation", Boolean),  # edits made after the fact (events.Header.annotation): not a life
    Column("rank", Integer),  # its writer's global rank in a distributed job (events.Header.rank)
)

log_problem = Table(
    "log_problem",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("segment", Text, nullable=False),
    Column("offset", Int64, nullable=False),
    Column("kind", Text, nullable=False),
    Column("detail", Text),
    UniqueConstraint("segment", "offset", name="uq_log_problem_place"),
)

meta = Table(
    "alexandria_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text),
)

#: Tables a user queries, in an order that respects foreign keys.
USER_TABLES = (
    "run",
    "lifecycle",
    "parameter",
    "metric",
    "metric_summary",
    "tag",
    "dataset",
    "code",
    "environment",
    "artifact",
    "media",
    "histogram",
    "tag_state",
    "run_edit",
)
