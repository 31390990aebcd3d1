"""The core's contract on PostgreSQL too: one schema, the same rows as SQLite, exactly-once with several
projectors at once, an atomic rebuild, and the read functions.

Tests taking `backend_store` run once per backend (the store's SQLite file, then a fresh database on the
session's own PostgreSQL server, see conftest.py); the others compare the two backends or exercise what
only PostgreSQL has. Everything uses real writer and projector processes, killed with a real `kill -9`
where it says so. Random moments come from a seed printed by each test; ALEXANDRIA_TEST_SEED replays one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

import alexandria
from alexandria.backends import backend_for
from alexandria.backends.postgres import live_schema
from alexandria.db import engines, open_database, reader_engine, writer_engine
from alexandria.errors import ReadOnlyError
from alexandria.projector import Projector
from alexandria.rebuild import rebuild
from alexandria.schema import USER_TABLES
from alexandria.store import Store
from tests.conftest import (
    complete_lines,
    make_seed,
    python,
    rebuilt_snapshot,
    rows,
    run_python,
    scalar,
    snapshot,
)

# -- helpers shared by both backends -------------------------------------------------------------------------


def _value(v: Any) -> float | None:
    v = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(v, v)
    return None if v != v else float(v)


def metric_lines(store: Store) -> Counter[tuple[Any, ...]]:
    """Every complete metric line on disk, parsed here independently of the library, as a metric row."""
    found: Counter[tuple[Any, ...]] = Counter()
    for segment in store.segments():
        for _, line in complete_lines(segment):
            if line.startswith(b'{"event":"metric"'):
                e = json.loads(line)
                found[(segment.parent.name, e["key"], _value(e["value"]), e.get("step"), e["time"])] += 1
    return found


def metric_rows(engine: Engine) -> Counter[tuple[Any, ...]]:
    return Counter(rows(engine, "SELECT run_id, key, value, step, timestamp FROM metric"))


def fully_folded(store: Store, engine: Engine) -> None:
    """Every segment's committed position is the end of its last complete line."""
    positions = dict(rows(engine, 'SELECT path, "offset" FROM log_segment'))
    for segment in store.segments():
        data = segment.read_bytes()
        assert positions.get(store.relative(segment), 0) == data.rfind(b"\n") + 1, segment


def on(store: Store, url: str | None) -> Store:
    """The same store (the same logs) with its projection in another database."""
    return dataclasses.replace(store, db_url=url)


# -- real processes ------------------------------------------------------------------------------------------
OWNER = """
import os, sys, time
from pathlib import Path
import alexandria

store, n = sys.argv[1], int(sys.argv[2])
data = Path(store).parent / "train.csv"
data.write_text("x,y,label\\n1,2.5,a\\n3,4.0,b\\n")
weights = Path(store).parent / "weights"
weights.mkdir(exist_ok=True)
(weights / "w.bin").write_bytes(os.urandom(64))
with alexandria.start_run(experiment="pg", tags={"team": "vision", "note": "naïve ✓ 雨"}, store=store) as run:
    print(run.id, flush=True)
    run.log_params({"lr": 0.01, "layers": [64, 64], "name": "adam", "eps": 1e-8})
    run.log_dataset(str(data), role="train")
    for step in range(n):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / n}, step=step)
        if step % 97 == 0:
            run.log_metric("odd", [float("nan"), float("inf"), -float("inf"), 2.5][step % 4], step=step)
            run.set_tag("progress", str(step))
            time.sleep(0.005)  # the projectors fold while it writes
    run.log_metric("no-step", 3.0)
    run.log_artifact(str(data), type="dataset")
    run.log_artifact(str(weights), name="model", type="model")
    with alexandria.start_run(experiment="pg-child", parent=run, store=store, capture=False) as child:
        child.log_metric("child", 1.5, step=0)
"""

