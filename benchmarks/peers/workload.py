"""Log (or read back) one workload with one tracker and print how it went, as one JSON line.

Run with the python of the tracker's venv (see setup.sh; Alexandria runs from the project's python), e.g.

    .venvs/mlflow/bin/python workload.py mlflow --points 20000 --mode log --dir /tmp/x

The workload is one run with N points of the metric "loss" (a float, step i for point i). Modes:

- `log`: a point per call. The clock (time.perf_counter) starts after the imports and after the run
  (and, for mlflow, its SQLite database) was created, and stops once the data is durable: it includes
  the tracker's flush/close/end of the run. Afterwards the stored points are counted.
- `async`, `batch` (mlflow only): `synchronous=False` then `flush_async_logging()`; `log_batch` of 1000.
- `read`: N points logged (not timed), then only reading the history back through the tracker's own
  reader is timed.
- `multi`: 4 processes log into one run at once, each its own N points (steps k*N .. k*N+N-1); they
  start together once all have attached. Then the points that landed are counted through the
  tracker's own reader: "landed" against "logged" (4*N), and what each process reported on failure.

Self-contained: standard library plus the tracker itself. Nothing here talks to the network: the
tracking data goes to --dir, the peers' telemetry is off and wandb runs offline.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Tracker -> its distribution name (for the version) and the modes it supports.
PEERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "alexandria": ("alexandria", ("log", "read", "multi")),
    "mlflow": ("mlflow", ("log", "async", "batch", "read", "multi")),
    "tensorboardX": ("tensorboardX", ("log", "read", "multi")),
    "aim": ("aim", ("log", "read", "multi")),
    "trackio": ("trackio", ("log", "read", "multi")),
    "wandb": ("wandb", ("log", "read", "multi")),
}
MODES = ("log", "async", "batch", "read", "multi")
BATCH = 1000  # mlflow's limit of metrics per log_batch call
PROCESSES = 4  # writers of the multi-process case

# Off switches for telemetry, update checks and the network, set before any tracker is imported.
OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "_MLFLOW_TELEMETRY_PRE_WARM_DATABRICKS_SDK": "false",
    "AIM_UI_TELEMETRY_ENABLED": "0",
    "AIM_TELEMETRY_ENABLED": "0",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_CONSOLE": "off",
    "TRACKIO_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
}


def value(i: int) -> float:
    return 1.0 / (1.0 + i)


class Tracker:
    """One tracker's workload: `start` makes the run (not timed), `log` logs points into it, `finish` makes
    them durable (timed with `log`), `count` reads the run's points back with the tracker's reader and returns
    how many of "loss" it holds. `attach` joins the run `ref` from another process (the multi case)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def start(self) -> str:
        raise NotImplementedError

    def attach(self, ref: str) -> None:
        self.start_ref = ref

    def log(self, start: int, n: int) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def count(self, ref: str) -> int:
        raise NotImplementedError

    def start_shared(self) -> str:
        """The multi case: make the run the writers join (by default as `start` does, and kept open)."""
        return self.start()

    def finish_owner(self) -> None:
        """The multi case: the process that made the run ends it once every writer is done."""

    def detail(self, ref: str) -> str:
        """The multi case: what else the tracker's reader shows of the run, if anything worth saying."""
        return ""

    def open_reader(self) -> None:
        """Before a timed read: open what a reader keeps open between reads (not timed)."""


# --- Alexandria --------------------------------------------------------------------------------


class Alexandria(Tracker):
    def start(self) -> str:
        import alexandria

        self.run = alexandria.start_run(
            experiment="peer-bench", store=self.dir / "store", capture=False, system_metrics=False
        )
        return str(self.run.id)

    def attach(self, ref: str) -> None:
        import alexandria

        self.run = alexandria.start_run(run_id=ref, store=self.dir / "store", capture=False, system_metrics=False)

    def log(self, start: int, n: int) -> None:
        log_metric = self.run.log_metric
        for i in range(start, start + n):
            log_metric("loss", value(i), i)

    def finish(self) -> None:
        self.run.end()

    finish_owner = finish

    def open_reader(self) -> None:
        from alexandria import Reader

        self.reader = Reader(self.dir / "store")  # folds the logs into the database

    def count(self, ref: str) -> int:
        if getattr(self, "reader", None) is None:
            self.open_reader()
        return len(self.reader.history(ref, "loss").steps)


# --- mlflow ------------------------------------------------------------------------------------


