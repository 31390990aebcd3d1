"""Many processes logging to one run at once: attached by run id, and children of multiprocessing.

Every test uses real processes writing real segments, then checks row by row
what reached the database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from alexandria.db import open_database
from alexandria.events import ArtifactSaved, MetricLogged, ParamLogged, RunFinished, RunStarted, TagSet
from alexandria.projector import Projector
from alexandria.rebuild import rebuild
from alexandria.segment import SegmentWriter
from alexandria.store import Store
from tests.conftest import child_env, complete_lines, python, table_rows


def rows(engine: Engine, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql, params)]


def segments_by_pid(store: Store, run_id: str) -> dict[int, list[dict[str, Any]]]:
    """Each segment of the run, keyed by the pid its header names, with what it logged (parsed here): the
    writer's own bookkeeping (`closed`, heartbeats) and the run's code/environment records (and the saved
    diff of a dirty work tree) left out."""
    found: dict[int, list[dict[str, Any]]] = {}
    for segment in sorted(store.run_dir(run_id).glob("*.jsonl")):
        lines = complete_lines(segment)
        header = json.loads(lines[0][1])
        assert header["event"] == "header" and header["run_id"] == run_id
        pid = header["writer"]["pid"]
        assert pid not in found, f"process {pid} wrote two segments"
        events = [json.loads(line) for _, line in lines[1:]]
        assert events[-1]["event"] == "closed", f"process {pid} did not close its segment"
        bookkeeping = ("closed", "heartbeat", "code", "environment")
        found[pid] = [e for e in events if e["event"] not in bookkeeping and e.get("type") != "git-diff"]
    return found


# -- 3. eight processes, one run ------------------------------------------------------------------------
OWNER = """
import sys, alexandria
run = alexandria.start_run(experiment="eight", store=sys.argv[1])
print(run.id, flush=True)
sys.stdin.readline()  # the run stays open until the test says the children are done
run.end()
"""

ATTACHED = """
import sys, alexandria
store, run_id, k, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
run = alexandria.start_run(run_id=run_id, store=store)
print("ready", flush=True)
sys.stdin.readline()  # the barrier: the test releases all children together
for step in range(n):
    run.log_metric("loss", float(k), step)
run.end()
"""


def test_eight_processes_log_ten_thousand_points_each_into_one_run_at_once(store: Store) -> None:
    """8 processes attach to one open run by its id and, released together, log 10,000 points each:
    exactly 80,000 metric rows, each (process, step) exactly once, one segment per process."""
    processes, points = 8, 10_000
    owner = python(OWNER, str(store.root), stdin=subprocess.PIPE)
    assert owner.stdout is not None and owner.stdin is not None
    run_id = owner.stdout.readline().decode().strip()
    assert len(run_id) == 32, owner.communicate()[1].decode()

    children = [
        python(ATTACHED, str(store.root), run_id, str(k), str(points), stdin=subprocess.PIPE) for k in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n", child.communicate()[1].decode()
    for child in children:  # release the barrier
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
    _, err = owner.communicate(b"done\n", timeout=60)
    assert owner.returncode == 0, err.decode()

    engine = open_database(store)
    try:
        assert rows(engine, "SELECT count(*) FROM metric WHERE run_id = ?", run_id) == [(processes * points,)]
        per_process = rows(
            engine,
            "SELECT value, count(*), count(DISTINCT step), min(step), max(step) FROM metric "
            "GROUP BY value ORDER BY value",
        )
        assert per_process == [(float(k), points, points, 0, points - 1) for k in range(processes)]
        assert rows(engine, "SELECT experiment_name, status FROM run") == [("eight", "finished")]
    finally:
        engine.dispose()

    by_pid = segments_by_pid(store, run_id)
    assert len(by_pid) == processes + 1
    for k, child in enumerate(children):
        assert [e["value"] for e in by_pid[child.pid]] == [float(k)] * points
        assert [e["step"] for e in by_pid[child.pid]] == list(range(points))
    assert [e["event"] for e in by_pid[owner.pid]] == ["run_started", "run_finished"]


# -- 3'. children of multiprocessing: fork, spawn, forkserver, Pool ------------------------------------------
MP_SCRIPT = """
import json, multiprocessing as mp, os, sys
import alexandria

