"""The runs table against MLflow's `search_runs` on the same store shape: 1,000 runs of one experiment, 3 params
each, "loss" at every step and "val/loss" every 10th (summaries.py's shape), in an Alexandria store and in an
MLflow tracking store (`sqlite:///.../mlflow.db` through `MlflowClient`, the points by `log_batch` in chunks of
1,000). The question both answer: every run of the experiment with its params and the last value of each
metric, newest first, and the same sorted by the last "loss". MLflow's side is
`MlflowClient.search_runs([exp_id], max_results=1000)` (with `order_by=["metrics.loss ASC"]`); Alexandria's is
`Reader.runs(experiment=...)` then `Reader.table(ids, keys)` (a DataFrame; sorted with pandas'
`sort_values`). Both answers are checked to be the same runs in the same order with the same values. The ratio
printed is Alexandria's time / MLflow's (the goal: below 1).

MLflow logged about 4 k points/s through `log_batch` here (1,000 runs), so 10 M points would take some 50
minutes: by default MLflow is measured at two sizes, 10 and 1,000 steps per run (10 k and 1 M "loss" points in
all), Alexandria at the same two, to show whether either side's time grows with the points;
`$BENCH_MLFLOW_STEPS` (comma-separated steps per run, e.g. `10,1000,10000` for the full 10 M) and
`$BENCH_MLFLOW_RUNS` change that. MLflow is imported only here, with its telemetry off.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .common import Result
from .summaries import T0, VAL_EVERY, build_store

RUNS = 1_000
STEPS = (10, 1_000)  # per run: 10 k and 1 M points of "loss" in all
QUICK_RUNS, QUICK_STEPS = 50, (10, 100)
EXPERIMENT = "e0"  # build_store's name for its only experiment
KEYS = ("loss", "val/loss")
BATCH = 1_000  # MLflow's own limit of metrics per log_batch


def build_mlflow(path: Path, runs: int, points: int) -> tuple[Any, str, float]:
    """An MLflow store of `build_store`'s shape (one experiment, the same params, values, steps and times):
    the client, the experiment's id and the seconds the logging took."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{path / 'mlflow.db'}")
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=(path / "artifacts").as_uri())
    t0 = time.perf_counter()
    for r in range(runs):
        t = T0 + r * 1_000
        run = client.create_run(exp_id, start_time=int(t * 1000), run_name=f"{r + 1:032x}")
        run_id = run.info.run_id
        scale = 1.0 + r / runs
        params = [Param("lr", str([0.1, 0.01, 0.001][r % 3])), Param("batch", str(32 * (1 + r % 4)))]
        params.append(Param("seed", str(r)))
        metrics: list[Any] = []
        for i in range(points):
            ms = int((t + i * 1e-3) * 1000)
            metrics.append(Metric("loss", scale / (i + 1), ms, i))
            if i % VAL_EVERY == 0:
                metrics.append(Metric("val/loss", 2 * scale / (i + 1), ms, i))
        for start in range(0, len(metrics), BATCH):
            client.log_batch(run_id, metrics=metrics[start : start + BATCH], params=params if start == 0 else [])
        client.set_terminated(run_id, "FINISHED", end_time=int((t + 999) * 1000))
    return client, exp_id, time.perf_counter() - t0


def ours(reader: Any, sort: bool) -> list[tuple[str, float, float]]:
    """Alexandria's answer: (seed, last loss, last val/loss) of every run of the experiment, newest first or by
    the last loss."""
    ids = [r["id"] for r in reader.runs(experiment=EXPERIMENT)]
    table = reader.table(ids, KEYS)
    if sort:
        table = table.sort_values("loss.last", kind="stable")
    cols = zip(table["param.seed"], table["loss.last"], table["val/loss.last"], strict=True)
    return [(seed, loss, val) for seed, loss, val in cols]


def theirs(client: Any, exp_id: str, sort: bool) -> list[tuple[str, float, float]]:
    """MLflow's answer to the same question, from `search_runs`."""
    order = ["metrics.loss ASC"] if sort else None
    found = client.search_runs([exp_id], max_results=1000, order_by=order)
    return [(r.data.params["seed"], r.data.metrics["loss"], r.data.metrics["val/loss"]) for r in found]


def median_ms(fn: Callable[[], Any], times: int) -> float:
    fn()  # warm: the page cache, both libraries' statement caches
    samples = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def bench_mlflow_search(quick: bool, tmp: Path) -> list[Result]:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no reports of the benchmark leave the machine
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow  # fails here, naming the package, when it is not installed

    import alexandria

    runs = int(os.environ.get("BENCH_MLFLOW_RUNS", QUICK_RUNS if quick else RUNS))
    env_steps = os.environ.get("BENCH_MLFLOW_STEPS")
    sizes = [int(s) for s in env_steps.split(",")] if env_steps else list(QUICK_STEPS if quick else STEPS)
    times = 5 if quick else 7
    results = []
    for steps in sizes:
        folder = tmp / f"mlflow-{steps}"
        t0 = time.perf_counter()
        store, _ = build_store(folder / "alexandria", runs, steps, steps, experiments=1)
        ours_build = time.perf_counter() - t0
        (folder / "mlflow").mkdir()
        client, exp_id, theirs_build = build_mlflow(folder / "mlflow", runs, steps)
        reader = alexandria.Reader(store, fold=False)

        try:
            for sort in (False, True):
                a, b = ours(reader, sort), theirs(client, exp_id, sort)
                if a != b or len(a) != runs:
                    raise AssertionError(f"the answers differ (sorted: {sort}): {a[:3]} ... against {b[:3]} ...")
                ours_ms = median_ms(partial(ours, reader, sort), times)
                theirs_ms = median_ms(partial(theirs, client, exp_id, sort), times)
                question = "sorted by metrics.loss" if sort else "newest first"
                results.append(
                    Result(
                        f"runs table vs MLflow search_runs, {question}: {runs:,} runs x {steps:,} steps",
                        1000 / ours_ms,
                        "tables/s",
                        limit=1000 / theirs_ms,
                        limit_name=f"MLflow {mlflow.__version__} search_runs, SQLite store, same runs",
                        target="runs_table time / search_runs time < 1 (ratio printed > 100%)",
                        extra={
                            "ours_ms": ours_ms,
                            "search_runs_ms": theirs_ms,
                            "ours_over_search_runs": ours_ms / theirs_ms,
                            "loss_points": runs * steps,
                            "mlflow_log_s": theirs_build,
                            "mlflow_points_per_s": runs * (steps + -(-steps // VAL_EVERY)) / theirs_build,
                            "alexandria_build_s": ours_build,
                        },
                    )
                )
        finally:
            reader.close()
    return results