class Mlflow(Tracker):
    def __init__(self, directory: Path, mode: str = "log") -> None:
        super().__init__(directory)
        self.uri = f"sqlite:///{directory / 'mlflow.db'}"
        os.environ["MLFLOW_TRACKING_URI"] = self.uri
        import mlflow
        from mlflow import MlflowClient

        self.mlflow = mlflow
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.mode = mode

    def start(self) -> str:
        # Creating the database (alembic migrations) and the experiment is setup, not timed.
        experiment_id = self.client.create_experiment("peer-bench", artifact_location=(self.dir / "artifacts").as_uri())
        if self.mode in ("batch", "read", "multi"):
            self.run_id = self.client.create_run(experiment_id).info.run_id
        else:
            self.run_id = self.mlflow.start_run(experiment_id=experiment_id).info.run_id
        return str(self.run_id)

    def attach(self, ref: str) -> None:
        self.run_id = ref
        self.mode = "child"

    def log(self, start: int, n: int) -> None:
        if self.mode in ("batch", "read"):
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            for first in range(start, start + n, BATCH):
                metrics = [Metric("loss", value(i), now, i) for i in range(first, min(first + BATCH, start + n))]
                self.client.log_batch(self.run_id, metrics=metrics, synchronous=True)
        elif self.mode == "child":
            log_metric = self.client.log_metric
            for i in range(start, start + n):
                log_metric(self.run_id, "loss", value(i), step=i)
        else:
            synchronous = self.mode == "log"
            if not synchronous and not hasattr(self.mlflow, "flush_async_logging"):
                raise SystemExit(f"mlflow {self.mlflow.__version__} has no asynchronous logging")
            log_metric = self.mlflow.log_metric
            for i in range(start, start + n):
                log_metric("loss", value(i), step=i, synchronous=synchronous)

    def finish(self) -> None:
        if self.mode == "async":
            self.mlflow.flush_async_logging()  # wait until every queued point is in the database
        if self.mode in ("log", "async"):
            self.mlflow.end_run()
        elif self.mode != "child":
            self.client.set_terminated(self.run_id)

    def finish_owner(self) -> None:
        self.client.set_terminated(self.run_id)

    def count(self, ref: str) -> int:
        return len(self.client.get_metric_history(ref, "loss"))


# --- tensorboardX ------------------------------------------------------------------------------


class TensorboardX(Tracker):
    """A TensorBoard run is a log directory; every writer adds its own event file to it."""

    def start(self) -> str:
        self.attach(str(self.dir / "tb"))
        return str(self.dir / "tb")

    def start_shared(self) -> str:
        return str(self.dir / "tb")

    def attach(self, ref: str) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=ref)

    def log(self, start: int, n: int) -> None:
        add_scalar = self.writer.add_scalar
        for i in range(start, start + n):
            add_scalar("loss", value(i), global_step=i)

    def finish(self) -> None:
        self.writer.flush()
        self.writer.close()

    def count(self, ref: str) -> int:
        # tensorboardX has no reader of its own: the TFRecord frames are read here and each record decoded
        # with tensorboardX's Event protobuf, as TensorBoard's loader does (CRCs not checked).
        from tensorboardX.proto.event_pb2 import Event

        steps = 0
        for path in sorted(Path(ref).rglob("events.out.tfevents.*")):
            data = path.read_bytes()
            offset = 0
            while offset + 12 <= len(data):
                (length,) = struct.unpack_from("<Q", data, offset)
                try:
                    event = Event.FromString(data[offset + 12 : offset + 12 + length])
                except Exception:  # noqa: BLE001  (protobuf's DecodeError: the rest of this file is unreadable)
                    break
                offset += 12 + length + 4
                steps += sum(1 for v in event.summary.value if v.tag == "loss")
        return steps


# --- aim ---------------------------------------------------------------------------------------


class Aim(Tracker):
    def start(self) -> str:
        repo = self.dir / "aim"
        repo.mkdir(exist_ok=True)
        import aim

        self.run = aim.Run(repo=str(repo), system_tracking_interval=None, capture_terminal_logs=False)
        return str(self.run.hash)

    def start_shared(self) -> str:
        ref = self.start()  # made, then closed: aim lets one process at a time hold a run
        self.run.close()
        del self.run
        import gc

        gc.collect()  # the closed run's database handles (and their locks) go with the object
        return ref

    def attach(self, ref: str) -> None:
        import aim

        self.run = aim.Run(
            run_hash=ref, repo=str(self.dir / "aim"), system_tracking_interval=None, capture_terminal_logs=False
        )

    def log(self, start: int, n: int) -> None:
        track = self.run.track
        for i in range(start, start + n):
            track(value(i), name="loss", step=i)

    def finish(self) -> None:
        self.run.close()

    def count(self, ref: str) -> int:
        # aim 3.29's read API (Run(..., read_only=True).get_metric) finds no sequences here, so count the
        # stored values in the run's own sequence database: one "val" key per step, after the sequence's own
        # "...loss\xfeval\xfe" key.
        from aim.storage.rockscontainer import RocksContainer

        chunk = RocksContainer(str(self.dir / "aim" / ".aim" / "seqs" / "chunks" / ref), read_only=True)
        marker = b"\xfeloss\xfeval\xfe"
        return sum(
            1 for key, _ in chunk.items() if key.startswith(b"seqs\xfev2\xfe") and key.partition(marker)[2] != b""
        )


