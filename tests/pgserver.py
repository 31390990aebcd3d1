"""A throwaway PostgreSQL server from the system's binaries, for the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn


class PostgresUnavailable(Exception):
    """No PostgreSQL server can be started here (no binaries, no psycopg, no `postgres` user)."""


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own: initdb into a temporary directory, trust auth, listening on
    127.0.0.1 (a free port) and on a unix socket in that directory, no fsync (a test server); stopped
    (`pg_ctl stop -m fast`) and its directory removed afterwards. As root, the server runs as the
    `postgres` user (initdb refuses root). PostgresUnavailable says why one cannot be started here."""

    def unavailable(reason: str) -> NoReturn:
        raise PostgresUnavailable(reason)

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
        raise RuntimeError(f"initdb failed:\n{init.stdout}{init.stderr}")
    started = None
    for _ in range(5):  # another process may take the free port between the probe and the start
        port = free_port()
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
        raise RuntimeError(f"the PostgreSQL server did not start:\n{started.stderr if started else ''}\n{log}")
    try:
        yield PostgresServer("127.0.0.1", port)
    finally:
        run(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(tmp, ignore_errors=True)
