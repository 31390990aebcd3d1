"""Any SQL client reads a live store: the plain `sqlite3` shell, with no busy timeout, while real writer
processes log and `alex watch` folds, never meets "database is locked".

The shell is Debian's `sqlite3` binary (CI installs it). Each query is a fresh connection, as a user's
one-off `sqlite3 alexandria.db 'SELECT ...'` is: some in a process of their own, most through `.open` in
a shell script (each `.open` closes the database and opens it again), so that more than a thousand fresh
connections stay quick."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from alexandria.store import Store
from tests.conftest import child_env, python, skip_outside_ci, wait_until

#: Fresh connections: ROUNDS x (one shell process of its own + one shell script of OPENS `.open`s).
ROUNDS = 60
OPENS = 16
COUNT = "SELECT count(*) FROM metric;"

#: Logs until the stop file appears, in small bursts, so that the watcher folds all along.
WRITER = """
import sys, time
from pathlib import Path
import alexandria

stop = Path(sys.argv[2])
with alexandria.start_run(experiment="live", store=sys.argv[1], capture=False) as run:
    print(run.id, flush=True)
    step = 0
    while not stop.exists():
        for _ in range(20):
            run.log_metric("loss", 1.0 / (step + 1), step)
            step += 1
        time.sleep(0.01)
"""


def counted(db: Path) -> int | None:
    """Rows in metric, read with a busy timeout (the test's own look, not the client under test)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.OperationalError:
        return None
    try:
        return int(conn.execute(COUNT).fetchone()[0])
    except sqlite3.OperationalError:  # no such table yet
        return None
    finally:
        conn.close()


def test_the_sqlite3_shell_never_meets_a_lock_while_alex_watch_folds(store: Store, tmp_path: Path) -> None:
    shell = shutil.which("sqlite3")
    if shell is None:
        skip_outside_ci("the `sqlite3` command-line shell is not installed (Debian package sqlite3)")
    root = str(store.root)
    db = store.db_path
    stop = tmp_path / "stop"
    home = tmp_path / "home"  # no ~/.sqliterc of the caller's (a `.timeout` there would hide the lock)
    home.mkdir()
    shell_env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    watch_log = tmp_path / "watch.log"
    with open(watch_log, "wb") as out:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "alexandria.cli", "--store", root, "watch", "--interval", "0.2"],
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    writers = [python(WRITER, root, str(stop)) for _ in range(2)]

    def folds() -> int:
        return watch_log.read_text().count(" folded ")

    try:
        for writer in writers:
            assert writer.stdout is not None
            assert len(writer.stdout.readline().strip()) == 32, writer.communicate()[1].decode()
        wait_until(lambda: (counted(db) or 0) > 0, what="the watcher's first fold")
        folds_before = folds()
        seen: list[int] = []
        errors: list[str] = []
        connections = 0
        one_off = ([shell, "-batch", str(db), COUNT], None, 1)  # a process of its own
        reopening = ([shell, "-batch"], f".open {db}\n{COUNT}\n" * OPENS, OPENS)  # `.open` reopens each time
        rounds, deadline = 0, time.monotonic() + 300
        # at least ROUNDS rounds, and on until the watcher folded 3 times meanwhile (a loaded machine folds slower)
        while rounds < ROUNDS or (folds() - folds_before < 3 and time.monotonic() < deadline):
            rounds += 1
            for args, stdin, expected in (one_off, reopening):
                done = subprocess.run(args, input=stdin, capture_output=True, text=True, env=shell_env, timeout=60)
                connections += expected
                errors += done.stderr.splitlines()
                seen += [int(line) for line in done.stdout.split()]
                assert done.stderr or len(done.stdout.split()) == expected, done
        folded = folds() - folds_before
    finally:
        stop.touch()
        for writer in writers:
            _, err = writer.communicate(timeout=120)
            assert writer.returncode == 0, err.decode()
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=60)
    output = watch_log.read_text()
    assert watcher.returncode == 0, output
    assert connections >= 1000
    assert errors == [], f"{len(errors)} of {connections} fresh connections failed, e.g. {errors[:3]}"
    assert seen == sorted(seen) and seen[-1] > seen[0], "the counts grow as the watcher folds, never go back"
    assert folded >= 3, f"the watcher folded only {folded} time(s) while the shell read: {output}"
    assert "Traceback" not in output and "fold failed" not in output
