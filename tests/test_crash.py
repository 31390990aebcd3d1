"""Crashes on the write and the read side: torn lines, writers and projectors killed with SIGKILL, corruption.

Everything here uses real files and real processes killed with a real
`kill -9`. Random kill moments come from a seed printed by each test (pytest
shows it when the test fails); set ALEXANDRIA_TEST_SEED to replay one.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from alexandria.db import open_database
from alexandria.events import MetricLogged, ParamLogged, RunStarted, TagSet
from alexandria.projector import Projector
from alexandria.schema import USER_TABLES  # every table a user queries: live must equal rebuilt
from alexandria.segment import ZERO_WAIT, SegmentReader, SegmentWriter
from alexandria.store import Store
from alexandria.values import encode_float
from tests.conftest import (
    alex,
    child_env,
    complete_lines,
    every_backend,
    make_seed,
    python,
    query,
    rebuilt_snapshot,
    rows,
    run_python,
    scalar,
    snapshot,
)

T0 = 1_700_000_000.0


def write_segment(run_dir: Path, run_id: str, events: list[Any]) -> Path:
    """A real segment written by the library's own writer (header first), whose last line is the last of
    `events`: its writer vanishes after writing them (no `closed` line)."""
    writer = SegmentWriter(run_dir, run_id)
    for event in events:
        writer.put(event)
    writer.drain()
    writer.abandon()
    assert writer.path is not None
    return writer.path


def events_for(last: Any) -> list[Any]:
    return [
        RunStarted(experiment="torn", tags={"team": "vision"}, time=T0),
        ParamLogged(key="lr", value="0.01", time=T0 + 1),
        MetricLogged(T0 + 2, "loss", 0.5, 0),  # built positionally, as log_metric builds it
        MetricLogged(T0 + 3, "loss", 0.25, 1),
        last,
    ]


LAST_LINES = {
    "metric": MetricLogged(T0 + 4.5, "loss", 0.125, 2),
    "nan-metric": MetricLogged(T0 + 4.5, "loss", encode_float(math.nan), 3),
    "unicode-tag": TagSet(key="note", value="naïve ✓ 雨 🚀", time=T0 + 4.5),
}


# -- 1. torn tail -------------------------------------------------------------------------------------
@pytest.mark.parametrize("last", LAST_LINES.values(), ids=LAST_LINES.keys())
def test_reader_yields_complete_lines_only_whatever_byte_the_last_line_is_cut_at(tmp_path: Path, last: Any) -> None:
    """A last line cut at ANY byte (mid-number, mid-UTF-8 character, right before its newline) is "not
    written yet": the reader yields exactly the complete lines before it and reports no problem; once the
    rest of the line is appended, the same reader's next read yields exactly that last event."""
    segment = write_segment(tmp_path / "run", uuid.uuid4().hex, events_for(last))
    data = segment.read_bytes()
    everything = SegmentReader(segment).read()
    assert len(everything) == 5 and type(everything[-1]) in (MetricLogged, TagSet)
    last_start = data.rindex(b"\n", 0, len(data) - 1) + 1

    copy = tmp_path / "torn.jsonl"
    for cut in range(last_start, len(data)):  # every byte of the last line, its newline excluded
        copy.write_bytes(data[:cut])
        reader = SegmentReader(copy)
        assert reader.read() == everything[:-1], f"file cut at byte {cut}"
        assert reader.offset == last_start, f"file cut at byte {cut}"
        with open(copy, "ab") as f:
            f.write(data[cut:])
        assert reader.read() == everything[-1:], f"file cut at byte {cut}, then completed"
        assert reader.read() == []
        assert reader.problems == [], f"file cut at byte {cut}"


