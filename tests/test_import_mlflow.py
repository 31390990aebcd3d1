"""`alex import mlflow`: stores written by the real MLflow (the scripts of test_mlflow_compat: steps, explicit
timestamps, nested runs, a failed run, notes, artifacts) imported, then read back: every point with its step
and time, each run's times, status, name, params, tags, parent and artifacts equal what MLflow's own client
reads; a second import adds nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import alex, child_env
from tests.mlflow_common import needs_mlflow, recorded_by_mlflow, recorded_by_us, require, run_script
from tests.test_mlflow_compat import ARTIFACTS, QUICKSTART, SEARCH, SWEEP

__all__ = ["needs_mlflow"]  # the autouse fixture, imported to apply here

_LOGS = (QUICKSTART, SWEEP, SEARCH, ARTIFACTS)


@pytest.fixture(scope="module")
def mlflow_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    """Two stores the real MLflow wrote with the same scripts: a SQLite database and an mlruns/ folder."""
    require("mlflow")
    out = {}
    for kind in ("sqlite", "folder"):
        where = tmp_path_factory.mktemp(f"mlflow-{kind}")
        uri = f"sqlite:///{where / 'mlflow.db'}" if kind == "sqlite" else (where / "mlruns").as_uri()
        for script in _LOGS:
            run_script(script, where, ours=False, tracking=uri)
        given = uri if kind == "sqlite" else str(where / "mlruns")  # a folder is named by its path
        out[kind] = (given, where)
    return out


def _count(store: Path) -> tuple[int, ...]:
    from alexandria import Reader

    with Reader(store) as reader:
        return tuple(
            reader.sql(f"SELECT count(*) FROM {table}")[1][0][0]
            for table in ("run", "metric", "parameter", "tag", "artifact", "lifecycle")
        )


@pytest.mark.parametrize("kind", ["sqlite", "folder"])
def test_import_keeps_every_point_time_and_field(
    mlflow_stores: dict[str, tuple[str, Path]], tmp_path: Path, kind: str
) -> None:
    uri, where = mlflow_stores[kind]
    source = recorded_by_mlflow(uri if kind == "sqlite" else Path(uri).as_uri())
    store = tmp_path / "store"
    proc = alex("--store", str(store), "import", "mlflow", uri, timeout=300)
    assert proc.returncode == 0, proc.stderr
    points = sum(len(p) for run in source.values() for p in run["metrics"].values())
    files = sum(len(run["artifacts"]) for run in source.values())
    assert f"imported {len(source)} run(s): {points} point(s)" in proc.stdout
    assert f"{files} artifact(s)" in proc.stdout
    imported = recorded_by_us(store)
    assert imported == source  # times in milliseconds, exactly: start, end and every point
    assert imported["broken"]["status"] == "FAILED" and imported["bad"]["status"] == "KILLED"
    assert [imported[f"trial-{i}"]["parent"] for i in range(3)] == ["search"] * 3
    assert imported["baseline"]["note"] == "first *try*"
    assert imported["baseline"]["metrics"]["loss"][:2] == [(0, 1.0, 1700000000000), (1, 0.5, 1700000001000)]

    before = _count(store)
    again = alex("--store", str(store), "import", "mlflow", uri, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "imported 0 run(s): 0 point(s)" in again.stdout
    assert f"already imported, skipped: {len(source)} run(s)" in again.stdout
    assert "did not finish" not in again.stdout  # runs that failed in MLflow were imported whole all the same
    assert _count(store) == before


def test_run_ids_are_stable_across_stores_and_paths(mlflow_stores: dict[str, tuple[str, Path]], tmp_path: Path) -> None:
    """The same MLflow store named by another path (relative, file: URI) gives the same run ids."""
    from alexandria import Reader

    uri, where = mlflow_stores["folder"]
    ids = []
    for n, given in enumerate([uri, (where / "mlruns").as_uri(), "mlruns"]):
        store = tmp_path / f"store{n}"
        proc = subprocess.run(  # "mlruns" is relative to the folder the command runs in
            [
                sys.executable,
                "-m",
                "alexandria.cli",
                "--store",
                str(store),
                "import",
                "mlflow",
                "--experiment",
                "sweep",
                given,
            ],
            cwd=where,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        with Reader(store) as reader:
            ids.append(sorted(r["id"] for r in reader.runs()))
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 5  # the sweep's parent, three trials, "broken"


def test_import_of_nothing_readable_fails_with_one_line(tmp_path: Path) -> None:
    proc = alex("--store", str(tmp_path / "store"), "import", "mlflow", str(tmp_path / "missing"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ") and "no MLflow store folder there" in proc.stderr
    proc = alex("--store", str(tmp_path / "store"), "import", "mlflow", f"sqlite:///{tmp_path / 'none.db'}")
    assert proc.returncode == 1 and "no SQLite database there" in proc.stderr


def test_a_run_still_running_in_mlflow_is_skipped_until_it_ends(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_script(
        """
        import os
        mlflow.set_tracking_uri(os.environ["TRACKING"])
        mlflow.set_experiment("live")
        with mlflow.start_run(run_name="done"):
            mlflow.log_metric("x", 1.0)
        mlflow.start_run(run_name="busy")
        mlflow.log_metric("x", 2.0)
        print('{}', flush=True)
        os._exit(0)  # no end_run: MLflow keeps it RUNNING
        """,
        tmp_path,
        ours=False,
        tracking=uri,
    )
    store = tmp_path / "store"
    proc = alex("--store", str(store), "import", "mlflow", uri, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "imported 1 run(s): 1 point(s)" in proc.stdout
    assert "skipped: 1 running run" in proc.stdout
    assert sorted(recorded_by_us(store)) == ["done"]