ATTACHED = """
import os, sys, alexandria
store, run_id, k, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
run = alexandria.start_run(run_id=run_id, store=store)
for step in range(n):
    run.log_metric(f"w{k}", step * 0.5, step)
    if step % 500 == 0:
        run.set_tag("writer", k)  # several processes, one tag: the latest wins
        run.log_param(f"p{step % 3}", k)  # ... and the earliest parameter value
run.end()
print("done", flush=True)
"""

DOOMED = """
import sys, time, alexandria
run = alexandria.start_run(experiment="doomed", store=sys.argv[1], capture=False)
run.log_metric("loss", float("-inf"), 0)
run.set_tag("stage", "before the end")
run.flush()
print(run.id, flush=True)
time.sleep(120)
"""

PROJECTOR = """
import sys
from alexandria.projector import Projector
from alexandria.db import open_database
from alexandria.store import Store

store = Store.open(sys.argv[1], db_url=sys.argv[3] or None)
engine = open_database(store, catch_up=False)
print("folding", flush=True)  # then each commit: a test that kills it mid-fold waits for one it chose, not a time
Projector(store, engine).catch_up(lambda n: print("committed", n, flush=True), transaction_bytes=int(sys.argv[2]))
"""

RACER = """
import os, sys, time
from alexandria.projector import Projector
from alexandria.db import open_database
from alexandria.store import Store

store = Store.open(sys.argv[1], db_url=sys.argv[3] or None)
stop = sys.argv[4]
engine = open_database(store, catch_up=False)
projector = Projector(store, engine)
print("racing", flush=True)
folded = 0
while not os.path.exists(stop):
    folded += projector.catch_up(transaction_bytes=int(sys.argv[2]), wait=False).events
    time.sleep(0.005)
folded += projector.catch_up().events
print(folded, flush=True)
"""


def finish(proc: subprocess.Popen[bytes], timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err.decode()}"
    return out.decode()


# -- (a) the same rows: live and rebuilt, SQLite and PostgreSQL ----------------------------------------------------
def test_real_writers_project_the_same_rows_live_and_rebuilt_on_sqlite_and_postgres(
    store: Store, postgres_url: str
) -> None:
    """A run with parameters, metrics (NaN, +-inf, no step), tags, a dataset, a file and a directory
    artifact, a child run, code and environment records, three processes writing it at once, and a run
    whose writer is killed with SIGKILL (crashed): projected live into SQLite and PostgreSQL while the
    writers write, then rebuilt on each. Every user table is equal row for row (surrogate ids aside)
    live and rebuilt, and between the two backends."""
    sqlite_store, pg_store = on(store, None), on(store, postgres_url)
    targets = [open_database(sqlite_store), open_database(pg_store)]
    try:
        owner = python(OWNER, str(store.root), "3000")
        assert owner.stdout is not None
        run_id = owner.stdout.readline().decode().strip()
        assert len(run_id) == 32, owner.communicate()[1].decode()
        attached = [python(ATTACHED, str(store.root), run_id, str(k), "2000") for k in range(2)]
        doomed = python(DOOMED, str(store.root))
        assert doomed.stdout is not None
        assert len(doomed.stdout.readline().strip()) == 32, doomed.communicate()[1].decode()
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.communicate(timeout=60)
        while any(p.poll() is None for p in [owner, *attached]):
            for engine in targets:
                Projector(store, engine).catch_up(transaction_bytes=32 << 10)
        for proc in [owner, *attached]:
            finish(proc)
        live = []
        for engine, st in zip(targets, (sqlite_store, pg_store), strict=True):
            Projector(st, engine).catch_up()
            fully_folded(st, engine)
            assert metric_rows(engine) == metric_lines(st)
            live.append(snapshot(engine))
    finally:
        for engine in targets:
            engine.dispose()

    sqlite_live, pg_live = live
    assert len(sqlite_live["metric"]) == 2 * 3000 + 2 * 2000 + 31 + 1 + 1 + 1
    statuses = {r[0]: r[5] for r in sqlite_live["run"]}
    assert sorted(statuses.values()) == ["crashed", "finished", "finished"]
    assert {r[2] for r in sqlite_live["metric"] if r[1] == "odd"} == {None, math.inf, -math.inf, 2.5}
    assert len(sqlite_live["code"]) == len(sqlite_live["environment"]) >= 1
    assert [r[1] for r in sqlite_live["artifact"] if r[1] in ("model", "train.csv")] == ["model", "train.csv"]
    for table in USER_TABLES:
        assert pg_live[table] == sqlite_live[table], f"{table}: PostgreSQL differs from SQLite"
    assert rebuilt_snapshot(pg_store) == pg_live
    assert rebuilt_snapshot(sqlite_store) == sqlite_live


