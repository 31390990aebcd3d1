"""A store the user cannot use as it is (a full disk, files this user may not write, a lock another process
holds, a PostgreSQL server that refuses the command) gives one typed error and one `Error:` line, never a
driver's traceback: real files, real processes, real permissions, a real server.

Tests may run as root, for whom file modes do not stop writes: the child process then runs without the
capabilities that bypass them (`setpriv`, CAP_DAC_OVERRIDE and friends dropped from its bounding set), so
the kernel checks the files' modes for it as for any user. A full disk is a real one: a tiny tmpfs, mounted
where the test may mount (root), skipped with the reason where it may not."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

import alexandria
from tests.conftest import alex, child_env, skip_outside_ci
from tests.pgserver import PostgresServer, free_port

#: Run a root child as a user whom file modes bind.
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable", "--inh-caps=-all"]


def unprivileged(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python args...` in a child whom the files' modes bind (whoever runs the tests)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            skip_outside_ci("running as root and `setpriv` is not found: file modes cannot bind the child")
        prefix = UNPRIVILEGED
    return subprocess.run(
        [*prefix, sys.executable, *args], env=child_env(), capture_output=True, text=True, timeout=120
    )


def log_a_run(root: Path, experiment: str) -> None:
    # no code capture: a diff of uncommitted changes would be an artifact, and would fill the small disk
    with alexandria.start_run(experiment=experiment, store=root, capture="environment") as run:
        for step in range(50):
            run.log_metric("loss", 1.0 / (step + 1), step=step)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A store folded once, then given a new run, then made read-only: folding it needs a write."""
    root = tmp_path / "store"
    log_a_run(root, "before")
    assert alex("--store", str(root), "runs").returncode == 0  # the database exists, current
    log_a_run(root, "after")
    paths = [root, *root.rglob("*")]
    for path in paths:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        yield root
    finally:
        for path in paths:
            path.chmod(path.stat().st_mode | 0o200)


def test_a_read_command_on_a_read_only_store_is_one_error_line(read_only: Path) -> None:
    db = read_only / "alexandria.db"
    for command in ("runs", "problems"):
        proc = unprivileged("-m", "alexandria.cli", "--store", str(read_only), command)
        assert "Traceback" not in proc.stderr
        assert (proc.returncode, proc.stderr) == (
            1,
            f"Error: cannot use database {db}: the database file or its folder is read-only to this user, "
            "and new log lines must be folded into it; run the command as a user who may write the store "
            "(attempt to write a readonly database)\n",
        )


