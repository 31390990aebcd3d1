"""MLflow's fluent tracking API over Alexandria: `import alexandria.mlflow as mlflow` runs an ordinary MLflow
tracking script unchanged, logging into an Alexandria store.

How MLflow's notions map (README: "MLflow scripts"):

* the tracking URI is a store: a path or a `file:` URI (`set_tracking_uri`); a tracking server
  (`http://`, `databricks`, ...) or a database URI is refused with UnsupportedError. Without one, the store
  is `$ALEXANDRIA_STORE` or the default, as for `alexandria.start_run`; `$MLFLOW_TRACKING_URI` is not read.
* an experiment's id is its name: `set_experiment("mnist").experiment_id == "mnist"`, so ids are stable
  across stores and readable; a run started with no experiment set goes to "Default", as in MLflow.
* params and tags are `str(value)`, as MLflow stores them (`[64, 32]`, not JSON).
* `log_metric(..., step=None)` logs step 0 and `timestamp=` is MLflow's milliseconds, as in MLflow.
* statuses FINISHED, FAILED, KILLED, RUNNING are ours in upper case; a crashed run reads as FAILED.
* the tags `mlflow.runName` and `mlflow.note.content` are the run's name and note (set either way);
  `mlflow.parentRunId` is its parent. They are read back as tags, as MLflow gives them.
* an artifact under `artifact_path="a/b"` lands in the directory artifact `a` at `b/<file>`.

Anything else of MLflow's (models, autolog, the registry, traces, ...) raises UnsupportedError naming it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from .. import tracking
from ..errors import InvalidInputError, RunNotFoundError, UnsupportedError
from ..events import RunEdited
from ..files import copy_atomically, hash_directory
from ..store import Store, make_dirs, refuse_links

DEFAULT_EXPERIMENT = "Default"
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"

#: MLflow's run statuses and ours.
_TO_OURS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
_TO_MLFLOW = {"running": "RUNNING", "finished": "FINISHED", "failed": "FAILED", "killed": "KILLED", "crashed": "FAILED"}

_tracking_store: str | None = None
_experiment: str | None = None
_last_run_id: str | None = None
#: The handle `start_run` returned, per run id: `active_run()` gives the same one back.
_handles: dict[str, ActiveRun] = {}


# -- MLflow's entities ------------------------------------------------------------------
@dataclass
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str = ""
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: str = "active"

    @property
    def run_uuid(self) -> str:
        return self.run_id


@dataclass
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class MlflowRun:
    """What `get_run` returns, shaped like `mlflow.entities.Run`."""

    info: RunInfo
    data: RunData


class ActiveRun:
    """What `start_run` returns: `.info` as MLflow's, a context manager that ends the run (FINISHED, or FAILED
    on an exception, KILLED on Ctrl-C), and the Alexandria handle as `.run`."""

    def __init__(self, run: tracking.Run, start_time: float | None = None) -> None:
        self.run = run
        self._start_time = start_time

    @property
    def info(self) -> RunInfo:
        """The run as it stands: its status read from its log once this handle ended (no database needed);
        `start_time` (ms) as recorded, for a run this handle started (None for one continued by id)."""
        run = self.run
        status = "RUNNING"
        if run._ended:
            from ..life import run_state

            status = _TO_MLFLOW.get(run_state(run.store, run.id).status, "FINISHED")
        return RunInfo(
            run_id=run.id,
            experiment_id=run.experiment or DEFAULT_EXPERIMENT,
            run_name=run.name,
            status=status,
            start_time=_ms(self._start_time),
            end_time=None,
            artifact_uri=run.store.artifact_dir(run.id).as_uri(),
        )

    @property
    def data(self) -> RunData:
        return get_run(self.run.id).data

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.run.__exit__(exc_type, exc, tb)


# -- where runs go ----------------------------------------------------------------------
def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """A store path or a `file:` URI; anything else (a server, a database) is refused."""
    global _tracking_store
    _tracking_store = _store_path(uri)


def get_tracking_uri() -> str:
    return _store().root.as_uri()


def _store_path(uri: str | os.PathLike[str]) -> str:
    text = os.fspath(uri)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # a Windows drive letter is no scheme
        raise UnsupportedError(
            f"mlflow.set_tracking_uri({text!r}): alexandria.mlflow logs into a store folder (a path or a file: URI); "
            "it talks to no tracking server or database. Import an existing MLflow store with `alex import mlflow`"
        )
    return text


def _store() -> Store:
    return Store.open(_tracking_store)


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> Experiment:
    """The experiment later runs go to; its id is its name."""
    global _experiment
    name = experiment_name if experiment_name is not None else experiment_id
    if not isinstance(name, str) or not name:
        raise InvalidInputError("mlflow.set_experiment needs experiment_name= (or experiment_id=, which is the name)")
    _experiment = name
    return Experiment(experiment_id=name, name=name)


def create_experiment(name: str, artifact_location: str | None = None, tags: Mapping[str, Any] | None = None) -> str:
    """Experiments exist through their runs: this only checks the name and returns it (the id)."""
    if not isinstance(name, str) or not name:
        raise InvalidInputError("mlflow.create_experiment needs a non-empty name")
    return name


def get_experiment_by_name(name: str) -> Experiment | None:
    from ..query import Reader

    with Reader(_store()) as reader:
        names = {e["name"] for e in reader.experiments()}
    return Experiment(experiment_id=name, name=name) if name in names else None


def get_experiment(experiment_id: str) -> Experiment:
    found = get_experiment_by_name(experiment_id)
    if found is None:
        raise InvalidInputError(f"no experiment {experiment_id!r} (experiment ids are names in Alexandria)")
    return found


# -- runs -------------------------------------------------------------------------------
def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start a run (or continue `run_id=`) as MLflow does: a second run while one is active needs `nested=True`."""
    global _last_run_id
    active = tracking._active[-1] if tracking._active else None
    if active is not None and not nested and parent_run_id is None:
        raise InvalidInputError(
            f"Run with UUID {active.id} is already active. To start a nested run, call start_run with "
            "nested=True; to start a new one, end the active run first with mlflow.end_run()"
        )
    tags = dict(tags or {})
    run_name = tags.pop(RUN_NAME_TAG, None) if run_name is None else run_name
    note = tags.pop(NOTE_TAG, None) if description is None else description
    tags.pop(PARENT_TAG, None)
    experiment = experiment_id or _experiment or DEFAULT_EXPERIMENT
    started = None
    if run_id is not None:
        run = tracking.start_run(run_id=run_id, tags=tags or None, store=_store(), name=run_name)
    else:
        parent = parent_run_id if parent_run_id is not None else (active.id if nested and active else None)
        started = tracking._ordered_time()  # given, so that info.start_time is the recorded start
        run = tracking.start_run(
            experiment=experiment, tags=tags or None, store=_store(), parent=parent, name=run_name, start_time=started
        )
    if note is not None:
        _set_note(run, note)
    _last_run_id = run.id
    for ended in [rid for rid, h in _handles.items() if h.run._ended]:  # only open runs are kept
        del _handles[ended]
    handle = _handles[run.id] = ActiveRun(run, started)
    return handle