# --- trackio -----------------------------------------------------------------------------------


class Trackio(Tracker):
    """trackio keeps each project in a local SQLite database under $TRACKIO_DIR."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        os.environ["TRACKIO_DIR"] = str(directory / "trackio")
        import trackio

        self.trackio = trackio

    def start(self) -> str:
        self.trackio.init(project="peer-bench", name="run", resume="never")
        return "run"

    def start_shared(self) -> str:
        return "run"  # made by the first writer's init; the others resume it by name

    def attach(self, ref: str) -> None:
        self.trackio.init(project="peer-bench", name=ref, resume="allow")

    def log(self, start: int, n: int) -> None:
        log = self.trackio.log
        for i in range(start, start + n):
            log({"loss": value(i)}, step=i)

    def finish(self) -> None:
        self.trackio.finish()

    def count(self, ref: str) -> int:
        from trackio.sqlite_storage import SQLiteStorage

        logs = SQLiteStorage.get_logs(project="peer-bench", run=ref)
        return sum(1 for row in logs if "loss" in row)

    def detail(self, ref: str) -> str:
        from trackio.sqlite_storage import SQLiteStorage

        named = SQLiteStorage.get_runs("peer-bench").count(ref)
        return f"{named} runs named {ref!r}; its reader returns one of them" if named > 1 else ""


# --- wandb (offline) ---------------------------------------------------------------------------


class Wandb(Tracker):
    """wandb offline: each process writes its run's records to a .wandb file under wandb/offline-run-*."""

    def start(self) -> str:
        import wandb

        self.run = wandb.init(project="peer-bench", dir=str(self.dir), mode="offline")
        return str(self.run.id)

    def start_shared(self) -> str:
        import secrets

        return secrets.token_hex(4)  # every writer inits with this id, as the ranks of one job do

    def attach(self, ref: str) -> None:
        import wandb

        self.run = wandb.init(project="peer-bench", dir=str(self.dir), mode="offline", id=ref, resume="allow")

    def log(self, start: int, n: int) -> None:
        log = self.run.log
        for i in range(start, start + n):
            log({"loss": value(i)}, step=i)

    def finish(self) -> None:
        self.run.finish()

    def count(self, ref: str) -> int:
        # The .wandb file is a LevelDB-style log of wandb's Record protobufs (what `wandb sync` reads): 32 KiB
        # blocks of chunks, each with a CRC-32 (seeded with its type), a length and a type (full, first, middle,
        # last). A chunk that fails its checksum loses the rest of its block, as LevelDB's reader does.
        # `run.finish()` can return before wandb's service process has written the last records, so each file
        # is read once it holds its exit record (or after 60 s).
        from wandb.proto import wandb_internal_pb2

        points = 0
        for path in sorted((self.dir / "wandb").glob(f"offline-run-*-{ref}*/run-{ref}.wandb")):
            deadline = time.monotonic() + 60
            while True:
                kinds, found = [], 0
                for data in wandb_records(path.read_bytes()):
                    record = wandb_internal_pb2.Record()
                    try:
                        record.ParseFromString(data)
                    except Exception:  # noqa: BLE001  (protobuf's DecodeError: a record wandb cannot read)
                        break
                    kinds.append(record.WhichOneof("record_type"))
                    if kinds[-1] == "history":
                        found += sum(1 for item in record.history.item if "loss" in (item.key, *item.nested_key))
                if "exit" in kinds or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            points += found
        return points


def wandb_records(data: bytes) -> list[bytes]:
    import zlib

    header, block, records, parts, offset = 7, 32768, [], [], 7
    if data[:4] != b":W&B":
        return []
    while offset + header <= len(data):
        room = block - (offset % block)
        if room < header:  # the rest of a block too short for a chunk header is padding
            offset += room
            continue
        checksum, length, kind = struct.unpack_from("<IHB", data, offset)
        chunk = data[offset + header : offset + header + length]
        if kind == 0 or len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != checksum:
            offset += room  # damaged: resume at the next block, dropping any record it was part of
            parts = []
            continue
        offset += header + length
        parts.append(chunk)
        if kind in (1, 4):  # full, last
            records.append(b"".join(parts))
            parts = []
    return records


# --- driver ------------------------------------------------------------------------------------

TRACKERS: dict[str, Callable[..., Tracker]] = {
    "alexandria": Alexandria,
    "mlflow": Mlflow,
    "tensorboardX": TensorboardX,
    "aim": Aim,
    "trackio": Trackio,
    "wandb": Wandb,
}


