"""How a process's end reaches the log: normal exit, exceptions, SIGTERM, Ctrl-C.

The children run with a 60 s flush interval, so everything they logged is
still in memory when they end: what reaches the database was written by the
exit path under test.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from alexandria.db import open_database
from alexandria.store import Store
from tests.conftest import child_env, in_a_futex_wait, python, skip_outside_ci, wait_until

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


def test_ctrl_c_is_never_lost_while_every_background_thread_runs(tmp_path: Path) -> None:
    """Eight processes at once, each with its writer, capture and system metrics threads busy (a sample every
    10 ms) when Ctrl-C comes: every one of them stops at once and records its run killed. A Ctrl-C deferred
    and never taken up (a critical section left open) would leave a child asleep for its 60 s."""
    children = []
    for i in range(8):
        store = Store.open(tmp_path / f"store{i}")
        env = child_env(
            ALEXANDRIA_FLUSH_INTERVAL="60", ALEXANDRIA_STORE=str(store.root), ALEXANDRIA_SYSTEM_METRICS_INTERVAL="0.01"
        )
        children.append((store, python(LOGGER.format(setup="", ending="with run:\n    time.sleep(60)"), env=env)))
    for _, proc in children:
        assert proc.stdout is not None
        assert len(proc.stdout.readline().strip()) == 32
    for _, proc in children:
        proc.send_signal(signal.SIGINT)
    for store, proc in children:
        try:
            assert proc.wait(timeout=45) != 0  # well inside its 60 s sleep
        finally:
            proc.kill()
        status, error, points, ended = status_and_points(store)
        assert (status, error, ended) == ("killed", "KeyboardInterrupt", 1)
        assert points >= 5000  # its own 5000, and the system metrics sampled meanwhile


OTHER_THREAD_TAKES_THE_SIGNAL = """
import signal, threading
# A thread of the program's own, signals not blocked: when told on stdin it sends the signal to itself. Python's
# C-level handler then runs on this thread and the main thread sleeps on, as it does when a signal lands between
# CPython's check for pending signals and the sleep's system call (the race that once lost a Ctrl-C).
def take(signum):
    sys.stdin.buffer.readline()
    signal.pthread_kill(threading.get_ident(), signum)
threading.Thread(target=take, args=(signal.{signal},), daemon=True).start()
"""


def main_thread_sleeps(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/task/{pid}/wchan").read_text() in ("hrtimer_nanosleep", "do_nanosleep")
    except OSError:
        return False


@pytest.mark.parametrize(
    ("sent", "error"), [(signal.SIGINT, "KeyboardInterrupt"), (signal.SIGTERM, "SIGTERM")], ids=["ctrl-c", "sigterm"]
)
def test_a_signal_whose_handler_missed_the_sleep_still_ends_the_run(
    store: Store, sent: signal.Signals, error: str
) -> None:
    env = child_env(ALEXANDRIA_FLUSH_INTERVAL="60", ALEXANDRIA_STORE=str(store.root))
    setup = OTHER_THREAD_TAKES_THE_SIGNAL.format(signal=sent.name)
    proc = python(LOGGER.format(setup=setup, ending="with run:\n    time.sleep(60)"), env=env, stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert len(proc.stdout.readline().strip()) == 32
        if not Path(f"/proc/{proc.pid}/task").is_dir():
            skip_outside_ci("this test reads /proc to know the child's main thread sleeps (Linux)")
        wait_until(lambda: main_thread_sleeps(proc.pid), timeout=60, what="the child's main thread to sleep")
        proc.stdin.write(b"now\n")
        proc.stdin.flush()
        assert proc.wait(timeout=45) != 0  # well inside its 60 s sleep: the signal was not lost
    finally:
        proc.kill()
    assert status_and_points(store) == ("killed", error, 5000, 1)


NATIVE_WAIT = """
import ctypes
# A joinable native thread that sleeps an hour, and the main thread joining it: pthread_join never returns
# for a signal (like a gloo collective, it waits on through SIGTERM), so no Python handler can run.
libc = ctypes.CDLL(None)
thread = ctypes.c_ulong()
sleep = ctypes.cast(libc.sleep, ctypes.c_void_p)
assert libc.pthread_create(ctypes.byref(thread), None, sleep, ctypes.c_void_p(3600)) == 0
print("joining", flush=True)
libc.pthread_join(thread, None)
"""


def test_sigterm_ends_a_process_whose_main_thread_waits_in_native_code(store: Store) -> None:
    env = child_env(ALEXANDRIA_FLUSH_INTERVAL="60", ALEXANDRIA_STORE=str(store.root))
    proc = python(LOGGER.format(setup="", ending=NATIVE_WAIT), env=env)
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.readline().strip()) == 32
    assert proc.stdout.readline() == b"joining\n"
    if not Path(f"/proc/{proc.pid}/task").is_dir():
        proc.kill()
        skip_outside_ci("this test reads /proc to know the child waits in pthread_join (Linux)")
    try:
        wait_until(lambda: in_a_futex_wait(proc.pid), timeout=60, what="the child to wait in pthread_join")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == -signal.SIGTERM  # it dies of SIGTERM, as it would without Alexandria
    finally:
        proc.kill()
    assert b"SIGTERM was not handled within" in proc.stderr.read()
    assert status_and_points(store) == ("killed", "SIGTERM", 5000, 1)


GRACEFUL = """
import signal
previous = signal.getsignal(signal.SIGTERM)  # ours: a framework chains to the handler it found
stopping = []
def graceful(signum, frame):
    stopping.append(signum)
    previous(signum, frame)
signal.signal(signal.SIGTERM, graceful)
print("installed", flush=True)
{block}
"""
LOOP = """while not stopping:
    time.sleep(0.01)
print('stopped gracefully', file=sys.stderr, flush=True)
sys.exit(0)"""


@pytest.mark.parametrize("in_with_block", [False, True])
def test_a_handler_installed_over_ours_keeps_sigterm(store: Store, in_with_block: bool) -> None:
    """Lightning's way: its handler calls ours, then it stops the loop, tears down and exits 0. Ours must
    not kill the process under it; the run ends "killed" with every point written."""
    block = "with run:\n" + "\n".join("    " + line for line in LOOP.splitlines()) if in_with_block else LOOP
    env = child_env(ALEXANDRIA_FLUSH_INTERVAL="60", ALEXANDRIA_STORE=str(store.root))
    proc = python(LOGGER.format(setup="", ending=GRACEFUL.format(block=block)), env=env)
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.readline().strip()) == 32
    assert proc.stdout.readline() == b"installed\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert b"stopped gracefully" in proc.stderr.read()
    assert status_and_points(store) == ("killed", "SIGTERM", 5000, 1)