def _set_note(run: tracking.Run, note: Any) -> None:
    run._put(RunEdited(note=str(note), time=tracking._ordered_time()))


def active_run() -> ActiveRun | None:
    run = tracking._active[-1] if tracking._active else None
    if run is None:
        return None
    handle = _handles.get(run.id)
    return handle if handle is not None and handle.run is run else ActiveRun(run)


def last_active_run() -> MlflowRun | None:
    return None if _last_run_id is None else get_run(_last_run_id)


def end_run(status: str = "FINISHED") -> None:
    """End the active run (none active: nothing to do, as in MLflow)."""
    run = tracking._active[-1] if tracking._active else None
    if run is None:
        return
    ours = _TO_OURS.get(str(status).upper())
    if ours is None:
        raise InvalidInputError(f"mlflow.end_run(status={status!r}): say FINISHED, FAILED or KILLED")
    run.end(ours)


def _require_run(run_id: str | None = None) -> tracking.Run:
    if run_id is not None:
        for handle in reversed(tracking._active):
            if handle.id == run_id:
                return handle
        raise UnsupportedError(
            f"logging with run_id={run_id!r} to a run that is not active in this process: "
            "start it with mlflow.start_run(run_id=...) first"
        )
    if tracking._active:
        return tracking._active[-1]
    return start_run().run  # MLflow starts a run on the first logging call