def test_projector_never_projects_a_torn_last_line_and_projects_it_once_complete(tmp_path: Path) -> None:
    """The projector leaves a partial last line alone (no row, no problem, position before it), and folds
    it exactly once when the rest of the line arrives."""
    run_id = uuid.uuid4().hex
    segment = write_segment(tmp_path / "src", run_id, events_for(MetricLogged(T0 + 4.5, "loss", 0.125, 2)))
    data = segment.read_bytes()
    last_start = data.rindex(b"\n", 0, len(data) - 1) + 1
    cuts = sorted({*range(last_start, len(data), 7), last_start + 1, len(data) - 2, len(data) - 1})
    for cut in cuts:
        store = Store.open(tmp_path / f"store-{cut}")
        torn = store.run_dir(run_id) / segment.name
        torn.parent.mkdir(parents=True)
        torn.write_bytes(data[:cut])
        engine = open_database(store)
        try:
            assert rows(engine, "SELECT step, value FROM metric ORDER BY step") == [(0, 0.5), (1, 0.25)], cut
            assert scalar(engine, "SELECT count(*) FROM log_problem") == 0, cut
            assert scalar(engine, "SELECT offset FROM log_segment") == last_start, cut
            Projector(store, engine).catch_up()  # nothing new: still nothing of the torn line
            assert scalar(engine, "SELECT count(*) FROM metric") == 2, cut

            with open(torn, "ab") as f:
                f.write(data[cut:])
            Projector(store, engine).catch_up()
            Projector(store, engine).catch_up()
            assert rows(engine, "SELECT step, value FROM metric ORDER BY step") == [(0, 0.5), (1, 0.25), (2, 0.125)]
            assert scalar(engine, "SELECT count(*) FROM log_problem") == 0, cut
            assert scalar(engine, "SELECT offset FROM log_segment") == len(data), cut
        finally:
            engine.dispose()


# -- 2. writers killed with SIGKILL ---------------------------------------------------------------------
WRITER = """
import os, random, sys, time
from pathlib import Path
import alexandria

store, target, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
if target == "new":
    run = alexandria.start_run(experiment="crash", tags={"owner": str(os.getpid())}, store=store)
else:
    run = alexandria.start_run(run_id=target, store=store)
print(run.id, flush=True)
pid = os.getpid()
artifact = Path(store).parent / f"artifact-{pid}.txt"
step = 0
while True:
    for _ in range(10):
        run.log_metric("loss", rng.random(), step)
        run.log_metrics({"acc": step / 7, "odd": rng.choice([1.5, float("nan"), float("inf"), -float("inf")])}, step)
        step += 1
    run.log_param(f"p{step % 7}", pid)  # other processes of the run log other values: the earliest wins
    run.set_tag("phase", f"{pid}-{step}")  # the latest wins
    if step % 300 == 0:
        artifact.write_text(f"{pid} {step}")
        run.log_artifact(artifact, name=f"model{step % 2}")
    if rng.random() < 0.2:
        run.flush()
    time.sleep(0.002)
"""

PROJECTOR = """
import sys
from alexandria.projector import Projector
from alexandria.db import open_database
from alexandria.store import Store

store = Store.open(sys.argv[1])
engine = open_database(store, catch_up=False)
print("folding", flush=True)
Projector(store, engine).catch_up(transaction_bytes=int(sys.argv[2]))
"""


def _value(v: Any) -> float | None:
    """A metric value as the table stores it (NaN is NULL)."""
    v = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(v, v)
    return None if v != v else float(v)


