"""Shared fixtures: a fresh store per test, and helpers to run real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import Engine

from alexandria.store import Store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """An empty store; also the process's default store, so spawned children find it."""
    st = Store.open(tmp_path / "store")
    monkeypatch.setenv("ALEXANDRIA_STORE", str(st.root))
    monkeypatch.delenv("ALEXANDRIA_RUN_ID", raising=False)
    return st


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ALEXANDRIA_RUN_ID",)}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def python(code: str, *args: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen[bytes]:
    """Start `python -c code args...` as a real process (not waited for)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env or child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,  # type: ignore[arg-type]
    )


def run_python(code: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    """Run `python -c code args...` to completion; fail the test with its stderr if it fails."""
    proc = python(code, *args, env=env)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err.decode()}"
    return out.decode()


def alex(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `alex` command line in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "alexandria.cli", *args],
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def table_rows(engine: Engine, table: str) -> list[tuple[object, ...]]:
    """A table's rows without its surrogate integer id, sorted: what "row for row" compares."""
    with engine.connect() as conn:
        cols = [
            r[1]
            for r in conn.exec_driver_sql(f"PRAGMA table_info({table})")
            if not (r[1] == "id" and r[2] == "INTEGER")
        ]
        rows = conn.exec_driver_sql(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
    return sorted((tuple(r) for r in rows), key=repr)
