"""`alex watch` as a real child process, keeping the database current while real writer processes log."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from alexandria.db import reader_engine
from alexandria.schema import USER_TABLES  # every table a user queries: live must equal rebuilt
from alexandria.store import Store
from tests.conftest import alex, child_env, every_backend, python, table_rows, wait_until
from tests.test_foreign_database import foreign

POINTS = 3000

WRITER = """
import sys, time
from pathlib import Path
import alexandria

store, target, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if target == "new":
    run = alexandria.start_run(experiment="watched", tags={"team": "vision"}, store=store)
    print(run.id, flush=True)
    run.log_params({"lr": 0.01, "batch": 64})
    model = Path(store).parent / f"model-{run.id}.txt"
    model.write_text("weights")
    run.log_artifact(model, type="model")
else:
    run = alexandria.start_run(run_id=target, store=store)
for step in range(n):
    run.log_metric("loss", 1.0 / (step + 1), step)
    if step % 100 == 0:
        run.set_tag("progress", str(step))
        time.sleep(0.02)  # spread the writing out: the watcher folds while it goes on
run.end()
"""

FRESH = """
import sys, alexandria
run = alexandria.start_run(run_id=sys.argv[2], store=sys.argv[1])
run.log_metric("fresh", 42.0, 0)
run.flush()
print("flushed", flush=True)
sys.stdin.readline()  # stays alive: what the reader sees was folded by the watcher, not by an exit
"""


def query(db: Path | str, sql: str) -> list[tuple[Any, ...]] | None:
    """A separate, plain read-only reader of an SQLite file (or of a database URL, through the library's
    reader); None while the watcher has not created the database yet."""
    if isinstance(db, str):
        engine = reader_engine(db)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.exec_driver_sql(sql)]
        except DBAPIError:  # no such table: the schema is not there yet
            return None
        finally:
            engine.dispose()
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.OperationalError:
        return None
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # no such table: the schema is not there yet
        return None
    finally:
        conn.close()


def caught_up(store: Store) -> bool:
    """Every segment on disk is folded to its last byte (all writers have ended, so no line is partial)."""
    positions = dict(query(store.db_path, "SELECT path, offset FROM log_segment") or [])
    return all(positions.get(store.relative(s)) == s.stat().st_size for s in store.segments())


@pytest.mark.parametrize("flags", [[], ["--poll"]], ids=["notify", "poll"])
def test_watch_keeps_the_database_current_and_equal_to_a_rebuild(
    store: Store, tmp_path: Path, flags: list[str]
) -> None:
    """With `alex watch` running, several processes write two runs; once they are done and the watcher has
    caught up, a freshly logged point becomes visible to a separate SQL reader while its writer still
    runs; after SIGTERM stops the watcher (exit code 0), every user table equals what `alex rebuild` makes."""
    root = str(store.root)
    with open(tmp_path / "watch.log", "wb") as log:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "alexandria.cli", "--store", root, "watch", *flags],
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: query(store.db_path, "SELECT count(*) FROM log_segment") is not None, what="the db")

        owners = [python(WRITER, root, "new", str(POINTS)) for _ in range(2)]
        run_ids = []
        for owner in owners:
            assert owner.stdout is not None
            run_ids.append(owner.stdout.readline().decode().strip())
            assert len(run_ids[-1]) == 32, owner.communicate()[1].decode()
        attached = [python(WRITER, root, run_id, str(POINTS)) for run_id in run_ids for _ in range(2)]
        for proc in owners + attached:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
        expected = len(owners + attached) * POINTS
        wait_until(lambda: query(store.db_path, "SELECT count(*) FROM metric") == [(expected,)], what="all points")
        wait_until(lambda: caught_up(store), what="the watcher to fold every segment to its end")

        fresh = python(FRESH, root, run_ids[0], stdin=subprocess.PIPE)
        assert fresh.stdout is not None and fresh.stdin is not None
        assert fresh.stdout.readline() == b"flushed\n", fresh.communicate()[1].decode()
        fresh_sql = "SELECT run_id, value FROM metric WHERE key = 'fresh'"
        wait_until(lambda: query(store.db_path, fresh_sql) == [(run_ids[0], 42.0)], what="the fresh point")
        fresh.communicate(b"\n", timeout=60)
        assert fresh.returncode == 0
        wait_until(lambda: caught_up(store), what="the watcher to fold the fresh writer's segment")
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=60)
    output = (tmp_path / "watch.log").read_text()
    assert watcher.returncode == 0, output
    assert "folded" in output

    engine = reader_engine(store.db_path)
    try:
        watched = {t: table_rows(engine, t) for t in USER_TABLES}
    finally:
        engine.dispose()
    assert len(watched["metric"]) == expected + 1
    assert sorted((r[0], r[1], r[5]) for r in watched["run"]) == sorted((r, "watched", "finished") for r in run_ids)
    models = [r for r in watched["artifact"] if "git-diff" not in r]  # a dirty work tree adds its diff
    assert len(watched["parameter"]) == 4 and len(models) == 2
    assert {(r[1], r[2]) for r in watched["tag"]} == {("team", "vision"), ("progress", str((POINTS - 1) // 100 * 100))}

    rebuilt = alex("--store", root, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    engine = reader_engine(store.db_path)
    try:
        assert {t: table_rows(engine, t) for t in USER_TABLES} == watched
    finally:
        engine.dispose()


@every_backend
def test_watch_marks_a_run_crashed_when_its_process_is_killed(store: Store) -> None:
    """No new line is ever written after kill -9: the watcher's own periodic verdict finds the run crashed."""
    env = child_env(ALEXANDRIA_STORE=str(store.root))
    watcher = subprocess.Popen(
        [sys.executable, "-m", "alexandria.cli", "watch", "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        writer = python(
            "import time, alexandria\n"
            "run = alexandria.start_run(experiment='doomed', capture=False)\n"
            "run.log_metric('loss', 1.0, 0); run.flush(); print(run.id, flush=True); time.sleep(60)",
            env=env,
        )
        assert writer.stdout is not None
        run_id = writer.stdout.readline().decode().strip()
        db = store.database
        wait_until(lambda: query(db, "SELECT status FROM run") == [("running",)], what="the running run")
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        wait_until(lambda: query(db, "SELECT status FROM run") == [("crashed",)], what="the crash verdict")
        [(error,)] = query(db, f"SELECT error FROM run WHERE id = '{run_id}'") or [("",)]
        assert f"pid {writer.pid}" in str(error)
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.communicate(timeout=30)


LOG_MORE = """
import sys, alexandria
run = alexandria.start_run(run_id=sys.argv[2], store=sys.argv[1]) if sys.argv[2] != "new" else None
run = run or alexandria.start_run(experiment="recovered", store=sys.argv[1])
for step in range(int(sys.argv[3]), int(sys.argv[3]) + 50):
    run.log_metric("loss", 1.0 / (step + 1), step)
run.end()
print(run.id, flush=True)
"""


def test_watch_rebuilds_a_deleted_or_overwritten_database_and_keeps_going(store: Store, tmp_path: Path) -> None:
    """`rm alexandria.db` under a running `alex watch`, then garbage written over it: each time the watcher
    notices, rebuilds from the logs (one warning line each) and goes on folding what is logged next."""
    root = str(store.root)
    db = store.db_path
    count = "SELECT count(*) FROM metric"
    err_path = tmp_path / "watch.err"
    with open(err_path, "wb") as err:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "alexandria.cli", "--store", root, "watch", "--interval", "0.2"],
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )

    def log_more(target: str, start: int) -> str:
        proc = python(LOG_MORE, root, target, str(start))
        out, errs = proc.communicate(timeout=120)
        assert proc.returncode == 0, errs.decode()
        return out.decode().strip()

    def rebuilt_lines() -> list[str]:
        return [line for line in err_path.read_text().splitlines() if "rebuilt it from the logs" in line]

    try:
        run_id = log_more("new", 0)
        wait_until(lambda: query(db, count) == [(50,)], what="the first fold")
        for n, damage in enumerate(["delete", "garbage"], start=1):
            if damage == "delete":
                for name in (db.name, db.name + "-wal", db.name + "-shm"):
                    db.with_name(name).unlink(missing_ok=True)
            else:
                garbage = db.with_name("garbage.tmp")  # swapped in whole: the watcher never sees it half written
                garbage.write_bytes(b"garbage, not an SQLite database " * 300)
                os.replace(garbage, db)
            log_more(run_id, 50 * n)
            wait_until(lambda n=n: query(db, count) == [(50 * (n + 1),)], what=f"every row again after {damage}")
            wait_until(lambda n=n: len(rebuilt_lines()) == n, what="the watcher's warning")
            assert watcher.poll() is None, err_path.read_text()
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(timeout=60)
    errors = err_path.read_text()
    assert watcher.returncode == 0, errors
    deleted, garbage = rebuilt_lines()
    assert f"database {db} was deleted or emptied" in deleted
    assert f"database {db} was overwritten (unreadable)" in garbage
    assert "Traceback" not in errors and "fold failed" not in errors
    assert len(list(store.root.glob("alexandria.db.corrupt-*"))) == 1


def test_watch_stops_on_a_database_replaced_by_another_programs(store: Store, tmp_path: Path) -> None:
    root = str(store.root)
    db = store.db_path
    watcher = subprocess.Popen(
        [sys.executable, "-m", "alexandria.cli", "--store", root, "watch", "--interval", "0.2"],
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: query(db, "SELECT count(*) FROM log_segment") is not None, what="the database")
        for name in (db.name, db.name + "-wal", db.name + "-shm"):
            db.with_name(name).unlink(missing_ok=True)
        theirs = tmp_path / "theirs.db"
        conn = sqlite3.connect(theirs)
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.commit()
        conn.close()
        before = theirs.read_bytes()
        theirs.rename(db)
        _, errors = watcher.communicate(timeout=120)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 1
    assert errors.endswith(foreign(db))
    assert db.read_bytes() == before