POINTS = 200


def work(task):
    # Module-level call, no run id handed over: the library finds the active run.
    for i in range(POINTS):
        alexandria.log_metric("m", float(os.getpid()), step=task * POINTS + i)
    return os.getpid()


if __name__ == "__main__":
    method, store, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = mp.get_context(method)
    run = alexandria.start_run(experiment="mp-" + method, store=store)
    for i in range(100):  # still queued in this process when the children start (60 s flush interval)
        run.log_metric("m", float(os.getpid()), step=-1 - i)
    child = ctx.Process(target=work, args=(10_000,))
    child.start()
    child.join()
    pool_pids = []
    for r in range(rounds):  # the race between a worker's exit and the pool's SIGTERM needs several tries
        with ctx.Pool(3) as pool:  # leaving the block SIGTERMs the workers
            pool_pids += pool.map(work, range(8 * r, 8 * r + 8))
    run.end()
    print(json.dumps({"run": run.id, "parent": os.getpid(), "child": child.pid, "exitcode": child.exitcode,
                      "pool": sorted(set(pool_pids))}))
"""

SWEEP_SCRIPT = """
import json, multiprocessing as mp, os, sys
import alexandria


def work(task):
    for i in range(100):
        alexandria.log_metric("m", float(task), step=i)
    return os.environ.get("ALEXANDRIA_RUN_ID")


if __name__ == "__main__":
    method, store = sys.argv[1], sys.argv[2]
    ctx = mp.get_context(method)
    runs = []
    for n in range(2):  # a sweep: one run after the other, each with its own pool
        with alexandria.start_run(experiment=f"sweep-{n}", store=store) as run:
            with ctx.Pool(2) as pool:
                seen = pool.map(work, range(4))
        runs.append({"run": run.id, "workers_saw": sorted(set(seen))})
    print(json.dumps(runs))