# -- (b) exactly once after kill -9 of a projector mid-fold ---------------------------------------------------------
NEW_RUN = """
import sys, alexandria
print(alexandria.start_run(experiment=sys.argv[2], store=sys.argv[1], capture=False).id)
"""

BACKLOG = """
import sys, alexandria
store, run_id, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
run = alexandria.start_run(run_id=run_id, store=store, capture=False)
for step in range(n):
    run.log_metric(key, step * 0.001, step)
run.end()
"""


def test_projector_killed_mid_fold_resumes_exactly_once(backend_store: Store) -> None:
    """A projector folding a big backlog in small transactions is SIGKILLed at random moments and started
    again. After every kill the committed metric rows are exactly the metric lines before the committed
    positions; in the end they equal the lines on disk (none lost, none doubled) and the tables equal a
    rebuild."""
    store, rng = backend_store, random.Random(make_seed())
    per_writer, keys = 40_000, ["w0", "w1", "w2"]
    run_id = run_python(NEW_RUN, str(store.root), "backlog").strip()
    for proc in [python(BACKLOG, str(store.root), run_id, key, str(per_writer)) for key in keys]:
        finish(proc)
    key_of = {}
    for segment in store.segments():
        found = [json.loads(line) for _, line in complete_lines(segment) if line.startswith(b'{"event":"metric"')]
        if found:
            key_of[store.relative(segment)] = (found[0]["key"], segment.read_bytes())
    assert sorted(k for k, _ in key_of.values()) == keys

    def committed_prefix() -> int:
        engine = open_database(store, catch_up=False)
        try:
            positions = dict(rows(engine, 'SELECT path, "offset" FROM log_segment'))
            counts = dict(rows(engine, "SELECT key, count(*) FROM metric GROUP BY key"))
            doubled = rows(engine, "SELECT key, step FROM metric GROUP BY key, step HAVING count(*) > 1 LIMIT 5")
        finally:
            engine.dispose()
        assert doubled == []
        for rel, (key, data) in key_of.items():
            offset = positions.get(rel, 0)
            assert data[offset - 1 : offset] in (b"\n", b""), f"position {offset} of {rel} is not at a line end"
            assert counts.get(key, 0) == data.count(b'\n{"event":"metric"', 0, offset), key
        return sum(counts.values())

    url = store.db_url or ""
    progress: list[tuple[int | None, int]] = []
    for _ in range(6):
        proc = python(PROJECTOR, str(store.root), str(32 << 10), url)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"folding\n", proc.communicate()[1].decode()
        # Each projector is killed a random moment after a commit chosen among its first (the backlog is hundreds
        # of transactions): by its own report, because an idle machine folds the whole backlog within any delay
        # a test could guess, and a loaded one may not have started. It may have finished, if little was left.
        for _ in range(rng.randint(1, 20)):
            if not proc.stdout.readline():
                break
        time.sleep(rng.uniform(0.0, 0.005))
        proc.send_signal(signal.SIGKILL)  # unless it has finished the backlog and been reaped meanwhile
        proc.communicate(timeout=60)
        progress.append((proc.returncode, committed_prefix()))
    print(f"(exit code, metric rows) after each kill: {progress}")
    assert any(code == -signal.SIGKILL and 0 < n < 3 * per_writer for code, n in progress), "no kill hit a fold"
    finish(python(PROJECTOR, str(store.root), str(32 << 10), url))
    assert committed_prefix() == 3 * per_writer
    engine = open_database(store)
    try:
        per_key = "SELECT key, count(*), count(DISTINCT step), min(step), max(step) FROM metric GROUP BY key"
        per_key += " ORDER BY key"
        assert rows(engine, per_key) == [(key, per_writer, per_writer, 0, per_writer - 1) for key in keys]
        assert metric_rows(engine) == metric_lines(store)
        live = snapshot(engine)
    finally:
        engine.dispose()
    assert rebuilt_snapshot(store) == live


