"""Log one workload with a peer tracker and print how fast it went, as one JSON line.

Run with the python of the peer's venv (see setup.sh), for example:

    .venvs/mlflow/bin/python workload.py mlflow --points 20000 --mode batch --dir /tmp/x

The workload is one run with N points of the metric "loss" (a float, step i for point i).
The clock (time.perf_counter) starts after the imports and after the run (and, for mlflow,
its SQLite database) was created, and stops once the data is durable: it includes the
peer's flush/close/end of the run. Mode "read" times only reading the N points back.

Self-contained: standard library plus the peer itself. Nothing here talks to the network:
the tracking data goes to --dir, and the peers' telemetry is switched off before import.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Peer -> its distribution name (for the version) and the modes it supports.
PEERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mlflow": ("mlflow", ("per_call", "async", "batch", "read")),
    "tensorboardX": ("tensorboardX", ("per_call",)),
    "aim": ("aim", ("per_call",)),
}
MODES = ("per_call", "async", "batch", "read")
BATCH = 1000  # mlflow's limit of metrics per log_batch call

# Off switches for telemetry and update checks, set before any peer is imported.
OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "_MLFLOW_TELEMETRY_PRE_WARM_DATABRICKS_SDK": "false",
    "AIM_UI_TELEMETRY_ENABLED": "0",
}


def value(i: int) -> float:
    return 1.0 / (1.0 + i)


# --- mlflow ------------------------------------------------------------------------------------


def mlflow_workload(mode: str, n: int, directory: Path) -> float:
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    # Creating the database (alembic migrations) and the experiment is setup, not timed.
    experiment_id = client.create_experiment("peer-bench", artifact_location=(directory / "artifacts").as_uri())

    def log_all_batched(run_id: str) -> None:
        now = int(time.time() * 1000)
        for start in range(0, n, BATCH):
            metrics = [Metric("loss", value(i), now, i) for i in range(start, min(start + BATCH, n))]
            client.log_batch(run_id, metrics=metrics, synchronous=True)

    if mode == "read":
        run_id = client.create_run(experiment_id).info.run_id
        log_all_batched(run_id)
        client.set_terminated(run_id)
        t0 = time.perf_counter()
        history = client.get_metric_history(run_id, "loss")
        seconds = time.perf_counter() - t0
        check(len(history) == n, f"read {len(history)} points, expected {n}")
        return seconds

    if mode == "batch":
        run_id = client.create_run(experiment_id).info.run_id
        t0 = time.perf_counter()
        log_all_batched(run_id)
        client.set_terminated(run_id)
        seconds = time.perf_counter() - t0
    else:
        synchronous = mode == "per_call"
        if not synchronous and not hasattr(mlflow, "flush_async_logging"):
            raise SystemExit(f"mlflow {mlflow.__version__} has no asynchronous logging")
        run_id = mlflow.start_run(experiment_id=experiment_id).info.run_id
        log_metric = mlflow.log_metric
        t0 = time.perf_counter()
        for i in range(n):
            log_metric("loss", value(i), step=i, synchronous=synchronous)
        if not synchronous:
            mlflow.flush_async_logging()  # wait until every queued point is in the database
        mlflow.end_run()
        seconds = time.perf_counter() - t0
    stored = len(client.get_metric_history(run_id, "loss"))
    check(stored == n, f"{stored} points stored, expected {n}")
    return seconds


# --- tensorboardX ------------------------------------------------------------------------------


def tensorboardx_workload(mode: str, n: int, directory: Path) -> float:
    from tensorboardX import SummaryWriter

    logdir = directory / "tb"
    writer = SummaryWriter(logdir=str(logdir))
    add_scalar = writer.add_scalar
    t0 = time.perf_counter()
    for i in range(n):
        add_scalar("loss", value(i), global_step=i)
    writer.flush()
    writer.close()
    seconds = time.perf_counter() - t0
    records = sum(count_tfrecords(path) for path in logdir.rglob("events.out.tfevents.*"))
    check(records == n + 1, f"{records - 1} scalar events written, expected {n}")  # +1: file_version event
    return seconds


def count_tfrecords(path: Path) -> int:
    """Records in a TFRecord file: each is u64 length, u32 crc, data, u32 crc."""
    data = path.read_bytes()
    count = offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        offset += 12 + length + 4
        count += 1
    return count


# --- aim ---------------------------------------------------------------------------------------


def aim_workload(mode: str, n: int, directory: Path) -> float:
    import aim
    from aim.storage.rockscontainer import RocksContainer

    repo = directory / "aim"
    repo.mkdir()
    run = aim.Run(repo=str(repo), system_tracking_interval=None, capture_terminal_logs=False)
    run_hash = run.hash
    track = run.track
    t0 = time.perf_counter()
    for i in range(n):
        track(value(i), name="loss", step=i)
    run.close()
    seconds = time.perf_counter() - t0
    # aim 3.29's read API (Run(..., read_only=True).get_metric) finds no sequences here, so count
    # the stored values in the run's own sequence database (one "val" key per step).
    chunk = RocksContainer(str(repo / ".aim" / "seqs" / "chunks" / run_hash), read_only=True)
    stored = sum(
        1 for key, _ in chunk.items() if key.startswith(b"seqs\xfev2\xfe") and b"\xfeloss\xfeval\xfe\xfe" in key
    )
    check(stored == n, f"{stored} points stored, expected {n}")
    return seconds


# --- driver ------------------------------------------------------------------------------------

WORKLOADS: dict[str, Callable[[str, int, Path], float]] = {
    "mlflow": mlflow_workload,
    "tensorboardX": tensorboardx_workload,
    "aim": aim_workload,
}


def check(ok: bool, message: str) -> None:
    if not ok:
        raise SystemExit(f"workload.py: verification failed: {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--points", type=int, required=True, help="metric points to log (N)")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--dir", type=Path, required=True, help="empty scratch directory for the peer's data")
    args = parser.parse_args(argv)
    if args.points < 1:
        parser.error("--points must be at least 1")
    dist, modes = PEERS[args.peer]
    if args.mode not in modes:
        parser.error(f"{args.peer} supports modes {', '.join(modes)}")

    os.environ.update(OFFLINE_ENV)
    directory = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.chdir(directory)  # anything a peer writes relative to the cwd stays in the scratch dir
    out = sys.stdout
    sys.stdout = sys.stderr  # a peer's own prints must not mix with the JSON line

    seconds = WORKLOADS[args.peer](args.mode, args.points, directory)
    result = {
        "peer": args.peer,
        "version": importlib.metadata.version(dist),
        "mode": args.mode,
        "points": args.points,
        "seconds": round(seconds, 6),
        "rate": round(args.points / seconds, 1) if seconds > 0 else None,
    }
    print(json.dumps(result), file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