def fold_by_hand(store: Store) -> dict[str, Any]:
    """What the tables must hold, computed independently from every complete line on disk by the documented
    rules: all metric points; earliest parameter; latest tag (ties: greater text); latest artifact; run
    experiment from the earliest start, status from the latest start, resume or finish; a run whose latest
    is a start or resume is "crashed", as every writer of these tests ends by SIGKILL."""
    metrics: Counter[tuple[Any, ...]] = Counter()
    params: dict[tuple[str, str], tuple[float, str]] = {}
    tags: dict[tuple[str, str], tuple[float, str]] = {}
    artifacts: dict[tuple[str, str], tuple[float, str]] = {}
    started: dict[str, tuple[float, str]] = {}
    life: dict[str, tuple[float, int, str]] = {}
    runs: set[str] = set()
    lines_by_type: Counter[str] = Counter()
    for segment in store.segments():
        run_id = segment.parent.name
        lines = complete_lines(segment)
        if not lines:
            continue
        runs.add(run_id)
        header = json.loads(lines[0][1])
        assert header["event"] == "header" and header["run_id"] == run_id, segment
        for _, line in lines[1:]:
            e = json.loads(line)
            kind, t = e["event"], e["time"]
            lines_by_type[kind] += 1
            if kind == "metric":
                metrics[(run_id, e["key"], _value(e["value"]), e.get("step"), t)] += 1
            elif kind == "param":
                k = (run_id, e["key"])
                params[k] = min(params.get(k, (math.inf, "")), (t, e["value"]))
            elif kind == "tag":
                k = (run_id, e["key"])
                tags[k] = max(tags.get(k, (-math.inf, "")), (t, e["value"]))
            elif kind == "artifact":
                k = (run_id, e["name"])
                artifacts[k] = max(artifacts.get(k, (-math.inf, "")), (t, e["sha256"]))
            elif kind == "run_started":
                started[run_id] = min(started.get(run_id, (math.inf, "")), (t, e["experiment"]))
                life[run_id] = max(life.get(run_id, (-math.inf, 0, "")), (t, 0, "crashed"))
                for key, value in e["tags"].items():
                    tags[(run_id, key)] = max(tags.get((run_id, key), (-math.inf, "")), (t, value))
            elif kind == "run_resumed":
                life[run_id] = max(life.get(run_id, (-math.inf, 0, "")), (t, 1, "crashed"))
            elif kind == "run_finished":
                life[run_id] = max(life.get(run_id, (-math.inf, 0, "")), (t, 2, e["status"]))
            elif kind in ("heartbeat", "closed", "code", "environment"):
                pass
            else:
                raise AssertionError(f"unexpected event {kind!r} in {segment}")

    def status(r: str) -> str | None:
        return life[r][2] if r in life else "crashed"

    return {
        "lines": lines_by_type,
        "metric": metrics,
        "parameter": {k: v for k, (_, v) in params.items()},
        "tag": {k: v for k, (_, v) in tags.items()},
        "artifact": {k: v for k, (_, v) in artifacts.items()},
        "run": {r: (started.get(r, (0, None))[1], status(r)) for r in runs},
    }


def check_every_complete_line_is_projected(store: Store, engine: Engine) -> Counter[str]:
    """Compare the tables with `fold_by_hand`; returns the number of complete lines by event type."""
    expected = fold_by_hand(store)
    got_metrics = Counter(rows(engine, "SELECT run_id, key, value, step, timestamp FROM metric"))
    assert sum(got_metrics.values()) == expected["lines"]["metric"], "metric rows != complete metric lines on disk"
    per_key = Counter((r, k) for (r, k, *_), n in expected["metric"].items() for _ in range(n))
    assert Counter((r, k) for (r, k, *_), n in got_metrics.items() for _ in range(n)) == per_key
    assert got_metrics == expected["metric"]
    assert {(r, k): v for r, k, v in rows(engine, "SELECT run_id, key, value FROM parameter")} == expected["parameter"]
    assert {(r, k): v for r, k, v in rows(engine, "SELECT run_id, key, value FROM tag")} == expected["tag"]
    assert {(r, n): s for r, n, s in rows(engine, "SELECT run_id, name, sha256 FROM artifact")} == expected["artifact"]
    assert {r: (e, s) for r, e, s in rows(engine, "SELECT id, experiment_name, status FROM run")} == expected["run"]
    for run_id, tags_json in rows(engine, "SELECT id, tags FROM run"):
        tags = {k: v for (r, k), v in expected["tag"].items() if r == run_id}
        assert (json.loads(tags_json) if tags_json else {}) == tags, run_id
    # A SIGKILL can only tear the last line of a segment: never a complete corrupt line.
    assert rows(engine, "SELECT segment, offset, kind FROM log_problem") == []
    positions = dict(rows(engine, "SELECT path, offset FROM log_segment"))
    for segment in store.segments():
        data = segment.read_bytes()
        assert positions.get(store.relative(segment), 0) == data.rfind(b"\n") + 1, segment
    return expected["lines"]


