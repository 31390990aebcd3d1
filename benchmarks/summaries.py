"""Reads of what runs' metrics come to, on N runs x M points: `alex runs`, `alex show`, the dashboard's status
poll, `Reader.table` (the runs table) and `alex compare` of 10 runs, each through the library beside the
limit, the same read from the `metric_summary` table with plain sqlite3. Each also gives the old path's time
(the same question answered from every point of the metric table, as before the summary was kept) in the
same run: the cost the summary removed, and which grows with the number of points. The commands are also timed
as a user runs them: `alex runs`, `alex show RUN` and `alex compare` of 10 runs, each a fresh process (wall
time, median), beside the same command on a store of 10 runs of 10 points measured in the same rounds (the
floor: the interpreter, the imports and the command's own set-up, which do not grow with the store).

Shapes (`$BENCH_SHAPE`): `target` is the issue's goal, 1,000 runs x 10,000 steps of "loss" (10 M points; 11 M
metric rows with "val/loss" every 10th step), which builds in a few minutes on a 2-core machine; the default
full run is scaled down (`FULL`: 1,000 runs of 2,000 steps and one of 1 M, 3.2 M metric rows, about two minutes);
`--quick` is a smoke run. $BENCH_RUNS, $BENCH_POINTS and $BENCH_LONG_POINTS override any shape's numbers. Reads
of the summary cost one row per (run, key), so their time does not depend on M; the old path's grows with it.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import alexandria
from alexandria.compare import compare_runs
from alexandria.db import open_database
from alexandria.events import Header, MetricLogged, ParamLogged, RunFinished, RunStarted, WriterInfo, encoder
from alexandria.query import list_runs, run_details, runs_table
from alexandria.store import Store
from alexandria.ui.data import run_status
from alexandria.values import param_to_str

from .common import Result, command_medians_ms
from .startup import child_env

#: (runs, points per run, points of the one long run that `alex show` and the status poll read) of a full and
#: of a quick run.
FULL = (1_000, 2_000, 1_000_000)
QUICK = (50, 2_000, 20_000)
#: `BENCH_SHAPE=target`: the issue's goal, 1,000 runs x 10 M points, every run 10,000 steps.
TARGET = (1_000, 10_000, 10_000)
#: The floor of the timed commands: the same commands on a store this small (runs, points per run).
FLOOR = (10, 10)
#: Of a run's points, every `VAL_EVERY`-th step also logs "val/loss": two keys per run.
VAL_EVERY = 10
T0 = 1_700_000_000.0

# The limits: the same answers read from metric_summary with plain sqlite3.
RAW_RUNS = """
SELECT r.*, (SELECT count(*) FROM parameter p WHERE p.run_id = r.id) AS num_params,
  (SELECT count(*) FROM metric_summary s WHERE s.run_id = r.id) AS num_metric_keys
FROM run r WHERE r.deleted = 0 ORDER BY r.timestamp_start DESC, r.id
"""
RAW_SHOW = "SELECT * FROM metric_summary WHERE run_id = ? ORDER BY key"
RAW_STATUS = "SELECT key, count, last_value, last_step FROM metric_summary WHERE run_id = ? ORDER BY key"
RAW_PARAMS = "SELECT run_id, key, value FROM parameter WHERE run_id IN ({marks}) ORDER BY run_id, key"
RAW_SUMMARIES = "SELECT * FROM metric_summary WHERE run_id IN ({marks}) ORDER BY run_id, key"
RAW_RUN_ROWS = "SELECT * FROM run WHERE id IN ({marks})"

# The old paths: what the same reads cost from every point (the counts, the extremes, the highest step).
OLD_RUNS = """
SELECT r.*, (SELECT count(*) FROM parameter p WHERE p.run_id = r.id) AS num_params,
  (SELECT count(DISTINCT key) FROM metric m WHERE m.run_id = r.id) AS num_metric_keys
FROM run r WHERE r.deleted = 0 ORDER BY r.timestamp_start DESC, r.id
"""
OLD_SUMMARY = """
SELECT g.*, (SELECT value FROM metric t WHERE t.run_id = g.run_id AND t.key = g.key AND t.step IS g.top
             ORDER BY t.timestamp DESC, t.attempt DESC, t.id DESC LIMIT 1) AS last_value
FROM (SELECT run_id, key, count(*) AS points, max(step) AS top, min(value) AS lo, max(value) AS hi
      FROM metric WHERE run_id IN ({marks}) GROUP BY run_id, key) g ORDER BY run_id, key