# -- logging ----------------------------------------------------------------------------
def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    _require_run().log_param(key, str(value))
    return value


def log_params(params: Mapping[str, Any], synchronous: bool | None = None, run_id: str | None = None) -> None:
    _require_run(run_id).log_params({k: str(v) for k, v in params.items()})


def _seconds(timestamp: int | None) -> float | None:
    return None if timestamp is None else timestamp / 1000.0


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    synchronous: bool | None = None,
    timestamp: int | None = None,
    run_id: str | None = None,
    **unsupported: Any,
) -> None:
    """One point; `step` defaults to 0 and `timestamp` is milliseconds, as in MLflow."""
    _refuse_extra("log_metric", unsupported)
    _require_run(run_id).log_metric(key, value, 0 if step is None else step, timestamp=_seconds(timestamp))


def log_metrics(
    metrics: Mapping[str, float],
    step: int | None = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
    timestamp: int | None = None,
    **unsupported: Any,
) -> None:
    _refuse_extra("log_metrics", unsupported)
    _require_run(run_id).log_metrics(metrics, 0 if step is None else step, timestamp=_seconds(timestamp))


def _refuse_extra(call: str, extra: Mapping[str, Any]) -> None:
    given = {k: v for k, v in extra.items() if v is not None}
    if given:
        raise UnsupportedError(f"mlflow.{call}({', '.join(given)}=...) is not supported by alexandria.mlflow")


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> None:
    set_tags({key: value})


def set_tags(tags: Mapping[str, Any], synchronous: bool | None = None) -> None:
    run = _require_run()
    rest = {}
    for key, value in tags.items():
        if key == RUN_NAME_TAG:
            run._put(RunEdited(name=str(value), time=tracking._ordered_time()))
            run.name = str(value)
        elif key == NOTE_TAG:
            _set_note(run, value)
        elif key == PARENT_TAG:
            raise UnsupportedError(f"mlflow.set_tag({PARENT_TAG!r}): a run's parent is given at its start (nested=)")
        else:
            rest[key] = str(value)
    run.set_tags(rest)


def log_artifact(
    local_path: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None
) -> None:
    _put_artifact(_require_run(run_id), Path(local_path), artifact_path)


def log_artifacts(
    local_dir: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None
) -> None:
    """Each entry of `local_dir` becomes an artifact (a subdirectory a directory artifact), as MLflow lays them out."""
    run = _require_run(run_id)
    src = Path(local_dir)
    if not src.is_dir():
        raise InvalidInputError(f"mlflow.log_artifacts: {str(src)!r} is not a directory")
    for entry in sorted(src.iterdir()):
        _put_artifact(run, entry, artifact_path)


def _put_artifact(run: tracking.Run, src: Path, artifact_path: str | None) -> None:
    """At the top (no `artifact_path`) an artifact of its own; below `a/b`, copied into the directory artifact
    `a` at `b/<name>`, which is then recorded again with its new hash."""
    if not artifact_path or artifact_path in (".", "/"):
        run.log_artifact(src)
        return
    parts = PurePosixPath(artifact_path.replace("\\", "/")).parts
    if parts[0] == "/" or any(p in ("..", ".", "") for p in parts):
        raise InvalidInputError(f"artifact_path {artifact_path!r} must be a relative path without '..'")
    if not src.exists():
        raise InvalidInputError(f"artifact {str(src)!r} does not exist")
    top = refuse_links(make_dirs(run.store.artifact_dir(run.id)) / parts[0])
    where = make_dirs(top.joinpath(*parts[1:]))
    try:
        copy_atomically(src, refuse_links(where / src.name))
        sha256, size = hash_directory(top)
    except OSError as exc:
        raise InvalidInputError(f"cannot copy artifact {str(src)!r} into the store: {exc}") from exc
    run.record_artifact(top, type="directory", name=parts[0], size=size, sha256=sha256)


