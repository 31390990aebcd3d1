"""A run's whole life: crashed runs found from the log, heartbeats, resume, nested runs.

Real processes, real signals, real `kill -9`; every verdict checked again
after `alex rebuild`, which must reach the same one from the same log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

import alexandria
from alexandria.db import open_database
from alexandria.events import Header, Heartbeat, MetricLogged, RunStarted, WriterInfo, encoder
from alexandria.life import process_start, run_state
from alexandria.rebuild import rebuild
from alexandria.store import Store
from tests.conftest import alex, child_env, complete_lines, python, query, table_rows, wait_until

LOGGER = """
import sys, time, alexandria
run = alexandria.start_run(experiment="life", capture=False)
for step in range(100):
    run.log_metric("loss", 1.0 / (step + 1), step=step)
run.flush()
print(run.id, flush=True)
{ending}
"""


def start_child(store: Store, ending: str, **env: str) -> tuple[object, str]:
    proc = python(LOGGER.format(ending=ending), env=child_env(ALEXANDRIA_STORE=str(store.root), **env))
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    assert len(line) == 32, proc.stderr.read() if proc.stderr else ""
    return proc, line


def run_rows(store: Store) -> list[tuple[object, ...]]:
    engine = open_database(store)
    try:
        return table_rows(engine, "run") + table_rows(engine, "lifecycle")
    finally:
        engine.dispose()


def test_failed_killed_and_crashed_runs_and_a_rebuild_agrees(store: Store) -> None:
    failed, failed_id = start_child(store, "raise RuntimeError('loss diverged')")
    killed, killed_id = start_child(store, "time.sleep(60)")
    crashed, crashed_id = start_child(store, "time.sleep(60)")
    killed.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    crashed.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
    for proc in (failed, killed, crashed):
        proc.wait(timeout=60)  # type: ignore[attr-defined]

    statuses = {
        rid: (status, error)
        for rid, status, error in query(store, "SELECT id, status, error FROM run WHERE parent_id IS NULL")
    }
    assert statuses[failed_id] == ("failed", "RuntimeError: loss diverged")
    assert statuses[killed_id] == ("killed", "SIGTERM")
    assert statuses[crashed_id][0] == "crashed"
    assert f"pid {crashed.pid}" in statuses[crashed_id][1]  # type: ignore[attr-defined]
    # the crashed run's end is its last sign of life; all 100 points logged before kill -9 are there
    [(end, seen, points)] = query(
        store,
        f"SELECT timestamp_end, last_seen, (SELECT count(*) FROM metric m WHERE m.run_id = run.id) "
        f"FROM run WHERE id = '{crashed_id}'",
    )
    assert end == seen and points == 100

    live = run_rows(store)
    rebuild(store)
    assert run_rows(store) == live

    out = alex("runs")
    assert out.returncode == 0, out.stderr
    for word in ("failed", "killed", "crashed"):
        assert word in out.stdout


def test_a_silent_writer_sends_heartbeats(store: Store) -> None:
    proc, run_id = start_child(store, "time.sleep(1.5)", ALEXANDRIA_HEARTBEAT_INTERVAL="0.3")
    proc.wait(timeout=60)  # type: ignore[attr-defined]
    [segment] = store.run_segments(run_id)
    events = [json.loads(line)["event"] for _, line in complete_lines(segment)]
    assert events.count("heartbeat") >= 3
    assert events[-3:] == ["heartbeat", "run_finished", "closed"] or events[-2:] == ["run_finished", "closed"]
    header = json.loads(complete_lines(segment)[0][1])
    assert header["writer"]["heartbeat"] == 0.3


def _foreign_segment(
    store: Store, last_time: float, host: str = "another-host", pid: int = 4242, started: int = 0
) -> str:
    """A run written by a process this projector cannot see: only its log tells whether it lives."""
    run_id = uuid.uuid4().hex
    run_dir = store.run_dir(run_id)
    run_dir.mkdir(parents=True)
    writer = WriterInfo(host=host, pid=pid, started=started, heartbeat=1.0)
    lines = [
        Header(time=last_time - 5, format=1, run_id=run_id, writer=writer),
        RunStarted(experiment="remote", time=last_time - 5),
        MetricLogged(time=last_time - 1, key="loss", value=0.5, step=0),
        Heartbeat(time=last_time),
    ]
    (run_dir / f"{time.time_ns():020d}-{host}-{pid}-0000.jsonl").write_bytes(
        b"".join(encoder.encode(e) + b"\n" for e in lines)
    )
    return run_id


def test_a_writer_on_another_host_is_alive_while_its_heartbeats_are_fresh(store: Store) -> None:
    fresh = _foreign_segment(store, time.time())
    stale = _foreign_segment(store, time.time() - 3600)
    statuses = dict(query(store, "SELECT id, status FROM run"))  # type: ignore[arg-type]
    assert statuses == {fresh: "running", stale: "crashed"}
    assert run_state(store, fresh).status == "running" and run_state(store, stale).status == "crashed"


def test_a_reused_pid_is_not_taken_for_the_writer(store: Store) -> None:
    """Same host, and the pid is alive (it is ours), but it started at another time: another process."""
    mine = process_start(os.getpid())
    assert mine  # Linux /proc: the start time is known
    reused = _foreign_segment(store, time.time(), host=socket.gethostname(), pid=os.getpid(), started=mine + 1)
    same = _foreign_segment(store, time.time() - 3600, host=socket.gethostname(), pid=os.getpid(), started=mine)
    statuses = dict(query(store, "SELECT id, status FROM run"))  # type: ignore[arg-type]
    assert statuses[reused] == "crashed"
    assert statuses[same] == "running"  # alive, however old its last line: the process is there


def test_a_stopped_process_that_logs_again_is_running_again(store: Store) -> None:
    run_id = _foreign_segment(store, time.time() - 3600)
    assert query(store, "SELECT status FROM run") == [("crashed",)]
    [segment] = store.run_segments(run_id)
    with open(segment, "ab") as f:
        f.write(encoder.encode(MetricLogged(time=time.time(), key="loss", value=0.25, step=1)) + b"\n")
    assert query(store, "SELECT status, error, timestamp_end FROM run") == [("running", None, None)]


RESUMER = """
import sys, alexandria
run = alexandria.start_run(run_id=sys.argv[1], capture=False)
assert run.owner and run.attempt == int(sys.argv[2]), (run.owner, run.attempt)
for step in range(50, 150):
    run.log_metric("loss", 0.5, step=step)