"""


def run_script(tmp_path: Path, code: str, *args: str, timeout: float = 60) -> Any:
    """Run a script file (spawn and forkserver children import their target from it); returns its JSON output."""
    script = tmp_path / "script.py"
    script.write_text(code)
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        env=child_env(ALEXANDRIA_FLUSH_INTERVAL="60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: a hung pool's workers are stopped with it
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the script hung for {timeout:.0f}s:\n{err.decode()}")
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


POOL_ROUNDS = {"fork": 20, "spawn": 3, "forkserver": 10}


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_log_to_the_active_run_without_losing_anything(
    tmp_path: Path, store: Store, method: str
) -> None:
    """Children of multiprocessing (a Process, and a Pool left with `with`, which SIGTERMs its workers) log
    with module-level `alexandria.log_metric` and no run id handed over: every point of parent and children
    reaches the run exactly once (written at exit and on SIGTERM: the flush interval is 60 s), each process
    writes only its own segment (its header's pid is the pid of the process whose points it holds), and a
    forked child never writes what its parent had queued."""
    rounds = POOL_ROUNDS[method]
    out = run_script(tmp_path, MP_SCRIPT, method, str(store.root), str(rounds))
    assert out["exitcode"] == 0
    points = 200 * (1 + 8 * rounds)
    print(f"{method}: parent {out['parent']}, child {out['child']}, {len(out['pool'])} pool workers logged")
    parent, children = out["parent"], [out["child"], *out["pool"]]

    engine = open_database(store)
    try:
        assert rows(engine, "SELECT id, status FROM run") == [(out["run"], "finished")]
        counts = rows(engine, "SELECT value, count(*), count(DISTINCT step) FROM metric GROUP BY value")
        by_value = {int(v): (n, d) for v, n, d in counts}
        assert by_value[parent] == (100, 100)
        assert set(by_value) == {parent, *children}
        assert sum(n for pid, (n, _) in by_value.items() if pid != parent) == points
        assert rows(engine, "SELECT count(DISTINCT step) FROM metric WHERE value != ?", float(parent)) == [(points,)]
    finally:
        engine.dispose()

    by_pid = segments_by_pid(store, out["run"])
    assert sorted(by_pid) == sorted({parent, *children})  # one segment per process that logged, no other
    for pid, events in by_pid.items():
        metric_values = {e["value"] for e in events if e["event"] == "metric"}
        assert metric_values == {float(pid)}, f"segment of process {pid} holds points of {metric_values}"
        assert Counter(e["event"] for e in events)["metric"] == by_value[pid][0]
    assert [e["event"] for e in by_pid[parent]][::101] == ["run_started", "run_finished"]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_each_run_of_a_sweep_gets_its_own_workers_points(tmp_path: Path, store: Store, method: str) -> None:
    """Two runs one after the other in one script, each with a Pool whose workers log at module level:
    each run holds exactly the 400 points of its own pool, whatever the start method."""
    out = run_script(tmp_path, SWEEP_SCRIPT, method, str(store.root))
    engine = open_database(store)
    try:
        for entry in out:
            assert entry["workers_saw"] == [entry["run"]], f"{method} workers of run {entry['run']} saw {entry}"
            assert rows(engine, "SELECT count(*) FROM metric WHERE run_id = ?", entry["run"]) == [(400,)], entry
    finally:
        engine.dispose()


POOL_EPOCHS = """
import json, multiprocessing as mp, os, sys
import alexandria


def work(task):
    for i in range(10):
        alexandria.log_metric("m", float(task), step=i)
    return os.getpid()


if __name__ == "__main__":
    store, epochs = sys.argv[1], int(sys.argv[2])
    with alexandria.start_run(experiment="epochs", store=store) as run:
        for epoch in range(epochs):  # a fresh pool per epoch, as data loading code often does
            with mp.get_context("fork").Pool(3) as pool:
                pool.map(work, range(8 * epoch, 8 * epoch + 8))
    print(json.dumps(run.id))
"""


def test_leaving_with_pool_never_hangs_while_a_run_is_active(tmp_path: Path, store: Store) -> None:
    """A script that opens `with Pool(3)` hundreds of times (one per epoch) while a run is active finishes:
    every pool's exit, which SIGTERMs its workers, completes, and every point its workers logged arrives."""
    epochs = 500
    # a hang never ends; 1,500 worker processes started on a loaded 2-core machine may take minutes
    run_id = run_script(tmp_path, POOL_EPOCHS, str(store.root), str(epochs), timeout=600)
    engine = open_database(store)
    try:
        assert rows(engine, "SELECT count(*), count(DISTINCT value) FROM metric WHERE run_id = ?", run_id) == [
            (epochs * 8 * 10, epochs * 8)
        ]
    finally:
        engine.dispose()


# -- the fold order of concurrent segments ----------------------------------------------------------------------
def test_same_timestamp_in_two_segments_projects_the_same_live_and_rebuilt(store: Store) -> None:
    """Two segments of one run (written here by two writers, as two processes would) record the same
    parameter, tag, artifact name, start and end at the very same timestamp with different values (clocks
    have limited resolution). The projection rules must not depend on which segment is folded first: a
    live projection that happens to see the later-named segment first gives the same rows as a rebuild."""
    run_id = uuid.uuid4().hex
    t = 1_700_000_000.5
    first = SegmentWriter(store.run_dir(run_id), run_id)
    first.put(MetricLogged(key="loss", value=1.0, step=0, time=t - 1))
    first.drain()  # `first`'s segment exists (and sorts first), with nothing contested in it yet
    second = SegmentWriter(store.run_dir(run_id), run_id)

    def contested(w: SegmentWriter, v: str) -> None:
        w.put(RunStarted(experiment=f"exp-{v}", time=t))
        w.put(ParamLogged(key="lr", value=v, time=t))
        w.put(TagSet(key="stage", value=v, time=t))
        w.put(ArtifactSaved(name="model", path=f"artifacts/{run_id}/model-{v}", size=1, sha256=v * 64, time=t))
        w.put(RunFinished(status="finished" if v == "a" else "failed", time=t))

    contested(second, "b")
    second.close()
    engine = open_database(store)  # live: folds the second segment's events first
    contested(first, "a")
    first.close()
    Projector(store, engine).catch_up()
    tables = ("run", "parameter", "tag", "artifact")
    live = {name: table_rows(engine, name) for name in tables}
    engine.dispose()

    rebuild(store)  # folds the segments in name order
    engine = open_database(store, catch_up=False)
    try:
        assert {name: table_rows(engine, name) for name in tables} == live
    finally:
        engine.dispose()
