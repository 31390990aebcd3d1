"""What the MLflow tests share: running a script under real MLflow or `alexandria.mlflow`, and reading back
what either recorded in one shape, keyed by run name, to compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from alexandria import Reader
from alexandria.store import Store
from tests.conftest import child_env, skip_outside_ci


def require(*modules: str) -> None:
    """Skip (fail under CI) a test whose third-party package is missing: mlflow brings the others."""
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            skip_outside_ci(f"the MLflow tests need {module} (pip install -e '.[test]')")


@pytest.fixture(autouse=True)
def needs_mlflow() -> None:
    require("mlflow")


#: MLflow 3 refuses to open an mlruns/ folder unless told to: the tests write and read old-style stores too.
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

#: MLflow's own tags, which it sets by itself (user, source file, ...): not compared.
SYSTEM_TAGS = ("mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit")


def run_script(body: str, cwd: Path, *, ours: bool, tracking: str, timeout: float = 240) -> Any:
    """Run an MLflow script in a process of its own, with `import mlflow` or `import alexandria.mlflow as
    mlflow`; it gets its tracking URI as $TRACKING and prints one JSON line last, which is returned."""
    header = "import alexandria.mlflow as mlflow\n" if ours else "import mlflow\n"
    code = header + textwrap.dedent(body)
    env = child_env(TRACKING=tracking, MLFLOW_TRACKING_URI="", GIT_PYTHON_REFRESH="quiet")
    env.pop("MLFLOW_TRACKING_URI")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{'ours' if ours else 'mlflow'} failed:\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("{", "["))]
    return json.loads(lines[-1]) if lines else None


def _tree(root: Path) -> dict[str, bytes]:
    if root.is_file():
        return {root.name: root.read_bytes()}
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


def recorded_by_mlflow(tracking_uri: str) -> dict[str, dict[str, Any]]:
    """Per run name, what MLflow recorded, read through its own client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    out: dict[str, dict[str, Any]] = {}
    names = {}
    exps = {e.experiment_id: e.name for e in client.search_experiments()}
    runs = client.search_runs(list(exps), max_results=1000)
    for r in runs:
        names[r.info.run_id] = r.info.run_name
    for r in runs:
        metrics = {
            key: sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(r.info.run_id, key))
            for key in r.data.metrics
        }
        with tempfile.TemporaryDirectory() as tmp:
            client.download_artifacts(r.info.run_id, "", tmp)
            artifacts = _tree(Path(tmp))
        tags = {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")}
        out[r.info.run_name] = {
            "experiment": exps[r.info.experiment_id],
            "status": r.info.status,
            "params": dict(r.data.params),
            "metrics": metrics,
            "tags": tags,
            "note": r.data.tags.get("mlflow.note.content"),
            "parent": names.get(r.data.tags.get("mlflow.parentRunId", "")),
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
            "artifacts": artifacts,
        }
    return out


_STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED", "running": "RUNNING"}


def recorded_by_us(store_root: Path) -> dict[str, dict[str, Any]]:
    """Per run name, what Alexandria recorded, read through the Reader and SQL."""
    store = Store.open(store_root)
    out: dict[str, dict[str, Any]] = {}
    with Reader(store) as reader:
        runs = reader.runs(deleted=None)
        names = {r["id"]: r["name"] for r in runs}
        for r in runs:
            rid = r["id"]
            _, rows = reader.sql(f"SELECT key, step, value, timestamp FROM metric WHERE run_id = '{rid}'")
            metrics: dict[str, list[Any]] = {}
            for key, step, value, ts in rows:
                metrics.setdefault(key, []).append((step, value, int(round(ts * 1000))))
            _, params = reader.sql(f"SELECT key, value FROM parameter WHERE run_id = '{rid}'")
            _, tags = reader.sql(f"SELECT key, value FROM tag WHERE run_id = '{rid}'")
            _, arts = reader.sql(f"SELECT name, path FROM artifact WHERE run_id = '{rid}'")
            artifacts: dict[str, bytes] = {}
            for name, path in arts:
                for rel, data in _tree(store.root / path).items():
                    artifacts[name if (store.root / path).is_file() else f"{name}/{rel}"] = data
            out[r["name"]] = {
                "experiment": r["experiment_name"],
                "status": _STATUS[r["status"]],
                "params": dict(params),
                "metrics": {k: sorted(v) for k, v in metrics.items()},
                "tags": {k: v for k, v in tags if not k.startswith("mlflow.")},
                "note": r["note"],
                "parent": names.get(r["parent_id"]),
                "start_time": int(round(r["timestamp_start"] * 1000)),
                "end_time": None if r["timestamp_end"] is None else int(round(r["timestamp_end"] * 1000)),
                "artifacts": artifacts,
            }
    return out