# -- (c) three projectors racing on the same logs while writers write ------------------------------------------------
def race(store: Store, tmp_path: Path, *, writers: int, points: int, rebuilds: int = 0) -> list[int]:
    """Three projector processes fold the store at once (small transactions, never waiting for each other)
    while writer processes log into two runs; `rebuilds` rebuilds run meanwhile. Returns how many events
    each projector folded."""
    stop = tmp_path / "stop"
    stop.unlink(missing_ok=True)
    open_database(store, catch_up=False).dispose()
    racers = [python(RACER, str(store.root), str(16 << 10), store.db_url or "", str(stop)) for _ in range(3)]
    for racer in racers:
        assert racer.stdout is not None
        assert racer.stdout.readline() == b"racing\n", racer.communicate()[1].decode()
    owners = [python(OWNER, str(store.root), str(points)) for _ in range(2)]
    run_ids = []
    for owner in owners:
        assert owner.stdout is not None
        run_ids.append(owner.stdout.readline().decode().strip())
        assert len(run_ids[-1]) == 32, owner.communicate()[1].decode()
    attached = [python(ATTACHED, str(store.root), run_ids[k % 2], str(k), str(points)) for k in range(writers)]
    for _ in range(rebuilds):
        time.sleep(0.3)
        rebuild(store, transaction_bytes=256 << 10)
    for proc in owners + attached:
        finish(proc)
    stop.touch()
    return [int(finish(racer).strip().splitlines()[-1]) for racer in racers]


def test_three_projectors_racing_fold_every_line_exactly_once(backend_store: Store, tmp_path: Path) -> None:
    """Three projector processes fold one store into one database at once while six writer processes log
    into two runs. In the end every metric row is there exactly once, equal to the metric lines on disk,
    every position is at the end of its segment, and every user table equals a rebuild's (the run, tag,
    parameter and artifact rows that several segments touch came out the same whichever projector folded
    which segment first). On PostgreSQL the projectors really do share the work."""
    store = backend_store
    folded = race(store, tmp_path, writers=4, points=3000)
    print(f"events folded by each projector: {folded}")
    engine = open_database(store)
    try:
        assert metric_rows(engine) == metric_lines(store)
        assert sum(folded) == scalar(engine, "SELECT sum(events) FROM log_segment")
        fully_folded(store, engine)
        live = snapshot(engine)
    finally:
        engine.dispose()
    assert sorted(r[5] for r in live["run"]) == ["finished"] * 4  # two owners, two children
    if store.db_url:
        assert sum(1 for n in folded if n) >= 2, f"one projector did everything: {folded}"
    assert rebuilt_snapshot(store) == live


