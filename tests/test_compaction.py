"""Closed segments compacted at rest (alexandria/compaction.py): the same database before and after, live and
rebuilt; a compaction killed with SIGKILL at each of its steps; damage reported; live segments and links left
alone; a compacted run still resumed, edited, deleted and purged."""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import alexandria
from alexandria.compaction import compact
from alexandria.db import open_database
from alexandria.life import run_state
from alexandria.schema import USER_TABLES
from alexandria.store import Store
from tests.conftest import alex, make_seed, python, rebuilt_snapshot, rows, run_python, snapshot, wait_until

TABLES = (*USER_TABLES, "log_segment", "log_problem")
POINTS = 6_000

LOG_RUN = """
import math, random, sys, alexandria
rng = random.Random(int(sys.argv[2]))
keys = ["train/loss", "train/acc", "lr", "val/loss", "grad_norm", "gpu/mem"]
with alexandria.start_run(experiment="compaction", store=sys.argv[1]) as run:
    run.log_param("lr", 0.01)
    for step in range(int(sys.argv[3]) // len(keys)):
        for i, key in enumerate(keys):
            run.log_metric(key, math.exp(-step / 500) * (1 + 0.1 * rng.random()) + i, step=step)
    print(run.id)
"""


def log_run(store: Store, seed: int = 1, points: int = POINTS) -> str:
    return run_python(LOG_RUN, str(store.root), str(seed), str(points)).strip()


def folded_snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every table after a fold of everything on disk, as a reader sees it."""
    engine = open_database(store)
    try:
        return snapshot(engine, TABLES)
    finally:
        engine.dispose()


def files_of(store: Store, run_id: str) -> list[str]:
    return sorted(os.listdir(store.run_dir(run_id)))


def test_compaction_keeps_the_database_exactly_and_a_point_under_40_bytes(store: Store) -> None:
    run_id = log_run(store)
    assert alex("edit", run_id, "--name", "renamed", "--tag", "k=v").returncode == 0
    [plain] = [p for p in store.run_segments(run_id) if p.stat().st_size > 4096]
    original = plain.read_bytes()
    before = folded_snapshot(store)
    assert len(before["metric"]) == POINTS

    done = alex("compact", "--min-age", "0")
    assert done.returncode == 0, done.stderr
    assert "compacted 1 segment(s)" in done.stdout  # the edit's segment is too small to be worth it
    packed = plain.with_name(plain.name + ".gz")
    assert not plain.exists() and packed.exists()
    assert gzip.decompress(packed.read_bytes()) == original  # a standard gzip file: zcat shows the lines
    assert packed.stat().st_size / POINTS <= 40
    assert [p.name for p in store.run_segments(run_id)].count(plain.name) == 1  # still known by its name

    assert folded_snapshot(store) == before  # positions kept: nothing folded twice, nothing missing
    assert rebuilt_snapshot(store, TABLES) == before  # a rebuild reads the compacted segment
    assert run_state(store, run_id).status == "finished"  # the tail is read from the compacted file
    again = alex("compact", "--min-age", "0")
    assert "compacted 0 segment(s)" in again.stdout


def test_alex_watch_compacts_closed_segments_in_the_background(store: Store) -> None:
    run_id = log_run(store)
    [plain] = store.run_segments(run_id)
    os.utime(plain, (0, 0))  # quiet for long
    before = folded_snapshot(store)
    watcher = python("import sys; from alexandria.cli import cli; cli()", "--store", str(store.root), "watch")
    try:
        packed = wait_until(
            lambda: [n for n in files_of(store, run_id) if n.endswith(".jsonl.gz")], what="the compacted segment"
        )
        assert packed == [plain.name + ".gz"]
    finally:
        watcher.terminate()
        watcher.communicate(timeout=60)
    assert not plain.exists()
    assert folded_snapshot(store) == before


def test_young_and_unfolded_segments_wait(store: Store) -> None:
    run_id = log_run(store)
    engine = open_database(store, catch_up=False)  # nothing folded in it yet
    try:
        assert compact(store, engine, min_age=0).compacted == 0
    finally:
        engine.dispose()
    assert compact(store, min_age=3600).compacted == 0  # closed seconds ago: not quiet yet
    assert all(name.endswith(".jsonl") for name in files_of(store, run_id))


def test_a_live_or_killed_writers_segment_stays_as_it_is(store: Store) -> None:
    killed = python(
        """
        import sys, alexandria
        run = alexandria.start_run(experiment="killed", store=sys.argv[1])
        for step in range(2000):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.flush()
        print(run.id, flush=True)
        sys.stdin.read()
        """,
        str(store.root),
        stdin=-1,
    )
    assert killed.stdout is not None
    killed_id = killed.stdout.readline().decode().strip()
    live = alexandria.start_run(experiment="live", store=store.root)
    for step in range(2000):
        live.log_metric("loss", float(step), step=step)
    live.flush()
    killed.kill()
    killed.wait()
    try:
        before = {rid: files_of(store, rid) for rid in (killed_id, live.id)}
        assert compact(store, min_age=0).compacted == 0
        assert {rid: files_of(store, rid) for rid in (killed_id, live.id)} == before
    finally:
        live.end()
        if killed.stdin is not None:
            killed.stdin.close()


# The child counts the compaction's steps that touch the disk (each write, fsync, rename and unlink) and kills
# itself with SIGKILL just before step argv[2]; it prints "done" if the compaction ended first.
KILL_AT_STEP = """
import os, signal, sys
from alexandria.compaction import compact
from alexandria.store import Store
store = Store.open(sys.argv[1])
stop = int(sys.argv[2])
seen = [0]
def step(real):
    def wrapped(*args, **kwargs):
        seen[0] += 1
        if seen[0] == stop:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return wrapped