@contextmanager
def _staged(artifact_file: str) -> Iterator[Path]:
    """A temporary file named as `artifact_file`'s last part, logged where `artifact_file` says once written."""
    rel = PurePosixPath(artifact_file.replace("\\", "/"))
    if not rel.name:
        raise InvalidInputError(f"artifact_file {artifact_file!r} must name a file")
    run = _require_run()
    with tempfile.TemporaryDirectory(prefix="alexandria-mlflow-") as tmp:
        path = Path(tmp) / rel.name
        yield path
        parent = str(rel.parent)
        _put_artifact(run, path, None if parent == "." else parent)


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    with _staged(artifact_file) as path:
        path.write_text(text, encoding="utf-8")


def log_dict(dictionary: Mapping[str, Any], artifact_file: str, run_id: str | None = None) -> None:
    """YAML for a `.yaml`/`.yml` file (PyYAML), else JSON, written as MLflow writes them."""
    with _staged(artifact_file) as path:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise UnsupportedError(
                    f"mlflow.log_dict({artifact_file!r}) writes YAML, which needs PyYAML (pip install pyyaml); "
                    "or name the file .json"
                ) from None
            path.write_text(yaml.dump(dictionary, indent=2, default_flow_style=False), encoding="utf-8")
        else:
            path.write_text(json.dumps(dictionary, indent=2, default=str), encoding="utf-8")


def log_figure(figure: Any, artifact_file: str, *, save_kwargs: Mapping[str, Any] | None = None) -> None:
    """A matplotlib figure (`savefig`) or a plotly one (HTML loading plotly.js from its CDN for `.html`, else
    `write_image`) as a file artifact, as MLflow saves them."""
    kwargs = dict(save_kwargs or {})
    suffix = PurePosixPath(artifact_file).suffix
    if hasattr(figure, "savefig"):
        save = figure.savefig
    elif hasattr(figure, "write_html") and suffix == ".html":
        kwargs.setdefault("include_plotlyjs", "cdn")
        kwargs.setdefault("auto_open", False)
        save = figure.write_html
    elif hasattr(figure, "write_image") and suffix in (".png", ".jpeg", ".webp", ".svg", ".pdf"):
        save = figure.write_image
    else:
        raise InvalidInputError(
            f"mlflow.log_figure({artifact_file!r}): {type(figure).__name__} is not a matplotlib figure, nor a plotly "
            "figure saved as .html, .png, .jpeg, .webp, .svg or .pdf"
        )
    with _staged(artifact_file) as path:
        save(path, **kwargs)


# -- reading ----------------------------------------------------------------------------
def get_run(run_id: str) -> MlflowRun:
    """A run as MLflow's `Run`: `.info`, and `.data` with params, last metric values and tags."""
    from ..query import Reader, run_metrics, run_params, run_rows

    with Reader(_store()) as reader:
        try:
            (row,) = run_rows(reader.engine, [run_id])
        except RunNotFoundError:
            raise RunNotFoundError(f"mlflow.get_run: no run {run_id!r} in {reader.store.root}") from None
        params = run_params(reader.engine, [run_id])[run_id]
        metrics = {k: s.last_value for k, s in run_metrics(reader.engine, [run_id], extremes=False)[run_id].items()}
        store = reader.store
    return MlflowRun(info=_info(row, store), data=RunData(metrics=metrics, params=params, tags=_tags(row)))


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


def _info(row: Mapping[str, Any], store: Store) -> RunInfo:
    return RunInfo(
        run_id=row["id"],
        experiment_id=row["experiment_name"],
        run_name=row["name"],
        status=_TO_MLFLOW.get(row["status"], str(row["status"]).upper()),
        start_time=_ms(row["timestamp_start"]),
        end_time=_ms(row["timestamp_end"]),
        artifact_uri=store.artifact_dir(row["id"]).as_uri(),
        lifecycle_stage="deleted" if row["deleted"] else "active",
    )


def _tags(row: Mapping[str, Any]) -> dict[str, str]:
    tags = dict(row["tags"] or {})
    if row["name"]:
        tags[RUN_NAME_TAG] = row["name"]
    if row["note"]:
        tags[NOTE_TAG] = row["note"]
    if row["parent_id"]:
        tags[PARENT_TAG] = row["parent_id"]
    return tags


