"""Alexandria's own speed, each figure beside the raw limit measured in the same run.

Every benchmark returns a `Result`: the rate Alexandria reaches, the rate of
the raw limit it is compared with (the same work done with the bare
libraries, no API), and their ratio. Sizes scale with `quick`.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import alexandria
from alexandria.db import open_database
from alexandria.events import MetricLogged, encoder
from alexandria.projector import Projector
from alexandria.segment import BATCH_SIZE
from alexandria.store import Store

from .common import PEAK_MB, Result, best, http_median_ms, timed
from .dashboard import bench_runs_table
from .media import bench_media
from .mlflow_search import bench_mlflow_search
from .qex import bench_qex
from .rebuild import bench_rebuild
from .report_sweep import bench_report_sweep
from .startup import bench_startup
from .storage import bench_storage
from .summaries import bench_summaries


def raw_write_limit(n: int, directory: Path, keys: int = 1) -> float:
    """The honest limit: the same events built the cheapest way (`MetricLogged` positionally), encoded with the
    same encoder a batch at a time and appended with one os.write per batch, on one thread. `keys` points share
    each step and time, as `log_metrics` of that many keys does."""
    path = directory / "raw.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    names = ["loss"] if keys == 1 else [f"m{k}" for k in range(keys)]
    batch: list[MetricLogged] = []
    add = batch.append
    now = time.time
    t0 = time.perf_counter()
    for i in range(n // keys):
        t = now()
        for name in names:
            add(MetricLogged(t, name, 0.5, i))
        if len(batch) >= BATCH_SIZE:
            os.write(fd, encoder.encode_lines(batch))
            batch.clear()
    os.write(fd, encoder.encode_lines(batch))
    os.fsync(fd)  # as `end()` does
    os.close(fd)
    dt = time.perf_counter() - t0
    path.unlink()
    return n / dt


def bench_log_metric(quick: bool, tmp: Path) -> list[Result]:
    """The hot path against the honest limit of the same shape, alternating in one process (a change of the
    machine's load hits both alike): a point per call, and 10 keys a call."""
    n = 200_000 if quick else 2_000_000
    repeat = 1 if quick else 5

    def api() -> float:
        run = alexandria.start_run(experiment="bench", store=tmp / "store", capture=False, system_metrics=False)
        log = run.log_metric
        t0 = time.perf_counter()
        for i in range(n):
            log("loss", 0.5, i)
        run.end()  # included: the points are on disk when the clock stops
        return n / (time.perf_counter() - t0)

    def api_metrics() -> float:
        run = alexandria.start_run(experiment="bench", store=tmp / "store", capture=False, system_metrics=False)
        log = run.log_metrics
        values = {f"m{k}": 0.5 for k in range(10)}
        t0 = time.perf_counter()
        for i in range(n // 10):
            log(values, step=i)
        run.end()
        return n / (time.perf_counter() - t0)

    ours, limit, ours10, limit10 = [], [], [], []
    for _ in range(repeat):
        limit.append(raw_write_limit(n, tmp))
        ours.append(api())
        limit10.append(raw_write_limit(n, tmp, keys=10))
        ours10.append(api_metrics())
    median = statistics.median
    return [
        Result(
            "log_metric",
            median(ours),
            "points/s",
            median(limit),
            "same events, one thread",
            ">= 75%",
            extra={"median_ratio_of_pairs": median(a / b for a, b in zip(ours, limit, strict=True))},
        ),
        Result(
            "log_metrics (10 keys)",
            median(ours10),
            "points/s",
            median(limit10),
            "same, 10 keys a step",
            ">= 75%",
            extra={"median_ratio_of_pairs": median(a / b for a, b in zip(ours10, limit10, strict=True))},
        ),
    ]


def bench_system_metrics(quick: bool, tmp: Path) -> list[Result]:
    """log_metric with the system metrics sampler on, every 0.1 s (100 times the default, to exaggerate),
    beside the same loop with it off. Short runs alternate off/on in the same process, so a change of the
    machine's load hits both sides alike; the ratio is what sampling costs the logging hot path. The ratio
    of points per CPU second of the whole process (sampler thread included) is beside it: on a shared
    machine it is the steadier of the two."""
    n = 200_000 if quick else 1_000_000
    pairs = 5 if quick else 11
    interval = 0.1
    samples: list[int] = []

    def measure(sampling: bool) -> tuple[float, float]:
        run = alexandria.start_run(
            experiment="bench",
            store=tmp / "store",
            capture=False,
            system_metrics=sampling,
            system_metrics_interval=interval,
        )
        sampler = run._sampler
        log = run.log_metric
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            log("loss", 0.5, i)
        run.end()  # included: the points are on disk when the clock stops
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if sampler is not None:
            samples.append(sampler.samples)
        return n / wall, n / cpu

    on, off = [], []
    for _ in range(pairs):
        off.append(measure(False))
        on.append(measure(True))
    median = statistics.median
    return [
        Result(
            "log_metric, system metrics on",
            median(r for r, _ in on),
            "points/s",
            median(r for r, _ in off),
            "same loop, sampler off",
            ">= 97%",
            extra={
                "interval_s": interval,
                "samples_per_run": median(samples),
                "median_ratio_of_pairs": median(a[0] / b[0] for a, b in zip(on, off, strict=True)),
                "cpu_time_ratio": median(c for _, c in on) / median(c for _, c in off),
            },
        )
    ]


def bench_latency(quick: bool, tmp: Path) -> list[Result]:
    """Per-call latency while the background writer flushes."""
    n = 300_000 if quick else 3_000_000
    run = alexandria.start_run(experiment="latency", store=tmp / "store")
    log = run.log_metric
    clock = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        t = clock()
        log("loss", 0.5, i)
        samples[i] = clock() - t
    run.end()
    samples.sort()
    q = {p: samples[min(n - 1, int(n * p))] / 1000 for p in (0.5, 0.99, 0.999)}
    return [
        Result(
            "log_metric latency p99.9",
            q[0.999],
            "us",
            target="p99.9 < 10 us, max < 5 ms",
            extra={"p50_us": q[0.5], "p99_us": q[0.99], "p999_us": q[0.999], "max_us": samples[-1] / 1000},
        )
    ]


def _logged_store(path: Path, n: int) -> tuple[Store, alexandria.Run]:
    """A store holding one ended run with `n` points of the metric "loss"."""
    store = Store.open(path)
    run = alexandria.start_run(experiment=path.name, store=store)
    for i in range(n):
        run.log_metric("loss", 0.5, i)
    run.end()
    return store, run


def bench_projection(quick: bool, tmp: Path) -> list[Result]:
    """Decode + fold into the tables (indexes included, position committed) vs raw sqlite3 executemany."""
    n = 200_000 if quick else 2_000_000
    store, run = _logged_store(tmp / "proj", n)

    def fold() -> float:
        store.db_path.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            store.db_path.with_name(store.db_path.name + suffix).unlink(missing_ok=True)
        engine = open_database(store, catch_up=False)
        dt = timed(lambda: Projector(store, engine).catch_up())
        engine.dispose()
        return (n + 2) / dt

    def raw() -> float:
        from sqlalchemy import create_engine

        from alexandria.schema import metadata

        path = tmp / "raw.db"
        path.unlink(missing_ok=True)
        engine = create_engine(f"sqlite:///{path}")
        metadata.create_all(engine)
        engine.dispose()
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("INSERT INTO run (id) VALUES (?)", (run.id,))
        con.execute("INSERT INTO metric_summary (id, run_id, key, count) VALUES (1, ?, 'loss', 0)", (run.id,))
        rows = [(1, 0.5, i, 1.0) for i in range(n)]
        t0 = time.perf_counter()
        con.execute("BEGIN")
        con.executemany("INSERT INTO metric_point (series, value, step, timestamp) VALUES (?, ?, ?, ?)", rows)
        con.execute("COMMIT")
        dt = time.perf_counter() - t0
        con.close()
        return n / dt

    repeat = 1 if quick else 3
    return [
        Result(
            "projection",
            best(repeat, fold),
            "events/s",
            best(repeat, raw),
            "sqlite3 executemany",
            ">= 200k/s, >= 80%",
        )
    ]


def bench_projection_postgres(quick: bool, tmp: Path) -> list[Result]:
    """The same fold into PostgreSQL (a throwaway server from the system's binaries, fsync off as in the
    tests: a fair comparison with SQLite's synchronous=NORMAL), beside SQLite's fold of the same logs."""
    from tests.pgserver import PostgresUnavailable, throwaway_postgres

    n = 100_000 if quick else 1_000_000
    store, _ = _logged_store(tmp / "pg", n)

    def fold(target: Store) -> float:
        engine = open_database(target, catch_up=False)
        dt = timed(lambda: Projector(target, engine).catch_up())
        engine.dispose()
        return (n + 2) / dt

    sqlite_rate = fold(store)
    try:
        with throwaway_postgres() as server:
            import psycopg

            with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
                admin.execute("CREATE DATABASE bench")
            pg_rate = fold(Store(store.root, store.db_name, server.url("bench")))
    except PostgresUnavailable as exc:
        return [Result("projection into PostgreSQL", 0.0, "events/s", sqlite_rate, "SQLite", f"skipped: {exc}")]
    return [Result("projection into PostgreSQL", pg_rate, "events/s", sqlite_rate, "SQLite, same logs", "reported")]


def bench_read_history(quick: bool, tmp: Path) -> list[Result]:
    """A metric's history of N points into numpy (steps and values) vs sqlite3 fetching the same rows."""
    from alexandria.db import reader_engine
    from alexandria.query import metric_history

    n = 200_000 if quick else 1_000_000
    store, run = _logged_store(tmp / "read", n)
    open_database(store).dispose()
    engine = reader_engine(store.db_path)
    con = sqlite3.connect(store.db_path)
    sql = "SELECT step, value FROM metric WHERE run_id = ? AND key = ? ORDER BY step"
    repeat = 3
    rate = best(repeat, lambda: n / timed(lambda: metric_history(engine, run.id, "loss")))
    limit = best(repeat, lambda: n / timed(lambda: con.execute(sql, (run.id, "loss")).fetchall()))
    return [Result("read history into numpy", rate, "points/s", limit, "sqlite3 fetchall", ">= 2M/s")]


def bench_processes(quick: bool, tmp: Path) -> list[Result]:
    """2, 4, 8 processes logging into one run at once: aggregate rate, every point checked."""
    per_process = 50_000 if quick else 500_000
    code = (
        "import sys, time, alexandria\n"
        "run = alexandria.start_run(run_id=sys.argv[1], store=sys.argv[2])\n"
        "n = int(sys.argv[3]); log = run.log_metric\n"
        "sys.stdin.readline()\n"
        "for i in range(n): log('loss', 0.5, i)\n"
        "run.end()\n"
    )
    results = []
    for processes in (2, 4, 8):
        store = Store.open(tmp / f"procs{processes}")
        owner = alexandria.start_run(experiment="procs", store=store)
        children = [
            subprocess.Popen(
                [sys.executable, "-c", code, owner.id, str(store.root), str(per_process)], stdin=subprocess.PIPE
            )
            for _ in range(processes)
        ]
        time.sleep(1.0)  # let every child import and attach before the clock starts
        t0 = time.perf_counter()
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            child.stdin.flush()
        for child in children:
            child.wait()
        dt = time.perf_counter() - t0
        owner.end()
        engine = open_database(store)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT count(*) FROM metric WHERE key = 'loss'").scalar()
        engine.dispose()
        total = processes * per_process
        results.append(
            Result(
                f"{processes} processes, one run",
                total / dt,
                "points/s",
                target="every point present",
                extra={"points_in_db": rows, "all_present": rows == total},
            )
        )
    return results


def bench_freshness(quick: bool, tmp: Path) -> list[Result]:
    """With `alex watch` running: median time from log_metric returning to the row being visible elsewhere."""
    samples = 10 if quick else 30
    store = Store.open(tmp / "fresh")
    run = alexandria.start_run(experiment="fresh", store=store)
    run.flush()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "alexandria.cli", "--store", str(store.root), "watch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        reader = None
        while reader is None:  # until the watcher has created the database and its tables
            time.sleep(0.05)
            try:
                reader = sqlite3.connect(f"file:{store.db_path}?mode=ro", uri=True)
                reader.execute("SELECT 1 FROM metric LIMIT 1")
            except sqlite3.OperationalError:
                reader = None
        delays = []
        for step in range(samples):
            run.log_metric("fresh", 1.0, step)
            t0 = time.perf_counter()
            while not reader.execute("SELECT 1 FROM metric WHERE key = 'fresh' AND step = ?", (step,)).fetchone():
                time.sleep(0.005)
            delays.append(time.perf_counter() - t0)
            time.sleep(0.1)
        reader.close()
    finally:
        watcher.terminate()
        watcher.wait()
        run.end()
    median = statistics.median(delays)
    return [
        Result(
            "freshness (median)",
            median * 1000,
            "ms",
            target="< 1000 ms",
            extra={
                "max_ms": max(delays) * 1000,
                "flush_interval_s": float(os.environ.get("ALEXANDRIA_FLUSH_INTERVAL", "0.2")),
            },
        )
    ]


def bench_writer_memory(quick: bool, tmp: Path) -> list[Result]:
    """Logging at full speed onto a disk that takes only ~20 MB/s: the writer's memory must stay capped
    (backpressure), and every point must still arrive. Runs in a child process whose os.write is throttled."""
    n = 500_000 if quick else 3_000_000
    code = (
        PEAK_MB + "import os, sys, time\n"
        "import alexandria\n"
        "real_write = os.write\n"
        "def slow_write(fd, data):\n"
        "    time.sleep(len(data) / 20e6)\n"
        "    return real_write(fd, data)\n"
        "os.write = slow_write\n"
        "run = alexandria.start_run(experiment='mem', store=sys.argv[1])\n"
        "base = peak_mb()\n"
        "t = time.perf_counter()\n"
        "for i in range(int(sys.argv[2])): run.log_metric('loss', 0.5, i)\n"
        "run.end()\n"
        "t = time.perf_counter() - t\n"
        "print(t, peak_mb() - base)\n"
    )
    store = Store.open(tmp / "mem")
    out = subprocess.run(
        [sys.executable, "-c", code, str(store.root), str(n)], check=True, capture_output=True, text=True
    )
    seconds, growth_mb = (float(x) for x in out.stdout.split())
    engine = open_database(store)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM metric WHERE key = 'loss'").scalar()
    engine.dispose()
    return [
        Result(
            "writer memory, slow disk",
            growth_mb,
            "MB growth",
            target="capped (tens of MB)",
            extra={"points_per_s": n / seconds, "points_in_db": rows, "all_present": rows == n},
        )
    ]


def bench_start_end(quick: bool, tmp: Path) -> list[Result]:
    """start_run + end of an empty run, with capture of code and environment off and on.

    With capture on, `start_run` returns before the capture is done (it runs in a background thread);
    `end()` waits for it, so "start_run + end" with capture includes the whole capture. Capture looks at
    the git work tree of the current directory: run from a clone to measure a real one.
    """
    n = 30 if quick else 200
    store = Store.open(tmp / "empty")

    def medians(capture: bool) -> tuple[float, float]:
        to_return, whole = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            run = alexandria.start_run(experiment="empty", store=store, capture=capture)
            t1 = time.perf_counter()
            run.end()
            t2 = time.perf_counter()
            to_return.append(t1 - t0)
            whole.append(t2 - t0)
        return statistics.median(to_return) * 1000, statistics.median(whole) * 1000

    off_return, off = medians(False)
    on_return, on = medians(True)
    return [
        Result("start_run + end, capture off", off, "ms", target="< 50 ms", extra={"start_run_ms": off_return}),
        Result(
            "start_run + end, capture on",
            on,
            "ms",
            target="reported",
            extra={"start_run_returns_after_ms": on_return, "capture_ms": on - off},
        ),
    ]


def bench_ui_metric(quick: bool, tmp: Path) -> list[Result]:
    """`alex ui`: a metric of N points served downsampled to a chart (1,000 buckets of min/max/last), through
    the real app and a real HTTP request to its server in a thread. The run page and a status poll beside."""

    from alexandria.db import reader_engine
    from alexandria.query import downsample
    from alexandria.ui import BackgroundServer

    n = 100_000 if quick else 1_000_000
    requests = 10 if quick else 20
    store, run = _logged_store(tmp / "ui", n)
    open_database(store).dispose()

    with BackgroundServer(store, fold=False) as server:
        path = f"/api/run/{run.id}/metric/loss?buckets=1000"
        metric_ms, size = http_median_ms(server.port, path, requests)
        zoom_ms, _ = http_median_ms(server.port, f"{path}&start={n // 2}&end={n // 2 + n // 10}", requests)
        status_ms, _ = http_median_ms(server.port, f"/api/run/{run.id}/status", 5)
        page_ms, _ = http_median_ms(server.port, f"/run/{run.id}", 5)
    engine = reader_engine(store.db_path)  # the same read without HTTP, JSON and the app: what serving adds
    query_ms = statistics.median(timed(lambda: downsample(engine, run.id, "loss", 1000)) for _ in range(requests))
    engine.dispose()
    return [
        Result(
            f"ui: metric of {n:,} points to a chart",
            metric_ms,
            "ms",
            target="well under 1000 ms",
            extra={
                "query.downsample_alone_ms": query_ms * 1000,
                "response_bytes": size,
                "zoomed_10pct_ms": zoom_ms,
                "status_poll_ms": status_ms,
                "run_page_ms": page_ms,
            },
        )
    ]


#: The question the seed asks of a metric table: every run's last loss, as a join at each run's highest step.
LAST_VALUE_JOIN = """SELECT r.id, m.value FROM run r
JOIN metric m ON m.run_id = r.id AND m.key = 'loss'
 AND m.step = (SELECT MAX(step) FROM metric m2 WHERE m2.run_id = r.id AND m2.key = 'loss')"""


def bench_sqlite_statistics(quick: bool, tmp: Path) -> list[Result]:
    """The natural "last value per run" join on a store folded live (the projector takes SQLite's statistics
    as the metric table grows), against the same query on a copy analyzed in full just before (the best plan
    SQLite can find: the limit), and on a copy without statistics (what every store had before)."""
    runs, points = (100, 1_000) if quick else (1_000, int(os.environ.get("BENCH_POINTS", "10000")))
    store = Store.open(tmp / "stats")
    engine = open_database(store)
    for r in range(runs):
        run = alexandria.start_run(experiment="stats", store=store, capture=False, system_metrics=False)
        for i in range(points):
            run.log_metric("loss", 1.0 / (i + 1), i)
            if i % 10 == 0:
                run.log_metric("val/loss", 1.0 / (i + 1), i)
        run.end()
        if r % 50 == 49:  # folded as it grows, as `alex watch` or the dashboard would
            Projector(store, engine).catch_up()
    Projector(store, engine).catch_up()
    engine.dispose()
    repeat = 5 if quick else 7

    def rate(path: Path) -> float:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:

            def once() -> float:
                t = time.perf_counter()
                assert len(con.execute(LAST_VALUE_JOIN).fetchall()) == runs
                return 1 / (time.perf_counter() - t)

            return best(repeat, once)
        finally:
            con.close()

    # Three copies made the same way (a backup lays the pages out afresh), so that only the statistics differ.
    copies = {"ours": "SELECT 1", "analyzed": "ANALYZE", "bare": "DROP TABLE IF EXISTS sqlite_stat1"}
    for name, statement in copies.items():
        src = sqlite3.connect(store.db_path)
        dst = sqlite3.connect(tmp / f"{name}.db")
        src.backup(dst)
        src.close()
        dst.execute(statement)
        dst.commit()
        dst.close()
    ours, limit, none = (rate(tmp / f"{name}.db") for name in copies)
    return [
        Result(
            f"sqlite statistics: last value per run, {runs:,} runs x {points:,} points",
            ours,
            "queries/s",
            limit=limit,
            limit_name="the same query right after a full ANALYZE",
            target="ratio ~1; under 50 ms at 10 M points",
            extra={"ours_ms": 1000 / ours, "analyzed_ms": 1000 / limit, "without_statistics_ms": 1000 / none},
        )
    ]


def bench_charts(quick: bool, tmp: Path) -> list[Result]:
    """The compare page of a sweep as the browser loads it: the page (with its chart toolbar's data: colours,
    values, last values, numeric parameters) and every chart's buckets (500 per run and metric), over real HTTP
    to the app in a thread; the limit is the same read-model work called directly (no HTTP, JSON, templates)."""
    import http.client
    import math

    from alexandria.db import reader_engine
    from alexandria.ui import BackgroundServer
    from alexandria.ui import data as ui_data

    runs, steps = (10, 1_000) if quick else (50, 10_000)
    store = Store.open(tmp / "charts")
    ids = []
    for i in range(runs):
        run = alexandria.start_run(experiment="sweep", store=store, capture=False)
        theta = 0.1 * (i + 1)
        run.log_params({"theta": theta, "lr": 0.01})
        log = run.log_metrics
        for step in range(steps):
            log({"loss": math.exp(-theta * step / steps), "acc": 1 - math.exp(-theta * step / steps)}, step=step)
        run.log_metric("final/acc", math.cos(theta))
        run.end()
        ids.append(run.id)
    open_database(store).dispose()
    curves = ("acc", "loss")
    page_path = "/compare?run=" + ",".join(ids)
    chart_paths = [f"/api/run/{rid}/metric/{key}?buckets=500&x=auto" for key in curves for rid in ids]

    def over_http(conn: http.client.HTTPConnection) -> tuple[float, float, int]:
        t0 = time.perf_counter()
        conn.request("GET", page_path)
        response = conn.getresponse()
        size = len(response.read())
        assert response.status == 200, response.status
        t1 = time.perf_counter()
        for path in chart_paths:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            assert response.status == 200, (path, response.status)
        return (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000, size

    engine = reader_engine(store.db_path)

    def direct() -> float:
        t0 = time.perf_counter()
        ui_data.compare_page(engine, ids, [], 1.0)
        for key in curves:
            for rid in ids:
                ui_data.metric_buckets(engine, rid, key, 500, "auto", None, None)
        return (time.perf_counter() - t0) * 1000

    repeat = 3 if quick else 5
    with BackgroundServer(store, fold=False) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        samples = [over_http(conn) for _ in range(repeat)]
        conn.close()
    limit_ms = statistics.median(direct() for _ in range(repeat))
    charts_only_ms = statistics.median(timed(lambda: ui_data.compare_charts(engine, ids)) for _ in range(repeat))
    engine.dispose()
    page_ms = statistics.median(s[0] for s in samples)
    charts_ms = statistics.median(s[1] for s in samples)
    return [
        Result(
            f"ui: compare page of {runs} runs x {len(curves)} curves of {steps:,} steps, page + every chart",
            page_ms + charts_ms,
            "ms",
            limit=limit_ms,
            limit_name="the same read-model calls without HTTP, JSON or templates (ms)",
            target="well under 2000 ms",
            extra={
                "page_ms": page_ms,
                "charts_ms": charts_ms,
                "chart_requests": len(chart_paths),
                "page_bytes": samples[0][2],
                "compare_charts_alone_ms": charts_only_ms * 1000,
            },
        )
    ]


ALL = {
    "log_metric": bench_log_metric,
    "system_metrics": bench_system_metrics,
    "latency": bench_latency,
    "projection": bench_projection,
    "projection_postgres": bench_projection_postgres,
    "rebuild": bench_rebuild,
    "read": bench_read_history,
    "processes": bench_processes,
    "freshness": bench_freshness,
    "start_end": bench_start_end,
    "memory": bench_writer_memory,
    "ui_metric": bench_ui_metric,
    "sqlite_statistics": bench_sqlite_statistics,
    "summaries": bench_summaries,
    "mlflow_search": bench_mlflow_search,
    "media": bench_media,
    "runs_table": bench_runs_table,
    "charts": bench_charts,
    "report_sweep": bench_report_sweep,
    "qex": bench_qex,
    "startup": bench_startup,
    "storage": bench_storage,
}


def run_all(names: list[str], quick: bool) -> list[Result]:
    results: list[Result] = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"alexandria-bench-{name}-") as tmp:
            results.extend(ALL[name](quick, Path(tmp)))
    return results