def test_rebuilds_while_projectors_race_and_writers_write_lose_and_double_nothing(
    store: Store, postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL: two rebuilds swap in fresh schemas while three projectors fold and writers write. A fold
    never spans a swap (the schema lock), so after the last swap the projectors continue from the positions
    the rebuild committed: every metric line is in the database exactly once."""
    pg = on(store, postgres_url)
    race(pg, tmp_path, writers=2, points=3000, rebuilds=2)
    engine = open_database(pg)
    try:
        assert metric_rows(engine) == metric_lines(pg)
        fully_folded(pg, engine)
        leftovers = rows(engine, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'alexandria%'")
        assert leftovers == [("alexandria",)]
        live = snapshot(engine)
    finally:
        engine.dispose()
    assert rebuilt_snapshot(pg) == live


# -- (d) a rebuild is atomic for readers ---------------------------------------------------------------------------
def test_a_reader_polling_during_a_rebuild_sees_the_old_or_the_new_tables_never_half(backend_store: Store) -> None:
    """The database holds the first 20,000 points of a run; 40,000 more are on disk, not folded. While a
    rebuild replays everything in many small transactions, a reader polls the metric count and a join: it
    sees 20,000 (the old tables) until the swap and 60,000 (the new ones) after it, nothing in between."""
    store = backend_store
    run_id = run_python(NEW_RUN, str(store.root), "atomic").strip()
    finish(python(BACKLOG, str(store.root), run_id, "first", "20000"))
    open_database(store).dispose()
    finish(python(BACKLOG, str(store.root), run_id, "second", "40000"))
    reader = reader_engine(store.database)
    seen: list[tuple[Any, ...]] = []
    done = threading.Event()
    sql = "SELECT count(*), count(DISTINCT m.key), max(r.experiment_name) FROM metric m JOIN run r ON r.id = m.run_id"

    def poll() -> None:
        while not done.is_set():
            seen.append(rows(reader, sql)[0])

    poller = threading.Thread(target=poll)
    try:
        poller.start()
        time.sleep(0.05)
        rebuild(store, transaction_bytes=64 << 10)
        time.sleep(0.1)
    finally:
        done.set()
        poller.join(timeout=60)
    reader.dispose()
    counts = Counter(seen)
    print(f"{len(seen)} polls: {dict(counts)}")
    assert set(counts) <= {(20_000, 1, "atomic"), (60_000, 2, "atomic")}, counts
    assert seen[0] == (20_000, 1, "atomic") and seen[-1] == (60_000, 2, "atomic")
    assert counts[(20_000, 1, "atomic")] >= 3, "the reader barely polled during the rebuild"


# -- (e) the read functions and the qex views ---------------------------------------------------------------------
QEX_LIKE = """
import sys
from pathlib import Path
import numpy as np
import alexandria
store = sys.argv[1]
rho = Path(store).parent / "rho.npy"
np.save(rho, np.eye(2) / 2)
with alexandria.start_run(experiment="bell", store=store, capture=False) as run:
    run.log_params({"qex.backend": "numpy", "qex.params": '{"shots": 10}'})
    run.set_tag("qex.metadata", '{"qubits": 1}')
    run.log_artifact(str(rho), name="density_matrix", type="application/x-npy")
    run.log_artifact(str(rho), name="plot", type="text/html")
    for step in range(5000):
        run.log_metric("loss", [float("nan"), 1.0 / (step + 1), float("inf")][step % 3 if step % 50 == 0 else 1], step)
    for i in range(7):
        run.log_metric("loss", -1.0 * i)  # points without a step
    run.log_metric("loss", 99.0, step=2500)  # a second point at one step
print(run.id)
"""


def test_read_functions_and_qex_views_give_the_same_answers_on_both_backends(store: Store, postgres_url: str) -> None:
    """metric_history (steps, NaN, inf, points without a step first), downsample by step and by time (whole
    and zoomed), list_runs, run_details, runs_table, plain SQL through the read-only reader, and the qex
    seed's `runs` and `artifacts` views: the same answers from PostgreSQL as from SQLite."""
    run_id = run_python(QEX_LIKE, str(store.root)).strip()
    answers = []
    for st in (on(store, None), on(store, postgres_url)):
        with alexandria.Reader(st) as r:
            h = r.history(run_id, "loss", with_times=True)
            assert len(h.values) == 5000 + 7 + 1 and np.isnan(h.steps[:7]).all()
            t0, t1 = float(np.nanmin(h.times)), float(np.nanmax(h.times))
            samples = [
                r.downsample(run_id, "loss", 100),
                r.downsample(run_id, "loss", 64, start=1000, end=1999),
                r.downsample(run_id, "loss", 50, x="time"),
                r.downsample(run_id, "loss", 10, x="time", start=t0, end=(t0 + t1) / 2),
            ]
            details = r.run(run_id[:8])
            table = r.table([run_id], metrics=["loss"])
            views = (
                r.sql("SELECT * FROM runs"),
                r.sql("SELECT artifact_id, run_id, artifact_name, artifact_path, artifact_type FROM artifacts"),
            )
            answers.append((h, samples, r.runs(), details, table.to_dict("records"), views))
            with pytest.raises(ReadOnlyError):
                r.sql("DELETE FROM metric")
    (h0, s0, runs0, d0, t0_, v0), (h1, s1, runs1, d1, t1_, v1) = answers
    for a, b in ((h0.steps, h1.steps), (h0.values, h1.values), (h0.times, h1.times)):
        assert np.array_equal(a, b, equal_nan=True)
    for a, b in zip(s0, s1, strict=True):
        assert a.total == b.total and np.array_equal(a.count, b.count)
        for field in ("x", "min", "max", "last"):
            assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=True), field
    assert runs0 == runs1
    assert {k: v for k, v in d0.items() if k not in ("code", "environment")} == {
        k: v for k, v in d1.items() if k not in ("code", "environment")
    }
    assert repr(t0_) == repr(t1_)
    assert v0 == v1
    assert v0[0][1][0][0] == run_id and v0[0][1][0][3] == "numpy" and len(v0[1][1]) == 1