def search_runs(
    experiment_ids: Sequence[str] | None = None,
    filter_string: str = "",
    run_view_type: int | None = None,
    max_results: int | None = None,
    order_by: Sequence[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: Sequence[str] | None = None,
) -> Any:
    """Runs as a pandas DataFrame with MLflow's columns (`run_id`, `experiment_id`, `status`, `artifact_uri`,
    `start_time`, `end_time`, `metrics.x`, `params.y`, `tags.z`), or a list of runs (`output_format="list"`).

    `filter_string` is MLflow's grammar (search.py); without experiments, the experiment set is searched
    (all of them when none is set, or with `search_all_experiments`). Newest first unless `order_by`."""
    from ..query import Reader, run_metrics, run_params
    from .search import search

    if output_format not in ("pandas", "list"):
        raise UnsupportedError(f"mlflow.search_runs(output_format={output_format!r}): say 'pandas' or 'list'")
    names = [*(experiment_ids or ()), *(experiment_names or ())]
    if not names and not search_all_experiments and _experiment is not None:
        names = [_experiment]
    with Reader(_store()) as reader:
        rows = search(reader.engine, names or None, filter_string, order_by or (), max_results, run_view_type)
        ids = [r["id"] for r in rows]
        params = run_params(reader.engine, ids)
        metrics = run_metrics(reader.engine, ids, extremes=False)
        store = reader.store
    runs = [
        MlflowRun(
            info=_info(r, store),
            data=RunData(
                metrics={k: s.last_value for k, s in metrics[r["id"]].items()}, params=params[r["id"]], tags=_tags(r)
            ),
        )
        for r in rows
    ]
    if output_format == "list":
        return runs
    return _frame(runs)


def _frame(runs: list[MlflowRun]) -> Any:
    import pandas as pd

    records = []
    for r in runs:
        record: dict[str, Any] = {
            "run_id": r.info.run_id,
            "experiment_id": r.info.experiment_id,
            "status": r.info.status,
            "artifact_uri": r.info.artifact_uri,
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
        }
        record.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
        record.update({f"params.{k}": v for k, v in r.data.params.items()})
        record.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        records.append(record)
    columns = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    frame = pd.DataFrame.from_records(records, columns=None if records else columns)
    for col in ("start_time", "end_time"):
        frame[col] = pd.to_datetime(frame[col], unit="ms", utc=True)
    return frame


# -- what is not supported ----------------------------------------------------------------
#: MLflow's fluent calls alexandria.mlflow does not offer: each raises UnsupportedError naming itself.
UNSUPPORTED = (
    "autolog",
    "log_model",
    "load_model",
    "register_model",
    "log_input",
    "log_inputs",
    "log_table",
    "load_table",
    "log_image",
    "log_trace",
    "start_span",
    "trace",
    "evaluate",
    "run",
    "delete_run",
    "delete_tag",
    "delete_experiment",
    "set_registry_uri",
    "get_registry_uri",
    "log_outputs",
    "create_external_model",
    "initialize_logged_model",
    "set_active_model",
    "log_model_params",
    "set_system_metrics_node_id",
    "enable_system_metrics_logging",
    "disable_system_metrics_logging",
)

for _name in UNSUPPORTED:

    def _refuse(*args: Any, _call: str = _name, **kwargs: Any) -> Any:
        raise UnsupportedError(
            f"mlflow.{_call}() is not supported by alexandria.mlflow (it tracks params, metrics, tags and "
            "artifacts); run it with MLflow itself, or log the result as an artifact"
        )

    _refuse.__name__ = _name
    globals()[_name] = _refuse
del _name


def __getattr__(name: str) -> Any:
    """A submodule of MLflow's (`mlflow.sklearn`, `mlflow.pytorch`, `mlflow.tracking`, ...) is not offered."""
    if name.startswith("_"):
        raise AttributeError(name)
    raise UnsupportedError(
        f"mlflow.{name} is not supported by alexandria.mlflow (it offers MLflow's fluent tracking calls: "
        "start_run, log_param(s), log_metric(s), set_tag(s), log_artifact(s), log_dict, log_text, log_figure, "
        "get_run, search_runs)"
    )
