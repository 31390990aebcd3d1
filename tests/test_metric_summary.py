"""The metric summary table (`metric_summary`): kept by the fold in the points' own transaction, it equals a
computation over every point of the metric table done from scratch, and a rebuild, on every backend."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest

import alexandria
from alexandria.db import open_database
from alexandria.events import Header, MetricLogged, RunStarted, WriterInfo, encoder
from alexandria.gc import collect_garbage
from alexandria.projector import Projector
from alexandria.query import Reader
from alexandria.store import Store
from alexandria.values import encode_float
from tests.conftest import every_backend, make_seed, rebuilt_snapshot, rows, snapshot, table_rows

pytestmark = every_backend

T0 = 1_700_000_000.0
KEYS = ("loss", "acc", "lr", "system/gpu")


def from_scratch(engine: Any) -> list[tuple[Any, ...]]:
    """What each (run, key) comes to, taken over all of its points at once and written independently of
    the fold: the last point is the greatest by (has a step, step, has a time, time, has an attempt,
    attempt, id: the order folded), min and max skip NULL (NaN). The rows `table_rows` gives, sorted."""
    points: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for run_id, key, value, step, time, attempt, id_ in rows(
        engine, "SELECT run_id, key, value, step, timestamp, attempt, id FROM metric"
    ):
        points.setdefault((run_id, key), []).append((value, step, time, attempt, id_))

    def order(p: tuple[Any, ...]) -> tuple[Any, ...]:
        _, step, time, attempt, id_ = p
        return (step is not None, step or 0, time is not None, time or 0.0, attempt is not None, attempt or 0, id_)

    out = []
    for (run_id, key), ps in points.items():
        last = max(ps, key=order)
        values = [p[0] for p in ps if p[0] is not None]
        steps = [p[1] for p in ps if p[1] is not None]
        out.append(
            (
                run_id,
                key,
                len(ps),
                min(steps) if steps else None,
                last[1],
                last[0],
                last[2],
                last[3],
                min(values) if values else None,
                max(values) if values else None,
            )
        )
    return sorted(out, key=repr)


class Segments:
    """Segments written line by line as a writer appends them (one per (run, writer)), so that a test can
    fold between appends as the live projector does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.paths: dict[tuple[str, int], Path] = {}

    def open(self, run_id: str, writer: int, attempt: int, rank: int | None) -> None:
        folder = self.store.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{writer:04d}-{attempt}.jsonl"
        header = Header(
            time=T0, format=1, run_id=run_id, writer=WriterInfo(host="h", pid=1000 + writer), attempt=attempt, rank=rank
        )
        path.write_bytes(encoder.encode(header) + b"\n")
        self.paths[(run_id, writer)] = path

    def append(self, run_id: str, writer: int, events: list[Any]) -> None:
        with self.paths[(run_id, writer)].open("ab") as f:
            f.write(b"".join(encoder.encode(e) + b"\n" for e in events))


def random_logs(store: Store, rng: random.Random, engine: Any) -> None:
    """Runs with several writers (attempts, ranks), whose points tie on step and on time, come out of
    order, lack a step or are NaN or infinite; folded in small transactions between appends."""
    segments = Segments(store)
    writers: list[tuple[str, int, int]] = []  # (run id, writer, attempt)
    for r in range(6):
        run_id = f"{r + 1:032x}"
        per_attempt: dict[int, int] = {}
        for w in range(rng.randint(1, 4)):
            attempt = rng.randint(0, 2)
            # writers of one attempt never share a time (a tie they could not break but by folding order,
            # which a rebuild may change); writers of different attempts do, and the attempt decides
            per_attempt[attempt] = per_attempt.get(attempt, -1) + 1
            segments.open(run_id, w, attempt, rank=w if rng.random() < 0.5 else None)
            writers.append((run_id, w, per_attempt[attempt]))
        segments.append(run_id, 0, [RunStarted(experiment="random", time=T0)])
    special = [0.5, -1.0, 2.0, math.nan, math.nan]  # ties on value, and NaN
    for _ in range(rng.randint(8, 14)):
        for run_id, w, slot in writers:
            events = []
            for _ in range(rng.randint(0, 30)):
                step = None if rng.random() < 0.15 else rng.randint(0, 12)  # ties, and steps out of order
                time = T0 + rng.randint(0, 6) + slot * 1e-3  # ties on time within a writer
                key = rng.choice(KEYS)
                value = rng.uniform(-5, 5) if rng.random() < 0.7 else rng.choice(special)
                if key == "lr" and rng.random() < 0.05:
                    value = rng.choice([math.inf, -math.inf])  # one key only: an early -inf would hide every min
                v: Any = encode_float(value) if not math.isfinite(value) else value
                events.append(MetricLogged(time, key, v, step))
            segments.append(run_id, w, events)
        if rng.random() < 0.7:
            Projector(store, engine).catch_up(transaction_bytes=rng.choice([200, 2_000, 1 << 20]))
    Projector(store, engine).catch_up()