def test_writers_killed_at_random_moments_lose_only_unwritten_events(store: Store) -> None:
    """Rounds of writer processes (several per run, several runs, owners and attached) logging metrics,
    params, tags and artifacts are SIGKILLed at random moments, sometimes while a catch-up projection runs.
    Afterwards every complete line on disk is in the database exactly once (independent count per run,
    key and event type), nothing else is, and a rebuild gives the same rows as the live projection."""
    seed = make_seed()
    rng = random.Random(seed)
    env = child_env(ALEXANDRIA_FLUSH_INTERVAL="0.01")
    open_database(store).dispose()
    runs: list[str] = []
    for round_no in range(14):
        writers: list[subprocess.Popen[bytes]] = []
        if not runs or rng.random() < 0.3:
            owner = python(WRITER, str(store.root), "new", str(rng.randrange(2**32)), env=env)
            assert owner.stdout is not None
            run_id = owner.stdout.readline().decode().strip()
            assert len(run_id) == 32, owner.communicate()[1].decode()
            runs.append(run_id)
            writers.append(owner)
        for _ in range(rng.randint(2, 3)):
            writers.append(python(WRITER, str(store.root), rng.choice(runs), str(rng.randrange(2**32)), env=env))
        started = time.monotonic()
        projector = None
        if rng.random() < 0.5:
            projector = python(PROJECTOR, str(store.root), str(rng.choice([32 << 10, 1 << 20])))
        for delay, proc in sorted((rng.uniform(0.15, 0.5), p) for p in writers):
            time.sleep(max(0.0, started + delay - time.monotonic()))
            os.kill(proc.pid, signal.SIGKILL)
        for proc in writers:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == -signal.SIGKILL, f"round {round_no}: writer died by itself:\n{err.decode()}"
        if projector is not None:
            _, err = projector.communicate(timeout=120)
            assert projector.returncode == 0, f"round {round_no}: concurrent projection failed:\n{err.decode()}"

    engine = open_database(store)
    try:
        live = snapshot(engine)
        lines = check_every_complete_line_is_projected(store, engine)
    finally:
        engine.dispose()
    print(f"{len(runs)} runs, {len(list(store.segments()))} segments, complete lines: {dict(lines)}")
    assert lines["metric"] > 1000 and lines["param"] and lines["tag"] and lines["artifact"]  # the rounds did write
    assert rebuilt_snapshot(store) == live


# -- 4. a projector killed mid-batch: tests/test_postgres.py, on both backends ----------------------------


# -- 5. corrupt lines in the middle of a segment ---------------------------------------------------------
CORRUPT_LINES = {
    "garbage": (b"\x8b\x1f\x08\x00\xfe\xff garbage \x07\x13\xc3(", "corrupt"),
    "zeros": (b"\x00" * 512, "corrupt"),  # what a power loss leaves
    "truncated": (b'{"event":"metric","key":"loss","value":0.', "corrupt"),
    "unknown": (b'{"event":"checkpoint","path":"ckpt/7.pt","time":1700000000.5}', "unknown_event"),
}

LOGGED = """
import sys, alexandria
with alexandria.start_run(experiment="corrupt", tags={"team": "vision"}, store=sys.argv[1], capture=False) as run:
    run.log_params({"lr": 0.01, "batch": 64})
    for step in range(20):
        run.log_metric("loss", 1.0 / (step + 1), step)
    run.set_tag("stage", "done")
print(run.id)
"""


def splice(lines: list[bytes], after: dict[int, bytes]) -> tuple[bytes, dict[int, bytes]]:
    """Join lines, inserting after[i] (a line) after line i; returns the bytes and {offset: inserted line}."""
    out = bytearray()
    offsets = {}
    for i, line in enumerate(lines):
        out += line + b"\n"
        if i in after:
            offsets[len(out)] = after[i]
            out += after[i] + b"\n"
    return bytes(out), offsets


