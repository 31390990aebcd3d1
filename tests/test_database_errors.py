"""A store the user cannot use as it is (a full disk, files this user may not write) gives one typed error
and one `Error:` line, never a driver's traceback: real files, real processes, real permissions.

Tests may run as root, for whom file modes do not stop writes: the child process then runs without the
capabilities that bypass them (`setpriv`, CAP_DAC_OVERRIDE and friends dropped from its bounding set), so
the kernel checks the files' modes for it as for any user. A full disk is a real one: a tiny tmpfs, mounted
where the test may mount (root), skipped with the reason where it may not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import alexandria
from tests.conftest import alex, child_env, skip_outside_ci

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
    with alexandria.start_run(experiment=experiment, store=root) as run:
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
