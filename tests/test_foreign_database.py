"""A database Alexandria did not make is never written over: the real command lines refuse it, byte for byte
untouched; only Alexandria's own database (its `alexandria_meta` marker) or an unreadable file with logs to
rebuild it from is replaced."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import alexandria
from alexandria.db import open_database
from alexandria.errors import ForeignDatabaseError, StoreError
from alexandria.rebuild import rebuild
from alexandria.store import Store
from tests.conftest import alex, child_env


def foreign(path: Path) -> str:
    return (
        f"Error: {path} was not made by Alexandria (it holds tables but no alexandria_meta schema version), "
        "so it is left as it is: move it away (Alexandria then builds its own database there from the logs), "
        "or import it (an importer for upstream qex stores is planned)\n"
    )


def upstream_qex_store(root: Path) -> Path:
    """A store database as the upstream qex tool builds it: its own runs and artifacts, with a few rows."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "qex.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY, experiment_name TEXT, params TEXT, backend_name TEXT, timestamp REAL,
            density_matrix_path TEXT, metadata TEXT
        );
        CREATE TABLE artifacts (
            artifact_id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, artifact_name TEXT, artifact_path TEXT,
            artifact_type TEXT
        );
        CREATE INDEX idx_runs_experiment ON runs(experiment_name);
        CREATE INDEX idx_artifacts_run ON artifacts(run_id);
        """
    )
    for i, name in enumerate(["bell", "ghz", "bell"]):
        run_id = f"run{i:04d}"
        db.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, name, json.dumps({"theta": i / 3}), "cirq", 1_700_000_000.0 + i, f"results/{run_id}.npy", "{}"),
        )
        db.execute(
            "INSERT INTO artifacts (run_id, artifact_name, artifact_path, artifact_type) VALUES (?, ?, ?, ?)",
            (run_id, "bloch", f"artifacts/{run_id}_bloch.html", "html"),
        )
    db.commit()
    db.close()
    return path


def qex(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alexandria.qex", *args], env=child_env(), capture_output=True, text=True, timeout=120
    )


def test_an_upstream_qex_store_is_refused_by_every_command_and_left_untouched(tmp_path: Path) -> None:
    root = tmp_path / "qex_data"
    path = upstream_qex_store(root)
    before = path.read_bytes()
    for proc in (
        qex("--store", str(root), "runs"),
        alex("--store", str(root), "runs"),
        alex("--store", str(root), "rebuild"),
    ):
        assert (proc.returncode, proc.stderr) == (1, foreign(path)), proc.args
        assert path.read_bytes() == before
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (3,)
    db.close()


def test_another_programs_sqlite_file_is_refused(store: Store) -> None:
    with alexandria.start_run(experiment="x") as run:
        run.log_metric("loss", 1.0, step=0)
    path = store.db_path
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    db.execute("INSERT INTO notes (body) VALUES ('mine')")
    db.commit()
    db.close()
    before = path.read_bytes()
    for args in (("runs",), ("rebuild",), ("sql", "SELECT 1")):
        proc = alex("--store", str(store.root), *args)
        assert (proc.returncode, proc.stderr) == (1, foreign(path)), args
    with pytest.raises(ForeignDatabaseError):
        open_database(store)
    with pytest.raises(ForeignDatabaseError):
        rebuild(store)
    assert path.read_bytes() == before
    assert not path.with_name(path.name + "-wal").exists()


def test_garbage_with_logs_is_kept_aside_and_rebuilt_without_logs_refused(store: Store) -> None:
    path = store.db_path
    garbage = b"not a database, no SQLite header here " * 200
    path.write_bytes(garbage)
    proc = alex("--store", str(store.root), "runs")  # no logs: nothing to rebuild it from
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"Error: {path} is not a readable database and the store has no logs")
    assert path.read_bytes() == garbage

    with alexandria.start_run(experiment="x") as run:
        run.log_metric("loss", 1.0, step=0)
    proc = alex("--store", str(store.root), "sql", "SELECT count(*) AS n FROM metric", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"n": 1}]
    aside = [p for p in store.root.iterdir() if p.name.startswith("alexandria.db.corrupt-")]
    assert len(aside) == 1 and re.fullmatch(r"alexandria\.db\.corrupt-\d{8}T\d{6}", aside[0].name)
    assert aside[0].read_bytes() == garbage


@pytest.mark.parametrize("content", ["empty file", "no tables"])
def test_an_empty_database_is_ours_to_create_into(store: Store, content: str) -> None:
    if content == "empty file":
        store.db_path.write_bytes(b"")
    else:
        db = sqlite3.connect(store.db_path)
        db.execute("PRAGMA user_version = 7")  # a valid database file holding no table
        db.close()
    with alexandria.start_run(experiment="x") as run:
        run.log_metric("loss", 1.0, step=0)
    proc = alex("--store", str(store.root), "sql", "SELECT count(*) AS n FROM metric", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"n": 1}]


def test_a_postgresql_schema_of_another_program_is_refused(store: Store, postgres_url: str) -> None:
    import dataclasses

    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA alexandria")
        conn.execute("CREATE TABLE alexandria.runs (run_id TEXT PRIMARY KEY)")
        conn.execute("INSERT INTO alexandria.runs VALUES ('theirs')")
    st = dataclasses.replace(store, db_url=postgres_url)
    for attempt in (open_database, rebuild):
        with pytest.raises(ForeignDatabaseError, match="was not made by Alexandria"):
            attempt(st)  # type: ignore[operator]
    proc = alex("--store", str(store.root), "--db", postgres_url, "rebuild")
    assert proc.returncode == 1 and "was not made by Alexandria" in proc.stderr, proc.stderr
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT run_id FROM alexandria.runs").fetchall() == [("theirs",)]
        tables = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'alexandria'")
        assert tables.fetchall() == [("runs",)]
    assert isinstance(ForeignDatabaseError("x"), StoreError)
