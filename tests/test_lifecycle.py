"""How a process's end reaches the log: normal exit, exceptions, SIGTERM, Ctrl-C.

The children run with a 60 s flush interval, so everything they logged is
still in memory when they end: what reaches the database was written by the
exit path under test.
"""

from __future__ import annotations

import signal

import pytest

from alexandria.db import open_database
from alexandria.store import Store
from tests.conftest import child_env, python

LOGGER = """
import sys, time, alexandria
{setup}
run = alexandria.start_run(experiment="life")
for step in range(5000):
    alexandria.log_metric("loss", 1.0 / (step + 1), step=step)
print(run.id, flush=True)
{ending}
"""


def status_and_points(store: Store) -> tuple[object, ...]:
    engine = open_database(store)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT r.status, r.error, count(m.id), r.timestamp_end IS NOT NULL "
            "FROM run r LEFT JOIN metric m ON m.run_id = r.id GROUP BY r.id"
        ).one()
    engine.dispose()
    return tuple(row)


def run_child(store: Store, ending: str, setup: str = "", send: int | None = None) -> int:
    env = child_env(ALEXANDRIA_FLUSH_INTERVAL="60", ALEXANDRIA_STORE=str(store.root))
    proc = python(LOGGER.format(setup=setup, ending=ending), env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the child has logged everything and waits
    assert len(line.strip()) == 32, proc.stderr.read() if proc.stderr else ""
    if send is not None:
        proc.send_signal(send)
    proc.wait(timeout=60)
    return proc.returncode


def test_normal_exit_without_end_finishes_the_run(store: Store) -> None:
    assert run_child(store, ending="") == 0
    assert status_and_points(store) == ("finished", None, 5000, 1)


def test_uncaught_exception_fails_the_run(store: Store) -> None:
    assert run_child(store, ending="raise ValueError('diverged')") == 1
    assert status_and_points(store) == ("failed", "ValueError: diverged", 5000, 1)


def test_sigterm_writes_everything_and_marks_the_run_killed(store: Store) -> None:
    code = run_child(store, ending="time.sleep(60)", send=signal.SIGTERM)
    assert code == -signal.SIGTERM  # the process still dies of SIGTERM, as its parent expects
    assert status_and_points(store) == ("killed", "SIGTERM", 5000, 1)


def test_sigterm_chains_to_the_programs_own_handler(store: Store) -> None:
    setup = (
        "import signal\n"
        "def mine(signum, frame):\n"
        "    print('own handler ran', file=sys.stderr, flush=True)\n"
        "    sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, mine)"
    )
    code = run_child(store, ending="time.sleep(60)", setup=setup, send=signal.SIGTERM)
    assert code == 3
    assert status_and_points(store) == ("killed", "SIGTERM", 5000, 1)


@pytest.mark.parametrize("in_with_block", [True, False])
def test_ctrl_c_marks_the_run_killed(store: Store, in_with_block: bool) -> None:
    ending = "with run:\n    time.sleep(60)" if in_with_block else "time.sleep(60)"
    code = run_child(store, ending=ending, send=signal.SIGINT)
    assert code != 0
    assert status_and_points(store) == ("killed", "KeyboardInterrupt", 5000, 1)
