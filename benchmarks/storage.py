"""Bytes a metric point costs at rest: the plain segment, the compacted one (alexandria/compaction.py), the
SQLite projection, and for the very same points TensorBoard's event files and MLflow's stores, beside the
goal of 40 bytes a point for closed segments. Also the codecs weighed for compaction on the same segment:
bytes a point, compression and decompression speed (MB/s of lines), medians of a few rounds.

The run logs `POINTS` points of 10 keys through the public API (realistic floats: noisy decaying curves, a
cosine learning rate, every key at every step). A peer that is not installed is skipped, and said so.
"""

from __future__ import annotations

import bz2
import lzma
import math
import os
import random
import statistics
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import alexandria
from alexandria.compaction import compact, read_range
from alexandria.db import open_database
from alexandria.store import Store, open_stored_segment

from .common import Result

#: Points of a full and of a quick run (10 keys, every key at every step).
POINTS = 1_000_000
QUICK_POINTS = 20_000
KEYS = ("train/loss", "train/acc", "lr", "val/loss", "val/acc", "grad_norm", "throughput", "gpu/mem", "epoch", "ema")
GOAL = 40.0


def _values(points: int, seed: int = 0) -> list[tuple[str, float, int]]:
    rng = random.Random(seed)
    steps = points // len(KEYS)
    out = []
    for step in range(steps):
        t = step / steps
        for i, key in enumerate(KEYS):
            if key == "lr":
                value = 1e-3 * 0.5 * (1 + math.cos(math.pi * t))
            elif key == "epoch":
                value = float(step // 1000)
            else:
                value = (i + 1) * math.exp(-3 * t) * (1 + 0.05 * rng.gauss(0, 1))
            out.append((key, value, step))
    return out


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _median_time(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def _codecs(data: bytes, points: int, quick: bool) -> dict[str, str]:
    """Each codec's bytes a point, and its compression and decompression speed (MB/s of lines)."""
    codecs: list[tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]] = [
        (f"zlib-{level}", lambda d, lv=level: zlib.compress(d, lv), zlib.decompress) for level in (1, 6, 9)
    ]
    codecs.append(("bz2-9", lambda d: bz2.compress(d, 9), bz2.decompress))
    codecs.append(("lzma-0", lambda d: lzma.compress(d, preset=0), lzma.decompress))
    if not quick:  # its compression runs at ~1 MB/s: not in a smoke run
        codecs.append(("lzma-6", lambda d: lzma.compress(d, preset=6), lzma.decompress))
    out = {}
    mb = len(data) / 1e6
    for name, pack, unpack in codecs:
        t = time.perf_counter()
        packed = pack(data)
        c = time.perf_counter() - t
        d = _median_time(lambda p=packed, u=unpack: u(p), 3)
        speeds = f"compress {mb / c:.0f} MB/s, decompress {mb / d:.0f} MB/s"
        out[f"codec {name}"] = f"{len(packed) / points:.1f} B/point, {speeds}"
    return out


def _tensorboard(values: list[tuple[str, float, int]], tmp: Path) -> float | str:
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter  # type: ignore[no-redef]
        except ImportError:
            return "skipped: neither tensorboardX nor torch is installed"
    logdir = tmp / "tensorboard"
    writer = SummaryWriter(str(logdir))
    for key, value, step in values:
        writer.add_scalar(key, value, step)
    writer.close()
    return _dir_size(logdir) / len(values)


def _mlflow(values: list[tuple[str, float, int]], tmp: Path, quick: bool) -> dict[str, float | str]:
    if quick:
        return {"mlflow": "skipped in --quick: importing MLflow alone takes seconds"}
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Metric
    except ImportError:
        return {"mlflow": "skipped: mlflow is not installed"}
    out: dict[str, float | str] = {}
    now = int(time.time() * 1000)
    metrics = [Metric(key.replace("/", "_"), value, now + step, step) for key, value, step in values]
    for name, uri, size_of in (
        ("mlflow_sqlite", f"sqlite:///{tmp / 'mlflow.db'}", lambda: (tmp / "mlflow.db").stat().st_size),
        ("mlflow_file", (tmp / "mlruns").as_uri(), lambda: _dir_size(tmp / "mlruns")),
    ):
        try:
            client = MlflowClient(tracking_uri=uri)
            run = client.create_run(client.create_experiment(f"storage-{name}"))
            for i in range(0, len(metrics), 1000):  # log_batch's limit: 1,000 metrics a call
                client.log_batch(run.info.run_id, metrics=metrics[i : i + 1000])
            client.set_terminated(run.info.run_id)
            out[name] = size_of() / len(values)
        except Exception as exc:  # a store this MLflow no longer supports: said so, not fatal
            out[name] = f"skipped: {type(exc).__name__}: {str(exc)[:80]}"
    return out


def bench_storage(quick: bool, tmp: Path) -> list[Result]:
    points = QUICK_POINTS if quick else POINTS
    values = _values(points)
    store = Store.open(tmp / "store")
    with alexandria.start_run(experiment="storage", store=store.root) as run:
        for key, value, step in values:
            run.log_metric(key, value, step=step)
        run_id = run.id
    [segment] = store.run_segments(run_id)
    data = segment.read_bytes()
    plain = len(data) / points
    codecs = _codecs(data, points, quick)

    engine = open_database(store)
    t = time.perf_counter()
    report = compact(store, engine, min_age=0)
    compress_s = time.perf_counter() - t
    engine.dispose()
    assert report.compacted == 1, report
    packed_size = report.bytes_after
    fd, real = open_stored_segment(segment)
    try:

        def read_all() -> None:
            offset = 0
            while chunk := read_range(fd, real, offset, 16 << 20):  # a fold's transactions, in turn
                offset += len(chunk)

        read_s = _median_time(read_all, 3)
    finally:
        os.close(fd)
    database = sum(p.stat().st_size for p in store.root.glob("alexandria.db*")) / points

    peers: dict[str, float | str] = {"tensorboard": _tensorboard(values, tmp)}
    peers.update(_mlflow(values, tmp, quick))
    compacted = packed_size / points
    extra: dict[str, object] = {
        "points": points,
        "plain_segment_B_per_point": round(plain, 1),
        "sqlite_database_B_per_point": round(database, 1),
        "compress_MB_per_s": round(len(data) / compress_s / 1e6, 1),
        "decompress_MB_per_s_of_lines": round(len(data) / read_s / 1e6, 1),
        **codecs,
    }
    for name, peer in peers.items():
        if isinstance(peer, str):
            extra[f"{name}"] = peer
        else:
            extra[f"{name}_B_per_point"] = round(peer, 1)
            extra[f"compacted_vs_{name}"] = f"{compacted / peer:.2f}x"
    return [
        Result(
            "storage_compacted_segment",
            compacted,
            "B/point",
            GOAL,
            "goal",
            f"<= {GOAL:.0f} B/point for closed segments at rest",
            extra,
        ),
        Result("storage_plain_segment", plain, "B/point", GOAL, "goal", "(the live segment: not compacted)"),
        Result("storage_sqlite_database", database, "B/point", GOAL, "goal", "(the projection: disposable)"),
    ]
