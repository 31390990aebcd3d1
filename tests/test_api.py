"""The logging API, end to end through the log and into SQL."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np
import pytest

import alexandria
from alexandria import tracking
from alexandria.files import write_atomically
from alexandria.store import Store
from tests.conftest import child_env, query, run_python


def test_round_trip_through_sql(store: Store, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights" * 100)
    with alexandria.start_run(experiment="mnist", tags={"team": "vision"}) as run:
        run.log_params({"lr": 0.01, "batch": 64})
        run.log_param("optimizer", "adam")
        for step in range(1000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metrics({"acc": 0.5, "f1": 0.25}, step=999)
        run.set_tag("stage", "tuned")
        run.set_tags({"stage": "final", "owner": "ana"})
        stored = run.log_artifact(model, type="model")
    assert len(run.id) == 32 and int(run.id, 16) >= 0

    assert query(store, "SELECT id, experiment_name, status FROM run") == [(run.id, "mnist", "finished")]
    ((start, end),) = query(store, "SELECT timestamp_start, timestamp_end FROM run")
    assert start <= end
    assert query(store, "SELECT key, value FROM parameter ORDER BY key") == [
        ("batch", "64"),
        ("lr", "0.01"),
        ("optimizer", "adam"),
    ]
    assert query(store, "SELECT count(*), min(step), max(step), sum(value) FROM metric WHERE key = 'loss'") == [
        (1000, 0, 999, pytest.approx(sum(1.0 / (s + 1) for s in range(1000))))
    ]
    assert query(store, "SELECT key, value, step FROM metric WHERE key != 'loss' ORDER BY key") == [
        ("acc", 0.5, 999),
        ("f1", 0.25, 999),
    ]
    assert query(store, "SELECT json_extract(tags, '$.team'), json_extract(tags, '$.stage') FROM run") == [
        ("vision", "final")
    ]
    assert query(store, "SELECT key, value FROM tag ORDER BY key") == [
        ("owner", "ana"),
        ("stage", "final"),
        ("team", "vision"),
    ]
    assert query(store, "SELECT name, type, path, size FROM artifact") == [("model.pt", "model", stored, 700)]
    assert (store.root / stored).read_bytes() == model.read_bytes()


def test_later_calls_win_when_the_clock_stands_still(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """time.time() may return the same float twice (its resolution at today's epoch is ~240 ns), and the
    projector breaks a tie of times by value: "tuned" > "final" would let the earlier tag win, and the
    larger SHA-256 the earlier artifact. So every event whose fold rule compares times gets a time strictly
    later than the previous one of its process. Pinned here with a clock that never moves."""
    now = time.time()
    monkeypatch.setattr(tracking, "_time", lambda: now)
    # the earlier file's hash is the larger: it would win a tie
    earlier, later = sorted((b"weights-1", b"weights-2"), key=lambda c: hashlib.sha256(c).hexdigest(), reverse=True)
    (tmp_path / "earlier").write_bytes(earlier)
    (tmp_path / "later").write_bytes(later)
    with alexandria.start_run(experiment="frozen", capture=False) as run:
        run.set_tag("stage", "tuned")
        run.set_tag("stage", "final")
        run.log_artifact(tmp_path / "earlier", name="model.bin")
        run.log_artifact(tmp_path / "later", name="model.bin")
    assert query(store, "SELECT value FROM tag WHERE key = 'stage'") == [("final",)]
    assert query(store, "SELECT json_extract(tags, '$.stage') FROM run") == [("final",)]
    assert query(store, "SELECT sha256 FROM artifact") == [(hashlib.sha256(later).hexdigest(),)]
    ((start, end),) = query(store, "SELECT timestamp_start, timestamp_end FROM run")
    assert now <= start < end


def test_nan_and_infinities_are_kept(store: Store) -> None:
    with alexandria.start_run(experiment="nan") as run:
        run.log_metric("x", math.nan, step=0)
        run.log_metric("x", math.inf, step=1)
        run.log_metric("x", -math.inf, step=2)
        run.log_metric("x", np.float32(1.5), step=3)
        run.log_metric("x", 7, step=4)
    rows = query(store, "SELECT step, value FROM metric ORDER BY step")
    assert rows[0] == (0, None)  # SQLite has no NaN: NULL stands for it
    assert rows[1:] == [(1, math.inf), (2, -math.inf), (3, 1.5), (4, 7.0)]
    segment = next(store.segments()).read_text()
    assert '"value":"NaN"' in segment and '"value":"Infinity"' in segment and '"value":"-Infinity"' in segment


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("adam", "adam"),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (0.1, "0.1"),
        (1e-5, "1e-05"),
        (math.nan, "nan"),
        (-math.inf, "-inf"),
        (None, "null"),
        (np.int64(5), "5"),
        (np.float32(0.5), "0.5"),
        ([1, 2, "a"], '[1,2,"a"]'),
        ({"b": 1, "a": [2]}, '{"a":[2],"b":1}'),
        (Path("/data/x.csv"), "/data/x.csv"),
    ],
)
def test_parameter_conversion_is_documented_and_stable(store: Store, value: object, text: str) -> None:
    assert alexandria.param_to_str(value) == text
    with alexandria.start_run(experiment="params") as run:
        run.log_param("p", value)
    assert query(store, "SELECT value FROM parameter") == [(text,)]


def test_same_parameter_twice(store: Store) -> None:
    with alexandria.start_run(experiment="p") as run:
        run.log_param("lr", 0.1)
        run.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(
            alexandria.ParamConflictError, match=r"parameter 'lr' of run .* is already '0.1'; it cannot become '0.2'"
        ):
            run.log_param("lr", 0.2)
        with pytest.raises(alexandria.ParamConflictError):
            run.log_params({"new": 1, "lr": 0.3})
        run.log_metric("after", 1.0)
    # nothing of the refused call was logged, everything else was
    assert query(store, "SELECT key, value FROM parameter ORDER BY key") == [("lr", "0.1")]
    assert query(store, "SELECT key FROM metric") == [("after",)]


def test_bad_input_is_refused_with_a_clear_error(store: Store, tmp_path: Path) -> None:
    with alexandria.start_run(experiment="bad") as run:
        run.log_metric("good", 1.0, step=0)
        with pytest.raises(
            alexandria.InvalidInputError, match="metric 'loss': value must be a number, got the string '0.5'"
        ):
            run.log_metric("loss", "0.5")
        with pytest.raises(alexandria.InvalidInputError, match="cannot be converted to float"):
            run.log_metric("loss", [1, 2])
        with pytest.raises(alexandria.InvalidInputError, match="metric key must be a non-empty string"):
            run.log_metric("", 1.0)
        with pytest.raises(alexandria.InvalidInputError, match="step must be an integer or None, got 1.5"):
            run.log_metric("loss", 1.0, step=1.5)
        with pytest.raises(alexandria.InvalidInputError, match="does not exist"):
            run.log_artifact(tmp_path / "missing.bin")
        run.log_metric("good", 2.0, step=np.int64(1))
    assert query(store, "SELECT step, value FROM metric ORDER BY step") == [(0, 1.0), (1, 2.0)]


def test_with_block_status(store: Store) -> None:
    with pytest.raises(ZeroDivisionError), alexandria.start_run(experiment="boom") as failed:
        failed.log_metric("x", 1.0)
        1 / 0  # noqa: B018
    run = alexandria.start_run(experiment="explicit")
    run.log_metric("x", 2.0)
    run.end()
    run.end()  # a second end is harmless
    rows = dict(((r, (s, e)) for r, s, e in query(store, "SELECT id, status, error FROM run")))
    assert rows[failed.id] == ("failed", "ZeroDivisionError: division by zero")
    assert rows[run.id] == ("finished", None)
    with pytest.raises(alexandria.RunEndedError, match="was ended"):
        run.log_metric("x", 3.0)


def test_module_level_calls_use_the_active_run(store: Store) -> None:
    with pytest.raises(alexandria.NoActiveRunError, match="no active run"):
        alexandria.log_metric("x", 1.0)
    with alexandria.start_run(experiment="outer") as outer:
        alexandria.log_param("where", "outer")
        with alexandria.start_run(experiment="inner") as inner:
            assert alexandria.active_run() is inner
            alexandria.log_metric("x", 1.0, step=0)
            alexandria.set_tag("t", "inner")
        assert alexandria.active_run() is outer
        alexandria.log_metrics({"y": 2.0}, step=1)
    assert alexandria.active_run() is None
    rows = query(store, "SELECT r.experiment_name, m.key FROM metric m JOIN run r ON r.id = m.run_id ORDER BY m.key")
    assert rows == [("inner", "x"), ("outer", "y")]


def test_attach_by_run_id_does_not_restart_or_end_the_run(store: Store) -> None:
    owner = alexandria.start_run(experiment="shared")
    owner.log_metric("x", 1.0, step=0)
    with alexandria.start_run(run_id=owner.id) as attached:
        attached.log_metric("x", 2.0, step=1)
    owner.flush()
    assert query(store, "SELECT status FROM run") == [("running",)]
    owner.end()
    assert query(store, "SELECT status, count(*) FROM run JOIN metric ON metric.run_id = run.id") == [("finished", 2)]
    assert len(list(store.segments())) == 2  # one segment per writer
    with pytest.raises(alexandria.RunNotFoundError, match="no run 'ffffffffffffffffffffffffffffffff'"):
        alexandria.start_run(run_id="f" * 32)
    with pytest.raises(alexandria.InvalidInputError, match="run_id must be a 32-character"):
        alexandria.start_run(run_id="nope")
    with pytest.raises(alexandria.InvalidInputError, match="start_run needs experiment="):
        alexandria.start_run()


def test_store_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALEXANDRIA_STORE", raising=False)
    monkeypatch.delenv("ALEXANDRIA_RUN_ID", raising=False)
    with alexandria.start_run(experiment="default") as run:
        run.log_metric("x", 1.0)
    assert (tmp_path / "alexandria_data" / "runs" / run.id).is_dir()
    monkeypatch.setenv("ALEXANDRIA_STORE", str(tmp_path / "from-env"))
    with alexandria.start_run(experiment="env") as run:
        pass
    assert (tmp_path / "from-env" / "runs" / run.id).is_dir()
    with alexandria.start_run(experiment="arg", store=tmp_path / "from-arg") as run:
        pass
    assert (tmp_path / "from-arg" / "runs" / run.id).is_dir()


def test_artifact_directory_and_replacement(store: Store, tmp_path: Path) -> None:
    d = tmp_path / "ckpt"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a")
    (d / "sub" / "b.txt").write_text("bb")
    f = tmp_path / "notes.txt"
    with alexandria.start_run(experiment="art") as run:
        run.log_artifact(d)
        f.write_text("first")
        run.log_artifact(f)
        f.write_text("second version")
        path = run.log_artifact(f, type="log")
        with pytest.raises(alexandria.InvalidInputError, match="must be a plain file name"):
            run.log_artifact(f, name="../escape.txt")
    rows = query(store, "SELECT name, type, size FROM artifact ORDER BY name")
    assert rows == [("ckpt", "directory", 3), ("notes.txt", "log", 14)]
    assert (store.root / path).read_text() == "second version"
    assert (store.root / "artifacts" / run.id / "ckpt" / "sub" / "b.txt").read_text() == "bb"


def test_record_artifact_of_a_file_already_in_the_store(store: Store, tmp_path: Path) -> None:
    """A file the program wrote into the store itself (as qex writes its results) is recorded, not copied;
    its size and SHA-256 are read from it unless both are given."""
    data = b"results" * 10
    (store.root / "results").mkdir()
    inside = store.root / "results" / "rho.npy"
    write_atomically(inside, data)
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(data)
    with alexandria.start_run(experiment="recorded", capture=False) as run:
        path = run.record_artifact(inside, type="application/x-npy", name="density_matrix")
        run.record_artifact(inside, name="given", size=1, sha256="0" * 64)
        with pytest.raises(alexandria.InvalidInputError, match="is not inside the store"):
            run.record_artifact(outside)
    assert path == "results/rho.npy"
    assert query(store, "SELECT name, type, path, size, sha256 FROM artifact ORDER BY name") == [
        ("density_matrix", "application/x-npy", "results/rho.npy", 70, hashlib.sha256(data).hexdigest()),
        ("given", None, "results/rho.npy", 1, "0" * 64),
    ]
    assert list((store.root / "artifacts").iterdir()) == []  # nothing was copied


def test_writer_failure_is_raised_on_the_next_call_and_nothing_is_lost(store: Store) -> None:
    run = alexandria.start_run(experiment="disk")
    run.log_metric("x", 1.0, step=0)
    run.flush()
    segment = run._writer.path
    assert segment is not None
    real_fd = run._writer._fd
    # A closed descriptor stands in for a dead disk: writes fail with EBADF.
    import os

    spare = os.dup(real_fd)
    os.close(real_fd)
    run.log_metric("x", 2.0, step=1)
    with pytest.raises(alexandria.WriterError, match="cannot append to event log"):
        run.flush()
    os.dup2(spare, real_fd)  # the disk is back
    os.close(spare)
    run.log_metric("x", 3.0, step=2)
    run.end()
    assert query(store, "SELECT step, value FROM metric ORDER BY step") == [(0, 1.0), (1, 2.0), (2, 3.0)]


def test_metric_history_reads_into_numpy(store: Store) -> None:
    from alexandria.db import reader_engine
    from alexandria.query import metric_history

    with alexandria.start_run(experiment="history") as run:
        for step in (2, 0, 1):
            run.log_metric("loss", float(step) / 2, step=step)
        run.log_metric("loss", math.nan, step=3)
        run.log_metric("loss", -math.inf)  # no step
        run.log_metric("other", 9.0, step=0)
    query(store, "SELECT 1")  # fold
    history = metric_history(reader_engine(store.db_path), run.id, "loss", with_times=True)
    np.testing.assert_array_equal(history.steps, [np.nan, 0, 1, 2, 3])
    np.testing.assert_array_equal(history.values, [-np.inf, 0.0, 0.5, 1.0, np.nan])
    assert history.times is not None and history.times.shape == (5,) and np.all(history.times > 1e9)
    assert metric_history(reader_engine(store.db_path), run.id, "missing").values.shape == (0,)


def test_a_run_logged_after_the_fact_keeps_its_own_times(store: Store) -> None:
    """An import gives the times things happened: the run's start and end, each point's timestamp."""
    started, ended = 1_600_000_000.25, 1_600_003_600.5
    run = alexandria.start_run(experiment="imported", store=store, capture=False, start_time=started)
    run.log_metric("loss", 0.5, step=0, timestamp=started + 1)
    run.log_metrics({"loss": 0.25, "acc": 0.75}, step=1, timestamp=int(started) + 2)
    run.log_metric("loss", 0.125, step=2)  # no timestamp: now
    run.end(end_time=ended)
    with alexandria.Reader(store) as reader:
        row = reader.run(run.id)["run"]
        _, points = reader.sql(f"SELECT key, step, timestamp FROM metric WHERE run_id = '{run.id}' ORDER BY step, key")
    assert (row["timestamp_start"], row["timestamp_end"], row["status"]) == (started, ended, "finished")
    assert points[:3] == [("loss", 0, started + 1), ("acc", 1, 1_600_000_002.0), ("loss", 1, 1_600_000_002.0)]
    assert points[3][2] > ended  # logged now
    for bad in (float("nan"), float("inf"), -1.0, "yesterday", True):
        with pytest.raises(alexandria.InvalidInputError, match="unix seconds"):
            run2 = alexandria.start_run(experiment="imported", store=store, capture=False)
            try:
                run2.log_metric("loss", 1.0, timestamp=bad)
            finally:
                run2.end()
    with pytest.raises(alexandria.InvalidInputError, match="start_time= is for a new run"):
        alexandria.start_run(run_id=run.id, store=store, start_time=started)


HOT_PATH = """
import gc, sys
from pathlib import Path
import alexandria
from alexandria.segment import BATCH_SIZE

run = alexandria.start_run(experiment="hot", capture=False, system_metrics=False)
segments = Path(sys.argv[1]) / "runs" / run.id

def lines_on_disk():
    return sum(p.read_bytes().count(b"\\n") for p in segments.glob("*.jsonl"))

gc.collect()
gc.disable()
before = gc.get_count()[0]
for i in range(BATCH_SIZE - 1):
    run.log_metric("loss", 0.5, i)
tracked = gc.get_count()[0] - before
waiting = lines_on_disk()
run.log_metric("loss", 0.5, BATCH_SIZE - 1)
print(tracked, waiting, lines_on_disk(), BATCH_SIZE)
"""


def test_the_call_that_fills_a_batch_writes_it_and_queued_points_stay_out_of_the_gc(store: Store) -> None:
    """The hot path's two promises, seen from outside: no writer thread is needed to get a full batch on disk
    (with a 60 s flush interval the thread sleeps on), and a queued point is no object the garbage collector
    tracks (a collection every 700 tracked objects was the slowest 0.1 % of calls)."""
    out = run_python(
        HOT_PATH, str(store.root), env=child_env(ALEXANDRIA_FLUSH_INTERVAL="60", ALEXANDRIA_STORE=str(store.root))
    )
    tracked, waiting, written, batch = map(int, out.split())
    assert tracked < 100  # 9,999 points queued
    assert waiting < 10  # the run's start at most: the points wait in memory
    assert written >= batch  # the 10,000th call wrote them all


DEAD_DISK = """
import os, sys
import alexandria
from alexandria.segment import BATCH_SIZE

run = alexandria.start_run(experiment="disk", capture=False, system_metrics=False)
run.log_metric("x", -1.0, step=-1)
run.flush()
fd = run._writer._fd
spare = os.dup(fd)
os.close(fd)  # a dead disk: every write fails with EBADF
errors, logged = 0, 1
for step in range(3 * BATCH_SIZE):
    try:
        run.log_metric("x", float(step), step=step)
        logged += 1
    except alexandria.WriterError:
        errors += 1
os.dup2(spare, fd)  # the disk is back
run.end()
print(errors, logged)
"""


def test_a_dead_disk_costs_the_loop_one_error_and_loses_nothing_it_accepted(store: Store) -> None:
    """The call that fills a batch drains it; when that write fails, the next call raises, and then the calls
    queue again without trying the disk each time (the timer retries): one error for 15,000 calls, not one every
    other call. Every call that returned has its point in the database once the disk is back."""
    env = child_env(ALEXANDRIA_FLUSH_INTERVAL="60", ALEXANDRIA_STORE=str(store.root))
    errors, logged = map(int, run_python(DEAD_DISK, env=env).split())
    assert errors == 1
    assert query(store, "SELECT count(*) FROM metric") == [(logged,)]
