"""Edge cases that once lost or corrupted data: each test pins one guarantee down."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import alexandria
from alexandria.db import open_database
from alexandria.events import Header, MetricLogged, ParamLogged, WriterInfo, encoder
from alexandria.projector import Projector
from alexandria.rebuild import rebuild
from alexandria.segment import BATCH_SIZE, SegmentReader
from alexandria.store import Store, is_run_id
from tests.conftest import alex, child_env, complete_lines, every_backend, python, query, run_python, table_rows


def test_text_that_cannot_be_encoded_is_refused_before_it_reaches_the_log(store: Store) -> None:
    bad = b"caf\xe9".decode("utf-8", "surrogateescape")  # what an undecodable file name gives
    with alexandria.start_run(experiment="text") as run:
        run.log_metric("a", 1.0)
        for call in (
            lambda: run.log_metric(bad, 1.0),
            lambda: run.log_param(bad, 1),
            lambda: run.log_param("p", bad),
            lambda: run.set_tag("t", bad),
        ):
            with pytest.raises(alexandria.InvalidInputError, match="not valid Unicode text"):
                call()
        run.log_metric("b", 2.0)
    assert query(store, "SELECT key FROM metric ORDER BY key") == [("a",), ("b",)]
    assert query(store, "SELECT count(*) FROM log_problem") == [(0,)]


@every_backend
def test_steps_outside_the_sql_integer_range_are_refused(store: Store) -> None:
    with alexandria.start_run(experiment="steps") as run:
        for step in (2**63, -(2**63) - 1, 10**20):
            with pytest.raises(alexandria.InvalidInputError, match="outside the 64-bit integer range"):
                run.log_metric("x", 1.0, step=step)
        run.log_metric("x", 1.0, step=2**63 - 1)
        run.log_metrics({"y": 1.0}, step=-(2**63))
    assert query(store, "SELECT key, step FROM metric ORDER BY key") == [("x", 2**63 - 1), ("y", -(2**63))]


@every_backend
def test_lines_that_decode_but_cannot_be_stored_are_problems_not_crashes(store: Store) -> None:
    with alexandria.start_run(experiment="bad-lines") as run:
        run.log_metric("ok", 1.0, step=0)
    segment = next(store.segments())
    with open(segment, "ab") as f:
        f.write(b'{"event":"metric","key":"x","value":1.0,"step":99999999999999999999,"time":1.0}\n')
        f.write(b'{"event":"metric","key":"x","value":"nan","time":1.0}\n')
        f.write(b'{"event":"metric","key":"after","value":2.0,"time":1.0}\n')
    assert query(store, "SELECT key FROM metric ORDER BY key") == [("after",), ("ok",)]
    assert [kind for (kind,) in query(store, "SELECT kind FROM log_problem")] == ["corrupt", "corrupt"]


def test_deeply_nested_lines_are_corrupt_lines_not_crashes(store: Store) -> None:
    """`[` x 20,000, a field nested 5,000 deep (RecursionError in msgspec), and one nested just shallow enough
    to decode but too deep to store again as JSON: each is a corrupt line at its offset, skipped; folding
    goes on, in `alex problems` as in a rebuild."""
    with alexandria.start_run(experiment="deep") as run:
        run.log_metric("before", 1.0)
    segment = next(store.segments())

    def dataset(depth: int) -> bytes:
        return b'{"event":"dataset","time":1.0,"name":"x","schema":{"a":' + b"[" * depth + b"]" * depth + b"}}"

    with open(segment, "ab") as f:
        f.write(b"[" * 20_000 + b"\n" + dataset(5_000) + b"\n" + dataset(970) + b"\n" + dataset(3) + b"\n")
        f.write(b'{"event":"metric","key":"after","value":2.0,"time":1.0}\n')
    lines = complete_lines(segment)
    bad = [offset for offset, line in lines if line.startswith(b"[") or b"[[[[" in line]
    assert len(bad) == 3
    for _ in range(2):  # the live projection, then a rebuild from the logs
        result = alex("problems", "--format", "json")
        assert result.returncode == 0, result.stderr
        problems = json.loads(result.stdout)
        assert [(p["segment"], p["offset"], p["kind"]) for p in problems] == [
            (store.relative(segment), offset, "corrupt") for offset in bad
        ]
        assert query(store, "SELECT key FROM metric ORDER BY key") == [("after",), ("before",)]
        assert query(store, "SELECT count(*) FROM dataset") == [(1,)]
        assert alex("rebuild").returncode == 0


def test_only_regular_files_are_segments(store: Store) -> None:
    """A directory (or a FIFO) named `*.jsonl` in a run folder is skipped with a warning and reported once as
    a `refused` problem (never read: a FIFO never blocks); every read command still works."""
    with alexandria.start_run(experiment="dirs") as run:
        run.log_metric("x", 1.0)
    segment = next(store.segments())
    (segment.parent / "zz.jsonl").mkdir()
    (segment.parent / "zz.jsonl" / "inner.jsonl").write_bytes(b"garbage\n")
    os.mkfifo(segment.parent / "zy.jsonl")
    assert store.run_segments(run.id) == [segment]
    assert list(store.segments()) == [segment]
    for command in (("runs",), ("show", run.id), ("problems",), ("rebuild",)):
        result = alex(*command)
        assert result.returncode == 0, result.stderr
        assert "is not" in result.stderr
    assert query(store, "SELECT key, value FROM metric") == [("x", 1.0)]
    assert query(store, "SELECT segment, kind FROM log_problem ORDER BY segment") == [
        (store.relative(segment.parent / "zy.jsonl"), "refused"),
        (store.relative(segment.parent / "zz.jsonl"), "refused"),
    ]


def test_a_run_id_is_exactly_32_hex_digits(store: Store) -> None:
    """`$` would let a trailing newline pass: a folder named so is not a run, and no call takes it as one."""
    assert is_run_id("a" * 32) and not is_run_id("a" * 32 + "\n") and not is_run_id("A" * 32)
    with alexandria.start_run(experiment="ids") as run:
        run.log_metric("x", 1.0)
    forged = store.runs_dir / ("b" * 32 + "\n")
    shutil.copytree(store.run_dir(run.id), forged)
    assert list(store.segments()) == store.run_segments(run.id)
    with pytest.raises(alexandria.RunNotFoundError):
        store.require_run("b" * 32 + "\n")
    assert query(store, "SELECT id FROM run") == [(run.id,)]


def test_a_line_longer_than_the_read_size_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "seg.jsonl"
    header = Header(time=1.0, format=1, run_id="a" * 32, writer=WriterInfo(host="h", pid=1))
    long = ParamLogged(key="blob", value="x" * 10_000, time=2.0)
    path.write_bytes(encoder.encode(header) + b"\n" + encoder.encode(long) + b"\n")
    reader = SegmentReader(path)
    events = reader.read(max_bytes=100)  # the header fits; the long line is not cut off at 100 bytes:
    events += reader.read(max_bytes=100)  # the next read goes on to its end
    assert events == [long]
    assert reader.offset == path.stat().st_size


@every_backend
def test_fold_rules_do_not_depend_on_folding_order(store: Store) -> None:
    """Equal timestamps in different segments: the tie-breaks decide, not which segment came first."""
    run_id = "b" * 32
    folder = store.run_dir(run_id)
    folder.mkdir(parents=True)

    def segment(name: str, lines: list[str]) -> None:
        header = f'{{"event":"header","format":1,"run_id":"{run_id}","writer":{{"host":"h","pid":1}},"time":1.0}}'
        (folder / name).write_text("\n".join([header, *lines]) + "\n")

    first = [
        '{"event":"run_started","experiment":"a","time":5.0}',
        '{"event":"param","key":"p","value":"2","time":7.0}',
        '{"event":"tag","key":"t","value":"y","time":7.0}',
        '{"event":"artifact","name":"m","path":"artifacts/m","sha256":"bb","time":7.0}',
        '{"event":"run_finished","status":"killed","time":9.0}',
    ]
    second = [
        '{"event":"run_started","experiment":"b","time":5.0}',
        '{"event":"param","key":"p","value":"1","time":7.0}',
        '{"event":"tag","key":"t","value":"x","time":7.0}',
        '{"event":"artifact","name":"m","path":"artifacts/m","sha256":"aa","time":7.0}',
        '{"event":"run_finished","status":"failed","time":9.0}',
    ]
    # live: the later-named segment is folded first, the other one afterwards
    segment("2.jsonl", first)
    engine = open_database(store)
    segment("1.jsonl", second)
    Projector(store, engine).catch_up()
    tables = ("run", "parameter", "tag", "artifact")
    live = {t: table_rows(engine, t) for t in tables}
    rebuild(store)
    assert {t: table_rows(engine, t) for t in tables} == live
    assert query(store, "SELECT experiment_name, status FROM run") == [("a", "killed")]
    assert query(store, "SELECT value FROM parameter") == [("1",)]  # earliest, then the lesser text
    assert query(store, "SELECT value FROM tag") == [("y",)]  # latest, then the greater text
    engine.dispose()


def test_a_run_without_a_readable_start_is_listed_and_judged_by_its_last_line(store: Store) -> None:
    """No header names the writer: its last line, from long ago, says it is gone (see life.py)."""
    run_id = "c" * 32
    store.run_dir(run_id).mkdir(parents=True)
    (store.run_dir(run_id) / "1.jsonl").write_text('garbage\n{"event":"metric","key":"x","value":1.0,"time":1.0}\n')
    assert query(store, "SELECT id, status, timestamp_end FROM run") == [(run_id, "crashed", 1.0)]
    assert query(store, "SELECT kind, offset FROM log_problem") == [("bad_header", 0)]


def test_ending_a_run_restores_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALEXANDRIA_STORE", raising=False)
    monkeypatch.delenv("ALEXANDRIA_RUN_ID", raising=False)
    with alexandria.start_run(experiment="elsewhere", store=tmp_path / "other"):
        assert os.environ["ALEXANDRIA_STORE"] == str(tmp_path / "other")
    assert "ALEXANDRIA_STORE" not in os.environ and "ALEXANDRIA_RUN_ID" not in os.environ
    with alexandria.start_run(experiment="default") as run:
        pass
    assert (tmp_path / "alexandria_data" / "runs" / run.id).is_dir()


def test_a_child_does_not_attach_to_a_run_that_has_ended(store: Store) -> None:
    with alexandria.start_run(experiment="over") as run:
        run.log_metric("x", 1.0)
    code = "import alexandria\nalexandria.log_metric('x', 2.0)"
    proc = python(code, env=child_env(ALEXANDRIA_RUN_ID=run.id, ALEXANDRIA_STORE=str(store.root)))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"the run this process inherited from its parent ({run.id}) has already ended" in err.decode()


def test_threads_racing_end_are_written_or_refused(store: Store) -> None:
    """Every call that returned normally is in the database; the others raised RunEndedError."""
    for _ in range(5):
        run = alexandria.start_run(experiment="race")
        ok = [0, 0, 0]
        go = threading.Event()

        def log(i: int, run: alexandria.Run = run, ok: list[int] = ok, go: threading.Event = go) -> None:
            go.wait()
            try:
                for n in range(200_000):
                    run.log_metric(f"t{i}", float(n), step=n)
                    ok[i] += 1
            except alexandria.RunEndedError:
                pass

        threads = [threading.Thread(target=log, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        go.set()
        time.sleep(random.uniform(0.01, 0.05))
        run.end()
        for t in threads:
            t.join()
        counts = dict(query(store, f"SELECT key, count(*) FROM metric WHERE run_id = '{run.id}' GROUP BY key"))
        assert [counts.get(f"t{i}", 0) for i in range(3)] == ok


def test_a_failed_final_write_can_be_retried(store: Store) -> None:
    run = alexandria.start_run(experiment="full-disk")
    run.log_param("lr", 0.1)
    run.flush()
    fd = run._writer._fd
    assert fd is not None
    saved = os.dup(fd)
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, fd)  # the disk is full
    for step in range(100):
        run.log_metric("x", float(step), step=step)
    with pytest.raises(alexandria.WriterError, match="No space left on device"):
        run.end()
    os.dup2(saved, fd)  # space again
    run.end()
    os.close(full)
    os.close(saved)
    assert query(store, "SELECT status FROM run") == [("finished",)]
    assert query(store, "SELECT count(*) FROM metric") == [(100,)]
    assert query(store, "SELECT count(*) FROM log_problem") == [(0,)]


def test_sigterm_at_any_moment_never_hangs_and_never_tears_a_line(store: Store) -> None:
    """A training loop logging at full speed through module-level calls is SIGTERMed at random moments."""
    code = """
    import alexandria, sys
    alexandria.start_run(experiment="term")
    print("go", flush=True)
    step = 0
    while True:
        alexandria.log_metric("loss", 0.5, step=step)
        if step % 997 == 0:
            alexandria.flush()
        step += 1
    """
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    for _ in range(12):
        proc = python(code, env=child_env(ALEXANDRIA_FLUSH_INTERVAL="0.001", ALEXANDRIA_STORE=str(store.root)))
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        time.sleep(rng.uniform(0.0, 0.2))
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()
            raise AssertionError(f"process hung after SIGTERM (seed {seed})") from None
        assert proc.returncode == -signal.SIGTERM, (seed, proc.stderr.read() if proc.stderr else b"")
    statuses = query(store, "SELECT status, count(*) FROM run GROUP BY status")
    assert statuses == [("killed", 12)], seed
    assert query(store, "SELECT count(*) FROM log_problem") == [(0,)]
    metric_lines = sum(line.startswith(b'{"event":"metric"') for p in store.segments() for _, line in complete_lines(p))
    assert query(store, "SELECT count(*) FROM metric") == [(metric_lines,)]
    for segment in store.segments():  # each ends with the run's end and the writer's clean close
        assert [json.loads(line)["event"] for _, line in complete_lines(segment)[-2:]] == ["run_finished", "closed"]


def test_sigterm_while_a_logging_call_drains_its_batch_never_hangs(store: Store) -> None:
    """SIGTERM ends the runs, and ending one drains its writer under the lock the drain holds. The call that
    fills a batch (the `BATCH_SIZE`-th point) drains it on the main thread: a SIGTERM handled there, lock held, would
    hang the process for ever or write lines twice. The signal is sent at that very moment, from a trace
    function on the line of `drain` that writes with the lock held; it must wait for the drain, then end the
    run "killed" with every point logged up to the one whose call drained. Which point that is depends on the
    events other threads queued before it (the code capture's), so the child prints it."""
    code = """
    import inspect, os, signal, sys
    import alexandria
    from alexandria import segment

    lines, first = inspect.getsourcelines(segment.SegmentWriter.drain)
    target_line = first + next(i for i, text in enumerate(lines) if "one write" in text)
    target = segment.SegmentWriter.drain.__code__
    sent = []

    def local(frame, event, arg):
        if event == "line" and frame.f_lineno == target_line and not sent:
            sent.append(True)
            print("signal at", step, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code is target else None

    run = alexandria.start_run(experiment="drain", system_metrics=False)
    print(run.id, flush=True)
    sys.settrace(tracer)
    for step in range(2 * segment.BATCH_SIZE):  # the BATCH_SIZE-th point drains the batch
        run.log_metric("loss", 0.5, step)
    sys.settrace(None)
    print("not killed", flush=True)
    """
    proc = python(code, env=child_env(ALEXANDRIA_STORE=str(store.root), ALEXANDRIA_FLUSH_INTERVAL="60"))
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the process hung after a SIGTERM taken while a logging call drained") from None
    assert proc.returncode == -signal.SIGTERM, err.decode()
    run_id, signalled = out.decode().splitlines()
    last_step = int(signalled.removeprefix("signal at "))
    assert BATCH_SIZE - 10 <= last_step < BATCH_SIZE  # a batch's worth of events: a few of them not points
    assert query(store, f"SELECT status FROM run WHERE id = '{run_id}'") == [("killed",)]
    points = query(store, f"SELECT count(*), count(DISTINCT step), max(step) FROM metric WHERE run_id = '{run_id}'")
    assert points == [(last_step + 1, last_step + 1, last_step)]


def test_first_run_started_on_a_thread_still_gets_sigterm_handling(store: Store) -> None:
    out = run_python(
        """
        import threading, signal, alexandria
        t = threading.Thread(target=lambda: alexandria.start_run(experiment="thread").log_metric("x", 1.0))
        t.start(); t.join()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        run = alexandria.start_run(experiment="main")
        print(signal.getsignal(signal.SIGTERM).__name__)
        """,
        env=child_env(ALEXANDRIA_STORE=str(store.root)),
    )
    assert out.strip() == "_on_sigterm"


def test_an_event_that_cannot_be_encoded_is_dropped_alone(tmp_path: Path) -> None:
    """Defence behind the API's checks: the writer drops only the bad event, never writes a partial line."""
    from alexandria.errors import WriterError
    from alexandria.segment import SegmentWriter

    writer = SegmentWriter(tmp_path / "run", "d" * 32)
    bad = ParamLogged(key="p", value="\udce9", time=1.0)
    writer.queue.extend([MetricLogged(1.0, "a", 1.0, 0), bad, MetricLogged(1.0, "b", "NaN", 1)])
    with pytest.raises(WriterError, match="could not be encoded and was dropped"):
        writer.drain()
    writer.close()
    assert writer.path is not None
    reader = SegmentReader(writer.path)
    events = reader.read()
    assert [(e.key, e.value) for e in events[:-1]] == [("a", 1.0), ("b", "NaN")]  # type: ignore[union-attr]
    assert type(events[-1]).__name__ == "SegmentClosed"
    assert reader.problems == [] and reader.offset == writer.path.stat().st_size
