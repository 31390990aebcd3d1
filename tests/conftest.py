"""Shared fixtures: a fresh store per test, a throwaway PostgreSQL server, and helpers to run real processes."""

from __future__ import annotations

import dataclasses
import os
import random
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest
from sqlalchemy import Engine, Integer, select

from alexandria.schema import USER_TABLES, relation
from alexandria.store import Store
from tests.pgserver import PostgresServer, PostgresUnavailable, throwaway_postgres

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _projection_in_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their database themselves: an $ALEXANDRIA_DB of the caller's shell is not inherited
    (stores project into their SQLite file unless a test gives a URL)."""
    monkeypatch.delenv("ALEXANDRIA_DB", raising=False)


@pytest.fixture(autouse=True)
def _system_metrics_never_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests' runs start, fork and stop their system metrics sampler as users' runs do, but its first sample
    is due after an hour: a test that counts a run's metrics counts its own, however slow the machine.
    tests/test_system_metrics.py gives its runs a short interval."""
    monkeypatch.delenv("ALEXANDRIA_SYSTEM_METRICS", raising=False)
    monkeypatch.setenv("ALEXANDRIA_SYSTEM_METRICS_INTERVAL", "3600")


# -- PostgreSQL: a throwaway server for the session, a fresh database per test ---------------------------------
def skip_outside_ci(reason: str) -> NoReturn:
    """Skip a test this machine lacks the means for, with the reason; under CI=true fail instead: CI
    installs what every test needs, so a skip there would hide a feature nobody checked."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run this test)")
    pytest.skip(reason)


FRAMEWORKS_ENV = "ALEXANDRIA_FRAMEWORK_TESTS"


def need_framework(module: str) -> Any:
    """Import a training framework (torch, lightning, transformers, keras) for a test of its integration.

    The frameworks weigh gigabytes with torch, so the README's test line does not install them: their
    tests are skipped there, with the reason, and .ci/run runs tests/frameworks/ in a second environment
    that has them and sets $ALEXANDRIA_FRAMEWORK_TESTS=1, where a missing framework fails the test."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get(FRAMEWORKS_ENV) == "1":
            pytest.fail(f"{module} is not installed in the frameworks environment: {exc}")
        pytest.skip(  # called at a test module's top, it skips the module
            f"{module} is not installed: the framework tests run in their own environment "
            "(pip install torch==2.13.0 -e '.[test,frameworks]'; .ci/run does it)",
            allow_module_level=True,
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own for the test session (see tests/pgserver.py). Without the binaries or
    psycopg the PostgreSQL tests are skipped, with the reason; under CI=true that fails the run instead
    (.ci/postgres.sh installs the server)."""
    try:
        with throwaway_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        skip_outside_ci(f"PostgreSQL tests cannot run: {exc}")


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server (its URL); dropped after the test."""
    import psycopg

    name = f"test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield postgres_server.url(name)
    finally:
        with psycopg.connect(postgres_server.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- the backends: one fixture, every database --------------------------------------------------------------
#: The databases a store's projection can live in: each name, and the fixture giving the URL of a fresh,
#: empty database of it (None: the store's own SQLite file). A new backend is one more entry here.
BACKENDS: dict[str, str | None] = {"sqlite": None, "postgresql": "postgres_url"}

#: Marks a test (or, as `pytestmark`, a module) to run once per backend: its `store` projects into each.
every_backend = pytest.mark.every_backend


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "every_backend: run once per database in BACKENDS (the `store` fixture)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `every_backend`, and those taking `backend_store`, run once per backend."""
    marked = metafunc.definition.get_closest_marker("every_backend") is not None
    if "backend" in metafunc.fixturenames and (marked or "backend_store" in metafunc.fixturenames):
        metafunc.parametrize("backend", list(BACKENDS), indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database the test's store projects into: "sqlite" unless the test runs on every backend."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, backend: str) -> Store:
    """An empty store; also the process's default store, so spawned children find it. On a backend other
    than SQLite, its projection is a fresh database of that backend (`Store.db_url`, and $ALEXANDRIA_DB for
    the children; skipped with the reason where that backend cannot run, failed under CI=true)."""
    st = Store.open(tmp_path / "store")
    monkeypatch.setenv("ALEXANDRIA_STORE", str(st.root))
    monkeypatch.delenv("ALEXANDRIA_RUN_ID", raising=False)
    url_fixture = BACKENDS[backend]
    if url_fixture is not None:
        url = request.getfixturevalue(url_fixture)
        monkeypatch.setenv("ALEXANDRIA_DB", url)
        st = dataclasses.replace(st, db_url=url)
    return st


@pytest.fixture
def backend_store(store: Store) -> Store:
    """The `store` fixture with its projection on each backend in turn (BACKENDS)."""
    return store


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


def query(store: Store, sql: str) -> list[tuple[object, ...]]:
    """Fold what is new, then run one SQL statement on the store's database."""
    from alexandria.db import open_database

    engine = open_database(store)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def table_rows(engine: Engine, name: str) -> list[tuple[Any, ...]]:
    """A table's rows as Python values (JSON decoded, booleans as bool) without its surrogate integer id,
    sorted: what "row for row" compares, the same on SQLite and PostgreSQL for the same logs."""
    table = relation(name)
    cols = [c for c in table.columns if not (c.name == "id" and isinstance(c.type, Integer))]
    with engine.connect() as conn:
        found = conn.execute(select(*cols)).all()
    return sorted((tuple(r) for r in found), key=repr)


def snapshot(engine: Engine, tables: tuple[str, ...] = USER_TABLES) -> dict[str, list[tuple[Any, ...]]]:
    return {t: table_rows(engine, t) for t in tables}


def rebuilt_snapshot(
    store: Store, tables: tuple[str, ...] = USER_TABLES, **kwargs: Any
) -> dict[str, list[tuple[Any, ...]]]:
    """`rebuild` into the same store (kwargs go to `rebuild`), then the tables it produced."""
    from alexandria.db import open_database
    from alexandria.rebuild import rebuild

    rebuild(store, **kwargs)
    engine = open_database(store, catch_up=False)
    try:
        return snapshot(engine, tables)
    finally:
        engine.dispose()


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    """Plain SQL that reads the same on both backends ("offset" is quoted: a reserved word in PostgreSQL;
    no parameters, so that a % is just a %)."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execution_options(no_parameters=True).exec_driver_sql(sql)]


def scalar(engine: Engine, sql: str) -> Any:
    return rows(engine, sql)[0][0]


def make_seed() -> int:
    """A random seed for a randomized test, printed so that a failure can be replayed."""
    seed = int(os.environ.get("ALEXANDRIA_TEST_SEED") or random.randrange(2**32))
    print(f"random seed: {seed} (ALEXANDRIA_TEST_SEED={seed} replays it)")
    return seed


def in_a_futex_wait(pid: int) -> bool:
    """Whether the process's main thread sleeps in the kernel's futex wait (Linux: /proc's wchan): how a test
    knows a child is inside a native wait (pthread_join, a gloo collective) before it sends a signal."""
    try:
        return Path(f"/proc/{pid}/task/{pid}/wchan").read_text().startswith("futex")
    except OSError:
        return False


def wait_until(check: Callable[[], T], *, timeout: float = 90.0, what: str = "a condition", every: float = 0.05) -> T:
    """Poll `check` until it returns something truthy (which is returned); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def complete_lines(path: Path) -> list[tuple[int, bytes]]:
    """A segment's complete lines as they are on disk: (byte offset, line without its newline), header first.

    Parsed here independently of the library: a last line without its newline is not included."""
    data = path.read_bytes()
    lines = []
    pos = 0
    while (nl := data.find(b"\n", pos)) != -1:
        lines.append((pos, data[pos:nl]))
        pos = nl + 1
    return lines
