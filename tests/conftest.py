"""Shared fixtures: a fresh store per test, a throwaway PostgreSQL server, and helpers to run real processes."""

from __future__ import annotations

import dataclasses
import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import Engine

from alexandria.store import Store

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _projection_in_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their database themselves: an $ALEXANDRIA_DB of the caller's shell is not inherited
    (stores project into their SQLite file unless a test gives a URL)."""
    monkeypatch.delenv("ALEXANDRIA_DB", raising=False)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """An empty store; also the process's default store, so spawned children find it."""
    st = Store.open(tmp_path / "store")
    monkeypatch.setenv("ALEXANDRIA_STORE", str(st.root))
    monkeypatch.delenv("ALEXANDRIA_RUN_ID", raising=False)
    return st


# -- PostgreSQL: a throwaway server for the session, a fresh database per test ---------------------------------
@dataclasses.dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str = "postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


def _postgres_bindir() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/<n>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name or 0))
    dirs = [d for d in dirs if os.access(Path(d) / "initdb", os.X_OK) and os.access(Path(d) / "pg_ctl", os.X_OK)]
    return Path(dirs[-1]) if dirs else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own for the test session: initdb into a temporary directory, trust auth,
    listening on 127.0.0.1 (a free port) and on a unix socket in that directory, no fsync (a test server);
    stopped (`pg_ctl stop -m fast`) and its directory removed afterwards. As root, the server runs as the
    `postgres` user (initdb refuses root). Without the binaries or psycopg the PostgreSQL tests are skipped,
    with the reason; under CI=true that fails the run instead (.ci/postgres.sh installs the server)."""

    def unavailable(reason: str) -> None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL tests cannot run: {reason} (CI must run them)")
        pytest.skip(reason)

    bindir = _postgres_bindir()
    if bindir is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; .ci/postgres.sh installs them")
    assert bindir is not None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed: pip install 'psycopg[binary]'")
    as_user: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="alexpg-"))  # short: a unix socket path is at most 107 bytes
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            shutil.chown(tmp, "postgres")
        except (LookupError, OSError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            unavailable(f"running as root and cannot hand a directory to the `postgres` user: {exc}")
        if runuser is None:
            shutil.rmtree(tmp, ignore_errors=True)
            unavailable("running as root and `runuser` is not found: initdb refuses to run as root")
        as_user = [str(runuser), "-u", "postgres", "--"]

    def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*as_user, *map(str, cmd)], capture_output=True, text=True, timeout=120)

    data = tmp / "data"
    init = run(bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "-N")
    if init.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{init.stdout}{init.stderr}")
    started = None
    for _ in range(5):  # another process may take the free port between the probe and the start
        port = _free_port()
        options = (
            f"-p {port} -h 127.0.0.1 -k {tmp} -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        started = run(bindir / "pg_ctl", "-D", data, "-l", tmp / "server.log", "-w", "-t", "60", "-o", options, "start")
        if started.returncode == 0:
            break
    if started is None or started.returncode != 0:
        log = (tmp / "server.log").read_text(errors="replace") if (tmp / "server.log").exists() else ""
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(f"the PostgreSQL server did not start:\n{started.stderr if started else ''}\n{log}")
    try:
        yield PostgresServer("127.0.0.1", port)
    finally:
        run(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(tmp, ignore_errors=True)


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


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_store(request: pytest.FixtureRequest, store: Store) -> Store:
    """The `store` fixture with its projection on each backend in turn: its SQLite file, then a fresh
    PostgreSQL database (`Store.db_url`; skipped with the reason where there is no PostgreSQL)."""
    if request.param == "sqlite":
        return dataclasses.replace(store, db_url=None)
    return dataclasses.replace(store, db_url=request.getfixturevalue("postgres_url"))


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
    from alexandria.rebuild import open_database

    engine = open_database(store)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


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