def test_the_summary_equals_one_taken_from_scratch_and_a_rebuild(store: Store) -> None:
    rng = random.Random(make_seed())
    engine = open_database(store)
    try:
        random_logs(store, rng, engine)
        live = table_rows(engine, "metric_summary")
        assert live, "the logs had metric points"
        assert live == from_scratch(engine)
        live_tables = snapshot(engine)
    finally:
        engine.dispose()
    assert rebuilt_snapshot(store) == live_tables  # metric_summary among them (schema.USER_TABLES)


def summary(store: Store, run_id: str) -> dict[str, tuple[Any, ...]]:
    engine = open_database(store)
    try:
        found = rows(
            engine,
            "SELECT key, count, first_step, last_step, last_value, last_attempt, min_value, max_value "  # noqa: S608
            f"FROM metric_summary WHERE run_id = '{run_id}'",
        )
    finally:
        engine.dispose()
    return {r[0]: r[1:] for r in found}


def test_the_last_value_by_the_one_rule_and_extremes_without_nan(store: Store) -> None:
    run = alexandria.start_run(experiment="rule")
    run.log_metric("late_low_step", 5.0, step=5)
    run.log_metric("late_low_step", 2.0, step=2)  # a lower step logged later: step 5 stays last
    run.log_metric("tie", 1.0, step=3, timestamp=T0 + 2)
    run.log_metric("tie", 9.0, step=3, timestamp=T0 + 1)  # same step, earlier time: not last
    run.log_metric("same_time", 1.0, step=3, timestamp=T0)
    run.log_metric("same_time", 4.0, step=3, timestamp=T0)  # all equal: the one folded later
    run.log_metric("no_step", 7.0)
    run.log_metric("no_step", 3.0, step=0)  # any step beats no step
    run.log_metric("no_step", 8.0)
    run.log_metric("nan_last", 1.5, step=0)
    run.log_metric("nan_last", math.nan, step=1)
    run.log_metric("only_nan", math.nan)
    run.log_metric("inf", math.inf, step=0)
    run.log_metric("inf", -2.0, step=1)
    run.end()
    s = summary(store, run.id)
    # key: count, first step, last step, last value, last attempt, min, max
    assert s["late_low_step"] == (2, 2, 5, 5.0, 0, 2.0, 5.0)
    assert s["tie"] == (2, 3, 3, 1.0, 0, 1.0, 9.0)
    assert s["same_time"] == (2, 3, 3, 4.0, 0, 1.0, 4.0)
    assert s["no_step"] == (3, 0, 0, 3.0, 0, 3.0, 8.0)
    assert s["nan_last"] == (2, 0, 1, None, 0, 1.5, 1.5)  # NaN is last; min and max skip it
    assert s["only_nan"] == (1, None, None, None, 0, None, None)
    assert s["inf"] == (2, 0, 1, -2.0, 0, -2.0, math.inf)

    reader = Reader(store)  # every view reads the same figures
    metrics = {m.key: m for m in reader.run(run.id)["metrics"]}
    assert math.isnan(metrics["nan_last"].last_value) and metrics["nan_last"].min == 1.5
    assert (metrics["late_low_step"].last_value, metrics["late_low_step"].last_step) == (5.0, 5)
    assert [r["id"] for r in reader.runs(filter="metrics.late_low_step = 5 and metrics.inf.max > 1e308")] == [run.id]
    assert reader.runs()[0]["num_metric_keys"] == 7


