"""The SQL tables, defined once (SQLAlchemy Core) for every backend.

Seed tables and columns (never dropped or renamed): run, parameter, metric,
dataset, code, environment, artifact. Added for users: run.status/error,
timestamps on parameter/metric/artifact, artifact size and sha256, a `tag`
table that run.tags (JSON) is kept in step with. Bookkeeping of the
projection: log_segment (read position of every segment, committed with the
rows), log_problem (corrupt or unknown lines, with file and byte offset) and
alexandria_meta (schema version).

Timestamps are unix seconds (REAL). A NaN metric value is stored as NULL
(SQLite cannot hold NaN); +-inf are stored as they are.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
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
)

#: Bump when any table changes: databases of another version are rebuilt from the logs.
SCHEMA_VERSION = 1

metadata = MetaData()

run = Table(
    "run",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment_name", Text),
    Column("timestamp_start", Float),
    Column("timestamp_end", Float),
    Column("tags", JSON),
    Column("status", Text),
    Column("error", Text),
)
Index("ix_run_experiment_start", run.c.experiment_name, run.c.timestamp_start)
Index("ix_run_start", run.c.timestamp_start)

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

metric = Table(
    "metric",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("value", Float),  # NULL means NaN
    Column("step", Integer),
    Column("timestamp", Float),
)
#: The big index, created after a rebuild has loaded the rows.
metric_index = Index("ix_metric_run_key_step", metric.c.run_id, metric.c.key, metric.c.step)

tag = Table(
    "tag",
    metadata,
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("timestamp", Float),
    PrimaryKeyConstraint("run_id", "key", name="pk_tag"),
)

dataset = Table(
    "dataset",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(32), ForeignKey("run.id"), nullable=False),
    Column("name", Text),
    Column("path", Text),
    Column("num_rows", Integer),
    Column("num_columns", Integer),
    Column("schema", JSON),
    Column("hash", String(64)),
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
    Column("size", Integer),
    Column("sha256", String(64)),
    Column("timestamp", Float),
    UniqueConstraint("run_id", "name", name="uq_artifact_run_name"),
)

log_segment = Table(
    "log_segment",
    metadata,
    Column("path", Text, primary_key=True),  # relative to the store directory
    Column("run_id", String(32), nullable=False),
    Column("offset", Integer, nullable=False),  # bytes folded so far
    Column("events", Integer, nullable=False),  # events folded so far
)

log_problem = Table(
    "log_problem",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("segment", Text, nullable=False),
    Column("offset", Integer, nullable=False),
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
USER_TABLES = ("run", "parameter", "metric", "tag", "dataset", "code", "environment", "artifact")