# -- the database URL ------------------------------------------------------------------------------------------------
def test_a_store_takes_its_database_from_alexandria_db_and_the_url_names_the_schema(
    store: Store, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$ALEXANDRIA_DB points a store's projection at PostgreSQL (the SQLite file is never made); the URL's
    search path names the schema (default `alexandria`), a rebuild keeps it, and the reader's sessions are
    read-only even for a raw connection."""
    assert postgres_url.startswith("postgresql://")
    assert postgres_url_driver(postgres_url) == "postgresql+psycopg"
    custom = postgres_url + "?options=-csearch_path%3Dteam_a"
    monkeypatch.setenv("ALEXANDRIA_DB", custom)
    st = Store.open(store.root)
    assert st.db_url == custom and st.database == custom
    assert live_schema(postgres_url_obj(custom)) == "team_a"
    run_id = run_python(
        "import sys, alexandria\n"
        "with alexandria.start_run(experiment='env', store=sys.argv[1], capture=False) as run:\n"
        "    run.log_metric('m', 1.0, 0)\n"
        "print(run.id)",
        str(st.root),
    ).strip()
    open_database(st, catch_up=False).dispose()  # makes the schema and its tables
    writer, reader = engines(st.database)
    try:
        Projector(st, writer).catch_up()
        assert not st.db_path.exists()
        assert rows(reader, "SELECT current_schema(), count(*) FROM metric") == [("team_a", 1)]
        assert rows(reader, "SELECT id, status FROM run") == [(run_id, "finished")]
        with pytest.raises(Exception, match="read-only transaction"), reader.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE nope (x int)")
    finally:
        writer.dispose()
    rebuild(st)
    try:
        assert rows(reader, "SELECT current_schema(), count(*) FROM metric") == [("team_a", 1)]
        assert rows(reader, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'team_a%'") == [("team_a",)]
    finally:
        reader.dispose()
    plain = writer_engine(postgres_url)
    try:
        assert rows(plain, "SELECT count(*) FROM pg_namespace WHERE nspname = 'alexandria'") == [(0,)]
    finally:
        plain.dispose()


def postgres_url_obj(url: str) -> Any:
    return backend_for(url).url


def postgres_url_driver(url: str) -> str:
    return str(postgres_url_obj(url).drivername)
