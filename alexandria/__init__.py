"""Alexandria: an experiment tracker that never slows training down, never loses
what was logged, and answers every question in plain SQL.

    import alexandria
    with alexandria.start_run(experiment="mnist") as run:
        run.log_param("lr", 0.01)
        run.log_metric("loss", 0.5, step=0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use (`_LAZY`)
    from .edits import delete_runs, edit_experiment, edit_run, restore_runs
    from .query import Reader
    from .tracking import (
        Run,
        active_run,
        end_run,
        flush,
        log_artifact,
        log_dataset,
        log_figure,
        log_histogram,
        log_image,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        log_table,
        log_text,
        set_tag,
        set_tags,
        start_run,
    )
    from .values import param_to_str

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
    "delete_runs",
    "edit_experiment",
    "edit_run",
    "end_run",
    "flush",
    "log_artifact",
    "log_dataset",
    "log_figure",
    "log_histogram",
    "log_image",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "param_to_str",
    "restore_runs",
    "set_tag",
    "set_tags",
    "start_run",
]


#: Names imported on first use, by the module that defines them: `import alexandria` costs only the errors,
#: so `alex --help` starts at once, and training code that only logs never loads the readers (SQLAlchemy).
_LAZY = {
    **dict.fromkeys(
        (
            "Run",
            "active_run",
            "end_run",
            "flush",
            "log_artifact",
            "log_dataset",
            "log_figure",
            "log_histogram",
            "log_image",
            "log_metric",
            "log_metrics",
            "log_param",
            "log_params",
            "log_table",
            "log_text",
            "set_tag",
            "set_tags",
            "start_run",
        ),
        "tracking",
    ),
    "param_to_str": "values",
    "Reader": "query",
    "edit_run": "edits",
    "delete_runs": "edits",
    "restore_runs": "edits",
    "edit_experiment": "edits",
}


def __getattr__(name: str) -> object:
    """`alexandria.start_run`, `alexandria.Reader`, ... are imported on first use (see `_LAZY`)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'alexandria' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # found directly from now on: `alexandria.log_metric` costs no lookup through here
    return value
