"""`alex import mlflow URI`: the runs of an MLflow store (`sqlite:///mlflow.db`, an `mlruns/` folder or its
`file:` URI, or any tracking URI MLflow's client reads) copied into a store with everything they hold.

Read through MLflow's own client (`mlflow.tracking.MlflowClient`, imported only here): each run keeps its
experiment, name, note (`mlflow.note.content`), tags, params, status, start and end times, every metric point
with its step and wall-clock time (milliseconds become seconds), its artifacts (copied) and its parent
(`mlflow.parentRunId`). A run's id is derived from the store and its MLflow id (`stable_run_id`), so a second
import skips what the first wrote. Runs still RUNNING in MLflow, and deleted runs and experiments, are not
imported (an import after they ended brings them).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import ImportSourceError, InvalidInputError
from ..events import RunEdited
from ..life import ENDED
from ..rebuild import ProgressFactory
from ..store import Store
from . import ImportSummary, already_imported, require_module, stable_run_id, start_imported_run

_log = logging.getLogger(__name__)

#: MLflow's statuses of an ended run, and ours.
_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
#: MLflow tags that are a run's fields here, not tags.
_FIELD_TAGS = ("mlflow.runName", "mlflow.note.content", "mlflow.parentRunId")
_PAGE = 1000


def source_uri(uri: str) -> str:
    """The tracking URI MLflow's client is given, and the one the run ids derive from: a local store is named
    by its absolute path (`sqlite:////abs/mlflow.db`, `file:///abs/mlruns`), whatever path reached it."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        raw = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        path = Path(unquote(raw))
        if not raw or not path.is_file():
            raise ImportSourceError(f"{uri!r}: no SQLite database there; give sqlite:///path/to/mlflow.db")
        return "sqlite:///" + str(path.resolve())
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
        if not path.is_dir():
            raise ImportSourceError(
                f"{uri!r}: no MLflow store folder there (an mlruns/ folder, or sqlite:///mlflow.db)"
            )
        # MLflow 3 opens a folder store only when told to: reading one out of it is what an import is for.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return path.resolve().as_uri()
    return uri


def import_mlflow(
    uri: str,
    store: Store,
    *,
    experiments: list[str] | None = None,
    progress: ProgressFactory | None = None,
) -> ImportSummary:
    """Import every ended, active run of the MLflow store at `uri` (of `experiments`, names, if given)."""
    tracking = require_module("mlflow.tracking", "mlflow")
    entities = require_module("mlflow.entities", "mlflow")
    source = source_uri(uri)
    client = tracking.MlflowClient(tracking_uri=source)
    view = entities.ViewType.ACTIVE_ONLY
    try:
        found = client.search_experiments(view_type=view)
    except Exception as exc:  # MLflow raises its own exception types, and OSError, for a store it cannot read
        raise ImportSourceError(f"MLflow cannot read {uri!r}: {exc}") from exc
    chosen = {e.experiment_id: e.name for e in found if experiments is None or e.name in experiments}
    if experiments is not None:
        missing = sorted(set(experiments) - set(chosen.values()))
        if missing:
            raise ImportSourceError(f"{uri!r} has no experiment {missing[0]!r}; it has {sorted(e.name for e in found)}")
    runs = _all_runs(client, list(chosen), view)
    ids = {r.info.run_id: stable_run_id("mlflow", source, r.info.run_id) for r in runs}
    summary = ImportSummary()
    advance = progress(len(runs)) if progress else None
    for r in _parents_first(runs):
        _import_run(client, store, r, chosen[r.info.experiment_id], ids, summary)
        if advance:
            advance(1)
    return summary


def _all_runs(client: Any, experiment_ids: list[str], view: Any) -> list[Any]:
    runs: list[Any] = []
    if not experiment_ids:
        return runs
    token = None
    while True:
        page = client.search_runs(
            experiment_ids,
            run_view_type=view,
            max_results=_PAGE,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _parents_first(runs: list[Any]) -> list[Any]:
    """Runs ordered so that a parent comes before its children (then by start time)."""
    by_id = {r.info.run_id: r for r in runs}
    done: set[str] = set()
    out: list[Any] = []

    def visit(r: Any, seen: frozenset[str]) -> None:
        rid = r.info.run_id
        if rid in done:
            return
        parent = r.data.tags.get("mlflow.parentRunId")
        if parent in by_id and parent not in seen:
            visit(by_id[parent], seen | {rid})
        done.add(rid)
        out.append(r)

    for r in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
        visit(r, frozenset())
    return out


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0


def _import_run(
    client: Any, store: Store, r: Any, experiment: str, ids: dict[str, str], summary: ImportSummary
) -> None:
    info, data = r.info, r.data
    our_id = ids[info.run_id]
    label = f"{experiment}/{info.run_name or info.run_id}"
    previous = already_imported(store, our_id)
    if previous is not None:
        # A run's end is written last, so any end (an MLflow run may have failed or been killed) means the
        # earlier import of it completed; running or crashed means it was stopped midway.
        summary.already_there[label] = "finished" if previous in ENDED else previous
        return
    status = _STATUS.get(info.status)
    if status is None:
        summary.skip("running run", reason="runs still RUNNING in MLflow are imported once they end")
        return
    tags = {k: v for k, v in data.tags.items() if k not in _FIELD_TAGS}
    name = info.run_name or data.tags.get("mlflow.runName")
    try:
        from ..names import check_name

        name = check_name(name) if name else None
    except InvalidInputError:
        tags["mlflow.runName"] = name
        name = None
    parent = data.tags.get("mlflow.parentRunId")
    run = start_imported_run(
        store,
        our_id,
        experiment,
        name=name,
        start_time=_seconds(info.start_time),
        tags=tags,
        parent_id=ids.get(parent) if parent else None,
    )
    if run is None:  # another import of the same run, under way
        summary.already_there[label] = "running"
        return
    note = data.tags.get("mlflow.note.content")
    if note:
        run._put(RunEdited(note=note, time=_seconds(info.start_time) or 0.0))
    run.log_params(data.params)
    for key in sorted(data.metrics):
        for point in client.get_metric_history(info.run_id, key):
            run.log_metric(key, point.value, point.step, timestamp=point.timestamp / 1000.0)
            summary.points += 1
    summary.artifacts += _copy_artifacts(client, run, info.run_id)
    summary.params += len(data.params)
    summary.tags += len(tags)
    end = _seconds(info.end_time)
    run.end(status, end_time=end if end is not None else None)
    summary.imported.append(label)


def _copy_artifacts(client: Any, run: Any, source_id: str) -> int:
    """Download the run's artifacts and log each top-level entry (a file, or a directory with its tree);
    returns how many files came along."""
    entries = client.list_artifacts(source_id)
    if not entries:
        return 0
    count = 0
    with tempfile.TemporaryDirectory(prefix="alexandria-mlflow-") as tmp:
        for entry in entries:
            local = Path(client.download_artifacts(source_id, entry.path, tmp))
            run.log_artifact(local, name=Path(entry.path).name)
            count += _files_in(local)
    return count


def _files_in(path: Path, walk: Callable[..., Any] = os.walk) -> int:
    if not path.is_dir():
        return 1
    return sum(len(files) for _, _, files in walk(path))