def test_corrupt_lines_mid_segment_are_reported_with_offset_and_skipped(store: Store) -> None:
    """Garbage, a line of NUL bytes, a truncated JSON line and an event type from the future, in the middle
    of a segment: each is reported with its file and exact byte offset (log_problem, `alex problems`),
    `alex runs` says lines were skipped, every other line is projected, and a rebuild reports the same."""
    run_id = run_python(LOGGED, str(store.root)).strip()
    (segment,) = store.run_dir(run_id).glob("*.jsonl")
    rel = store.relative(segment)
    lines = [line for _, line in complete_lines(segment)]
    assert len(lines) == 27  # header, start, 2 params, 20 metrics, tag, finish, closed
    bad = dict(zip((3, 8, 15, 21), (line for line, _ in CORRUPT_LINES.values()), strict=True))
    data, inserted = splice(lines, bad)
    kinds = {offset: dict(CORRUPT_LINES.values())[line] for offset, line in inserted.items()}

    # The projector first sees the segment up to the middle, then the rest: two catch-ups, one rebuild.
    half = sorted(inserted)[2]
    segment.write_bytes(data[:half])
    quiet(segment)  # zeros in a quiet segment are corruption (in a fresh one: bytes not arrived yet)
    first = alex("--store", str(store.root), "problems")
    assert first.returncode == 0, first.stderr
    with open(segment, "ab") as f:
        f.write(data[half:])
    quiet(segment)

    runs = alex("--store", str(store.root), "runs")
    assert runs.returncode == 0, runs.stderr
    assert "4 unreadable line(s) in the logs were skipped" in runs.stdout
    problems = alex("--store", str(store.root), "problems")
    assert problems.returncode == 0, problems.stderr
    text = " ".join(problems.stdout.split())
    for offset, kind in kinds.items():
        assert f"{rel} at byte {offset}: {kind}" in text, (offset, problems.stdout)
    assert text.count(" at byte ") == 4

    engine = open_database(store)
    try:
        assert set(rows(engine, "SELECT segment, offset, kind FROM log_problem")) == {
            (rel, offset, kind) for offset, kind in kinds.items()
        }
        assert rows(engine, "SELECT step, value FROM metric ORDER BY step") == [(s, 1.0 / (s + 1)) for s in range(20)]
        assert rows(engine, "SELECT key, value FROM parameter ORDER BY key") == [("batch", "64"), ("lr", "0.01")]
        assert rows(engine, "SELECT key, value FROM tag ORDER BY key") == [("stage", "done"), ("team", "vision")]
        assert rows(engine, "SELECT experiment_name, status FROM run") == [("corrupt", "finished")]
        live = snapshot(engine, (*USER_TABLES, "log_problem"))
    finally:
        engine.dispose()

    rebuilt = alex("--store", str(store.root), "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    text = " ".join(rebuilt.stdout.split())
    for offset, kind in kinds.items():
        assert f"{kind} line in {segment} at byte {offset}" in text, rebuilt.stdout
    engine = open_database(store, catch_up=False)
    try:
        after = snapshot(engine, (*USER_TABLES, "log_problem"))
    finally:
        engine.dispose()
    # log_problem's integer id is only a surrogate; table_rows leaves it out like the others.
    assert after == live


@every_backend
def test_blank_line_is_treated_the_same_live_and_by_rebuild(store: Store) -> None:
    """An empty line in a segment gets the same verdict (skipped silently, or reported) whether the
    projector meets it alone or in one read together with a corrupt line: live projection and rebuild
    must list the same problems."""
    run_id = uuid.uuid4().hex
    segment = write_segment(
        store.run_dir(run_id), run_id, [MetricLogged(T0, "loss", 0.5, 0), MetricLogged(T0 + 1, "loss", 0.25, 1)]
    )
    lines = [line for _, line in complete_lines(segment)]
    # header, metric, <blank>, metric ... then later: garbage, metric
    first = b"\n".join([lines[0], lines[1], b"", lines[2]]) + b"\n"
    segment.write_bytes(first)
    engine = open_database(store)
    with open(segment, "ab") as f:
        f.write(b"\xff\xfe garbage\n" + lines[2].replace(b'"step":1', b'"step":2') + b"\n")
    Projector(store, engine).catch_up()
    live = snapshot(engine, ("metric", "log_problem"))
    engine.dispose()
    assert sorted(r[3] for r in live["metric"]) == [0, 1, 2]
    assert rebuilt_snapshot(store, ("metric", "log_problem")) == live


def quiet(segment: Path) -> None:
    """Make a segment look untouched for longer than the zero grace (segment.ZERO_WAIT)."""
    past = time.time() - 2 * ZERO_WAIT
    os.utime(segment, (past, past))


def zero_line(segment: Path, index: int) -> tuple[bytes, int]:
    """Overwrite a segment's `index`-th line (0: the header) with zeros, as bytes not yet arrived read; returns
    the segment's bytes before and the line's offset, both of this very segment."""
    data = segment.read_bytes()
    offset, line = complete_lines(segment)[index]
    segment.write_bytes(data[:offset] + bytes(len(line)) + data[offset + len(line) :])
    return data, offset


def test_zeros_in_a_fresh_segment_wait_for_their_bytes_and_are_corrupt_once_it_is_quiet(store: Store) -> None:
    """On a network filesystem another node may see a file longer than the bytes that have arrived, the gap
    reading as zeros. In a segment modified moments ago such a line is "not written yet": nothing after it
    is folded, nothing is reported, and once the real bytes are there every line is folded exactly once.
    Zeros that stay (a power loss) are reported as corrupt once the segment has been quiet for ZERO_WAIT."""
    run_id = uuid.uuid4().hex
    events = [MetricLogged(T0 + i, "loss", 1.0 / (i + 1), i) for i in range(6)]
    segment = write_segment(store.run_dir(run_id), run_id, events)
    data, gap_start = zero_line(segment, 3)  # metric step 2 has not arrived: zeros where it will be
    assert query(store, "SELECT step FROM metric ORDER BY step") == [(0,), (1,)]
    assert query(store, "SELECT count(*) FROM log_problem") == [(0,)]
    assert query(store, "SELECT offset FROM log_segment") == [(gap_start,)]
    segment.write_bytes(data)  # the bytes arrive
    assert query(store, "SELECT step FROM metric ORDER BY step") == [(s,) for s in range(6)]
    assert query(store, "SELECT count(*) FROM log_problem") == [(0,)]

    other = uuid.uuid4().hex
    segment = write_segment(store.run_dir(other), other, events)
    _, gap_start = zero_line(segment, 3)  # its own offsets: its header may be a byte longer or shorter
    quiet(segment)  # they never arrive
    assert query(store, f"SELECT step FROM metric WHERE run_id = '{other}' ORDER BY step") == [
        (s,) for s in (0, 1, 3, 4, 5)
    ]
    assert query(store, "SELECT kind, offset FROM log_problem") == [("corrupt", gap_start)]


@every_backend
def test_problems_lists_corrupt_bytes_verbatim_even_when_they_look_like_markup(store: Store) -> None:
    """`alex problems` exists to show unreadable lines: whatever bytes a corrupt line holds (here some that
    look like console markup), it must list it with its offset and exit 0, not crash on it."""
    run_id = run_python(LOGGED, str(store.root)).strip()
    (segment,) = store.run_dir(run_id).glob("*.jsonl")
    lines = [line for _, line in complete_lines(segment)]
    data, inserted = splice(lines, {5: b"\x00\x17[/] [red]torn\xff"})
    segment.write_bytes(data)
    quiet(segment)
    (offset,) = inserted
    out = alex("--store", str(store.root), "problems")
    assert out.returncode == 0, out.stderr
    assert f"{store.relative(segment)} at byte {offset}: corrupt" in " ".join(out.stdout.split())
    assert "[/] [red]torn" in out.stdout


# -- a line longer than the read size ------------------------------------------------------------------------
def test_reader_with_a_small_read_size_still_reads_long_lines(tmp_path: Path) -> None:
    """`read(max_bytes=...)` bounds memory, not what can be read: called again and again it yields every
    complete line, also one much longer than max_bytes (a long parameter value)."""
    run_id = uuid.uuid4().hex
    events = [ParamLogged(key="notes", value="x" * 1000, time=T0), MetricLogged(T0 + 1, "loss", 0.5, 0)]
    segment = write_segment(tmp_path / run_id, run_id, events)
    everything = SegmentReader(segment).read()
    reader = SegmentReader(segment)
    got = []
    for _ in range(200):
        got += reader.read(max_bytes=64)
    assert got == everything
    assert reader.offset == segment.stat().st_size


@every_backend
def test_catch_up_with_small_transactions_folds_lines_longer_than_a_transaction(store: Store) -> None:
    """A transaction size smaller than a line must not stop the projection: catch-up finishes (here in a
    child process given 10 s for what takes well under one) with every event folded."""
    run_id = run_python(
        "import sys, alexandria\n"
        "with alexandria.start_run(experiment='long', store=sys.argv[1]) as run:\n"
        "    run.log_param('notes', 'x' * 1000)\n"
        "    run.log_metric('loss', 0.5, 0)\n"
        "print(run.id)",
        str(store.root),
    ).strip()
    proc = python(PROJECTOR, str(store.root), "256")
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("catch_up(transaction_bytes=256) never returned: it spins on the 1 kB parameter line")
    assert proc.returncode == 0
    engine = open_database(store, catch_up=False)
    try:
        assert rows(engine, "SELECT run_id, key, length(value) FROM parameter") == [(run_id, "notes", 1000)]
        assert scalar(engine, "SELECT count(*) FROM metric") == 1
    finally:
        engine.dispose()