def test_start_run_on_a_read_only_store_raises_a_typed_error(read_only: Path) -> None:
    code = (
        "import sys, alexandria\n"
        "try:\n"
        "    alexandria.start_run(experiment='e', store=sys.argv[1])\n"
        "except alexandria.AlexandriaError as exc:\n"
        "    print(type(exc).__name__, exc, sep=': ')\n"
    )
    proc = unprivileged("-c", code, str(read_only))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    name, message = proc.stdout.rstrip("\n").split(": ", 1)
    assert name == "StoreError"
    assert message.startswith(f"cannot create a run directory in {read_only / 'runs'}: Permission denied; ")
    assert len(list((read_only / "runs").iterdir())) == 2  # nothing half made


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of 600 KiB (tmpfs), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        skip_outside_ci(f"cannot mount a small tmpfs to fill: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_read_command_on_a_full_disk_is_one_error_line(full_disk: Path) -> None:
    root = full_disk / "store"
    log_a_run(root, "sweep")
    # written until the disk says no
    with open(full_disk / "filler", "wb") as filler, pytest.raises(OSError, match="No space left on device"):  # noqa: PTH123
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()
    proc = alex("--store", str(root), "runs")
    assert "Traceback" not in proc.stderr
    assert (proc.returncode, proc.stderr) == (
        1,
        f"Error: cannot use database {root / 'alexandria.db'}: the disk is full; free space, then run the "
        "command again (database or disk is full)\n",
    )
    (full_disk / "filler").unlink()  # with space again, the same command reads
    proc = alex("--store", str(root), "runs", "--format", "csv")
    assert proc.returncode == 0 and "sweep" in proc.stdout, proc.stderr


HOLD_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive-mode":
    db.execute("PRAGMA locking_mode=EXCLUSIVE")  # readers are locked out too, not only writers
db.execute("BEGIN EXCLUSIVE")
db.execute("SELECT count(*) FROM run").fetchall()
print("locked", flush=True)
sys.stdin.readline()
db.rollback()
"""


@pytest.mark.parametrize("holder", ["write-lock", "exclusive-mode"])
def test_a_lock_held_beyond_the_busy_timeout_is_one_error_line(tmp_path: Path, holder: str) -> None:
    """Another process keeps the SQLite file locked (BEGIN EXCLUSIVE: a fold waits; in exclusive locking
    mode: every reader waits too) for longer than the busy timeout, made short here by
    $ALEXANDRIA_BUSY_TIMEOUT: each read command is one `Error:` line naming the database, then reads again
    once the lock is gone."""
    root = tmp_path / "store"
    log_a_run(root, "sweep")
    assert alex("--store", str(root), "runs").returncode == 0  # the database exists, current
    db = root / "alexandria.db"
    locker = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db), holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert locker.stdin is not None and locker.stdout is not None
    env = child_env(ALEXANDRIA_BUSY_TIMEOUT="0.5")
    try:
        assert locker.stdout.readline() == "locked\n"
        commands = [["runs"], ["sql", "SELECT count(*) FROM run"]] if holder == "exclusive-mode" else [["runs"]]
        for command in commands:
            proc = alex("--store", str(root), *command, env=env, timeout=60)
            assert (proc.returncode, proc.stderr) == (
                1,
                f"Error: cannot use database {db}: the database is locked by another process, which held the lock "
                "longer than the busy timeout (0.5 s, $ALEXANDRIA_BUSY_TIMEOUT); wait for that process to finish "
                "or stop it, then run the command again (database is locked)\n",
            ), command
    finally:
        locker.communicate("\n", timeout=60)
    assert locker.returncode == 0
    proc = alex("--store", str(root), "runs", "--format", "csv", env=env)
    assert proc.returncode == 0 and "sweep" in proc.stdout, proc.stderr


# -- PostgreSQL: a server the command cannot use as it is -------------------------------------------------------
def _admin(server: PostgresServer, *statements: str) -> None:
    import psycopg

    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        for statement in statements:
            admin.execute(statement)


@pytest.fixture
def role(postgres_server: PostgresServer) -> Iterator[str]:
    """A login role of its own (no privilege beyond logging in), dropped afterwards."""
    name = f"weak_{secrets.token_hex(4)}"
    _admin(postgres_server, f"CREATE ROLE {name} LOGIN")
    try:
        yield name
    finally:
        _admin(postgres_server, f"DROP OWNED BY {name}", f"DROP ROLE {name}")


def _other(url: str, **parts: str | int) -> str:
    return make_url(url).set(**parts).render_as_string(hide_password=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", ["no-database", "refused", "no-role", "no-privilege", "read-only", "no-slot"])
def test_a_database_server_a_command_cannot_use_is_one_error_line(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str, role: str, case: str
) -> None:
    """The real `alex` with $ALEXANDRIA_DB naming a server it cannot use: one `Error:` line saying what is
    wrong and what to do, exit code 1, whether the server answered with an SQLSTATE (a role without the
    privilege, a read-only database) or the connection failed before it could (no such database or role,
    nothing listening, no connection slot left)."""
    root = tmp_path / "store"
    log_a_run(root, "sweep")
    database = make_url(postgres_url).database
    if case == "no-database":
        url = _other(postgres_url, database="no_such_database")
        reason = "the database no_such_database does not exist; create it (`createdb no_such_database`) or correct"
    elif case == "refused":
        url = _other(postgres_url, port=free_port())
        reason = "the server cannot be reached (or the connection to it broke); check that it is running and"
    elif case == "no-role":
        url = _other(postgres_url, username="nobody_here")
        reason = "the server does not accept the user nobody_here; correct the URL's user, or create the role"
    elif case == "no-privilege":
        url = _other(postgres_url, username=role)
        reason = f"the user {role} lacks a privilege Alexandria needs (to create schema alexandria and its tables"
    elif case == "read-only":
        _admin(postgres_server, f"ALTER DATABASE {database} SET default_transaction_read_only = on")
        url = postgres_url
        reason = "the server takes only reads (a standby, or default_transaction_read_only) and new log lines"
    else:
        _admin(postgres_server, f"ALTER ROLE {role} CONNECTION LIMIT 0")
        url = _other(postgres_url, username=role)
        reason = "the server has no connection left for this user or database (max_connections, or a CONNECTION"
    proc = alex("--store", str(root), "runs", env=child_env(ALEXANDRIA_DB=url))
    shown = make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"Error: cannot use database schema alexandria of {shown}: {reason}"), proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith(")\n"), proc.stderr  # the driver's words last


@pytest.fixture
def full_server_disk(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database whose tables go to a tablespace on a real filesystem of 1 MiB (tmpfs); its URL.
    Dropped, and unmounted, afterwards."""
    mount = Path(tempfile.mkdtemp(prefix="alexts-"))  # not under the test's tmp_path: the server's user reaches it
    command = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        mount.rmdir()
        skip_outside_ci(f"cannot mount a small tmpfs for a tablespace: {done.stderr.strip()}")
    token = secrets.token_hex(4)
    database, space = f"test_{token}", f"tiny_{token}"
    try:
        shutil.chown(mount, postgres_server.user)  # as root, the server runs as its own user (tests/pgserver.py)
        mount.chmod(0o700)
        _admin(postgres_server, f"CREATE TABLESPACE {space} LOCATION '{mount}'", f"CREATE DATABASE {database}")
        _admin(postgres_server, f"ALTER DATABASE {database} SET default_tablespace = {space}")
        yield postgres_server.url(database)
    finally:
        _admin(postgres_server, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        _admin(postgres_server, f"DROP TABLESPACE IF EXISTS {space}")
        subprocess.run(["umount", str(mount)], check=True)
        mount.rmdir()


def test_a_full_disk_on_the_database_server_is_one_error_line(tmp_path: Path, full_server_disk: str) -> None:
    """The fold's COPY meets a full disk on the server (SQLSTATE 53100): one `Error:` line, no traceback."""
    root = tmp_path / "store"
    env = child_env(ALEXANDRIA_DB=full_server_disk)
    log_a_run(root, "small")
    proc = alex("--store", str(root), "runs", env=env)
    assert proc.returncode == 0, proc.stderr  # the tables fit
    with alexandria.start_run(experiment="big", store=root, capture=False) as run:
        for step in range(30_000):  # about 2 MiB of rows: more than the tablespace holds
            run.log_metric("loss", 1.0 / (step + 1), step=step)
    proc = alex("--store", str(root), "runs", env=env)
    shown = make_url(full_server_disk).set(drivername="postgresql+psycopg").render_as_string(hide_password=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(
        f"Error: cannot use database schema alexandria of {shown}: the database server's disk is full; free space "
        "on the server, then run the command again (could not extend file"
    ), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