run.end()
"""


@pytest.mark.parametrize("how", ["finished", "crashed"])
def test_resume_continues_a_run_and_keeps_repeated_steps_apart(store: Store, how: str) -> None:
    proc, run_id = start_child(store, "" if how == "finished" else "time.sleep(60)")
    if how == "crashed":
        proc.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
    proc.wait(timeout=60)  # type: ignore[attr-defined]
    assert query(store, "SELECT status FROM run") == [(how,)]

    resumer = python(RESUMER, run_id, "1", env=child_env(ALEXANDRIA_STORE=str(store.root)))
    _, err = resumer.communicate(timeout=60)
    assert resumer.returncode == 0, err.decode()

    assert query(store, "SELECT status, attempt, error FROM run") == [("finished", 1, None)]
    assert query(store, "SELECT event, status, attempt FROM lifecycle ORDER BY timestamp") == [
        ("started", "running", 0),
        *([("finished", "finished", 0)] if how == "finished" else []),
        ("resumed", "running", 1),
        ("finished", "finished", 1),
    ]
    # steps 50..99 were logged in both lives: all 200 points are kept, told apart by attempt
    assert query(store, "SELECT attempt, count(*), min(step), max(step) FROM metric GROUP BY attempt") == [
        (0, 100, 0, 99),
        (1, 100, 50, 149),
    ]
    segments = store.run_segments(run_id)
    resumed = [json.loads(line) for _, line in complete_lines(segments[-1])]
    assert resumed[0]["attempt"] == 1 and resumed[1] == {
        "event": "run_resumed",
        "attempt": 1,
        "previous_status": how,
        "time": resumed[1]["time"],
    }
    shown = alex("show", run_id, env=child_env(ALEXANDRIA_STORE=str(store.root)))
    assert "status finished" in shown.stdout and "life: started" in shown.stdout and "-> resumed" in shown.stdout
    assert "(resumed 1x)" in alex("runs", env=child_env(ALEXANDRIA_STORE=str(store.root))).stdout
    live = run_rows(store)
    rebuild(store)
    assert run_rows(store) == live


def test_start_run_on_a_running_run_attaches_instead_of_resuming(store: Store) -> None:
    owner = alexandria.start_run(experiment="attach", store=store, capture=False)
    other = alexandria.start_run(run_id=owner.id, store=store)
    assert not other.owner and other.attempt == 0
    other.end()
    owner.end()
    assert query(store, "SELECT status, attempt FROM run") == [("finished", 0)]


def test_nested_runs_have_a_parent_and_alex_runs_shows_the_tree(store: Store) -> None:
    with alexandria.start_run(experiment="sweep", store=store, capture=False) as parent:
        children = []
        for lr in (0.1, 0.01):
            with alexandria.start_run(experiment="sweep", store=store, nested=True, capture=False) as child:
                child.log_param("lr", lr)
                children.append(child.id)
        other = alexandria.start_run(experiment="solo", store=store, parent=parent.id, capture=False)
        other.end()
    assert sorted(query(store, "SELECT id FROM run WHERE parent_id IS NOT NULL")) == sorted(
        [(c,) for c in [*children, other.id]]
    )
    assert query(store, "SELECT parent_id FROM run WHERE id = '" + parent.id + "'") == [(None,)]
    out = alex("runs", env=child_env(ALEXANDRIA_STORE=str(store.root)))
    lines = [line for line in out.stdout.splitlines() if parent.id in line or "└ " in line]
    assert parent.id in lines[0] and len(lines) == 4
    assert {line.split("└ ")[1][:32] for line in lines[1:]} == {*children, other.id}


def test_nested_without_an_active_run_is_a_clear_error(store: Store) -> None:
    with pytest.raises(alexandria.InvalidInputError, match="needs an active run"):
        alexandria.start_run(experiment="x", store=store, nested=True)
    with pytest.raises(alexandria.RunNotFoundError, match="no run"):
        alexandria.start_run(experiment="x", store=store, parent="0" * 32)


def test_a_killed_child_of_a_live_parent_leaves_the_run_running(store: Store, tmp_path: Path) -> None:
    """A writer that vanished while another writer of the run still lives is not a crash of the run."""
    owner = alexandria.start_run(experiment="workers", store=store, capture=False)
    child = python(
        "import sys, time, alexandria\n"
        "run = alexandria.start_run(run_id=sys.argv[1])\n"
        "run.log_metric('x', 1.0, 0); run.flush(); print('ok', flush=True); time.sleep(60)",
        owner.id,
        env=child_env(ALEXANDRIA_STORE=str(store.root)),
    )
    assert child.stdout is not None and child.stdout.readline().strip() == b"ok"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    wait_until(lambda: query(store, "SELECT count(*) FROM metric") == [(1,)], what="the child's point")
    assert query(store, "SELECT status FROM run") == [("running",)]
    owner.end()
    assert query(store, "SELECT status FROM run") == [("finished",)]