for name in ("write", "fsync", "rename", "unlink"):
    setattr(os, name, step(getattr(os, name)))
compact(store, min_age=0)
print("done")
"""


def test_a_compaction_killed_at_each_step_leaves_the_same_database(store: Store) -> None:
    run_id = log_run(store, points=12_000)  # ~1.2 MB: more than one chunk written
    before = folded_snapshot(store)
    original = b"".join(p.read_bytes() for p in store.run_segments(run_id))
    step = 1
    while True:
        child = python(KILL_AT_STEP, str(store.root), str(step))
        out, err = child.communicate(timeout=120)
        if child.returncode == 0:
            assert b"done" in out
            break
        assert child.returncode == -9, err.decode()
        # killed at this step: every reader sees the same lines, live and rebuilt
        assert folded_snapshot(store) == before, f"killed at step {step}"
        assert rebuilt_snapshot(store, TABLES) == before, f"killed at step {step}"
        step += 1
        assert step < 100
    assert step > 6  # it did die at each write, fsync, rename and unlink on the way
    # the last one finished the job a killed one may have left: one compacted file, no part left behind
    report = compact(store, min_age=0)
    assert report.compacted == 0
    [name] = [n for n in files_of(store, run_id) if not n.startswith(".")] or [""]
    assert name.endswith(".jsonl.gz") and not [n for n in files_of(store, run_id) if n.endswith(".part")]
    assert gzip.decompress((store.run_dir(run_id) / name).read_bytes()) == original
    assert folded_snapshot(store) == before
    assert rebuilt_snapshot(store, TABLES) == before


def test_a_half_done_compaction_is_finished_by_the_next(store: Store) -> None:
    run_id = log_run(store)
    before = folded_snapshot(store)
    [plain] = store.run_segments(run_id)
    kept = plain.read_bytes()
    assert compact(store, min_age=0).compacted == 1
    plain.write_bytes(kept)  # as a compaction killed between its rename and its unlink leaves it
    os.utime(plain, (0, 0))
    assert [p.name for p in store.run_segments(run_id)] == [plain.name]  # the plain file is the one read
    assert folded_snapshot(store) == before and rebuilt_snapshot(store, TABLES) == before
    report = compact(store, min_age=0)
    assert (report.compacted, report.finished) == (0, 1)
    assert not plain.exists()
    assert rebuilt_snapshot(store, TABLES) == before


def test_damage_inside_a_compacted_segment_is_reported_with_the_file_and_offset(store: Store) -> None:
    run_id = log_run(store, points=30_000)
    before = folded_snapshot(store)
    assert compact(store, min_age=0).compacted == 1
    [packed] = [store.run_dir(run_id) / n for n in files_of(store, run_id)]
    data = packed.read_bytes()

    packed.write_bytes(data[: len(data) // 2])  # truncated: it was closed, so this is corruption
    rebuilt = rebuilt_snapshot(store, TABLES)
    [problem] = rebuilt["log_problem"]
    assert problem[0] == f"runs/{run_id}/{packed.name[:-3]}" and problem[2] == "corrupt"
    assert "cut short" in problem[3] and packed.name in problem[3] and f"at byte {problem[1]}" in problem[3]
    assert 0 < len(rebuilt["metric"]) < len(before["metric"])  # what read before the cut is kept
    shown = alex("problems")
    assert packed.name in shown.stdout and "cut short" in shown.stdout

    # Deflate turns a flipped byte into garbage from there on, and garbage can read as events never logged
    # (it did, for one flip in five, when the file was one gzip member): a member's lines are read only once
    # its checksum has checked, so what is projected is a prefix of what was logged, then one problem.
    rng = random.Random(make_seed())
    logged = set(before["metric"])
    for _ in range(6):
        spot = rng.randrange(len(data) // 4, len(data) - 16)
        flipped = bytearray(data)
        for i in range(spot, spot + 8):
            flipped[i] ^= 0xFF
        packed.write_bytes(bytes(flipped))
        rebuilt = rebuilt_snapshot(store, TABLES)
        assert [p[2] for p in rebuilt["log_problem"]] == ["corrupt"], (spot, rebuilt["log_problem"])
        assert set(rebuilt["metric"]) <= logged and len(rebuilt["metric"]) < len(logged), spot
        steps: dict[str, list[int]] = {}
        for row in rebuilt["metric"]:
            steps.setdefault(row[1], []).append(row[3])
        assert all(sorted(s) == list(range(len(s))) for s in steps.values()), spot  # the lines before the damage

    packed.write_bytes(b"not gzip at all" * 10)
    [problem] = rebuilt_snapshot(store, TABLES)["log_problem"]
    assert problem[1:3] == (0, "corrupt") and "not a compacted segment" in problem[3]

    packed.write_bytes(data)  # restored: everything reads again
    assert rebuilt_snapshot(store, TABLES) == before


def first_layout(lines: bytes) -> bytes:
    """A compacted segment as the first layout wrote it: one gzip member for all its lines, the header's extra
    field (subfield AX) holding version 1, their size, their SHA-256 and the last three lines."""
    tail = b"\n".join(lines[:-1].split(b"\n")[-3:]) + b"\n"
    payload = struct.pack("<BQ32s", 1, len(lines), hashlib.sha256(lines).digest()) + tail
    sub = b"AX" + struct.pack("<H", len(payload)) + payload
    head = b"\x1f\x8b\x08\x04" + b"\0\0\0\0" + b"\0\xff" + struct.pack("<H", len(sub)) + sub
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(lines) + deflate.flush()
    return head + body + struct.pack("<II", zlib.crc32(lines), len(lines) & 0xFFFFFFFF)


def test_a_segment_of_the_first_layout_reads_only_when_whole(store: Store) -> None:
    """A file compacted before segments were cut into members still reads, byte for byte. Damaged, it cannot
    say where its damage begins (its only check is at its end), so none of it is read: one problem at byte 0,
    no line of it projected, and the file left as it is."""
    run_id = log_run(store, points=30_000)
    [plain] = [p for p in store.run_segments(run_id) if p.stat().st_size > 4096]
    before = folded_snapshot(store)
    lines = plain.read_bytes()
    packed = plain.with_name(plain.name + ".gz")
    packed.write_bytes(first_layout(lines))
    plain.unlink()
    assert rebuilt_snapshot(store, TABLES) == before
    assert run_state(store, run_id).status == "finished"

    flipped = bytearray(packed.read_bytes())
    spot = random.Random(make_seed()).randrange(len(flipped) // 4, len(flipped) - 16)
    flipped[spot : spot + 8] = bytes(b ^ 0xFF for b in flipped[spot : spot + 8])
    packed.write_bytes(bytes(flipped))
    rebuilt = rebuilt_snapshot(store, TABLES)
    [problem] = rebuilt["log_problem"]
    assert problem[1:3] == (0, "corrupt") and "cannot tell where the damage begins" in problem[3], problem
    assert rebuilt["metric"] == []
    assert packed.read_bytes() == bytes(flipped)


def test_links_are_never_followed(store: Store, tmp_path: Path) -> None:
    run_id = log_run(store)
    [plain] = store.run_segments(run_id)
    target = tmp_path / "elsewhere.gz"
    target.write_bytes(b"untouched")
    link = plain.with_name(plain.name + ".gz")
    link.symlink_to(target)
    assert compact(store, min_age=0).skipped  # refused: a link where the compacted file would go
    assert plain.exists() and link.is_symlink() and target.read_bytes() == b"untouched"

    # a link standing alone where a compacted segment would be is refused and never read
    os.unlink(plain)
    folded = folded_snapshot(store)
    refused = [p for p in folded["log_problem"] if p[2] == "refused"]
    assert refused and "symbolic link" in refused[0][3] and "elsewhere" not in refused[0][3]
    assert target.read_bytes() == b"untouched"


def test_a_compacted_run_is_resumed_edited_deleted_and_purged(store: Store) -> None:
    run_id = log_run(store)
    assert compact(store, min_age=0).compacted == 1
    run_python(
        """
        import sys, alexandria
        with alexandria.start_run(run_id=sys.argv[2], store=sys.argv[1]) as run:
            run.log_metric("after", 1.0, step=0)
        """,
        str(store.root),
        run_id,
    )
    assert alex("edit", run_id, "--note", "compacted").returncode == 0
    engine = open_database(store)
    try:
        assert rows(engine, f"SELECT status, attempt, note FROM run WHERE id = '{run_id}'") == [
            ("finished", 1, "compacted")
        ]
        assert rows(engine, f"SELECT count(*) FROM metric WHERE run_id = '{run_id}'") == [(POINTS + 1,)]
    finally:
        engine.dispose()
    assert alex("delete", run_id).returncode == 0
    purged = alex("gc", "--older-than", "0")
    assert purged.returncode == 0, purged.stderr
    assert not store.run_dir(run_id).exists()
    assert rows(open_database(store), "SELECT count(*) FROM run") == [(0,)]