"""
OLD_STATUS = """
SELECT g.*, (SELECT value FROM metric t WHERE t.run_id = g.run_id AND t.key = g.key AND t.step IS g.top
             ORDER BY t.timestamp DESC, t.attempt DESC, t.id DESC LIMIT 1) AS last_value
FROM (SELECT run_id, key, count(*) AS points, max(step) AS top FROM metric WHERE run_id = ? GROUP BY run_id, key) g
"""


def build_store(path: Path, runs: int, points: int, long: int, experiments: int = 4) -> tuple[Store, list[str]]:
    """`runs` ended runs of `points` steps of "loss" (and "val/loss" every `VAL_EVERY`-th), 3 params each,
    the middle one of `long` steps instead, spread over `experiments` experiments (`e0`, `e1`, ...); each run's
    curve scaled by its own factor, so no two runs end on the same value (a sort by a metric has one answer).
    One segment per run written with the log's own encoder (the lines `log_metric` writes, without its wait),
    then folded by the projector (the summary kept as it folds)."""
    store = Store.open(path)
    ids = []
    for r in range(runs):
        run_id = f"{r + 1:032x}"
        ids.append(run_id)
        folder = store.run_dir(run_id)
        folder.mkdir(parents=True)
        t = T0 + r * 1_000
        lines = [
            Header(time=t, format=1, run_id=run_id, writer=WriterInfo(host="bench", pid=1)),
            RunStarted(experiment=f"e{r % experiments}", time=t),
            ParamLogged(key="lr", value=param_to_str([0.1, 0.01, 0.001][r % 3]), time=t),
            ParamLogged(key="batch", value=param_to_str(32 * (1 + r % 4)), time=t),
            ParamLogged(key="seed", value=param_to_str(r), time=t),
        ]
        out = bytearray()
        scale = 1.0 + r / runs
        for e in lines:
            encoder.encode_into(e, out, -1)
            out.append(10)
        for i in range(long if r == runs // 2 else points):
            encoder.encode_into(MetricLogged(t + i * 1e-3, "loss", scale / (i + 1), i), out, -1)
            out.append(10)
            if i % VAL_EVERY == 0:
                encoder.encode_into(MetricLogged(t + i * 1e-3, "val/loss", 2 * scale / (i + 1), i), out, -1)
                out.append(10)
        encoder.encode_into(RunFinished(status="finished", time=t + 999), out, -1)
        out.append(10)
        (folder / "0.jsonl").write_bytes(bytes(out))
    open_database(store).dispose()
    return store, ids


def median_ms(fn: Callable[[], Any], times: int) -> tuple[float, float]:
    """The median wall time and the median CPU time of `fn` in ms (on a busy machine the CPU time is what
    an idle one would take)."""
    fn()  # warm: the first read pays for the page cache and SQLAlchemy's statement cache
    wall, cpu = [], []
    for _ in range(times):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def shape(quick: bool) -> tuple[int, int, int]:
    """(runs, points per run, points of the long run) of this run: `QUICK`, `TARGET` when $BENCH_SHAPE is
    `target`, else `FULL`; $BENCH_RUNS, $BENCH_POINTS and $BENCH_LONG_POINTS override each."""
    name = os.environ.get("BENCH_SHAPE", "full")
    if name not in ("full", "target"):
        raise SystemExit(f"BENCH_SHAPE must be 'full' or 'target', not {name!r}")
    runs, points, long = QUICK if quick else TARGET if name == "target" else FULL
    return (
        int(os.environ.get("BENCH_RUNS", runs)),
        int(os.environ.get("BENCH_POINTS", points)),
        int(os.environ.get("BENCH_LONG_POINTS", long)),
    )


def command_medians(stores: dict[str, tuple[Store, list[str]]], rounds: int, tmp: Path) -> dict[str, float]:
    """The median wall time in ms of `alex runs`, `alex show RUN` (the middle run: the long one) and `alex
    compare` of the first 10 runs on each store of `stores` (keyed `<command> <store's name>`), each a fresh
    process with its output to /dev/null, every command once a round, order rotated; after one warming round
    (bytecode compiled, page cache)."""
    env = child_env(tmp)
    commands: dict[str, list[str]] = {}
    for name, (store, ids) in stores.items():
        alex = [sys.executable, "-m", "alexandria.cli", "--store", str(store.root)]
        commands[f"alex runs {name}"] = [*alex, "runs"]
        commands[f"alex show {name}"] = [*alex, "show", ids[len(ids) // 2]]
        commands[f"alex compare {name}"] = [*alex, "compare", *ids[:10]]
    return command_medians_ms(commands, env, rounds)


def bench_summaries(quick: bool, tmp: Path) -> list[Result]:
    runs, points, long = shape(quick)
    t0 = time.perf_counter()
    store, ids = build_store(tmp / "store", runs, points, long)
    built = time.perf_counter() - t0
    times = 5 if quick else 7
    engine = alexandria.Reader(store, fold=False).engine
    con = sqlite3.connect(f"file:{store.db_path}?mode=ro", uri=True)
    total = con.execute("SELECT count(*) FROM metric").fetchone()[0]
    one, ten = ids[len(ids) // 2], ids[:10]
    marks = ",".join("?" * len(ten))

    def raw_table(run_ids: list[str]) -> None:
        m = ",".join("?" * len(run_ids))
        con.execute(RAW_RUN_ROWS.format(marks=m), run_ids).fetchall()
        con.execute(RAW_PARAMS.format(marks=m), run_ids).fetchall()
        con.execute(RAW_SUMMARIES.format(marks=m), run_ids).fetchall()

    def old_table(run_ids: list[str]) -> None:
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start : start + 500]
            m = ",".join("?" * len(chunk))
            con.execute(RAW_RUN_ROWS.format(marks=m), chunk).fetchall()
            con.execute(RAW_PARAMS.format(marks=m), chunk).fetchall()
            con.execute(OLD_SUMMARY.format(marks=m), chunk).fetchall()

    reads: list[tuple[str, Callable[[], Any], Callable[[], Any], Callable[[], Any]]] = [
        (
            "alex runs",
            lambda: list_runs(engine),
            lambda: con.execute(RAW_RUNS).fetchall(),
            lambda: con.execute(OLD_RUNS).fetchall(),
        ),
        (
            "alex show",
            lambda: run_details(engine, one),
            lambda: con.execute(RAW_SHOW, (one,)).fetchall(),
            lambda: con.execute(OLD_SUMMARY.format(marks="?"), (one,)).fetchall(),
        ),
        (
            "status poll",
            lambda: run_status(engine, one, with_metrics=True),
            lambda: con.execute(RAW_STATUS, (one,)).fetchall(),
            lambda: con.execute(OLD_STATUS, (one,)).fetchall(),
        ),
        (
            "Reader.table, every run",
            lambda: runs_table(engine, ids, ["loss", "val/loss"]),
            lambda: raw_table(ids),
            lambda: old_table(ids),
        ),
        (
            "alex compare, 10 runs",
            lambda: compare_runs(engine, ten),
            lambda: raw_table(ten),
            lambda: con.execute(OLD_SUMMARY.format(marks=marks), ten).fetchall(),
        ),
    ]
    results = []
    try:
        for name, ours, limit, old in reads:
            (ours_ms, ours_cpu), (limit_ms, _), (old_ms, _) = (median_ms(fn, times) for fn in (ours, limit, old))
            what = f"the run of {long:,} points" if name in ("alex show", "status poll") else f"{runs:,} runs"
            results.append(
                Result(
                    f"{name}: {what}",
                    1000 / ours_ms,
                    "reads/s",
                    limit=1000 / limit_ms,
                    limit_name="the same read of metric_summary with plain sqlite3",
                    target="< 500 ms (status poll < 20 ms) at 1,000 runs x 10 M points, not growing with points",
                    extra={
                        "ours_ms": ours_ms,
                        "ours_cpu_ms": ours_cpu,
                        "limit_ms": limit_ms,
                        "old_path_ms": old_ms,
                        "metric_rows": total,
                        "build_s": built,
                    },
                )
            )
    finally:
        con.close()
        engine.dispose()
    floor = build_store(tmp / "floor", FLOOR[0], FLOOR[1], FLOOR[1])
    ms = command_medians({"big": (store, ids), "floor": floor}, times, tmp)
    for command, shape_text in (
        ("alex runs", f"{runs:,} runs"),
        ("alex show", f"the run of {long:,} points"),
        ("alex compare", "10 runs"),
    ):
        big, small = ms[f"{command} big"], ms[f"{command} floor"]
        results.append(
            Result(
                f"{command} (a process): {shape_text}",
                1000 / big,
                "commands/s",
                limit=1000 / small,
                limit_name=f"the same command on {FLOOR[0]} runs of {FLOOR[1]} points (start-up and set-up)",
                target="< 500 ms wall at 1,000 runs x 10 M points on an idle machine",
                extra={"wall_ms": big, "floor_ms": small, "above_floor_ms": big - small, "metric_rows": total},
            )
        )
    return results
