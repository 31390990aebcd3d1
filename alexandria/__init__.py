"""Alexandria: an experiment tracker that never slows training down, never loses
what was logged, and answers every question in plain SQL.

    import alexandria
    with alexandria.start_run(experiment="mnist") as run:
        run.log_param("lr", 0.01)
        run.log_metric("loss", 0.5, step=0)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    AlexandriaError,
    InvalidInputError,
    NoActiveRunError,
    ParamConflictError,
    QueryError,
    ReadOnlyError,
    RunEndedError,
    RunNotFoundError,
    StoreError,
    UnsafePathError,
    WriterError,
)
from .tracking import (  # noqa: E402
    Run,
    active_run,
    end_run,
    flush,
    log_artifact,
    log_dataset,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    set_tag,
    set_tags,
    start_run,
)
from .values import param_to_str  # noqa: E402

__all__ = [
    "AlexandriaError",
    "InvalidInputError",
    "NoActiveRunError",
    "ParamConflictError",
    "QueryError",
    "Reader",
    "ReadOnlyError",
    "Run",
    "RunEndedError",
    "RunNotFoundError",
    "StoreError",
    "UnsafePathError",
    "WriterError",
    "__version__",
    "active_run",
    "end_run",
    "flush",
    "log_artifact",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "param_to_str",
    "set_tag",
    "set_tags",
    "start_run",
]


def __getattr__(name: str) -> object:
    """`alexandria.Reader` is imported on first use: training code that only logs never loads SQLAlchemy."""
    if name == "Reader":
        from .query import Reader

        return Reader
    raise AttributeError(f"module 'alexandria' has no attribute {name!r}")