def test_a_resumed_life_wins_a_tie_on_step_and_time(store: Store) -> None:
    run = alexandria.start_run(experiment="resume")
    run.log_metric("loss", 1.0, step=10, timestamp=T0 + 5)
    run.end()
    again = alexandria.start_run(run_id=run.id)
    again.log_metric("loss", 2.0, step=10, timestamp=T0 + 5)  # the same step and time, a later life
    again.log_metric("loss", 3.0, step=9, timestamp=T0 + 6)
    again.end()
    assert summary(store, run.id)["loss"] == (3, 9, 10, 2.0, 1, 1.0, 3.0)


def test_purging_a_run_removes_its_summary(store: Store) -> None:
    kept = alexandria.start_run(experiment="gc")
    kept.log_metric("loss", 1.0, step=0)
    kept.end()
    gone = alexandria.start_run(experiment="gc")
    gone.log_metric("loss", 2.0, step=0)
    gone.end()
    alexandria.delete_runs([gone.id])
    collect_garbage(store, older_than=0)
    engine = open_database(store)
    try:
        assert rows(engine, "SELECT run_id, last_value FROM metric_summary") == [(kept.id, 1.0)]
    finally:
        engine.dispose()


def test_an_older_database_is_rebuilt_with_the_summary(store: Store) -> None:
    """A database of an older schema version (8: no compact points; 7: no summary table) is rebuilt from the
    logs when opened."""
    run = alexandria.start_run(experiment="old")
    run.log_metric("loss", 4.0, step=1)
    run.end()
    engine = open_database(store)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP VIEW metric")
            conn.exec_driver_sql("DELETE FROM metric_point")
            conn.exec_driver_sql("DELETE FROM metric_summary")
            conn.exec_driver_sql("UPDATE alexandria_meta SET value = '8' WHERE key = 'schema_version'")
    finally:
        engine.dispose()
    assert summary(store, run.id) == {"loss": (1, 1, 1, 4.0, 0, 4.0, 4.0)}


@pytest.mark.parametrize("many", [False, True])
def test_a_fold_touching_many_keys_merges_every_one(store: Store, many: bool) -> None:
    """More keys in one transaction than one statement binds: the stored rows are read by run instead."""
    run = alexandria.start_run(experiment="keys")
    n = 600 if many else 3
    run.log_metrics({f"k{i}": float(i) for i in range(n)}, step=0)
    run.flush()
    open_database(store).dispose()
    run.log_metrics({f"k{i}": float(-i) for i in range(n)}, step=1)
    run.end()
    s = summary(store, run.id)
    assert len(s) == n
    assert s[f"k{n - 1}"] == (2, 0, 1, float(1 - n), 0, float(1 - n), float(n - 1))


def test_a_fold_merges_into_the_stored_summary_without_reading_the_points(store: Store) -> None:
    """A fold every second over a long run costs the new points only: the points folded before are never
    read again (here they are gone from the metric table, and the summary still counts them)."""
    run = alexandria.start_run(experiment="merge")
    for i in range(5):
        run.log_metric("loss", float(10 - i), step=i)
    run.flush()
    engine = open_database(store)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM metric_point")
        run.log_metric("loss", 20.0, step=3)  # below the stored last step: not last, but the new max
        run.flush()
        Projector(store, engine).catch_up()
        assert rows(
            engine, "SELECT count, first_step, last_step, last_value, min_value, max_value FROM metric_summary"
        ) == [(6, 0, 4, 6.0, 6.0, 20.0)]
    finally:
        engine.dispose()
    run.end()