def check(ok: bool, message: str) -> None:
    if not ok:
        raise SystemExit(f"workload.py: verification failed: {message}")


def make(peer: str, mode: str, directory: Path) -> Tracker:
    return Mlflow(directory, mode) if peer == "mlflow" else TRACKERS[peer](directory)


def single(peer: str, mode: str, n: int, directory: Path) -> dict[str, Any]:
    tracker = make(peer, mode, directory)
    ref = tracker.start()
    if mode == "read":
        tracker.log(0, n)
        tracker.finish()
        tracker.open_reader()
        t0 = time.perf_counter()
        stored = tracker.count(ref)
        seconds = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        tracker.log(0, n)
        tracker.finish()
        seconds = time.perf_counter() - t0
        stored = tracker.count(ref)
    figures: dict[str, Any] = {"seconds": round(seconds, 6), "rate": round(n / seconds, 1) if seconds > 0 else None}
    if stored != n:  # a tracker whose close returned before its data was readable: how long it took (max 30 s)
        t1 = time.perf_counter()
        while stored != n and time.perf_counter() - t1 < 30:
            time.sleep(0.05)
            stored = tracker.count(ref)
        figures["readable_after_close_s"] = round(time.perf_counter() - t1, 3)
    check(stored == n, f"{stored} points stored, expected {n}")
    return figures


def multi(peer: str, n: int, directory: Path) -> dict[str, Any]:
    """4 writer processes into the run this process made; they log at once, after all have attached."""
    owner = make(peer, "multi", directory)
    ref = owner.start_shared()
    children = [
        subprocess.Popen(
            [sys.executable, __file__, peer, "--mode", "child", "--points", str(n), "--dir", str(directory)]
            + ["--run", ref, "--offset", str(k * n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(PROCESSES)
    ]
    ready = [child.stdout.readline().strip() == "ready" if child.stdout else False for child in children]
    t0 = time.perf_counter()
    for child in children:
        if child.poll() is None and child.stdin:
            child.stdin.write("go\n")
            child.stdin.flush()
    errors = []
    for child, attached in zip(children, ready, strict=True):
        _, err = child.communicate()
        if child.returncode != 0 or not attached:
            last = (err.strip().splitlines() or ["no output"])[-1].replace(str(directory), "<dir>")
            last = last.replace(ref, "<run>")
            errors.append(f"exit code {child.returncode}: {last[:200]}")
    seconds = time.perf_counter() - t0
    owner.finish_owner()
    try:
        landed = owner.count(ref)
        if detail := owner.detail(ref):
            errors.append(detail)
    except Exception as exc:  # noqa: BLE001  (a store the tracker cannot read back has lost its points)
        errors.append(f"reading back failed: {type(exc).__name__}: {exc}"[:200])
        landed = 0
    return {
        "processes": PROCESSES,
        "logged": PROCESSES * n,
        "landed": landed,
        "writer_errors": errors,
        "seconds": round(seconds, 6),
    }


def child(peer: str, ref: str, offset: int, n: int, directory: Path, out: Any) -> None:
    tracker = make(peer, "multi", directory)
    tracker.attach(ref)
    print("ready", file=out, flush=True)
    sys.stdin.readline()
    tracker.log(offset, n)
    tracker.finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--points", type=int, required=True, help="metric points to log (N; per process in multi)")
    parser.add_argument("--mode", choices=(*MODES, "child"), required=True)
    parser.add_argument("--dir", type=Path, required=True, help="empty scratch directory for the tracker's data")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # child: the run to join
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)  # child: its first step
    args = parser.parse_args(argv)
    if args.points < 1:
        parser.error("--points must be at least 1")
    dist, modes = PEERS[args.peer]
    if args.mode != "child" and args.mode not in modes:
        parser.error(f"{args.peer} supports modes {', '.join(modes)}")

    os.environ.update(OFFLINE_ENV)
    directory = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    os.chdir(directory)  # anything a tracker writes relative to the cwd stays in the scratch dir
    out = sys.stdout
    sys.stdout = sys.stderr  # a tracker's own prints must not mix with the JSON line

    if args.mode == "child":
        child(args.peer, args.run, args.offset, args.points, directory, out)
        return 0
    if args.mode == "multi":
        figures = multi(args.peer, args.points, directory)
    else:
        figures = single(args.peer, args.mode, args.points, directory)
    result = {
        "peer": args.peer,
        "version": importlib.metadata.version(dist),
        "mode": args.mode,
        "points": args.points,
        **figures,
    }
    if args.peer == "alexandria":
        import alexandria

        result["module"] = str(Path(alexandria.__file__).resolve().parent)
    print(json.dumps(result), file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
